"""The fast engine's CNN: conv blocks in front of the MLP's Dense layers, no torch.

A training step: the conv blocks' forward pass (``fast_conv_numba.forward``) writes the
flattened features, in Keras' (h, w, c) order, into the Dense workspace's h[0]; the MLP step of
``fast_numba`` runs on them (its ``front`` mode: everything an MLP has, from dropout to label
smoothing) and leaves their gradient in d[0]; the conv blocks' backward pass
(``fast_conv_numba.backward``) turns it into the conv weights' gradients, and fast_numba's
optimizer kernel updates theta[:conv_end] (every conv kernel and bias, one flat span). The maths
is ``engines/spec.py``'s (``conv_features`` and ``conv_backward``).

A batch is cut into ``threads`` parts of contiguous rows, each run on its own thread with its own
scratch and partial gradients, summed in a fixed order: deterministic for a given thread count,
and nothing spins while waiting (a busy machine slows a step, it does not stall it). BLAS runs
on one thread inside each part.

Inference (``features``) is NumPy only: predicting with a CNN loads neither torch nor numba.

>>> from mnistlab.recipe import Recipe
>>> from mnistlab.engines.init import init_weights
>>> w = init_weights(Recipe(kind="cnn", conv_channels=[4, 6], hidden=[8]))
>>> features(w, np.zeros((3, 784), np.float32)).shape   # 28 -> 14 -> 7: 7 * 7 * 6
(3, 294)
"""

from __future__ import annotations

import weakref
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import as_strided

from mnistlab.engines import fpmode
from mnistlab.engines.optim import Hyperparameters
from mnistlab.engines.state import State, Steps, Workspace

# im2col columns of one training chunk: 512 KB, so the columns, dZ and the column gradient of a
# chunk stay in a core's L2 cache (1-2 MB on current x86 cores) while sgemm reads them.
CHUNK_FLOATS = 1 << 17
# inference: columns of up to 8 MB per chunk (L3-sized; fewer, larger products)
EVAL_FLOATS = 1 << 21
# A part's scratch (a numba record): im2col columns, conv output / dZ, column gradient, product
# scratch (and dW^T), float64 bias sums, W^T.
Scratch = namedtuple("Scratch", "col z dcol tmp gb wt")


def eval_batch(weights: dict[str, np.ndarray], side: int = 28) -> int:
    """Images per inference chunk: the largest conv block's columns fit ``EVAL_FLOATS``."""
    per_image, j = 1, 0
    while f"conv_{j}.kernel" in weights:
        k, _, c, _ = weights[f"conv_{j}.kernel"].shape
        per_image = max(per_image, side * side * k * k * c)
        side, j = side // 2, j + 1
    return max(1, EVAL_FLOATS // per_image)


def features(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The conv blocks' output (n, features) of float32 images ``x`` (n, side*side), NumPy only:
    im2col by k copies of strided views whose rows are a window row's k*in contiguous floats
    (one input channel: k*k copies of shifted images, transposed), one product, bias, 2x2
    max-pool as three maxima of strided views, relu, (h, w, c) flatten. Only the pixels a pool
    window reads are computed (an odd side's last row and column are not)."""
    n = len(x)
    side = int(round(x.shape[1] ** 0.5))
    a = np.asarray(x, np.float32).reshape(n, side, side, 1)
    j = 0
    while f"conv_{j}.kernel" in weights:
        kernel, bias = weights[f"conv_{j}.kernel"], weights[f"conv_{j}.bias"]
        k, _, c, co = kernel.shape
        lo, cover = (k - 1) // 2, side // 2 * 2
        padded = np.zeros((n, side + k - 1, side + k - 1, c), np.float32)
        padded[:, lo : lo + side, lo : lo + side] = a
        if c == 1:
            col = np.empty((k * k, n, cover, cover, 1), np.float32)
            for t in range(k * k):
                col[t] = padded[:, t // k :, t % k :][:, :cover, :cover]
            z = col.reshape(k * k, -1).T @ kernel.reshape(k * k, co)
        else:
            col = np.empty((n, cover, cover, k, k * c), np.float32)
            rows = (n, cover, cover, k * c)  # pixel (y, x)'s window row dy: k*c floats
            steps = (*padded.strides[:3], padded.itemsize)  # from (y+dy, x) on, in one run
            for dy in range(k):
                col[:, :, :, dy] = as_strided(padded[:, dy:], rows, steps, writeable=False)
            z = col.reshape(-1, k * k * c) @ kernel.reshape(-1, co)
        z += bias
        z = z.reshape(n, cover, cover, co)
        a = np.maximum(z[:, 0::2, 0::2], z[:, 0::2, 1::2])
        np.maximum(a, z[:, 1::2, 0::2], out=a)
        np.maximum(a, z[:, 1::2, 1::2], out=a)
        np.maximum(a, np.float32(0), out=a)
        side, j = side // 2, j + 1
    return a.reshape(n, -1)


class ConvBuffers:
    """Every buffer the conv blocks' steps touch, for batches of up to ``rows`` images cut into
    ``parts`` parts (threads); flat vectors with offsets tables, as ``state.Workspace``.

    Per block j: ``acts`` its zero-padded input (rows, side+k-1, side+k-1, in) (block 0: the
    images), ``codes`` the pool's argmax codes (rows, side/2, side/2, out), ``grads`` (j > 0)
    the gradient with respect to its padded input; ``cb[j]`` images per chunk. Per part: a
    ``Scratch`` and, beyond the first part, partial conv gradients.
    """

    def __init__(self, st: State, rows: int, parts: int):
        lay = st.conv_layout
        self.rows, self.parts, self.lay = rows, parts, lay
        geo = [(int(k), int(c), int(co), int(s)) for _, _, k, c, co, s in lay]
        padded = [rows * (s + k - 1) ** 2 * c for k, c, _, s in geo]
        cover = [(s // 2 * 2) ** 2 for _, _, _, s in geo]  # pixels a pool window reads
        self.cb = np.array(
            [max(1, CHUNK_FLOATS // (p * k * k * c)) for p, (k, c, _, _) in zip(cover, geo)],
            np.int64,
        )
        self.aoff = np.cumsum([0, *padded[:-1]]).astype(np.int64)
        self.acts = np.zeros(max(sum(padded), 1), np.float32)
        pooled = [rows * (s // 2) ** 2 * co for _, _, co, s in geo]
        self.coff = np.cumsum([0, *pooled[:-1]]).astype(np.int64)
        self.codes = np.zeros(max(sum(pooled), 1), np.uint8)
        self.goff = self.aoff.copy()  # block 0 needs none: the same layout, its part unused
        self.grads = np.zeros_like(self.acts)
        rows_per_chunk = [int(b) * p for b, p in zip(self.cb, cover)]
        col = max(r * k * k * c for r, (k, c, _, _) in zip(rows_per_chunk, geo))
        z = max(r * co for r, (_, _, co, _) in zip(rows_per_chunk, geo))
        tmp = max(k * k * c * co for k, c, co, _ in geo)
        width = max(co for _, _, co, _ in geo)
        self.scratch = [
            Scratch(
                col=np.zeros(col, np.float32),
                z=np.zeros(z, np.float32),
                dcol=np.zeros(col, np.float32),
                tmp=np.zeros(tmp, np.float32),
                gb=np.zeros(width, np.float64),
                wt=np.zeros(tmp, np.float32),
            )
            for _ in range(parts)
        ]
        self.part_grads = [np.zeros(st.conv_end, np.float32) for _ in range(parts - 1)]
        self.buf = (self.acts, self.aoff, self.codes, self.coff, self.grads, self.goff)
        self.pool = ThreadPoolExecutor(parts - 1) if parts > 1 else None
        if self.pool is not None:
            weakref.finalize(self, self.pool.shutdown, wait=False)

    def split(self, b: int) -> list[tuple[int, int]]:
        """The batch's rows [0, b) as up to ``parts`` contiguous, near-equal ranges."""
        n = min(self.parts, b)
        edges = [b * i // n for i in range(n + 1)]
        return list(zip(edges[:-1], edges[1:]))

    def each_part(self, b: int, fn) -> None:
        """fn(part, lo, hi) for every part of a b-row batch; part 0 on this thread."""
        ranges = self.split(b)
        futures = [self.pool.submit(_flushed, fn, i, *r) for i, r in enumerate(ranges) if i > 0]
        fn(0, *ranges[0])  # this thread's mode is the caller's (the engine flushes it)
        for f in futures:
            f.result()

    def forward(self, st: State, gemm: tuple, x, order, start: int, b: int, h0) -> None:
        """The conv blocks' forward pass of images ``x[order[start:start+b]]`` into h0's rows,
        on every part; ``gemm``: ``fast_numba.sgemm_args``."""
        from mnistlab.engines import fast_conv_numba as kern

        def part(i, lo, hi):
            kern.forward(
                *gemm, x, order, start, lo, hi, st.theta, st.conv_layout, self.cb, self.buf, h0,
                self.scratch[i],
            )  # fmt: skip

        self.each_part(b, part)


def _flushed(fn, *args) -> None:
    """fn(*args) with subnormals flushed on this worker thread, its mode restored after."""
    with fpmode.flushing():
        fn(*args)


def compiled_features(
    st: State, cv: ConvBuffers, h0: np.ndarray, x: np.ndarray, numpy_blas: bool = True
):
    """(first row, features) of float32 images ``x``, ``cv.rows`` at a time, through the
    training's compiled forward pass into ``h0`` (each chunk's view is overwritten by the next)."""
    from mnistlab.engines import fast_numba

    gemm = fast_numba.sgemm_args(numpy_blas)
    x = np.ascontiguousarray(x, np.float32)
    order = np.arange(len(x), dtype=np.int64)
    width = st.sizes[0]
    for start in range(0, len(x), cv.rows):
        b = min(cv.rows, len(x) - start)
        cv.forward(st, gemm, x, order, start, b, h0)
        yield start, h0[: b * width].reshape(b, width)


def run_steps(
    st: State,
    ws: Workspace,
    h: Hyperparameters,
    s: Steps,
    k0: int,
    k1: int,
    cv: ConvBuffers,
    numpy_blas: bool = True,
    flush: bool = False,
) -> None:
    """Steps k0..k1-1 of the epoch (same contract as ``fast_numba.run_steps``) of a CNN."""
    from mnistlab.engines import fast_conv_numba as kern
    from mnistlab.engines import fast_numba

    args = fast_numba.step_args(st, ws, h, s, numpy_blas)
    gemm = args[:2]
    width = st.sizes[0]
    h0 = ws.h_flat[ws.offsets[0, 0] : ws.offsets[0, 0] + ws.rows * width]
    d0 = ws.d_flat[ws.offsets[0, 1] : ws.offsets[0, 1] + ws.rows * width]
    lay, ce = st.conv_layout, st.conv_end
    grads = [ws.grad, *cv.part_grads]
    for k in range(k0, k1):
        start = k * s.batch_size
        b = min(s.batch_size, len(s.order) - start)

        def backward(i, lo, hi):
            kern.backward(
                *gemm, lo, hi, st.theta, grads[i], lay, cv.cb, cv.buf, h0, d0, cv.scratch[i]
            )

        cv.forward(st, gemm, s.x, s.order, start, b, h0)
        fast_numba.front_step(args, k, flush)
        cv.each_part(b, backward)
        for g in grads[1 : len(cv.split(b))]:  # the parts' sums, in part order
            ws.grad[:ce] += g[:ce]
        fast_numba.update_span(args, k, 0, ce, flush)
