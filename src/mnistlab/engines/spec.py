"""The maths of training an MLP, once, in plain float64 NumPy: the oracle every engine is tested
against, and the documentation of what they compute (Keras 3's semantics throughout).

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
>>> from mnistlab.engines.optim import Hyper
>>> r = Recipe(hidden=[8])
>>> p = {k: v.astype(np.float64) for k, v in init_weights(r).items()}
>>> loss, grads, _ = gradients(p, np.zeros((4, 784)), np.arange(4), Hyper.of(r))
>>> round(loss, 4)     # zero inputs, zero biases: uniform softmax
2.3026
"""

from __future__ import annotations

import math

import numpy as np

from mnistlab.engines.optim import BN_EPSILON, BN_MOMENTUM, MAXNORM_EPSILON, Hyper, slots_of
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
    return sum(1 for k in p if k.endswith(".kernel"))


def forward(p: dict, x: np.ndarray, h: Hyper, masks=None, training: bool = True):
    """(logits, cache, batch statistics); ``masks[i]``: keep-mask of hidden layer i."""
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


def loss_and_dlogits(logits: np.ndarray, y: np.ndarray, p: dict, h: Hyper):
    """Mean smoothed cross-entropy + L2 penalty, and its gradient with respect to the logits."""
    b, k = logits.shape
    target = np.full((b, k), h.label_smoothing / k)
    target[np.arange(b), y] += 1.0 - h.label_smoothing
    shifted = logits - logits.max(1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    loss = -(target * logp).sum() / b
    loss += h.l2 * sum((p[f"dense_{i}.kernel"] ** 2).sum() for i in range(n_layers(p)))
    return float(loss), (np.exp(logp) - target) / b


def gradients(p: dict, x: np.ndarray, y: np.ndarray, h: Hyper, masks=None):
    """(loss, gradient of every trainable weight, batch statistics) of one training batch."""
    n = n_layers(p)
    logits, cache, stats = forward(p, x, h, masks)
    loss, d = loss_and_dlogits(logits, y, p, h)
    g = {}
    for i in range(n - 1, -1, -1):
        inp = x if i == 0 else _layer_output(cache[i - 1], h)
        g[f"dense_{i}.kernel"] = inp.T @ d + 2 * h.l2 * p[f"dense_{i}.kernel"]
        # A bias that batch norm follows has gradient 0 (the batch mean removes it); written as
        # 0, not as rounding noise that adaptive optimizers would scale up to steps of ~lr.
        g[f"dense_{i}.bias"] = np.zeros(d.shape[1]) if h.batch_norm and i < n - 1 else d.sum(0)
        if i == 0:
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


def _layer_output(c: dict, h: Hyper) -> np.ndarray:
    return c["a"] * c["scale"] if "scale" in c else c["a"]


def init_slots(p: dict, h: Hyper) -> dict:
    """Optimizer state: one array per slot and trainable weight, plus nadam's running product."""
    fill = OPTIMIZERS[h.optimizer].slot_init
    slots = {
        s: {k: np.full_like(v, fill) for k, v in p.items() if "moving" not in k}
        for s in slots_of(h)
    }
    slots["u_product"] = 1.0
    return slots


def update(p: dict, g: dict, slots: dict, t: int, lr: float, h: Hyper) -> None:
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
            if k.endswith(".kernel"):
                norms = np.sqrt((p[k] ** 2).sum(0, keepdims=True))
                p[k] *= np.clip(norms, 0, h.max_norm) / (MAXNORM_EPSILON + norms)


def step(
    p: dict, slots: dict, x: np.ndarray, y: np.ndarray, t: int, lr: float, h: Hyper, masks=None
) -> float:
    """One training step in place: gradients, moving statistics, update. Returns the loss."""
    loss, g, stats = gradients(p, x, y, h, masks)
    for i, (mean, var) in stats.items():
        for name, batch in (("moving_mean", mean), ("moving_variance", var)):
            p[f"bn_{i}.{name}"] = BN_MOMENTUM * p[f"bn_{i}.{name}"] + (1 - BN_MOMENTUM) * batch
    update(p, g, slots, t, lr, h)
    return loss


def predict_proba(p: dict, x: np.ndarray, h: Hyper) -> np.ndarray:
    """Softmax probabilities at inference: no dropout, batch norm's moving statistics."""
    logits = forward(p, x, h, training=False)[0]
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)
