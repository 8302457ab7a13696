"""The compiled conv blocks of the fast engine's CNN: forward and backward of a part of a batch.

A conv block is conv ('same', stride 1) -> 2x2 max-pool -> relu (``engines/arch.py``); tensors
are NHWC float32, kernels HWIO, so a kernel is the (k*k*in, out) matrix of im2col's columns.
Every array is a flat buffer with an offsets table (``fast_conv.ConvBuffers``): one compiled
specialization serves every depth, width and kernel size (compiled once per machine).

Speed tricks, each for a measured reason (bench/README.md):

* im2col + sgemm (NumPy's OpenBLAS via ctypes, as ``fast_numba``), in chunks of a few images
  sized so the column matrix stays in the core's L2 cache: sgemm runs near its peak on the
  (pixels, k*k*in) x (k*k*in, out) product, and im2col costs one cached copy. The backward pass
  recomputes the columns per chunk instead of keeping a batch's worth (megabytes) from the
  forward pass: the copy is cheaper than the cache misses.
* Only the conv outputs a pool window reads are computed: for an odd side (7 -> 3) the last
  row and column (13 of 49 pixels) are never formed, forward or backward.
* Inputs live in zero-padded buffers, so a column row is k contiguous runs of k*in floats (no
  bounds tests) and col2im adds k runs back; the padding is written once, never again.
* Max-pool, bias and relu are one pass over the conv output (the bias is added before the
  comparison, as torch's conv does, so ties break the same way: first maximum in window order);
  it keeps the argmax as a 2-bit code (1 byte), not the 4x larger conv output.
* Backward, blocks of 8+ input channels (``_scatter``): each pooled gradient that passed the
  relu adds its argmax pixel's input window to dW and W^T to that window of dX, nothing else:
  dZ's products would spend 3/4 of their work on the zeros the pool writes (and more on what
  the relu stopped). Blocks of fewer channels (runs too short to pay, e.g. the image's one)
  go through dZ per chunk (relu mask and unpool from the codes) and two sgemm calls.
* One store stream per inner loop and unsigned indices: otherwise LLVM left the loops scalar
  (it could not rule out aliasing, nor a negative index), 10-15x slower.
* Bias gradients add up in float64 (tens of thousands of terms per step), so they keep
  float32's precision whatever the batch and image size.
* ``nogil``: ``fast_conv`` runs parts of a batch on several threads, each with its own scratch
  and partial gradients, summed in a fixed order (deterministic for a given thread count).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mnistlab.engines.fast_numba import _gemm

ALWAYS = {"cache": True, "nogil": True, "error_model": "numpy"}
# Indices are unsigned (U) in the inner loops: numba turns a negative signed index into one from
# the end, and that test in every iteration kept LLVM from vectorizing the copies (10x slower).
U = np.uint64
# Blocks with at least this many input channels take the sparse backward pass (``_scatter``):
# measured 1.3x (8 channels) to 2.5x (32) faster than dZ's two products; with fewer, its runs
# of k*in floats are too short and the products win.
SPARSE_MIN_CHANNELS = 8


@njit(**ALWAYS)
def _im2col(a, n0, n1, k, side, c, col):
    """col[((n-n0)*cover + y)*cover + x, (dy*k + dx)*c + ci] = a[n, y+dy, x+dx, ci] for the
    pixels y, x < cover = 2*(side//2) (those a pool window reads), ``a`` the zero-padded input
    (flat, (rows, side+k-1, side+k-1, c)): k runs of k*c floats per row."""
    sp, kc, kkc, cover = side + k - 1, k * c, k * k * c, side // 2 * 2
    r = 0
    for n in range(n0, n1):
        for y in range(cover):
            for dy in range(k):
                src0 = (n * sp + y + dy) * sp * c
                for x in range(cover):
                    dst, src = U((r + x) * kkc + dy * kc), U(src0 + x * c)
                    for t in range(U(kc)):
                        col[dst + t] = a[src + t]
            r += cover


@njit(**ALWAYS)
def _im2col_t(a, n0, n1, k, side, col, m):
    """One input channel: the transposed columns (k*k, m), col[dy*k + dx, row] (``_im2col``'s
    rows): runs of ``side`` floats, where the (m, k*k) form would copy runs of k."""
    sp, cover = side + k - 1, side // 2 * 2
    for n in range(n0, n1):
        for y in range(cover):
            r = ((n - n0) * cover + y) * cover
            for t in range(k * k):
                dy, dx = t // k, t % k
                dst, src = U(t * m + r), U((n * sp + y + dy) * sp + dx)
                for x in range(U(cover)):
                    col[dst + x] = a[src + x]


@njit(**ALWAYS)
def _col2im(dcol, n0, n1, k, side, c, da):
    """The adjoint of ``_im2col``: da (padded, flat) of images n0..n1-1 = sum of the column
    gradients ``dcol`` over the windows that read each pixel."""
    sp, kc, kkc, cover = side + k - 1, k * c, k * k * c, side // 2 * 2
    da[n0 * sp * sp * c : n1 * sp * sp * c] = 0.0
    r = 0
    for n in range(n0, n1):
        for y in range(cover):
            for dy in range(k):
                dst0 = (n * sp + y + dy) * sp * c
                for x in range(cover):
                    src, dst = U((r + x) * kkc + dy * kc), U(dst0 + x * c)
                    for t in range(U(kc)):
                        da[dst + t] += dcol[src + t]
            r += cover


@njit(**ALWAYS)
def _pool(z, bias, n0, n1, side, co, out, q, sq, codes):
    """out[n, q+y, q+x, :] = relu(max of the 2x2 window of z + bias), codes[n, y, x, :] = which
    of the window's (0,0), (0,1), (1,0), (1,1) held it (the first, on ties; NaN wins, as in
    torch). ``z``: the conv output of images n0..n1-1, rows ((n-n0)*cover + y)*cover + x
    (``_im2col``'s); ``out`` (flat) has side ``sq`` and a zero border of ``q`` (the next
    block's padding)."""
    half, zero = side // 2, np.float32(0.0)
    cover = 2 * half
    for n in range(n0, n1):
        for y in range(half):
            for x in range(half):
                r00 = U((((n - n0) * cover + 2 * y) * cover + 2 * x) * co)
                r01, r10 = r00 + U(co), r00 + U(cover * co)
                r11 = r10 + U(co)
                dst = U(((n * sq + q + y) * sq + q + x) * co)
                cd = U(((n * half + y) * half + x) * co)
                for c in range(U(co)):
                    b = bias[c]
                    m, code = z[r00 + c] + b, np.uint8(0)
                    v = z[r01 + c] + b
                    up = v > m or v != v  # written as selects: the loop stays vectorized
                    m, code = (v if up else m), (np.uint8(1) if up else code)
                    v = z[r10 + c] + b
                    up = v > m or v != v
                    m, code = (v if up else m), (np.uint8(2) if up else code)
                    v = z[r11 + c] + b
                    up = v > m or v != v
                    m, code = (v if up else m), (np.uint8(3) if up else code)
                    out[dst + c] = zero if m <= zero else m
                    codes[cd + c] = code


@njit(**ALWAYS)
def _unpool(dp, p, q, sq, codes, n0, n1, side, co, dz, g):
    """dZ of images n0..n1-1 (rows as ``_pool``'s z): the pooled gradient ``dp`` where the relu
    passed (``p`` > 0), at the window's argmax, 0 elsewhere (``dp``, ``p`` have ``out``'s
    geometry in ``_pool``; ``g``: co floats of scratch). One store stream per loop: with four in
    one loop LLVM could not rule out their aliasing and left it scalar (15x slower)."""
    half, zero = side // 2, np.float32(0.0)
    cover = 2 * half
    for n in range(n0, n1):
        for y in range(half):
            for x in range(half):
                r00 = U((((n - n0) * cover + 2 * y) * cover + 2 * x) * co)
                src = U(((n * sq + q + y) * sq + q + x) * co)
                cd = U(((n * half + y) * half + x) * co)
                for c in range(U(co)):
                    g[c] = dp[src + c] if p[src + c] > zero else zero
                for i in range(4):
                    r = r00 + U(((i >> 1) * cover + (i & 1)) * co)
                    for c in range(U(co)):
                        dz[r + c] = g[c] if codes[cd + c] == i else zero


@njit(**ALWAYS)
def _bias_grad(dp, p, q, sq, n0, n1, half, co, gb):
    """gb (float64) += the relu-masked pooled gradient, summed over images n0..n1-1."""
    zero = np.float32(0.0)
    for n in range(n0, n1):
        for y in range(half):
            for x in range(half):
                src = U(((n * sq + q + y) * sq + q + x) * co)
                for c in range(U(co)):
                    gb[c] += np.float64(dp[src + c] if p[src + c] > zero else zero)


@njit(**ALWAYS)
def _geometry(lay, j):
    """(kernel offset, bias offset, k, in, out, side, k*k*in) of conv block j."""
    k, c, co = lay[j, 2], lay[j, 3], lay[j, 4]
    return lay[j, 0], lay[j, 1], k, c, co, lay[j, 5], k * k * c


@njit(**ALWAYS)
def _output(lay, j, acts, aoff, h0):
    """Where block j's pooled output lives: (flat buffer, its padding, its side): the next
    block's padded input, or the Dense layers' input h[0] after the last block."""
    half = lay[j, 5] // 2
    if j == lay.shape[0] - 1:
        return h0, 0, half
    k = lay[j + 1, 2]
    return acts[aoff[j + 1] :], (k - 1) // 2, half + k - 1


@njit(**ALWAYS)
def _columns(a, n0, n1, k, side, c, col):
    """The columns of images n0..n1-1 as a matrix, and whether it is transposed (one channel)."""
    m, kkc = (n1 - n0) * (side // 2 * 2) ** 2, k * k * c
    if c == 1:
        _im2col_t(a, n0, n1, k, side, col, m)
        return col[: m * kkc].reshape(kkc, m), True
    _im2col(a, n0, n1, k, side, c, col)
    return col[: m * kkc].reshape(m, kkc), False


@njit(**ALWAYS)
def forward(sgemm, use_sgemm, x, order, start, n0, n1, theta, lay, cb, buf, h0, scratch):
    """Conv blocks' forward pass of batch rows n0..n1-1 (images ``x[order[start + n]]``): the
    pooled codes and activations into ``buf``, the last block's output into ``h0``.

    ``buf``: (acts, aoff, codes, coff, grads, goff); ``scratch``: a ``fast_conv.Scratch``."""
    acts, aoff, codes, coff = buf[0], buf[1], buf[2], buf[3]
    col, z, tmp = scratch.col, scratch.z, scratch.tmp
    k, side = lay[0, 2], lay[0, 5]
    sp, pad = side + k - 1, (k - 1) // 2
    pixels = x.reshape(-1)
    for n in range(n0, n1):  # the images into block 0's padded input (one channel)
        src = order[start + n] * side * side
        for y in range(side):
            dst, at = U(aoff[0] + (n * sp + pad + y) * sp + pad), U(src + y * side)
            for t in range(U(side)):
                acts[dst + t] = pixels[at + t]
    for j in range(lay.shape[0]):
        ko, bo, k, c, co, side, kkc = _geometry(lay, j)
        kernel = theta[ko : ko + kkc * co].reshape(kkc, co)
        out, q, sq = _output(lay, j, acts, aoff, h0)
        for c0 in range(n0, n1, cb[j]):
            c1 = min(n1, c0 + cb[j])
            cols, transposed = _columns(acts[aoff[j] :], c0, c1, k, side, c, col)
            zm = z[: (c1 - c0) * (side // 2 * 2) ** 2 * co].reshape(-1, co)
            _gemm(sgemm, use_sgemm, cols, kernel, zm, transposed, False, False, tmp)
            _pool(z, theta[bo : bo + co], c0, c1, side, co, out, q, sq, codes[coff[j] :])


@njit(**ALWAYS)
def _scatter(dp, p, q, sq, codes, a, da, wt, dwt, n0, n1, k, side, c, co, gb):
    """The sparse backward pass of images n0..n1-1: each pooled gradient g that passed the relu
    adds g * (its argmax pixel's input window) to dW^T[o] (``dwt``, (out, k*k*in)) and, when
    ``da`` is not empty, g * W^T[o] (``wt``) to that window of dX (``da``, padded, zeroed
    here); ``gb`` (float64) += g. Nothing is spent on the 3/4 of dZ the pool zeroes, nor on
    what the relu stopped: 4-8x fewer multiply-adds than dZ's products, in runs of k*in."""
    half, zero = side // 2, np.float32(0.0)
    sp, kc, kkc = side + k - 1, k * c, k * k * c
    dx = da.size > 0
    if dx:
        da[n0 * sp * sp * c : n1 * sp * sp * c] = zero
    for n in range(n0, n1):
        for y in range(half):
            for x in range(half):
                src = ((n * sq + q + y) * sq + q + x) * co
                cd = ((n * half + y) * half + x) * co
                for o in range(co):
                    g = dp[src + o]
                    if not p[src + o] > zero or g == zero:
                        continue
                    gb[o] += g
                    code = codes[cd + o]
                    at0 = ((n * sp + 2 * y + (code >> 1)) * sp + 2 * x + (code & 1)) * c
                    for dy in range(k):
                        at, w = U(at0 + dy * sp * c), U(o * kkc + dy * kc)
                        for t in range(U(kc)):
                            dwt[w + t] += g * a[at + t]
                    if dx:
                        for dy in range(k):
                            at, w = U(at0 + dy * sp * c), U(o * kkc + dy * kc)
                            for t in range(U(kc)):
                                da[at + t] += g * wt[w + t]


@njit(**ALWAYS)
def _sparse_block(j, n0, n1, theta, grad, lay, buf, h0, d0, scratch):
    """Block j's backward pass by ``_scatter`` (blocks of at least ``SPARSE_MIN_CHANNELS``)."""
    acts, aoff, codes, coff, grads, goff = buf
    ko, bo, k, c, co, side, kkc = _geometry(lay, j)
    p, q, sq = _output(lay, j, acts, aoff, h0)
    dp = d0 if j == lay.shape[0] - 1 else grads[goff[j + 1] :]
    wt, dwt, gb = scratch.wt[: co * kkc], scratch.tmp[: co * kkc], scratch.gb
    kernel = theta[ko : ko + kkc * co].reshape(kkc, co)
    for o in range(co):  # W^T: an output channel's weights in one run
        for t in range(kkc):
            wt[o * kkc + t] = kernel[t, o]
    dwt[:] = 0.0
    gb[:co] = 0.0
    da = grads[goff[j] :] if j > 0 else grads[:0]
    _scatter(
        dp, p, q, sq, codes[coff[j] :], acts[aoff[j] :], da, wt, dwt, n0, n1, k, side, c, co, gb
    )
    gw = grad[ko : ko + kkc * co].reshape(kkc, co)
    for t in range(kkc):
        for o in range(co):
            gw[t, o] = dwt[o * kkc + t]
    for o in range(co):
        grad[bo + o] = np.float32(gb[o])


@njit(**ALWAYS)
def _dense_block(sgemm, use_sgemm, j, n0, n1, theta, grad, lay, cb, buf, h0, d0, scratch):
    """Block j's backward pass through dZ and two products per chunk (blocks with few input
    channels, where ``_scatter``'s runs of k*in floats are too short to pay)."""
    acts, aoff, codes, coff, grads, goff = buf
    col, dz, dcol, tmp, gb = scratch.col, scratch.z, scratch.dcol, scratch.tmp, scratch.gb
    ko, bo, k, c, co, side, kkc = _geometry(lay, j)
    kernel = theta[ko : ko + kkc * co].reshape(kkc, co)
    gw = grad[ko : ko + kkc * co].reshape(kkc, co)
    p, q, sq = _output(lay, j, acts, aoff, h0)
    dp = d0 if j == lay.shape[0] - 1 else grads[goff[j + 1] :]
    gw[:, :] = 0.0
    gb[:co] = 0.0
    for c0 in range(n0, n1, cb[j]):
        c1 = min(n1, c0 + cb[j])
        m = (c1 - c0) * (side // 2 * 2) ** 2
        dzm = dz[: m * co].reshape(m, co)
        _unpool(dp, p, q, sq, codes[coff[j] :], c0, c1, side, co, dz, tmp)
        _bias_grad(dp, p, q, sq, c0, c1, side // 2, co, gb)
        cols, transposed = _columns(acts[aoff[j] :], c0, c1, k, side, c, col)
        # dW += columns^T @ dZ (the transposed columns are already the left factor)
        _gemm(sgemm, use_sgemm, cols, dzm, gw, not transposed, False, True, tmp)
        if j > 0:  # dX: dZ @ W^T, spread back over the windows
            dcolm = dcol[: m * kkc].reshape(m, kkc)
            _gemm(sgemm, use_sgemm, dzm, kernel, dcolm, False, True, False, tmp)
            _col2im(dcol, c0, c1, k, side, c, grads[goff[j] :])
    for o in range(co):
        grad[bo + o] = np.float32(gb[o])


@njit(**ALWAYS)
def backward(sgemm, use_sgemm, n0, n1, theta, grad, lay, cb, buf, h0, d0, scratch):
    """Conv blocks' backward pass of batch rows n0..n1-1 from d0 = dL/dh0: the conv kernels' and
    biases' gradients (of these rows only) into ``grad``; block j > 0 passes dL/d(its input) to
    block j-1 through ``buf``'s padded gradient buffers."""
    for j in range(lay.shape[0] - 1, -1, -1):
        if lay[j, 3] >= SPARSE_MIN_CHANNELS:
            _sparse_block(j, n0, n1, theta, grad, lay, buf, h0, d0, scratch)
        else:
            _dense_block(sgemm, use_sgemm, j, n0, n1, theta, grad, lay, cb, buf, h0, d0, scratch)
