"""The optimizers' arithmetic that every engine shares: Keras' constants, the state slots of
each optimizer, and the per-step scalars of an update, computed once in float64 so every engine
and back end applies the very same numbers."""

from __future__ import annotations

import dataclasses

import numpy as np

# ---- Keras' constants (Keras 3 defaults) ------------------------------------------------------
ADAM_BETA1, ADAM_BETA2, EPSILON = 0.9, 0.999, 1e-7  # adam, adamw, nadam; EPSILON for all
NADAM_DECAY = 0.96  # Nadam's momentum-cache schedule
RMSPROP_RHO, ADAGRAD_INITIAL, ADADELTA_RHO = 0.9, 0.1, 0.95
BN_MOMENTUM, BN_EPSILON = 0.99, 1e-3  # BatchNormalization
MAXNORM_EPSILON = 1e-7  # keras.constraints.MaxNorm (backend.epsilon)

# Optimizer-state slots, named as Keras names them; both engines keep the same names, so a run's
# state moves between engines.
SLOTS = {
    "sgd": ("momentum",),
    "adam": ("m", "v"),
    "adamw": ("m", "v"),
    "nadam": ("m", "v"),
    "rmsprop": ("velocity", "momentum"),
    "adagrad": ("accumulator",),
    "adadelta": ("accumulated_grad", "accumulated_delta_var"),
}
OPTIMIZER_CODES = {
    "sgd": 0,
    "adam": 1,
    "adamw": 1,
    "nadam": 2,
    "rmsprop": 3,
    "adagrad": 4,
    "adadelta": 5,
}
ACTIVATION_CODES = {"relu": 0, "tanh": 1, "sigmoid": 2, "gelu": 3}


@dataclasses.dataclass(frozen=True)
class Hyper:
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
    def of(cls, recipe) -> Hyper:
        r = recipe.resolved()
        return cls(
            optimizer=r.optimizer,
            activation=r.activation,
            l2=float(r.l2),
            label_smoothing=float(r.label_smoothing),
            momentum=float(r.momentum),
            nesterov=bool(r.nesterov),
            weight_decay=float(r.weight_decay) if r.optimizer == "adamw" else 0.0,
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
    recipe = recipe.resolved()
    names = [
        s
        for s in SLOTS[recipe.optimizer]  # rmsprop keeps momentum only when > 0
        if not (recipe.optimizer == "rmsprop" and s == "momentum" and recipe.momentum == 0)
    ]
    return names, (ADAGRAD_INITIAL if recipe.optimizer == "adagrad" else 0.0)


def slots_of(h: Hyper) -> list[str]:
    return [
        s
        for s in SLOTS[h.optimizer]
        if not (h.optimizer == "rmsprop" and s == "momentum" and h.momentum == 0)
    ]


# ---- per-step optimizer scalars -----------------------------------------------------------------
N_SCALARS = 4


def step_scalars(
    h: Hyper, lrs32: np.ndarray, iterations: int, u_product: float
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
    opt = h.optimizer
    if opt == "sgd":
        out[:, 0], out[:, 1] = lr, h.momentum
        out[:, 2], out[:, 3] = (h.momentum, 1.0) if h.nesterov else (1.0, 0.0)
    elif opt in ("adam", "adamw"):
        out[:, 0] = lr * np.sqrt(1 - ADAM_BETA2**t) / (1 - ADAM_BETA1**t)
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
        u = ADAM_BETA1 * (1.0 - 0.5 * NADAM_DECAY**t)
        u_next = ADAM_BETA1 * (1.0 - 0.5 * NADAM_DECAY ** (t + 1))
        p = u_product
        for k in range(steps):  # Keras keeps the running product as state: so do we
            p *= u[k]
            prods[k] = p
        out[:, 0] = lr
        out[:, 1] = u_next / (1.0 - prods * u_next)
        out[:, 2] = (1.0 - u) / (1.0 - prods)
        out[:, 3] = 1.0 / (1.0 - ADAM_BETA2**t)
    elif opt == "rmsprop":
        out[:, 0], out[:, 1] = lr, h.momentum
    else:  # adagrad, adadelta
        out[:, 0] = lr
    if opt != "nadam":
        prods[:] = u_product
    return out, prods
