"""Every optimizer and hidden activation a recipe can name: one row each, read by every layer.

The recipe takes the names and the per-optimizer values of its unset fields from here; the
engines take the Keras class, the state slots (named as Keras names them, so a run's state moves
between engines), Keras' constants and the compiled kernels' branch code; the health check takes
a learning rate the optimizer trains at. The constants are Keras 3's defaults, so a run computes
what Keras computes. What stays in each engine is the arithmetic of the update itself
(``engines/spec.py`` writes it out once in plain float64: the oracle of the others).

>>> OPTIMIZERS["adamw"].weight_decay, OPTIMIZERS["rmsprop"].slots, ACTIVATIONS["gelu"].code
(0.004, ('velocity',), 3)
>>> slot_names("rmsprop", momentum=0.5), slot_names("rmsprop", momentum=0.0)
(('velocity', 'momentum'), ('velocity',))
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Optimizer:
    """One optimizer: what every layer of mnistlab needs to know of it, as data."""

    name: str
    keras: str  # the Keras class it reproduces
    code: int  # branch of the compiled update (adam and adamw share one: decay is a scalar)
    slots: tuple[str, ...]  # state slots, each the shape of the weights, as Keras names them
    momentum_slots: tuple[str, ...] = ()  # slots kept only when momentum > 0
    slot_init: float = 0.0  # initial value of every slot (Keras' initial_accumulator_value)
    reads: tuple[str, ...] = ()  # recipe fields the update reads besides the learning rate
    # values of the recipe's per-optimizer fields when they are left unset
    momentum: float = 0.0
    weight_decay: float = 0.0
    # Keras' constants (0 where the optimizer has none)
    beta_1: float = 0.0
    beta_2: float = 0.0
    rho: float = 0.0
    epsilon: float = 0.0
    momentum_cache_decay: float = 0.0  # Nadam: u_t = beta_1 * (1 - 0.5 * decay**t)
    product_state: bool = False  # keeps the running product of u_t as state (Nadam)
    working_lr: float = 0.001  # Keras' default rate: the top of the range it trains MNIST at


_ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}

OPTIMIZERS: dict[str, Optimizer] = {
    o.name: o
    for o in (
        # sgd keeps the notebook's momentum 0.9 (Keras' own default is 0)
        Optimizer("sgd", keras="SGD", code=0, slots=("momentum",),
                  reads=("momentum", "nesterov"), momentum=0.9, working_lr=0.01),
        Optimizer("adam", keras="Adam", code=1, slots=("m", "v"), **_ADAM),
        # Keras' AdamW decays by 0.004 (0 would make it plain adam)
        Optimizer("adamw", keras="AdamW", code=1, slots=("m", "v"),
                  reads=("weight_decay",), weight_decay=0.004, **_ADAM),
        Optimizer("nadam", keras="Nadam", code=2, slots=("m", "v"),
                  momentum_cache_decay=0.96, product_state=True, **_ADAM),
        # Keras' RMSprop has no momentum (0.9 on top of its own scaling diverges at lr 0.01)
        Optimizer("rmsprop", keras="RMSprop", code=3, slots=("velocity",),
                  momentum_slots=("momentum",), reads=("momentum",), rho=0.9, epsilon=1e-7),
        Optimizer("adagrad", keras="Adagrad", code=4, slots=("accumulator",),
                  slot_init=0.1, epsilon=1e-7),
        Optimizer("adadelta", keras="Adadelta", code=5,
                  slots=("accumulated_grad", "accumulated_delta_var"), rho=0.95, epsilon=1e-7),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Activation:
    """One hidden activation (Keras' name) and its branch code in the compiled kernels."""

    name: str
    code: int


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (Activation("relu", code=0), Activation("tanh", code=1),
              Activation("sigmoid", code=2), Activation("gelu", code=3))
}  # fmt: skip


def slot_names(optimizer: str, momentum: float) -> tuple[str, ...]:
    """The state slots an optimizer keeps at this momentum."""
    row = OPTIMIZERS[optimizer]
    return row.slots + (row.momentum_slots if momentum > 0 else ())
