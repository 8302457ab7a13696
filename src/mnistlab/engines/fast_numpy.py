"""The fast engine's NumPy backend: one training step as in-place array operations.

Every array a step touches is allocated once (``Buffers``); a step is ~60 NumPy calls on
preallocated arrays, of which 11 are sgemm products. The last, smaller batch uses leading-row
views of the same buffers (still C-contiguous, so still plain sgemm calls).

Backward pass of a Dense stack with softmax cross-entropy (mean over the batch of size b):
    dz_L = (softmax(z_L) - target) / b
    dW_l = a_l^T dz_l + 2*l2*W_l,  db_l = sum_rows(dz_l)
    dz_{l-1} = (dz_l W_l^T) * act'(a_{l-1})      # act' written with the activation's output
"""

from __future__ import annotations

import numpy as np

from mnistlab.engines.fast import (_ONE, ADAM_BETA1, ADAM_BETA2, EPSILON, RMSPROP_RHO,
                                   _activate, _activation_grad)


class Buffers:
    """Activations, deltas, gradients and optimizer temporaries for batches of ``bs`` rows."""

    def __init__(self, engine, bs: int):
        sizes = [engine.kernels[0].shape[0]] + [w.shape[1] for w in engine.kernels]
        self.acts = [np.empty((bs, s), np.float32) for s in sizes]       # acts[0] = the batch
        self.deltas = [np.empty((bs, s), np.float32) for s in sizes]     # dz of each layer's output
        self.tmp = [np.empty((bs, s), np.float32) for s in sizes]
        self.grads = [np.empty_like(p) for p in engine.params]
        self.scratch = [np.empty_like(p) for p in engine.params]
        self.y = np.empty(bs, np.int64)
        self.rows = np.arange(bs)


def run_steps(engine, x, y, order, lrs32, k0, k1, losses, correct) -> None:
    """Steps k0..k1-1 of the epoch; writes each step's loss and correct count."""
    r = engine.recipe
    bs = r.batch_size
    buf = engine._buffers
    if not isinstance(buf, Buffers):
        buf = engine._buffers = Buffers(engine, bs)
    for k in range(k0, k1):
        idx = order[k * bs:(k + 1) * bs]
        losses[k], correct[k] = step(engine, buf, x, y, idx, lrs32[k])


def step(engine, buf: Buffers, x, y, idx, lr: np.float32) -> tuple[float, int]:
    r = engine.recipe
    b = len(idx)
    full = b == buf.y.shape[0]
    # leading-row views for the last, smaller batch (C-contiguous: still plain sgemm)
    acts = buf.acts if full else [a[:b] for a in buf.acts]
    deltas = buf.deltas if full else [d[:b] for d in buf.deltas]
    tmps = buf.tmp if full else [t[:b] for t in buf.tmp]
    yb, rows = (buf.y, buf.rows) if full else (buf.y[:b], buf.rows[:b])
    np.take(x, idx, axis=0, out=acts[0])
    np.take(y, idx, out=yb)
    kernels, biases = engine.kernels, engine.biases
    n = len(kernels)
    penalty = r.l2 * engine.l2_penalty() if r.l2 > 0 else 0.0   # weights before the update

    # forward
    for i in range(n):
        z = acts[i + 1]
        np.matmul(acts[i], kernels[i], out=z)
        z += biases[i]
        if i < n - 1:
            _activate(r.activation, z)
    logits = acts[n]
    n_correct = int(np.count_nonzero(logits.argmax(axis=1) == yb))

    # softmax cross-entropy and its gradient dz = (p - target) / b, in deltas[n]
    shifted = tmps[n]
    np.subtract(logits, logits.max(axis=1, keepdims=True), out=shifted)
    p = deltas[n]
    np.exp(shifted, out=p)
    norm = p.sum(axis=1, keepdims=True)
    log_norm = np.log(norm)
    ls = r.label_smoothing
    nll = float(log_norm.sum(dtype=np.float64)) - float(shifted[rows, yb].sum(dtype=np.float64))
    if ls:
        spread = (float(log_norm.sum(dtype=np.float64))
                  - float(shifted.sum(dtype=np.float64)) / p.shape[1])
        nll = (1 - ls) * nll + ls * spread
        p /= norm
        p -= np.float32(ls / p.shape[1])
        p[rows, yb] -= np.float32(1 - ls)
    else:
        p /= norm
        p[rows, yb] -= _ONE
    p *= np.float32(1.0 / b)
    loss = nll / b + penalty

    # backward, updating each layer as soon as its weights have been used for the next delta
    engine.iterations += 1
    for i in range(n - 1, -1, -1):
        d = deltas[i + 1]
        gw, gb = buf.grads[2 * i], buf.grads[2 * i + 1]
        np.matmul(acts[i].T, d, out=gw)
        np.sum(d, axis=0, out=gb)
        if i > 0:
            np.matmul(d, kernels[i].T, out=deltas[i])
            _activation_grad(r.activation, deltas[i], acts[i], tmps[i])
        if r.l2 > 0:
            np.multiply(kernels[i], np.float32(2 * r.l2), out=buf.scratch[2 * i])
            gw += buf.scratch[2 * i]
        update(engine, buf, 2 * i, gw, lr)
        update(engine, buf, 2 * i + 1, gb, lr)
    return loss, n_correct



def update(engine, buf: Buffers, j: int, g: np.ndarray, lr: np.float32) -> None:
    """Keras-exact optimizer update of parameter j in place (``g`` may be overwritten)."""
    r, w, tmp, slots = engine.recipe, engine.params[j], buf.scratch[j], engine.slots
    opt = r.optimizer
    if opt == "sgd":
        m = np.float32(r.momentum)
        g *= lr                                   # g <- lr*g
        v = slots["momentum"][j]
        v *= m
        v -= g                                    # v = m*v - lr*g
        if r.nesterov:
            np.multiply(v, m, out=tmp)
            tmp -= g
            w += tmp                              # w += m*v - lr*g
        else:
            w += v
    elif opt in ("adam", "adamw"):
        t = engine.iterations
        if opt == "adamw" and r.weight_decay > 0:
            w *= np.float32(1.0 - float(np.float32(r.weight_decay * lr)))
        m, v = slots["m"][j], slots["v"][j]
        np.subtract(g, m, out=tmp)
        tmp *= np.float32(1 - ADAM_BETA1)
        m += tmp                                  # m += (g - m)(1 - b1)
        g *= g
        g -= v
        g *= np.float32(1 - ADAM_BETA2)
        v += g                                    # v += (g^2 - v)(1 - b2)
        alpha = np.float32(float(lr) * np.sqrt(1 - ADAM_BETA2 ** t) / (1 - ADAM_BETA1 ** t))
        np.sqrt(v, out=tmp)
        tmp += np.float32(EPSILON)
        np.divide(m, tmp, out=tmp)
        tmp *= alpha
        w -= tmp
    elif opt == "rmsprop":
        vel = slots["velocity"][j]
        vel *= np.float32(RMSPROP_RHO)
        np.multiply(g, g, out=tmp)
        tmp *= np.float32(1 - RMSPROP_RHO)
        vel += tmp                                # vel = rho*vel + (1-rho) g^2
        np.add(vel, np.float32(EPSILON), out=tmp)
        np.sqrt(tmp, out=tmp)
        g *= lr
        np.divide(g, tmp, out=tmp)                # inc = lr*g / sqrt(vel + eps)
        if "momentum" in slots:
            mom = slots["momentum"][j]
            mom *= np.float32(r.momentum)
            mom += tmp
            w -= mom
        else:
            w -= tmp
    else:  # adagrad
        acc = slots["accumulator"][j]
        np.multiply(g, g, out=tmp)
        acc += tmp
        np.add(acc, np.float32(EPSILON), out=tmp)
        np.sqrt(tmp, out=tmp)
        g *= lr
        np.divide(g, tmp, out=tmp)
        w -= tmp
