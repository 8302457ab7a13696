"""Subnormal floats flushed to zero on the threads that train and evaluate, restored after.

Why: an optimizer slot whose gradient stays 0 (the weights of a dead ReLU unit) decays
geometrically, Adam's ``m`` and SGD's momentum by 0.9 a step, and spends ~200 steps among the
float32 subnormals (0 < |x| < 2**-126 ~ 1.18e-38) before it reaches 0. Intel cores take a
microcode assist (~100+ cycles) on every subnormal operand or result; after a few epochs
thousands of slots are subnormal and every update pays for them. TensorFlow's and XLA's CPU
thread pools (so Keras and JAX) flush subnormals to zero too.

``flushing()`` sets the calling thread's control register for the duration of a block and puts
the previous value back after: x86-64 MXCSR's FTZ (bit 15: subnormal results become 0) and DAZ
(bit 6: subnormal operands read as 0); aarch64 FPCR.FZ (bit 24: both). The register is read
and written through the C library's ``fegetmode``/``fesetmode`` (glibc, no compiling), else a
numba intrinsic around LLVM's ``stmxcsr``/``ldmxcsr`` (``get``/``set.fpcr`` on Arm), else not
at all: ``status()`` then says why, and the fast engine's update kernels flush the optimizer
state in software instead (so the saved state holds no subnormal on any CPU).

What it changes in the numbers: a float32 result or operand below 2**-126 in magnitude is 0.
Each such change is below 1.2e-38 in absolute terms, far under the float32 rounding of anything
training reads (weights, slots, losses, probabilities); ``spec.py`` (float64, where nothing is
subnormal) and the tests compare within float32 rounding either way. A probability under
1.2e-38 is reported as 0. Same seed, data, machine and threads still give the same numbers.

Threads: the mode belongs to a thread. The training thread runs all of the fast engine's
elementwise and optimizer work and, at 1 BLAS thread (the default), every product: fully
covered. With more threads, the BLAS library's (or torch's) worker threads keep their own mode;
the operands they get come flushed from the training thread, and the training thread reads
their subnormal results as 0 (DAZ), but their own arithmetic is not flushed. ``status(threads)``
records which, in each run's environment.json.

>>> with flushing() as on:
...     tiny = np.float32(1e-38) * np.float32(0.01)   # 1e-40: a subnormal result
>>> bool(tiny == 0) == on
True
>>> bool(np.float32(1e-38) * np.float32(0.01) > 0)   # restored after the block
True
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import importlib.util
import platform
import sys
from collections.abc import Callable, Iterator

import numpy as np

TINY = float(np.finfo(np.float32).tiny)  # 2**-126: below it (and above 0), float32 is subnormal

# Control-register bits that flush, per architecture.
FLUSH_BITS = {"x86_64": (0x8040, "FTZ+DAZ"), "aarch64": (1 << 24, "FZ")}
_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
MXCSR_FLAGS = 0x3F  # x86 exception flags: sticky status, not part of the mode


@dataclasses.dataclass(frozen=True)
class Control:
    """How to read and write this machine's floating-point control register."""

    arch: str  # "x86_64" or "aarch64"
    bits: int  # the bits that flush subnormals
    label: str  # "FTZ+DAZ" or "FZ"
    how: str  # "fesetmode" or "numba"
    read: Callable[[], int]
    write: Callable[[int], None]


def architecture() -> str | None:
    """``"x86_64"`` or ``"aarch64"`` (whatever the OS calls them), else None."""
    return _MACHINES.get(platform.machine().lower())


def _libc_control(arch: str) -> Control | None:
    """Through glibc's fegetmode/fesetmode; femode_t is ``{u16 cw, u16 pad, u32 mxcsr}`` on
    x86-64 and the 32-bit FPCR on aarch64 (glibc's bits/fenv.h)."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        get, set_ = libc.fegetmode, libc.fesetmode
    except (OSError, AttributeError):
        return None
    word = 1 if arch == "x86_64" else 0  # the 32-bit word of femode_t that holds the register

    def read() -> int:
        mode = (ctypes.c_uint32 * 4)()
        get(mode)
        return int(mode[word])

    def write(value: int) -> None:
        mode = (ctypes.c_uint32 * 4)()
        get(mode)  # keeps the x87 control word as it is
        mode[word] = value
        set_(mode)  # fesetmode leaves the exception flags alone

    return Control(arch, *FLUSH_BITS[arch], "fesetmode", read, write)


def _numba_control(arch: str) -> Control | None:
    if importlib.util.find_spec("numba") is None:
        return None
    from mnistlab.engines import fpmode_numba

    read, write = fpmode_numba.accessors(arch)
    if arch == "x86_64":  # ldmxcsr writes the sticky flags too: keep the current ones

        def write_mode(value: int, _write=write, _read=read) -> None:
            _write((value & ~MXCSR_FLAGS) | (_read() & MXCSR_FLAGS))

        return Control(arch, *FLUSH_BITS[arch], "numba", read, write_mode)
    return Control(arch, *FLUSH_BITS[arch], "numba", read, write)


@functools.cache
def control() -> Control | None:
    """This machine's way to set the mode, found once per process; None where there is none."""
    arch = architecture()
    if arch is None:
        return None
    return _libc_control(arch) or _numba_control(arch)


def unavailable() -> str | None:
    """Why subnormals are not flushed here (one line), or None when they are."""
    if control() is not None:
        return None
    arch = architecture()
    if arch is None:
        return f"{platform.machine() or 'this CPU'} has no flush-to-zero mode known to mnistlab"
    return (
        f"setting {arch}'s {FLUSH_BITS[arch][1]} needs glibc's fesetmode or numba, "
        "and neither is here"
    )


@contextlib.contextmanager
def flushing() -> Iterator[bool]:
    """Flush subnormals on the calling thread inside the block; yields whether it could.

    The register's previous value comes back after the block, also when it raises; blocks
    nest (an inner one restores the outer one's setting).
    """
    c = control()
    if c is None:
        yield False
        return
    before = c.read()
    c.write(before | c.bits)
    try:
        yield True
    finally:
        c.write(before)


def is_flushing() -> bool:
    """Whether the calling thread flushes subnormals right now."""
    c = control()
    return c is not None and c.read() & c.bits == c.bits


def status(threads: int | None = 1, workers: str = "BLAS", label: str | None = None) -> str:
    """One line for environment.json: flushed or not, on which threads, and why not
    (``label``: how it is flushed, where the caller has its own way).

    >>> c = control()
    >>> status(1) == (f"flushed ({c.label})" if c else f"not flushed: {unavailable()}")
    True
    """
    c = control()
    if c is None and label is None:
        return f"not flushed: {unavailable()}"
    label = label or c.label
    extra = (threads or 1) - 1
    if extra <= 0:
        return f"flushed ({label})"
    workers = (
        f"{workers} worker thread keeps its"
        if extra == 1
        else f"{extra} {workers} worker threads keep their"
    )
    return f"flushed ({label}) on the training thread; its {workers} own"


def count_subnormal(a: np.ndarray) -> int:
    """How many entries of a float32 array are subnormal (nonzero, below 2**-126).

    >>> count_subnormal(np.array([0.0, 1e-39, -1e-40, 1.2e-38, 1.0], np.float32))
    2
    """
    a = np.asarray(a)
    return int(np.count_nonzero((a != 0) & (np.abs(a) < np.float32(TINY))))


def flush_in_place(a: np.ndarray, scratch: np.ndarray) -> None:
    """Set the subnormal entries of float32 ``a`` to 0 (``scratch``: same-size float32 buffer).

    What the hardware mode does to results, in software, for machines without it.
    """
    np.abs(a, out=scratch)
    np.copyto(a, np.float32(0), where=scratch < np.float32(TINY))
