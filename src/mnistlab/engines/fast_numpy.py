"""The fast engine's NumPy back end: a training step as in-place array operations.

Every array a step touches lives in ``state.Workspace`` (allocated once); the 11 products of the
notebook's step are sgemm calls through ``np.matmul(..., out=)``, transposed operands are views.
The last, smaller batch uses leading-row views of the same buffers (still C-contiguous).

Backward pass (``spec.py`` has it in plain form): ``dz_L = (softmax(z_L) - target)/b``;
``dW_l = h_l^T dz_l + 2*l2*W_l``, ``db_l = sum_rows(dz_l)``; then through dropout (times the
same scale), the activation (written with its output), and batch norm
(``dz = gamma*inv*(dy - sum(dy)/b - xhat*sum(dy*xhat)/b)``).
"""

from __future__ import annotations

import numpy as np

from mnistlab.engines import fpmode
from mnistlab.engines.masks import keep_mask
from mnistlab.engines.optim import BN_EPSILON, BN_MOMENTUM, MAXNORM_EPSILON, Hyperparameters
from mnistlab.engines.state import State, Steps, Workspace
from mnistlab.recipe.optimizers import OPTIMIZERS

_ZERO, _HALF, _ONE = np.float32(0), np.float32(0.5), np.float32(1)
_SQRT_HALF, _INV_SQRT_2PI = 0.5**0.5, (2 * np.pi) ** -0.5


def activate(name: str, z: np.ndarray) -> None:
    """Hidden activation in place (the backward pass needs its output, and gelu its input)."""
    if name == "relu":
        np.maximum(z, _ZERO, out=z)
    elif name == "tanh":
        np.tanh(z, out=z)
    elif name == "gelu":  # exact: z * Phi(z) = 0.5 z (1 + erf(z / sqrt 2))
        from scipy.special import erf

        t = erf(z * np.float32(_SQRT_HALF))
        t += _ONE
        t *= _HALF
        z *= t
    else:  # sigmoid as 0.5 + 0.5*tanh(z/2): same function, no exp overflow for large -z
        z *= _HALF
        np.tanh(z, out=z)
        z *= _HALF
        z += _HALF


def activation_grad(
    name: str, d: np.ndarray, a: np.ndarray, tmp: np.ndarray, z: np.ndarray | None = None
) -> None:
    """d *= activation'(z), written with the activation's output ``a`` (gelu: its input z)."""
    if name == "gelu":  # Phi(z) + z phi(z)
        from scipy.special import erf

        np.multiply(z, z, out=tmp)
        tmp *= np.float32(-0.5)
        np.exp(tmp, out=tmp)
        tmp *= z
        tmp *= np.float32(_INV_SQRT_2PI)
        t = erf(z * np.float32(_SQRT_HALF))
        t += _ONE
        t *= _HALF
        tmp += t
        d *= tmp
    elif name == "relu":  # zero where a <= 0, as torch's relu backward (keeps it NaN-exact)
        np.copyto(d, _ZERO, where=a <= _ZERO)
    elif name == "tanh":  # 1 - a^2
        np.multiply(a, a, out=tmp)
        np.subtract(_ONE, tmp, out=tmp)
        d *= tmp
    else:  # a (1 - a)
        np.subtract(_ONE, a, out=tmp)
        tmp *= a
        d *= tmp


def logits(h: Hyperparameters, w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Inference-mode logits of ``x`` (allocating): no dropout, moving batch-norm statistics."""
    n = sum(1 for k in w if k.startswith("dense_") and k.endswith(".kernel"))
    out = x
    for i in range(n):
        out = np.matmul(out, w[f"dense_{i}.kernel"])
        out += w[f"dense_{i}.bias"]
        if i == n - 1:
            return out
        if h.batch_norm:
            out -= w[f"bn_{i}.moving_mean"]
            out *= w[f"bn_{i}.gamma"] / np.sqrt(
                w[f"bn_{i}.moving_variance"] + np.float32(BN_EPSILON)
            )
            out += w[f"bn_{i}.beta"]
        activate(h.activation, out)
    return out


def run_steps(
    state: State, ws: Workspace, h: Hyperparameters, s: Steps, k0: int, k1: int, flush: bool = False
) -> None:
    """Steps k0..k1-1 of the epoch; writes each step's loss and correct count into ``s``.

    ``flush``: set the state's subnormals to 0 after every step (``fpmode``: for a CPU whose
    flush-to-zero mode could not be set)."""
    bs = s.batch_size
    for k in range(k0, k1):
        idx = s.order[k * bs : (k + 1) * bs]
        s.losses[k], s.correct[k] = step(
            state, ws, h, s.x, s.y, idx, s.scalars[k], s.keys[k] if h.dropout > 0 else None
        )
        if flush:
            for a in (state.theta, state.moving, *state.slots.values()):
                fpmode.flush_in_place(a, ws.scratch[: a.size])


def step(state: State, ws: Workspace, h: Hyperparameters, x, y, idx, sc, keys) -> tuple[float, int]:
    b, n, v = len(idx), state.n_layers, state.view
    yb = y[idx]
    np.take(x, idx, axis=0, out=ws.h(0, b))
    penalty = 0.0
    if h.l2 > 0:  # the weights the loss sees, before the update
        penalty = h.l2 * float(
            sum(np.dot(state.kernel(i).ravel(), state.kernel(i).ravel()) for i in range(n))
        )
    # forward
    for i in range(n):
        last = i == n - 1
        out = ws.h(n, b) if last else (ws.z(i, b) if h.batch_norm else ws.a(i, b))
        np.matmul(ws.h(i, b), v[f"dense_{i}.kernel"], out=out)
        out += v[f"dense_{i}.bias"]
        if last:
            break
        a = ws.a(i, b)
        if h.batch_norm:
            _batch_norm(state, ws, i, out, a)
        if h.activation == "gelu":
            np.copyto(ws.pre(i, b), a)
        activate(h.activation, a)
        if h.dropout > 0:
            m = ws.mask(i, b)
            keep = keep_mask(keys[i], b, a.shape[1], h.dropout)
            np.multiply(keep, np.float32(1.0 / (1.0 - h.dropout)), out=m)
            np.multiply(a, m, out=ws.h(i + 1, b))

    nll, n_correct = _cross_entropy(ws.h(n, b), ws.d(n, b), yb, h.label_smoothing)

    # backward, updating each layer as soon as its weights have served the next delta
    g = ws.grad
    for i in range(n - 1, -1, -1):
        d = ws.d(i + 1, b)
        kernel = v[f"dense_{i}.kernel"]
        ko, bo = state.offsets[f"dense_{i}.kernel"], state.offsets[f"dense_{i}.bias"]
        gw = g[ko:bo].reshape(kernel.shape)
        np.matmul(ws.h(i, b).T, d, out=gw)
        if h.batch_norm and i < n - 1:  # exactly 0: batch norm removes the bias (spec.py)
            g[bo : bo + d.shape[1]] = 0
        else:
            np.sum(d, axis=0, out=g[bo : bo + d.shape[1]])
        if i > 0:
            j = i - 1
            dp = ws.d(i, b)
            np.matmul(d, kernel.T, out=dp)
            if h.dropout > 0:
                dp *= ws.mask(j, b)
            activation_grad(h.activation, dp, ws.a(j, b), ws.tmp(b, dp.shape[1]), ws.pre(j, b))
            if h.batch_norm:
                xhat, inv = ws.z(j, b), ws.stat(j)[2]
                go, beo = state.offsets[f"bn_{j}.gamma"], state.offsets[f"bn_{j}.beta"]
                dgamma, dbeta = g[go : go + dp.shape[1]], g[beo : beo + dp.shape[1]]
                tmp = ws.tmp(b, dp.shape[1])
                np.multiply(dp, xhat, out=tmp)
                np.sum(tmp, axis=0, out=dgamma)
                np.sum(dp, axis=0, out=dbeta)
                np.multiply(xhat, dgamma * np.float32(1.0 / b), out=tmp)
                dp -= tmp
                dp -= dbeta * np.float32(1.0 / b)
                dp *= v[f"bn_{j}.gamma"] * inv
        if h.l2 > 0:
            np.multiply(kernel, np.float32(2 * h.l2), out=ws.scratch[ko:bo].reshape(kernel.shape))
            gw += ws.scratch[ko:bo].reshape(kernel.shape)
        update(state, ws, h, ko, state.ends[i], sc)
        if h.max_norm > 0:
            max_norm(kernel, h.max_norm)
    return nll / b + penalty, n_correct


def _batch_norm(state: State, ws: Workspace, i: int, out: np.ndarray, a: np.ndarray) -> None:
    """Training-mode batch norm of hidden layer i: ``out`` becomes x-hat (kept for the backward
    pass), ``a`` gamma*x-hat + beta; the moving statistics take this batch's."""
    mean, var, inv = ws.stat(i)
    np.mean(out, axis=0, out=mean)
    out -= mean
    tmp = ws.tmp(out.shape[0], out.shape[1])
    np.multiply(out, out, out=tmp)
    np.mean(tmp, axis=0, out=var)
    np.add(var, np.float32(BN_EPSILON), out=inv)
    np.sqrt(inv, out=inv)
    np.divide(_ONE, inv, out=inv)
    out *= inv
    for stat, batch in (("moving_mean", mean), ("moving_variance", var)):
        moving = state.moving_view[f"bn_{i}.{stat}"]
        moving *= np.float32(BN_MOMENTUM)
        moving += np.float32(1 - BN_MOMENTUM) * batch
    np.multiply(out, state.view[f"bn_{i}.gamma"], out=a)
    a += state.view[f"bn_{i}.beta"]


def _cross_entropy(z: np.ndarray, p: np.ndarray, yb: np.ndarray, ls: float) -> tuple[float, int]:
    """(summed smoothed cross-entropy, correct count) of logits ``z`` (shifted in place), and
    its gradient dz = (softmax - target) / b written into ``p``."""
    b = len(yb)
    rows = np.arange(b)
    n_correct = int(np.count_nonzero(z.argmax(axis=1) == yb))
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=p)
    norm = p.sum(axis=1, keepdims=True)
    log_norm = np.log(norm)
    nll = float(log_norm.sum(dtype=np.float64)) - float(z[rows, yb].sum(dtype=np.float64))
    p /= norm
    if ls:
        spread = float(log_norm.sum(dtype=np.float64)) - float(z.sum(dtype=np.float64)) / z.shape[1]
        nll = (1 - ls) * nll + ls * spread
        p -= np.float32(ls / p.shape[1])
        p[rows, yb] -= np.float32(1 - ls)
    else:
        p[rows, yb] -= _ONE
    p *= np.float32(1.0 / b)
    return nll, n_correct


def max_norm(kernel: np.ndarray, c: float) -> None:
    """Keras' MaxNorm(c, axis=0) in place: each column's norm clipped to c."""
    norms = np.sqrt(np.einsum("ij,ij->j", kernel, kernel))
    kernel *= np.minimum(norms, np.float32(c)) / (np.float32(MAXNORM_EPSILON) + norms)


def update(state: State, ws: Workspace, h: Hyperparameters, lo: int, hi: int, sc) -> None:
    """Keras-exact optimizer update of theta[lo:hi] in place (its gradient gets overwritten);
    ``sc``: this step's row of ``optim.step_scalars``. One kernel per kernel code of the
    optimizer's row (``recipe.optimizers``), as in the numba back end."""
    row = OPTIMIZERS[h.optimizer]
    slot = {k: a[lo:hi] for k, a in state.slots.items()}
    c = tuple(np.float32(x) for x in sc)
    _KERNELS[row.code](state.theta[lo:hi], ws.grad[lo:hi], ws.scratch[lo:hi], slot, c, row)


def _sgd(w, g, tmp, slot, c, row) -> None:  # v = m*v - lr*g; w += a*v - c*lr*g
    g *= c[0]
    vel = slot["momentum"]
    vel *= c[1]
    vel -= g
    np.multiply(vel, c[2], out=tmp)
    g *= c[3]
    tmp -= g
    w += tmp


def _moments(g, tmp, m, vv, row) -> None:
    np.subtract(g, m, out=tmp)
    tmp *= np.float32(1 - row.beta_1)
    m += tmp  # m += (g - m)(1 - b1)
    np.multiply(g, g, out=tmp)
    tmp -= vv
    tmp *= np.float32(1 - row.beta_2)
    vv += tmp  # v += (g^2 - v)(1 - b2)


def _adam(w, g, tmp, slot, c, row) -> None:  # adam, adamw (c[1]: adamw's decay shrink)
    m, vv = slot["m"], slot["v"]
    if c[1] != _ONE:
        w *= c[1]  # adamw's decay (its gradient came before)
    _moments(g, tmp, m, vv, row)
    np.sqrt(vv, out=tmp)
    tmp += np.float32(row.epsilon)
    np.divide(m, tmp, out=tmp)
    tmp *= c[0]
    w -= tmp


def _nadam(w, g, tmp, slot, c, row) -> None:  # m_hat = c1*m + c2*g; v_hat = v*c3
    m, vv = slot["m"], slot["v"]
    _moments(g, tmp, m, vv, row)
    g *= c[2]
    np.multiply(m, c[1], out=tmp)
    g += tmp
    np.multiply(vv, c[3], out=tmp)
    np.sqrt(tmp, out=tmp)
    tmp += np.float32(row.epsilon)
    np.divide(g, tmp, out=tmp)
    tmp *= c[0]
    w -= tmp


def _rmsprop(w, g, tmp, slot, c, row) -> None:
    vel = slot["velocity"]
    vel *= np.float32(row.rho)
    np.multiply(g, g, out=tmp)
    tmp *= np.float32(1 - row.rho)
    vel += tmp  # vel = rho*vel + (1-rho) g^2
    np.add(vel, np.float32(row.epsilon), out=tmp)
    np.sqrt(tmp, out=tmp)
    g *= c[0]
    np.divide(g, tmp, out=tmp)  # inc = lr*g / sqrt(vel + eps)
    if "momentum" in slot:
        mom = slot["momentum"]
        mom *= c[1]
        mom += tmp
        w -= mom
    else:
        w -= tmp


def _adagrad(w, g, tmp, slot, c, row) -> None:
    acc = slot["accumulator"]
    np.multiply(g, g, out=tmp)
    acc += tmp
    np.add(acc, np.float32(row.epsilon), out=tmp)
    np.sqrt(tmp, out=tmp)
    g *= c[0]
    np.divide(g, tmp, out=tmp)
    w -= tmp


def _adadelta(w, g, tmp, slot, c, row) -> None:
    acc_g, acc_d = slot["accumulated_grad"], slot["accumulated_delta_var"]
    rho, one_rho, eps = np.float32(row.rho), np.float32(1 - row.rho), np.float32(row.epsilon)
    acc_g *= rho
    np.multiply(g, g, out=tmp)
    tmp *= one_rho
    acc_g += tmp  # acc_g = rho*acc_g + (1-rho) g^2
    np.add(acc_d, eps, out=tmp)
    np.sqrt(tmp, out=tmp)
    g *= tmp  # sqrt(acc_d + eps) * g
    np.add(acc_g, eps, out=tmp)
    np.sqrt(tmp, out=tmp)
    np.divide(g, tmp, out=g)  # delta = -g (sign folded into the last line)
    acc_d *= rho
    np.multiply(g, g, out=tmp)
    tmp *= one_rho
    acc_d += tmp
    g *= c[0]
    w -= g


_KERNELS = (_sgd, _adam, _nadam, _rmsprop, _adagrad, _adadelta)  # by the row's kernel code
