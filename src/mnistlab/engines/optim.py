"""The optimizers' arithmetic that every engine shares: the per-step scalars of an update, computed
once in float64 so every engine and back end applies the very same numbers. The optimizers'
facts (Keras' constants, state slots, kernel codes) are the rows of ``recipe.optimizers``."""

from __future__ import annotations

import dataclasses

import numpy as np

from mnistlab.recipe.optimizers import OPTIMIZERS, slot_names

# ---- Keras' constants of the layers (Keras 3 defaults) ------------------------------------------
BN_MOMENTUM, BN_EPSILON = 0.99, 1e-3  # BatchNormalization
MAXNORM_EPSILON = 1e-7  # keras.constraints.MaxNorm (backend.epsilon)


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """The recipe's numbers an engine's maths reads (per-optimizer defaults resolved)."""

    optimizer: str = "sgd"
    activation: str = "relu"
    l2: float = 0.0
    label_smoothing: float = 0.0
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    dropout: float = 0.0
    batch_norm: bool = False
    max_norm: float = 0.0
    seed: int = 0

    @classmethod
    def of(cls, recipe) -> Hyperparameters:
        r = recipe.resolved()
        return cls(
            optimizer=r.optimizer,
            activation=r.activation,
            l2=float(r.l2),
            label_smoothing=float(r.label_smoothing),
            momentum=float(r.momentum),
            nesterov=bool(r.nesterov),
            weight_decay=(
                float(r.weight_decay) if "weight_decay" in OPTIMIZERS[r.optimizer].reads else 0.0
            ),
            dropout=float(r.dropout),
            batch_norm=bool(r.batch_norm),
            max_norm=float(r.max_norm),
            seed=int(r.seed),
        )


def optimizer_slots(recipe) -> tuple[list[str], float]:
    """(slot names, initial value) of the recipe's optimizer state.

    >>> from mnistlab.recipe import Recipe
    >>> optimizer_slots(Recipe(optimizer="rmsprop", momentum=0.0))
    (['velocity'], 0.0)
    """
    r = recipe.resolved()
    return list(slot_names(r.optimizer, r.momentum)), OPTIMIZERS[r.optimizer].slot_init


def slots_of(h: Hyperparameters) -> list[str]:
    return list(slot_names(h.optimizer, h.momentum))


# ---- per-step optimizer scalars -----------------------------------------------------------------
N_SCALARS = 4


def step_scalars(
    h: Hyperparameters, lrs32: np.ndarray, iterations: int, u_product: float
) -> tuple[np.ndarray, np.ndarray]:
    """(scalars (steps, 4) float64, nadam's u_product after each step) for the next steps.

    Everything of an update that is the same for every weight, computed once per step in
    float64 from this step's float32 learning rate, so every engine and back end applies the
    very same numbers (their elementwise loops stay branch-free). Columns per optimizer:

    * sgd: lr, momentum, a, c with ``w += a*v - c*lr*g`` (nesterov: a = momentum, c = 1;
      else a = 1, c = 0, i.e. ``w += v``);
    * adam/adamw: alpha = lr*sqrt(1-b2^t)/(1-b1^t), shrink = 1 - float32(wd*lr) (1 for adam);
    * nadam: lr, u_{t+1}/(1-prod_{t+1}), (1-u_t)/(1-prod_t), 1/(1-b2^t);
    * rmsprop: lr, momentum; adagrad, adadelta: lr.
    """
    steps = len(lrs32)
    out = np.zeros((steps, N_SCALARS), np.float64)
    prods = np.empty(steps, np.float64)
    lr = np.asarray(lrs32, np.float32).astype(np.float64)
    t = iterations + 1 + np.arange(steps, dtype=np.float64)
    opt, row = h.optimizer, OPTIMIZERS[h.optimizer]
    b1, b2 = row.beta_1, row.beta_2
    if opt == "sgd":
        out[:, 0], out[:, 1] = lr, h.momentum
        out[:, 2], out[:, 3] = (h.momentum, 1.0) if h.nesterov else (1.0, 0.0)
    elif opt in ("adam", "adamw"):
        out[:, 0] = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        shrink = (
            1.0
            - (np.float32(h.weight_decay) * np.asarray(lrs32, np.float32))
            .astype(np.float32)
            .astype(np.float64)
            if h.weight_decay > 0
            else 1.0
        )
        out[:, 1] = shrink
    elif opt == "nadam":
        u = b1 * (1.0 - 0.5 * row.momentum_cache_decay**t)
        u_next = b1 * (1.0 - 0.5 * row.momentum_cache_decay ** (t + 1))
        p = u_product
        for k in range(steps):  # Keras keeps the running product as state: so do we
            p *= u[k]
            prods[k] = p
        out[:, 0] = lr
        out[:, 1] = u_next / (1.0 - prods * u_next)
        out[:, 2] = (1.0 - u) / (1.0 - prods)
        out[:, 3] = 1.0 / (1.0 - b2**t)
    elif opt == "rmsprop":
        out[:, 0], out[:, 1] = lr, h.momentum
    else:  # adagrad, adadelta
        out[:, 0] = lr
    if not row.product_state:
        prods[:] = u_product
    return out, prods
