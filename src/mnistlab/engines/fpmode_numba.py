"""The floating-point control register read and written by numba-compiled code (``fpmode``'s way
where the C library has no ``fesetmode``): LLVM's ``llvm.x86.sse.stmxcsr``/``ldmxcsr`` on x86-64,
``llvm.aarch64.get.fpcr``/``set.fpcr`` on aarch64. Each accessor is a tiny function compiled
once per machine (``cache=True``); it runs on the calling thread, whose register it reads or
sets. Importing this module imports numba; tests/engines/test_fpmode.py reads MXCSR through it.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_I8P = ir.IntType(8).as_pointer()
_I32, _I64 = ir.IntType(32), ir.IntType(64)


def _llvm(builder, name: str, ret, args):
    fn_type = ir.FunctionType(ret, [a.type for a in args])
    return builder.call(cgutils.get_or_insert_function(builder.module, fn_type, name), args)


@intrinsic
def _stmxcsr(typingctx):
    def codegen(context, builder, sig, args):
        slot = cgutils.alloca_once(builder, _I32)
        _llvm(builder, "llvm.x86.sse.stmxcsr", ir.VoidType(), [builder.bitcast(slot, _I8P)])
        return builder.zext(builder.load(slot), _I64)

    return types.uint64(), codegen


@intrinsic
def _ldmxcsr(typingctx, value):
    def codegen(context, builder, sig, args):
        slot = cgutils.alloca_once(builder, _I32)
        builder.store(builder.trunc(args[0], _I32), slot)
        _llvm(builder, "llvm.x86.sse.ldmxcsr", ir.VoidType(), [builder.bitcast(slot, _I8P)])
        return context.get_dummy_value()

    return types.none(value), codegen


@intrinsic
def _get_fpcr(typingctx):
    def codegen(context, builder, sig, args):
        return _llvm(builder, "llvm.aarch64.get.fpcr", _I64, [])

    return types.uint64(), codegen


@intrinsic
def _set_fpcr(typingctx, value):
    def codegen(context, builder, sig, args):
        _llvm(builder, "llvm.aarch64.set.fpcr", ir.VoidType(), [args[0]])
        return context.get_dummy_value()

    return types.none(value), codegen


@njit(cache=True)
def read_mxcsr():
    return _stmxcsr()


@njit(cache=True)
def write_mxcsr(value):
    _ldmxcsr(value)


@njit(cache=True)
def read_fpcr():
    return _get_fpcr()


@njit(cache=True)
def write_fpcr(value):
    _set_fpcr(value)


def accessors(arch: str):
    """(read() -> int, write(int)) of the control register of ``arch`` ("x86_64"/"aarch64")."""
    read, write = (read_mxcsr, write_mxcsr) if arch == "x86_64" else (read_fpcr, write_fpcr)
    return (lambda: int(read())), (lambda value: write(np.uint64(value)))
