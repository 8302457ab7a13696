"""The maths of training an MLP or a CNN, once, in plain float64 NumPy: the oracle every engine is
tested against, and the documentation of what they compute (Keras 3's semantics throughout).

Conv blocks (a CNN's front, ``conv_features``): images (b, side, side, 1) channels-last; block j
is ``z = conv(a, conv_j.kernel) + conv_j.bias`` (HWIO kernel, stride 1, 'same': zero padding of
(k-1)//2 before and k-1-(k-1)//2 after, as Keras and torch), then a 2x2 max-pool (floor: an odd
side's last row and column are dropped; its gradient goes to the window's first maximum in the
order (0,0), (0,1), (1,0), (1,1), as torch breaks ties), then relu. The last block's output is
flattened in (h, w, c) order and is the Dense layers' input. The conv kernels carry no L2 term and
no max-norm (Keras' kernel_regularizer and kernel_constraint sit on the Dense layers).

Network (``p``: Keras-named weights, see ``mnistlab.engines.init``): for each hidden layer i,
``z = h @ dense_i.kernel + dense_i.bias``; with batch norm ``z = gamma*(z-mean)/sqrt(var+eps)+beta``
(batch mean and BIASED variance in training, the moving statistics at inference, eps 1e-3); then
the activation; then, in training, inverted dropout ``h = where(keep, a/(1-rate), 0)`` with the
keep-mask of ``masks.dropout_keep`` (a function of seed, epoch, step, layer). The last Dense gives
logits. Loss: cross-entropy of softmax(logits) against ``onehot*(1-ls) + ls/classes``, mean over
the batch, plus ``l2*sum(kernel**2)`` over every Dense kernel (Keras' kernel_regularizer).
Moving statistics: ``moving = 0.99*moving + 0.01*batch_stat``. The gradient of a Dense bias that
batch norm follows is exactly 0 (the batch mean removes it); engines write 0, not float32 noise.

Each update (``t`` = iterations after this step, ``lr`` this step's rate as float32) is applied
to every trainable weight (kernels, biases, gamma, beta); then, with ``max_norm`` > 0, every
Dense kernel is rescaled as Keras' MaxNorm(axis=0): ``w *= clip(n, 0, c)/(1e-7 + n)`` with ``n``
the norm of each column (each output unit's incoming weights).

The engines compute in float32 with subnormals flushed to zero (``engines/fpmode``): a result or
operand below 2**-126 becomes 0, a change under 1.2e-38 that float32 rounding already covers, so
their tests compare with this float64 maths (which has no subnormal in its range) as before.

>>> from mnistlab.recipe import Recipe
>>> from mnistlab.engines.init import init_weights
>>> from mnistlab.engines.optim import Hyperparameters
>>> r = Recipe(hidden=[8])
>>> p = {k: v.astype(np.float64) for k, v in init_weights(r).items()}
>>> loss, grads, _ = gradients(p, np.zeros((4, 784)), np.arange(4), Hyperparameters.of(r))
>>> round(loss, 4)     # zero inputs, zero biases: uniform softmax
2.3026
"""

from __future__ import annotations

import math

import numpy as np

from mnistlab.engines.optim import (
    BN_EPSILON,
    BN_MOMENTUM,
    MAXNORM_EPSILON,
    Hyperparameters,
    slots_of,
)
from mnistlab.recipe.optimizers import OPTIMIZERS

_erf = np.vectorize(math.erf)
ACT = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "gelu": lambda z: 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0))),
}  # exact (erf) form
# derivative, from the activation's input z and output a
ACT_GRAD = {
    "relu": lambda z, a: (a > 0).astype(float),
    "tanh": lambda z, a: 1.0 - a * a,
    "sigmoid": lambda z, a: a * (1.0 - a),
    "gelu": lambda z, a: (
        0.5 * (1.0 + _erf(z / math.sqrt(2.0))) + z * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    ),
}


def n_layers(p: dict) -> int:
    """Dense layers."""
    return sum(1 for k in p if k.startswith("dense_") and k.endswith(".kernel"))


# ---- conv blocks ----------------------------------------------------------------------------
def im2col(a: np.ndarray, k: int) -> np.ndarray:
    """(b, side, side, c) -> (b, side, side, k*k*c): each pixel's k x k 'same' window, in the
    HWIO kernel's (dy, dx, c) order, so ``im2col(a, k) @ kernel.reshape(-1, out)`` is the conv."""
    b, side, _, c = a.shape
    lo = (k - 1) // 2
    padded = np.zeros((b, side + k - 1, side + k - 1, c))
    padded[:, lo : lo + side, lo : lo + side] = a
    return np.concatenate(
        [padded[:, dy : dy + side, dx : dx + side] for dy in range(k) for dx in range(k)], axis=3
    )


def col2im(dcol: np.ndarray, k: int, c: int) -> np.ndarray:
    """The adjoint of ``im2col``: (b, side, side, k*k*c) window gradients -> (b, side, side, c)."""
    b, side = dcol.shape[:2]
    lo = (k - 1) // 2
    padded = np.zeros((b, side + k - 1, side + k - 1, c))
    for t in range(k * k):
        dy, dx = divmod(t, k)
        padded[:, dy : dy + side, dx : dx + side] += dcol[..., t * c : (t + 1) * c]
    return padded[:, lo : lo + side, lo : lo + side]


def max_pool(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 max-pool of (b, side, side, c): (pooled, argmax in window order, first on ties)."""
    b, side, _, c = z.shape
    half = side // 2
    windows = z[:, : 2 * half, : 2 * half].reshape(b, half, 2, half, 2, c)
    windows = windows.transpose(0, 1, 3, 5, 2, 4).reshape(b, half, half, c, 4)
    arg = windows.argmax(-1)
    return np.take_along_axis(windows, arg[..., None], -1)[..., 0], arg


def unpool(d: np.ndarray, arg: np.ndarray, side: int) -> np.ndarray:
    """The adjoint of ``max_pool``: each pooled gradient back to its window's argmax."""
    b, half, _, c = d.shape
    windows = np.zeros((b, half, half, c, 4))
    np.put_along_axis(windows, arg[..., None], d[..., None], -1)
    out = np.zeros((b, side, side, c))
    spread = windows.reshape(b, half, half, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
    out[:, : 2 * half, : 2 * half] = spread.reshape(b, 2 * half, 2 * half, c)
    return out


def conv_features(p: dict, x: np.ndarray, caches: list | None = None) -> np.ndarray:
    """The conv blocks' output flattened in (h, w, c) order (``x`` itself without conv blocks);
    ``caches`` gets what ``conv_backward`` needs of each block."""
    if "conv_0.kernel" not in p:
        return x
    side = math.isqrt(x.shape[1])
    a = x.reshape(len(x), side, side, 1)
    j = 0
    while f"conv_{j}.kernel" in p:
        kernel = p[f"conv_{j}.kernel"]
        col = im2col(a, kernel.shape[0])
        z = col @ kernel.reshape(-1, kernel.shape[3]) + p[f"conv_{j}.bias"]
        pooled, arg = max_pool(z)
        a = np.maximum(pooled, 0.0)
        if caches is not None:
            caches.append({"col": col, "arg": arg, "out": a, "side": z.shape[1]})
        j += 1
    return a.reshape(len(x), -1)


def conv_backward(p: dict, d: np.ndarray, caches: list, g: dict) -> None:
    """The conv weights' gradients into ``g``, from ``d`` = dL/d(conv_features)."""
    for j in reversed(range(len(caches))):
        c, kernel = caches[j], p[f"conv_{j}.kernel"]
        k, _, c_in, c_out = kernel.shape
        dz = unpool(d.reshape(c["out"].shape) * (c["out"] > 0), c["arg"], c["side"])
        flat = dz.reshape(-1, c_out)
        g[f"conv_{j}.kernel"] = (c["col"].reshape(len(flat), -1).T @ flat).reshape(kernel.shape)
        g[f"conv_{j}.bias"] = flat.sum(0)
        if j:
            d = col2im(dz @ kernel.reshape(-1, c_out).T, k, c_in)


# ---- Dense layers, loss, updates ------------------------------------------------------------
def forward(p: dict, x: np.ndarray, h: Hyperparameters, masks=None, training: bool = True):
    """(logits, cache, batch statistics); ``masks[i]``: keep-mask of hidden layer i."""
    return dense_forward(p, conv_features(p, x), h, masks, training)


def dense_forward(p: dict, x: np.ndarray, h: Hyperparameters, masks=None, training: bool = True):
    """``forward`` from the Dense layers' input (a CNN's conv features)."""
    n = n_layers(p)
    cache, stats = [], {}
    out = x
    for i in range(n):
        z = out @ p[f"dense_{i}.kernel"] + p[f"dense_{i}.bias"]
        if i == n - 1:
            return z, cache, stats
        c = {}
        if h.batch_norm:
            if training:
                mean, var = z.mean(0), z.var(0)  # biased, as Keras
                stats[i] = (mean, var)
            else:
                mean, var = p[f"bn_{i}.moving_mean"], p[f"bn_{i}.moving_variance"]
            c["inv"] = 1.0 / np.sqrt(var + BN_EPSILON)
            c["xhat"] = (z - mean) * c["inv"]
            z = p[f"bn_{i}.gamma"] * c["xhat"] + p[f"bn_{i}.beta"]
        c["z"] = z
        a = c["a"] = ACT[h.activation](z)
        if training and h.dropout > 0:
            c["scale"] = np.where(masks[i], 1.0 / (1.0 - h.dropout), 0.0)
            a = a * c["scale"]
        cache.append(c)
        out = a


def loss_and_dlogits(logits: np.ndarray, y: np.ndarray, p: dict, h: Hyperparameters):
    """Mean smoothed cross-entropy + L2 penalty, and its gradient with respect to the logits."""
    b, k = logits.shape
    target = np.full((b, k), h.label_smoothing / k)
    target[np.arange(b), y] += 1.0 - h.label_smoothing
    shifted = logits - logits.max(1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    loss = -(target * logp).sum() / b
    loss += h.l2 * sum((p[f"dense_{i}.kernel"] ** 2).sum() for i in range(n_layers(p)))
    return float(loss), (np.exp(logp) - target) / b


def gradients(p: dict, x: np.ndarray, y: np.ndarray, h: Hyperparameters, masks=None):
    """(loss, gradient of every trainable weight, batch statistics) of one training batch."""
    n = n_layers(p)
    convs: list = []
    x = conv_features(p, x, convs)
    logits, cache, stats = dense_forward(p, x, h, masks)
    loss, d = loss_and_dlogits(logits, y, p, h)
    g = {}
    for i in range(n - 1, -1, -1):
        inp = x if i == 0 else _layer_output(cache[i - 1], h)
        g[f"dense_{i}.kernel"] = inp.T @ d + 2 * h.l2 * p[f"dense_{i}.kernel"]
        # A bias that batch norm follows has gradient 0 (the batch mean removes it); written as
        # 0, not as rounding noise that adaptive optimizers would scale up to steps of ~lr.
        g[f"dense_{i}.bias"] = np.zeros(d.shape[1]) if h.batch_norm and i < n - 1 else d.sum(0)
        if i == 0:
            if convs:
                conv_backward(p, d @ p["dense_0.kernel"].T, convs, g)
            break
        c = cache[i - 1]  # hidden layer i-1
        d = d @ p[f"dense_{i}.kernel"].T
        if "scale" in c:
            d = d * c["scale"]
        d = d * ACT_GRAD[h.activation](c["z"], c["a"])
        if h.batch_norm:
            j = i - 1
            g[f"bn_{j}.gamma"], g[f"bn_{j}.beta"] = (d * c["xhat"]).sum(0), d.sum(0)
            dx = d * p[f"bn_{j}.gamma"]
            d = c["inv"] * (dx - dx.mean(0) - c["xhat"] * (dx * c["xhat"]).mean(0))
    return loss, g, stats


def _layer_output(c: dict, h: Hyperparameters) -> np.ndarray:
    return c["a"] * c["scale"] if "scale" in c else c["a"]


def init_slots(p: dict, h: Hyperparameters) -> dict:
    """Optimizer state: one array per slot and trainable weight, plus nadam's running product."""
    fill = OPTIMIZERS[h.optimizer].slot_init
    slots = {
        s: {k: np.full_like(v, fill) for k, v in p.items() if "moving" not in k}
        for s in slots_of(h)
    }
    slots["u_product"] = 1.0
    return slots


def update(p: dict, g: dict, slots: dict, t: int, lr: float, h: Hyperparameters) -> None:
    """One optimizer step in place (``t`` counts from 1), then the max-norm constraint."""
    opt, row = h.optimizer, OPTIMIZERS[h.optimizer]
    b1, b2, rho, eps = row.beta_1, row.beta_2, row.rho, row.epsilon
    if opt == "nadam":  # Keras' momentum-cache schedule, its running product kept as state
        u_t = b1 * (1.0 - 0.5 * row.momentum_cache_decay**t)
        u_next = b1 * (1.0 - 0.5 * row.momentum_cache_decay ** (t + 1))
        slots["u_product"] *= u_t
        prod_t = slots["u_product"]
        prod_next = prod_t * u_next
    for k, gk in g.items():
        w = p[k]
        s = {name: slots[name][k] for name in slots_of(h)}
        if opt == "sgd":
            v = s["momentum"]
            v[...] = h.momentum * v - lr * gk
            w += h.momentum * v - lr * gk if h.nesterov else v
        elif opt in ("adam", "adamw"):
            if opt == "adamw":
                w -= w * h.weight_decay * lr
            s["m"] += (gk - s["m"]) * (1 - b1)
            s["v"] += (gk * gk - s["v"]) * (1 - b2)
            w -= lr * np.sqrt(1 - b2**t) / (1 - b1**t) * s["m"] / (np.sqrt(s["v"]) + eps)
        elif opt == "nadam":
            s["m"] += (gk - s["m"]) * (1 - b1)
            s["v"] += (gk * gk - s["v"]) * (1 - b2)
            m_hat = u_next * s["m"] / (1 - prod_next) + (1 - u_t) * gk / (1 - prod_t)
            v_hat = s["v"] / (1 - b2**t)
            w -= lr * m_hat / (np.sqrt(v_hat) + eps)
        elif opt == "rmsprop":
            s["velocity"][...] = rho * s["velocity"] + (1 - rho) * gk * gk
            inc = lr * gk / np.sqrt(s["velocity"] + eps)
            if "momentum" in s:
                s["momentum"][...] = h.momentum * s["momentum"] + inc
                inc = s["momentum"]
            w -= inc
        elif opt == "adagrad":
            s["accumulator"] += gk * gk
            w -= lr * gk / np.sqrt(s["accumulator"] + eps)
        else:  # adadelta
            acc_g, acc_d = s["accumulated_grad"], s["accumulated_delta_var"]
            acc_g[...] = rho * acc_g + (1 - rho) * gk * gk
            delta = -np.sqrt(acc_d + eps) * gk / np.sqrt(acc_g + eps)
            acc_d[...] = rho * acc_d + (1 - rho) * delta * delta
            w += lr * delta
    if h.max_norm > 0:
        for k in g:
            if k.startswith("dense_") and k.endswith(".kernel"):
                norms = np.sqrt((p[k] ** 2).sum(0, keepdims=True))
                p[k] *= np.clip(norms, 0, h.max_norm) / (MAXNORM_EPSILON + norms)


def step(
    p: dict,
    slots: dict,
    x: np.ndarray,
    y: np.ndarray,
    t: int,
    lr: float,
    h: Hyperparameters,
    masks=None,
) -> float:
    """One training step in place: gradients, moving statistics, update. Returns the loss."""
    loss, g, stats = gradients(p, x, y, h, masks)
    for i, (mean, var) in stats.items():
        for name, batch in (("moving_mean", mean), ("moving_variance", var)):
            p[f"bn_{i}.{name}"] = BN_MOMENTUM * p[f"bn_{i}.{name}"] + (1 - BN_MOMENTUM) * batch
    update(p, g, slots, t, lr, h)
    return loss


def predict_proba(p: dict, x: np.ndarray, h: Hyperparameters) -> np.ndarray:
    """Softmax probabilities at inference: no dropout, batch norm's moving statistics."""
    logits = forward(p, x, h, training=False)[0]
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)
