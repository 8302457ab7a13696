"""The fast engine's numba backend: many training steps inside one compiled function.

Same arithmetic as ``fast_numpy`` (tested equal), but a step is no longer ~60 NumPy calls of
~1-6 us overhead each: the 11 products stay sgemm calls (``np.dot`` with an output array is
BLAS inside numba, no Python in between), and the elementwise work is fused into single loops
(bias + activation; softmax + loss + gradient; activation gradient; gradient + L2 + optimizer
update in one pass over each weight). Compiled once per machine and network depth
(``cache=True``; measured 10-30 s on 2 busy cores, then ~1 s to import numba + scipy's BLAS
and load the cache), which is why this module is imported only when the numba backend is
chosen.

Tried and dropped (bench/engine_steps.py, min of 40 interleaved 50-step chunks): computing
layer 0's forward on a sparse form of the input (MNIST is ~81 % background, and
x @ W0 = base @ W0 + x_sparse @ W0) was 1.8x faster than scipy's sgemm but 10 % slower per
step than NumPy's sgemm; its backward twin (scatter into dW0) was no faster than either.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (see below)
from numba import njit

from mnistlab.engines.fast import ADAM_BETA1, ADAM_BETA2, EPSILON, RMSPROP_RHO
from mnistlab.engines.fast_numpy import Buffers

# numba's np.dot (the L2 penalty's dot, and every product when NUMPY_SGEMM is not found) calls
# scipy's BLAS. It must be loaded before a threadpool_limits block is entered (a library loaded
# inside one escapes the limit: the first epoch then ran with 2 OpenBLAS threads), so it is
# imported here and FastEngine imports this module in its constructor.


def _numpy_sgemm():
    """NumPy's own OpenBLAS ``cblas_sgemm`` (64-bit ints) as a ctypes function, or None.

    Why: numba's np.dot goes to scipy's OpenBLAS build, measured 5-50 % slower than the one
    NumPy wheels bundle for the recipe's shapes (x @ W0: 136 vs 91 us). It is passed to the
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
_SGEMM_ARGS = [ctypes.c_int, ctypes.c_int, ctypes.c_int, _I64, _I64, _I64, ctypes.c_float, _I64,
               _I64, _I64, _I64, ctypes.c_float, _I64, _I64]
NUMPY_SGEMM = _numpy_sgemm()
# Same signature, never called: keeps one compiled specialization when NUMPY_SGEMM is None.
_UNUSED_SGEMM = ctypes.CFUNCTYPE(None, *_SGEMM_ARGS)(lambda *args: None)


@njit(cache=True)
def _mm(sgemm, use_sgemm, a, b, out, trans_a, trans_b):
    """out = op(a) @ op(b) for C-contiguous a, b, out (op = transpose when trans_*)."""
    if use_sgemm:
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        sgemm(101, 112 if trans_a else 111, 112 if trans_b else 111, m, n, k, np.float32(1.0),
              a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1], np.float32(0.0),
              out.ctypes.data, out.shape[1])
    elif trans_a:
        np.dot(a.T, b, out)
    elif trans_b:
        np.dot(a, b.T, out)
    else:
        np.dot(a, b, out)


_ACT = {"relu": 0, "tanh": 1, "sigmoid": 2}
_OPT = {"sgd": 0, "adam": 1, "adamw": 1, "rmsprop": 2, "adagrad": 3}


def run_steps(engine, x, y, order, lrs32, k0, k1, losses, correct) -> None:
    """Steps k0..k1-1 of the epoch (same contract as ``fast_numpy.run_steps``)."""
    r = engine.recipe
    buf = engine._buffers
    if not isinstance(buf, Buffers):
        buf = engine._buffers = Buffers(engine, r.batch_size)
    n = len(engine.kernels)
    slots = list(engine.slots.values())
    # Unused slot arguments get the scratch arrays (same types, never read).
    s1 = slots[0] if len(slots) > 0 else buf.scratch
    s2 = slots[1] if len(slots) > 1 else buf.scratch
    hyper = np.array([r.l2, r.label_smoothing, r.momentum, float(r.nesterov),
                      r.weight_decay if r.optimizer == "adamw" else 0.0,
                      float(len(slots) > 1)], np.float64)
    use_sgemm = NUMPY_SGEMM is not None and engine.numpy_blas
    sgemm = NUMPY_SGEMM if use_sgemm else _UNUSED_SGEMM
    _steps(sgemm, use_sgemm, x, y, order, lrs32, k0, k1, r.batch_size, _ACT[r.activation],
           _OPT[r.optimizer], hyper, engine.iterations, tuple(engine.kernels), tuple(engine.biases),
           tuple(s1[0::2]), tuple(s1[1::2]), tuple(s2[0::2]), tuple(s2[1::2]),
           tuple(buf.acts), tuple(buf.deltas), tuple(buf.grads[0::2]), tuple(buf.grads[1::2]),
           losses, correct, n)
    engine.iterations += k1 - k0


@njit(cache=True)
def _update(w, g, s1, s2, lr, t, opt, hyper, l2_term):
    """Gradient (+ 2*l2*w) and the optimizer update in one pass over flat float32 views."""
    mom = np.float32(hyper[2])
    nesterov = hyper[3] != 0.0
    two_l2 = np.float32(2.0 * hyper[0]) if l2_term else np.float32(0.0)
    if opt == 0:  # sgd: v = m*v - lr*g; w += m*v - lr*g (nesterov) or w += v
        for i in range(w.size):
            gi = g[i] + two_l2 * w[i]
            lg = gi * lr
            v = s1[i] * mom - lg
            s1[i] = v
            w[i] += (v * mom - lg) if nesterov else v
    elif opt == 1:  # adam(w), Keras form; s1 = m, s2 = v
        if hyper[4] > 0.0:
            # The L2 gradient belongs to the weights the loss saw, i.e. before the decay.
            shrink = np.float32(1.0 - float(np.float32(hyper[4] * lr)))
            for i in range(w.size):
                g[i] += two_l2 * w[i]
                w[i] *= shrink
            two_l2 = np.float32(0.0)
        alpha = np.float32(lr * math.sqrt(1.0 - ADAM_BETA2 ** t) / (1.0 - ADAM_BETA1 ** t))
        c1, c2 = np.float32(1.0 - ADAM_BETA1), np.float32(1.0 - ADAM_BETA2)
        for i in range(w.size):
            gi = g[i] + two_l2 * w[i]
            m = s1[i] + (gi - s1[i]) * c1
            v = s2[i] + (gi * gi - s2[i]) * c2
            s1[i], s2[i] = m, v
            w[i] -= m / (np.sqrt(v) + np.float32(EPSILON)) * alpha
    elif opt == 2:  # rmsprop; s1 = velocity, s2 = momentum (when hyper[5])
        rho, c = np.float32(RMSPROP_RHO), np.float32(1.0 - RMSPROP_RHO)
        for i in range(w.size):
            gi = g[i] + two_l2 * w[i]
            vel = s1[i] * rho + gi * gi * c
            s1[i] = vel
            inc = gi * lr / np.sqrt(vel + np.float32(EPSILON))
            if hyper[5] != 0.0:
                inc = s2[i] * mom + inc
                s2[i] = inc
            w[i] -= inc
    else:  # adagrad; s1 = accumulator
        for i in range(w.size):
            gi = g[i] + two_l2 * w[i]
            acc = s1[i] + gi * gi
            s1[i] = acc
            w[i] -= gi * lr / np.sqrt(acc + np.float32(EPSILON))


# nogil: other Python threads (a progress display, a caller's own work) run during a chunk.
@njit(cache=True, nogil=True)
def _steps(sgemm, use_sgemm, x, y, order, lrs, k0, k1, bs, act, opt, hyper, it0, W, B, s1W,
           s1B, s2W, s2B, acts, deltas, gW, gB, losses, correct, n):
    """Steps k0..k1-1: W/B kernels/biases, s1*/s2* optimizer slots, acts/deltas/gW/gB buffers
    (tuples over layers); writes losses[k] (incl. L2) and correct[k]."""
    n_total = order.shape[0]
    l2, ls = hyper[0], hyper[1]
    for k in range(k0, k1):
        start = k * bs
        b = min(bs, n_total - start)
        lr = lrs[k]
        t = it0 + (k - k0) + 1
        xb = acts[0][:b]   # gather the batch rows
        for r in range(b):
            xb[r, :] = x[order[start + r], :]
        penalty = 0.0
        if l2 > 0.0:   # weights before the update; BLAS sdot, as the NumPy path
            for i in range(n):
                wf = W[i].reshape(-1)
                penalty += np.dot(wf, wf)
        # forward: product, then bias + activation in one loop
        for i in range(n):
            z = acts[i + 1][:b]
            _mm(sgemm, use_sgemm, acts[i][:b], W[i], z, False, False)
            bias = B[i]
            last = i == n - 1
            for r in range(b):
                for c in range(z.shape[1]):
                    v = z[r, c] + bias[c]
                    if not last:
                        if act == 0:
                            v = max(v, np.float32(0.0))
                        elif act == 1:
                            v = np.tanh(v)
                        else:
                            v = np.float32(0.5) * np.tanh(np.float32(0.5) * v) + np.float32(0.5)
                    z[r, c] = v
        # softmax cross-entropy, accuracy and dz = (p - target) / b in one pass per row
        logits = acts[n][:b]
        p = deltas[n][:b]
        n_cls = logits.shape[1]
        nll = 0.0
        hits = 0
        inv_b = np.float32(1.0 / b)
        off = np.float32(ls / n_cls)
        on = np.float32(1.0 - ls)
        for r in range(b):
            best = 0
            for c in range(1, n_cls):
                if logits[r, c] > logits[r, best]:
                    best = c
            hits += best == y[order[start + r]]
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
            label = y[order[start + r]]
            row_nll = log_s - float(logits[r, label] - mx)
            if ls > 0.0:
                row_nll = (1.0 - ls) * row_nll + ls * (log_s - row_sum / n_cls)
            nll += row_nll
            for c in range(n_cls):
                q = p[r, c] / s
                if ls > 0.0:
                    q -= off
                if c == label:
                    q -= on
                p[r, c] = q * inv_b
        losses[k] = nll / b + l2 * penalty
        correct[k] = hits
        # backward; each layer is updated right after its weights served the next delta
        for i in range(n - 1, -1, -1):
            d = deltas[i + 1][:b]
            gb = gB[i]
            gb[:] = 0.0
            for r in range(b):
                for c in range(d.shape[1]):
                    gb[c] += d[r, c]
            _mm(sgemm, use_sgemm, acts[i][:b], d, gW[i], True, False)
            if i > 0:
                dp = deltas[i][:b]
                _mm(sgemm, use_sgemm, d, W[i], dp, False, True)
                a = acts[i][:b]
                for r in range(b):
                    for c in range(dp.shape[1]):
                        ac = a[r, c]
                        if act == 0:
                            if ac <= np.float32(0.0):
                                dp[r, c] = np.float32(0.0)
                        elif act == 1:
                            dp[r, c] *= np.float32(1.0) - ac * ac
                        else:
                            dp[r, c] *= (np.float32(1.0) - ac) * ac
            _update(W[i].reshape(-1), gW[i].reshape(-1), s1W[i].reshape(-1),
                    s2W[i].reshape(-1), lr, t, opt, hyper, True)
            _update(B[i], gb, s1B[i], s2B[i], lr, t, opt, hyper, False)
