"""The fast engine's numba back end: many training steps inside one compiled function.

Same arithmetic as ``fast_numpy`` (both tested against ``spec.py``), but a step is no longer
~60 NumPy calls of ~1-6 us overhead each: the products stay sgemm calls (NumPy's own OpenBLAS
through ctypes, or numba's ``np.dot``), and the elementwise work is fused into flat loops
(bias + batch norm + activation + dropout; softmax + loss + gradient; dropout + activation +
batch-norm gradient; gradient + L2 + optimizer update). The weights, gradients and slots are the
flat vectors of ``state.State`` and the buffers those of ``state.Workspace``, passed with their
offsets tables: ONE compiled specialization serves every depth, option and optimizer (compiled
once per machine, ``cache=True``). The optimizer loops have no branch inside (every per-step
scalar comes from ``optim.step_scalars``), so LLVM turns them into SIMD code; that also needs
``error_model="numpy"`` (a float division gives inf/NaN as in NumPy instead of numba's
zero-divisor check, whose branch kept the loops scalar; bench/README.md has the figures). No
fastmath: results stay within float32 rounding of the
NumPy back end and deterministic. The optimizer's Keras constants come in with the call (from its
row of ``recipe.optimizers``); the constants of ``optim.py`` (batch norm, max-norm) and the mask
hash are compiled in, and numba's cache is keyed on this file only: after changing them, touch
this file.
"""

from __future__ import annotations

import ctypes
import math
from collections import namedtuple

import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (see below)
from numba import njit

from mnistlab.engines.fpmode import TINY
from mnistlab.engines.masks import dropout_threshold, mix64
from mnistlab.engines.optim import BN_EPSILON, BN_MOMENTUM, MAXNORM_EPSILON, Hyperparameters
from mnistlab.engines.state import State, Steps, Workspace
from mnistlab.recipe.optimizers import ACTIVATIONS, OPTIMIZERS

# numba's np.dot (the L2 penalty's dot, and every product when NUMPY_SGEMM is not found) calls
# scipy's BLAS. It must be loaded before a threadpool_limits block is entered (a library loaded
# inside one escapes the limit: the first epoch then ran with 2 OpenBLAS threads), so it is
# imported here and FastEngine imports this module in its constructor.


def _numpy_sgemm():
    """NumPy's own OpenBLAS ``cblas_sgemm`` (64-bit ints) as a ctypes function, or None.

    Why: numba's np.dot goes to scipy's OpenBLAS build, slower than the one NumPy wheels
    bundle at the recipe's small shapes (bench/README.md). It is passed to the
    compiled function as an argument (not a global) so numba can still cache the machine code.
    """
    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        if info.get("internal_api") != "openblas" or "numpy" not in info.get("filepath", ""):
            continue
        lib = ctypes.CDLL(info["filepath"])
        for name in ("scipy_cblas_sgemm64_", "cblas_sgemm64_"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype, fn.argtypes = None, _SGEMM_ARGS
                return fn
    return None


# cblas_sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); pointers
# travel as int64 (same register as a pointer in every 64-bit C ABI), from arr.ctypes.data.
_I64 = ctypes.c_int64
_SGEMM_ARGS = [
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    _I64,
    _I64,
    _I64,
    ctypes.c_float,
    _I64,
    _I64,
    _I64,
    _I64,
    ctypes.c_float,
    _I64,
    _I64,
]
NUMPY_SGEMM = _numpy_sgemm()
# Same signature, never called: keeps one compiled specialization when NUMPY_SGEMM is None.
_UNUSED_SGEMM = ctypes.CFUNCTYPE(None, *_SGEMM_ARGS)(lambda *args: None)

# The compiled function's arguments, grouped (namedtuples are numba records of arrays/scalars).
Net = namedtuple("Net", "theta moving s1 s2 grad layout ends")
Work = namedtuple("Work", "h d z pre a mask stats col offsets")
Data = namedtuple("Data", "x y order scalars keys losses correct")
Config = namedtuple(
    "Config", "bs act opt l2 ls dropout thr inv_keep bn max_norm rms_momentum beta_1 beta_2 rho eps"
)

_mix64 = njit(inline="always")(mix64)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S40 = np.uint64(40)
_SQRT_HALF, _INV_SQRT_2PI = 0.5**0.5, (2 * np.pi) ** -0.5


@njit(cache=True, nogil=True, error_model="numpy")
def _gemm(sgemm, use_sgemm, a, b, out, trans_a, trans_b, accumulate, tmp):
    """out = op(a) @ op(b) (+ out when ``accumulate``) for C-contiguous 2-D views, op =
    transpose when trans_*; ``tmp``: scratch of out's size for numba's np.dot route when
    accumulating (it has no accumulating form), else unused (pass ``out``)."""
    m, n = out.shape
    if use_sgemm:
        k = a.shape[0] if trans_a else a.shape[1]
        sgemm(
            101,
            112 if trans_a else 111,
            112 if trans_b else 111,
            m,
            n,
            k,
            np.float32(1.0),
            a.ctypes.data,
            a.shape[1],
            b.ctypes.data,
            b.shape[1],
            np.float32(1.0 if accumulate else 0.0),
            out.ctypes.data,
            out.shape[1],
        )
        return
    dst = tmp[: m * n].reshape(m, n) if accumulate else out
    if trans_a:
        np.dot(a.T, b, dst)
    elif trans_b:
        np.dot(a, b.T, dst)
    else:
        np.dot(a, b, dst)
    if accumulate:
        for i in range(m):
            for j in range(n):
                out[i, j] += dst[i, j]


def run_steps(
    state: State,
    ws: Workspace,
    h: Hyperparameters,
    s: Steps,
    k0: int,
    k1: int,
    numpy_blas: bool = True,
    flush: bool = False,
) -> None:
    """Steps k0..k1-1 of the epoch (same contract as ``fast_numpy.run_steps``); ``flush``: set
    the state's subnormals to 0 after each step (where no hardware mode does it)."""
    _steps(*step_args(state, ws, h, s, numpy_blas), k0, k1, False, flush)


def step_args(
    state: State, ws: Workspace, h: Hyperparameters, s: Steps, numpy_blas: bool = True
) -> tuple:
    """The compiled ``_steps``' arguments before (k0, k1, front): (sgemm, use_sgemm, net, work,
    data, cfg). With ``front`` True a step starts from the features a front end (a CNN's conv
    blocks, engines/fast_conv.py) wrote into h[0] and leaves dL/dh[0] in d[0] for its backward."""
    slots = list(state.slots.values())
    s1 = slots[0] if len(slots) > 0 else ws.scratch  # unused slots: scratch (never read)
    s2 = slots[1] if len(slots) > 1 else ws.scratch
    net = Net(
        state.theta, state.moving, s1, s2, ws.grad, state.layout, np.asarray(state.ends, np.int64)
    )
    work = Work(
        ws.h_flat,
        ws.d_flat,
        ws.z_flat,
        ws.pre_flat,
        ws.a_flat,
        ws.mask_flat,
        ws.stats,
        ws.col,
        ws.offsets,
    )
    data = Data(s.x, s.y, s.order, s.scalars, s.keys, s.losses, s.correct)
    row = OPTIMIZERS[h.optimizer]
    cfg = Config(
        s.batch_size,
        ACTIVATIONS[h.activation].code,
        row.code,
        h.l2,
        h.label_smoothing,
        h.dropout > 0,
        dropout_threshold(h.dropout),
        1.0 / (1.0 - h.dropout),
        h.batch_norm,
        h.max_norm,
        bool(row.momentum_slots) and h.momentum > 0,  # rmsprop keeps its momentum slot
        row.beta_1,
        row.beta_2,
        row.rho,
        row.epsilon,
    )
    return *sgemm_args(numpy_blas), net, work, data, cfg


def sgemm_args(numpy_blas: bool = True) -> tuple:
    """(sgemm, use_sgemm): NumPy's cblas_sgemm when found and wanted, else numba's np.dot."""
    use_sgemm = NUMPY_SGEMM is not None and numpy_blas
    return NUMPY_SGEMM if use_sgemm else _UNUSED_SGEMM, use_sgemm


def front_step(args: tuple, k: int, flush: bool = False) -> None:
    """Step k on the features a front end wrote into h[0]; their gradient lands in d[0]."""
    _steps(*args, k, k + 1, True, flush)


def update_span(args: tuple, k: int, lo: int, hi: int, flush: bool = False) -> None:
    """Step k's optimizer update of theta[lo:hi] from grad[lo:hi], without an L2 term (a front
    end's weights, a CNN's conv kernels and biases, carry none, as in Keras' Dense-only
    kernel_regularizer)."""
    _, _, net, _, data, cfg = args
    sl = slice(lo, hi)
    _update(net.theta[sl], net.grad[sl], net.s1[sl], net.s2[sl], data.scalars[k], cfg, 0.0)
    if flush:  # no hardware mode: the front end's state is flushed as the Dense layers' is
        for a in (net.theta[sl], net.s1[sl], net.s2[sl]):
            _flush_subnormals(a)


@njit(cache=True, error_model="numpy")
def _update(w, g, s1, s2, sc, cfg, l2c):
    """Gradient (+ l2c*w) and the optimizer update, one branch-free pass over flat views."""
    c0, c1, c2, c3 = np.float32(sc[0]), np.float32(sc[1]), np.float32(sc[2]), np.float32(sc[3])
    l2c = np.float32(l2c)
    opt, eps = cfg.opt, np.float32(cfg.eps)
    if opt == 0:  # sgd: v = m*v - lr*g; w += a*v - c*lr*g
        for i in range(w.size):
            lg = (g[i] + l2c * w[i]) * c0
            v = s1[i] * c1 - lg
            s1[i] = v
            w[i] += v * c2 - lg * c3
    elif opt <= 2:  # adam/adamw (c1 = decay's shrink), nadam (m_hat = c1*m + c2*g, v_hat = c3*v)
        b1c, b2c = np.float32(1.0 - cfg.beta_1), np.float32(1.0 - cfg.beta_2)
        if opt == 1:
            for i in range(w.size):
                gi = g[i] + l2c * w[i]
                m = s1[i] + (gi - s1[i]) * b1c
                v = s2[i] + (gi * gi - s2[i]) * b2c
                s1[i] = m
                s2[i] = v
                w[i] = w[i] * c1 - m / (np.sqrt(v) + eps) * c0
        else:
            for i in range(w.size):
                gi = g[i] + l2c * w[i]
                m = s1[i] + (gi - s1[i]) * b1c
                v = s2[i] + (gi * gi - s2[i]) * b2c
                s1[i] = m
                s2[i] = v
                w[i] -= (gi * c2 + m * c1) / (np.sqrt(v * c3) + eps) * c0
    elif opt == 3:  # rmsprop; s2 = momentum when kept
        rho, one_rho = np.float32(cfg.rho), np.float32(1.0 - cfg.rho)
        if cfg.rms_momentum:
            for i in range(w.size):
                gi = g[i] + l2c * w[i]
                vel = s1[i] * rho + gi * gi * one_rho
                s1[i] = vel
                mom = s2[i] * c1 + gi * c0 / np.sqrt(vel + eps)
                s2[i] = mom
                w[i] -= mom
        else:
            for i in range(w.size):
                gi = g[i] + l2c * w[i]
                vel = s1[i] * rho + gi * gi * one_rho
                s1[i] = vel
                w[i] -= gi * c0 / np.sqrt(vel + eps)
    elif opt == 4:  # adagrad
        for i in range(w.size):
            gi = g[i] + l2c * w[i]
            acc = s1[i] + gi * gi
            s1[i] = acc
            w[i] -= gi * c0 / np.sqrt(acc + eps)
    else:  # adadelta; s1 = accumulated_grad, s2 = accumulated_delta_var
        rho, one_rho = np.float32(cfg.rho), np.float32(1.0 - cfg.rho)
        for i in range(w.size):
            gi = g[i] + l2c * w[i]
            ag = s1[i] * rho + gi * gi * one_rho
            s1[i] = ag
            delta = gi * np.sqrt(s2[i] + eps) / np.sqrt(ag + eps)
            s2[i] = s2[i] * rho + delta * delta * one_rho
            w[i] -= delta * c0


@njit(cache=True, error_model="numpy")
def _flush_subnormals(a):
    """a's subnormal entries set to 0 (fpmode.flush_in_place, compiled)."""
    tiny = np.float32(TINY)
    for i in range(a.size):
        if abs(a[i]) < tiny:
            a[i] = np.float32(0.0)


@njit(cache=True, error_model="numpy")
def _max_norm(w, col, cap):
    """Keras' MaxNorm(cap, axis=0) in place: each column's norm clipped to cap."""
    fo = w.shape[1]
    for c in range(fo):
        col[c] = 0.0
    for r in range(w.shape[0]):
        for c in range(fo):
            col[c] += w[r, c] * w[r, c]
    for c in range(fo):
        norm = np.sqrt(col[c])
        col[c] = min(norm, np.float32(cap)) / (np.float32(MAXNORM_EPSILON) + norm)
    for r in range(w.shape[0]):
        for c in range(fo):
            w[r, c] *= col[c]


@njit(cache=True, error_model="numpy")
def _block(flat, off, rows, width):
    return flat[off : off + rows * width].reshape(rows, width)


# nogil: other Python threads (a progress display, a caller's own work) run during a chunk.
@njit(cache=True, nogil=True, error_model="numpy")
def _steps(sgemm, use_sgemm, net, work, data, cfg, k0, k1, front, flush):
    """Steps k0..k1-1: forward, loss, backward and update of each; writes losses/correct.
    ``front``: h[0] holds the batch's features already; d[0] gets their gradient.
    ``flush``: the state's subnormals set to 0 after each step (no hardware mode)."""
    lay, off = net.layout, work.offsets
    n = lay.shape[0]
    n_total = data.order.shape[0]
    bs = cfg.bs
    thr = np.uint64(cfg.thr)
    inv_keep = np.float32(cfg.inv_keep)
    for k in range(k0, k1):
        start = k * bs
        b = min(bs, n_total - start)
        sc = data.scalars[k]
        if not front:  # gather the batch rows
            xb = _block(work.h, off[0, 0], b, lay[0, 4])
            for r in range(b):
                xb[r, :] = data.x[data.order[start + r], :]
        penalty = 0.0
        if cfg.l2 > 0.0:  # weights before the update
            for i in range(n):
                wf = net.theta[lay[i, 0] : lay[i, 0] + lay[i, 4] * lay[i, 5]]
                penalty += np.dot(wf, wf)
        # forward
        for i in range(n):
            fi, fo = lay[i, 4], lay[i, 5]
            w = net.theta[lay[i, 0] : lay[i, 0] + fi * fo].reshape(fi, fo)
            bias = net.theta[lay[i, 1] : lay[i, 1] + fo]
            hin = _block(work.h, off[i, 0], b, fi)
            if i == n - 1:
                out = _block(work.h, off[n, 0], b, fo)
            elif cfg.bn:
                out = _block(work.z, off[i, 2], b, fo)
            else:
                out = _block(work.a, off[i, 3], b, fo)
            _gemm(sgemm, use_sgemm, hin, w, out, False, False, False, out)
            for r in range(b):
                for c in range(fo):
                    out[r, c] += bias[c]
            if i == n - 1:
                break
            a = _block(work.a, off[i, 3], b, fo)
            if cfg.bn:
                so = off[i, 5]
                mean, var, inv = (
                    work.stats[so : so + fo],
                    work.stats[so + fo : so + 2 * fo],
                    work.stats[so + 2 * fo : so + 3 * fo],
                )
                mean[:] = 0.0
                var[:] = 0.0
                for r in range(b):
                    for c in range(fo):
                        mean[c] += out[r, c]
                for c in range(fo):
                    mean[c] /= np.float32(b)
                for r in range(b):
                    for c in range(fo):
                        dv = out[r, c] - mean[c]
                        var[c] += dv * dv
                mm = net.moving[lay[i, 6] : lay[i, 6] + fo]
                mv = net.moving[lay[i, 7] : lay[i, 7] + fo]
                for c in range(fo):
                    var[c] /= np.float32(b)
                    inv[c] = np.float32(1.0) / np.sqrt(var[c] + np.float32(BN_EPSILON))
                    mm[c] = mm[c] * np.float32(BN_MOMENTUM) + np.float32(1 - BN_MOMENTUM) * mean[c]
                    mv[c] = mv[c] * np.float32(BN_MOMENTUM) + np.float32(1 - BN_MOMENTUM) * var[c]
                gamma = net.theta[lay[i, 2] : lay[i, 2] + fo]
                beta = net.theta[lay[i, 3] : lay[i, 3] + fo]
                for r in range(b):
                    for c in range(fo):
                        xh = (out[r, c] - mean[c]) * inv[c]
                        out[r, c] = xh
                        a[r, c] = xh * gamma[c] + beta[c]
            pre = _block(work.pre, off[i, 2], b, fo)
            for r in range(b):
                for c in range(fo):
                    v = a[r, c]
                    if cfg.act == 0:
                        v = max(v, np.float32(0.0))
                    elif cfg.act == 1:
                        v = np.tanh(v)
                    elif cfg.act == 2:
                        v = np.float32(0.5) * np.tanh(np.float32(0.5) * v) + np.float32(0.5)
                    else:  # gelu, exact; its derivative needs the input
                        pre[r, c] = v
                        v = v * np.float32(0.5 * (1.0 + math.erf(v * _SQRT_HALF)))
                    a[r, c] = v
            if cfg.dropout:
                key = data.keys[k, i]
                mask = _block(work.mask, off[i, 4], b, fo)
                hout = _block(work.h, off[i + 1, 0], b, fo)
                for r in range(b):
                    for c in range(fo):
                        e = np.uint64(r * fo + c + 1)
                        keep = (_mix64(key + e * _GOLDEN) >> _S40) >= thr
                        m = inv_keep if keep else np.float32(0.0)
                        mask[r, c] = m
                        hout[r, c] = a[r, c] * m
        # softmax cross-entropy, accuracy and dz = (p - target) / b in one pass per row
        logits = _block(work.h, off[n, 0], b, lay[n - 1, 5])
        p = _block(work.d, off[n, 1], b, lay[n - 1, 5])
        n_cls = logits.shape[1]
        ls = cfg.ls
        nll = 0.0
        hits = 0
        inv_b = np.float32(1.0 / b)
        off_t = np.float32(ls / n_cls)
        on_t = np.float32(1.0 - ls)
        for r in range(b):
            label = data.y[data.order[start + r]]
            best = 0
            for c in range(1, n_cls):
                if logits[r, c] > logits[r, best]:
                    best = c
            hits += best == label
            mx = logits[r, best]
            s = np.float32(0.0)
            row_sum = 0.0
            for c in range(n_cls):
                sh = logits[r, c] - mx
                row_sum += sh
                e = np.exp(sh)
                p[r, c] = e
                s += e
            log_s = float(np.log(s))
            row_nll = log_s - float(logits[r, label] - mx)
            if ls > 0.0:
                row_nll = (1.0 - ls) * row_nll + ls * (log_s - row_sum / n_cls)
            nll += row_nll
            for c in range(n_cls):
                q = p[r, c] / s
                if ls > 0.0:
                    q -= off_t
                if c == label:
                    q -= on_t
                p[r, c] = q * inv_b
        data.losses[k] = nll / b + cfg.l2 * penalty
        data.correct[k] = hits
        # backward; each layer is updated right after its weights served the next delta
        for i in range(n - 1, -1, -1):
            fi, fo = lay[i, 4], lay[i, 5]
            w = net.theta[lay[i, 0] : lay[i, 0] + fi * fo].reshape(fi, fo)
            d = _block(work.d, off[i + 1, 1], b, fo)
            gw = net.grad[lay[i, 0] : lay[i, 0] + fi * fo].reshape(fi, fo)
            gb = net.grad[lay[i, 1] : lay[i, 1] + fo]
            gb[:] = 0.0
            if not (cfg.bn and i < n - 1):  # exactly 0 under batch norm (spec.py)
                for r in range(b):
                    for c in range(fo):
                        gb[c] += d[r, c]
            hin = _block(work.h, off[i, 0], b, fi)
            _gemm(sgemm, use_sgemm, hin, d, gw, True, False, False, gw)
            if i > 0 or front:  # d[i] = d[i+1] @ W^T, before W's update
                da = _block(work.d, off[i, 1], b, fi)
                _gemm(sgemm, use_sgemm, d, w, da, False, True, False, da)
            if i > 0:
                j = i - 1
                dp = _block(work.d, off[i, 1], b, fi)
                a = _block(work.a, off[j, 3], b, fi)
                pre = _block(work.pre, off[j, 2], b, fi)
                mask = _block(work.mask, off[j, 4], b, fi) if cfg.dropout else a
                for r in range(b):
                    for c in range(fi):
                        v = dp[r, c]
                        if cfg.dropout:
                            v *= mask[r, c]
                        ac = a[r, c]
                        if cfg.act == 0:
                            if ac <= np.float32(0.0):
                                v = np.float32(0.0)
                        elif cfg.act == 1:
                            v *= np.float32(1.0) - ac * ac
                        elif cfg.act == 2:
                            v *= (np.float32(1.0) - ac) * ac
                        else:  # Phi(z) + z phi(z)
                            zc = float(pre[r, c])
                            v *= np.float32(
                                0.5 * (1.0 + math.erf(zc * _SQRT_HALF))
                                + zc * math.exp(-0.5 * zc * zc) * _INV_SQRT_2PI
                            )
                        dp[r, c] = v
                if cfg.bn:
                    xhat = _block(work.z, off[j, 2], b, fi)
                    inv = work.stats[off[j, 5] + 2 * fi : off[j, 5] + 3 * fi]
                    gamma = net.theta[lay[j, 2] : lay[j, 2] + fi]
                    dgamma = net.grad[lay[j, 2] : lay[j, 2] + fi]
                    dbeta = net.grad[lay[j, 3] : lay[j, 3] + fi]
                    dgamma[:] = 0.0
                    dbeta[:] = 0.0
                    for r in range(b):
                        for c in range(fi):
                            dgamma[c] += dp[r, c] * xhat[r, c]
                            dbeta[c] += dp[r, c]
                    for r in range(b):
                        for c in range(fi):
                            dp[r, c] = (
                                dp[r, c] - xhat[r, c] * (dgamma[c] * inv_b) - dbeta[c] * inv_b
                            ) * (gamma[c] * inv[c])
            ko, bo, end = lay[i, 0], lay[i, 1], net.ends[i]
            _update(
                net.theta[ko:bo],
                net.grad[ko:bo],
                net.s1[ko:bo],
                net.s2[ko:bo],
                sc,
                cfg,
                2.0 * cfg.l2,
            )
            _update(
                net.theta[bo:end],
                net.grad[bo:end],
                net.s1[bo:end],
                net.s2[bo:end],
                sc,
                cfg,
                0.0,
            )
            if cfg.max_norm > 0.0:
                _max_norm(w, work.col, cfg.max_norm)
        if flush:
            for a in (net.theta, net.moving, net.s1, net.s2):
                _flush_subnormals(a)
