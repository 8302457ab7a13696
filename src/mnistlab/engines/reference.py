"""The reference engine: torch autograd for every recipe, Keras' optimizer arithmetic by hand.

It is the plain path the fast engine is tested against, and the one that runs CNNs, batch norm
and CUDA. Speed still matters here (issue 4): the whole training array becomes one tensor once
(zero-copy on the CPU, one upload on a GPU), batches are index slices of the epoch's ``order``,
the optimizer updates all tensors with fused ``torch._foreach_*`` calls, losses accumulate on the
device (no per-step sync), and evaluation runs in batches of 8192.

The optimizers are written out rather than taken from ``torch.optim`` because Keras' formulas
differ (SGD momentum folds the learning rate into the velocity; Adam's epsilon sits outside the
bias correction); see ``mnistlab.engines`` for the exact formulas.

>>> from mnistlab.recipe import Recipe
>>> from mnistlab.initializers import init_weights
>>> import numpy as np
>>> r = Recipe(hidden=[16], batch_size=4)
>>> eng = ReferenceEngine(r, init_weights(r), device="cpu")
>>> x = np.zeros((8, 784), np.float32); y = np.arange(8) % 10
>>> loss, acc = eng.train_epoch(x, y, np.arange(8), np.full(2, 0.01), epoch=0)
>>> eng.predict_proba(x).shape
(8, 10)
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from mnistlab.engines import (ADAGRAD_INITIAL, ADAM_BETA1, ADAM_BETA2, EPSILON,  # noqa: F401
                              RMSPROP_RHO, SLOTS, optimizer_slots, select_device)
from mnistlab.recipe import Recipe

EVAL_BATCH = 8192
_DROPOUT_STREAM = 7_740_291  # keeps dropout's random stream apart from init and shuffling


def dropout_seed(seed: int, epoch: int) -> int:
    """The dropout generator's seed for one epoch: a function of (seed, epoch) only."""
    state = np.random.SeedSequence([seed, epoch, _DROPOUT_STREAM]).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])


class ReferenceEngine:
    """Torch autograd engine; see the module docstring and ``mnistlab.engines`` for the protocol."""

    name = "reference"

    def __init__(self, recipe: Recipe, weights: dict[str, np.ndarray], device: str | None = None):
        self.device = select_device(device)
        if self.device.startswith("cuda"):
            # cuBLAS needs this set before its first use to be deterministic.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        import torch

        from mnistlab import models

        self._torch = torch
        if recipe.threads is not None:
            torch.set_num_threads(recipe.threads)
        elif self.device == "cpu" and recipe.kind == "mlp":
            # Measured (issue 4): at batch-32 MLP shapes one thread is as fast as two, and it
            # does not collapse when another process wants the second core.
            torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        self.recipe = recipe = recipe.resolved()  # per-optimizer defaults filled in
        self.net = models.build_model(recipe, weights, self.device)
        self.params = models.trainable(self.net)
        self.iterations = 0
        slots, fill = optimizer_slots(recipe)
        self.slots = {s: {k: torch.full_like(p, fill).detach() for k, p in self.params.items()}
                      for s in slots}
        self._cache: dict[str, tuple[np.ndarray, object]] = {}

    # ---- data --------------------------------------------------------------------------
    def _tensor(self, key: str, a: np.ndarray):
        """``a`` as a device tensor, uploaded once per array (the epoch loop passes the same one)."""
        hit = self._cache.get(key)
        if hit is not None and hit[0] is a:
            return hit[1]
        t = self._torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
        self._cache[key] = (a, t)  # holding ``a`` keeps its identity valid
        return t

    # ---- training ----------------------------------------------------------------------
    def _loss(self, logits, y, reduction: str = "mean"):
        import torch.nn.functional as F

        return F.cross_entropy(logits, y, reduction=reduction,
                               label_smoothing=self.recipe.label_smoothing)

    def train_epoch(self, x: np.ndarray, y: np.ndarray, order: np.ndarray, lrs: np.ndarray,
                    epoch: int, on_progress: Callable[[int, float, float], None] | None = None
                    ) -> tuple[float, float]:
        torch = self._torch
        X, Y = self._tensor("x", x), self._tensor("y", np.asarray(y, dtype=np.int64))
        idx_all = torch.from_numpy(np.asarray(order, dtype=np.int64)).to(self.device)
        n, bs = len(order), self.recipe.batch_size
        steps = len(lrs)
        if steps != -(-n // bs):
            raise ValueError(f"{steps} learning rates for {-(-n // bs)} steps")
        gen = torch.Generator(device=self.device)
        gen.manual_seed(dropout_seed(self.recipe.seed, epoch))
        self.net.generator = gen
        self.net.train()
        l2 = self.recipe.l2
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        every = max(1, steps // 20)
        names = list(self.params)
        ws = [self.params[k] for k in names]
        for k in range(steps):
            idx = idx_all[k * bs:(k + 1) * bs]
            xb, yb = X.index_select(0, idx), Y.index_select(0, idx)
            logits = self.net(xb)
            loss = self._loss(logits, yb)
            if l2 > 0:
                loss = loss + l2 * self.net.l2_penalty()
            for w in ws:
                w.grad = None
            loss.backward()
            self._step([w.grad for w in ws], ws, names, float(np.float32(lrs[k])))
            with torch.no_grad():
                loss_sum += loss.detach().double() * len(idx)
                correct += (logits.argmax(1) == yb).sum()
            if on_progress is not None and ((k + 1) % every == 0 or k + 1 == steps):
                seen = min((k + 1) * bs, n)
                on_progress(k + 1, loss_sum.item() / seen, correct.item() / seen)
        self.net.generator = None
        return loss_sum.item() / n, correct.item() / n

    @staticmethod
    def _lerp_(a, b, w):
        """a += (b - a) * w, Keras' spelling of an exponential moving average."""
        import torch

        diff = torch._foreach_sub(b, a)
        torch._foreach_mul_(diff, w)
        torch._foreach_add_(a, diff)

    def _step(self, gs, ws, names, lr: float) -> None:
        """One Keras-exact optimizer update (formulas in ``mnistlab.engines``)."""
        torch, r = self._torch, self.recipe
        with torch.no_grad():
            self.iterations += 1
            t = self.iterations
            if r.optimizer == "sgd":
                vs = [self.slots["momentum"][k] for k in names]
                torch._foreach_mul_(vs, r.momentum)
                torch._foreach_add_(vs, gs, alpha=-lr)          # v = m*v - lr*g
                if r.nesterov:
                    upd = torch._foreach_mul(vs, r.momentum)
                    torch._foreach_add_(upd, gs, alpha=-lr)     # m*v - lr*g
                    torch._foreach_add_(ws, upd)
                else:
                    torch._foreach_add_(ws, vs)
            elif r.optimizer in ("adam", "adamw"):
                if r.optimizer == "adamw" and r.weight_decay > 0:
                    torch._foreach_mul_(ws, 1.0 - float(np.float32(r.weight_decay * lr)))
                ms = [self.slots["m"][k] for k in names]
                vs = [self.slots["v"][k] for k in names]
                self._lerp_(ms, gs, 1 - ADAM_BETA1)
                self._lerp_(vs, torch._foreach_mul(gs, gs), 1 - ADAM_BETA2)
                alpha = lr * np.sqrt(1 - ADAM_BETA2 ** t) / (1 - ADAM_BETA1 ** t)
                denom = torch._foreach_sqrt(vs)
                torch._foreach_add_(denom, EPSILON)
                torch._foreach_addcdiv_(ws, ms, denom, value=-float(alpha))
            elif r.optimizer == "rmsprop":
                vel = [self.slots["velocity"][k] for k in names]
                torch._foreach_mul_(vel, RMSPROP_RHO)
                torch._foreach_add_(vel, torch._foreach_mul(gs, gs), alpha=1 - RMSPROP_RHO)
                denom = torch._foreach_add(vel, EPSILON)
                torch._foreach_sqrt_(denom)
                inc = torch._foreach_div(torch._foreach_mul(gs, lr), denom)
                if "momentum" in self.slots:
                    mom = [self.slots["momentum"][k] for k in names]
                    torch._foreach_mul_(mom, r.momentum)
                    torch._foreach_add_(mom, inc)
                    torch._foreach_sub_(ws, mom)
                else:
                    torch._foreach_sub_(ws, inc)
            else:  # adagrad
                acc = [self.slots["accumulator"][k] for k in names]
                torch._foreach_add_(acc, torch._foreach_mul(gs, gs))
                denom = torch._foreach_add(acc, EPSILON)
                torch._foreach_sqrt_(denom)
                torch._foreach_addcdiv_(ws, gs, denom, value=-lr)

    # ---- inference ---------------------------------------------------------------------
    def _logits_batches(self, x: np.ndarray):
        torch = self._torch
        self.net.eval()
        with torch.no_grad():
            for s in range(0, len(x), EVAL_BATCH):
                xb = torch.from_numpy(np.ascontiguousarray(x[s:s + EVAL_BATCH], dtype=np.float32))
                yield s, self.net(xb.to(self.device))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Loss (cross-entropy + L2 penalty, as Keras' val_loss) and accuracy."""
        torch = self._torch
        y_t = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(self.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for s, logits in self._logits_batches(x):
            yb = y_t[s:s + len(logits)]
            loss_sum += self._loss(logits, yb, reduction="sum").double()
            correct += (logits.argmax(1) == yb).sum()
        n = len(x)
        loss = loss_sum.item() / n
        if self.recipe.l2 > 0:
            with torch.no_grad():
                loss += self.recipe.l2 * self.net.l2_penalty().item()
        return loss, correct.item() / n

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), self.net.dense[-1].out_features), np.float32)
        for s, logits in self._logits_batches(x):
            out[s:s + len(logits)] = self._torch.softmax(logits, 1).cpu().numpy()
        return out

    # ---- state -------------------------------------------------------------------------
    def weights(self) -> dict[str, np.ndarray]:
        from mnistlab.models import export_weights

        return export_weights(self.net)

    def state(self) -> dict[str, np.ndarray]:
        from mnistlab.models import _keras_layout

        out = self.weights()
        for slot, tensors in self.slots.items():
            for k, t in tensors.items():
                out[f"opt.{slot}.{k}"] = np.ascontiguousarray(_keras_layout(k, t.cpu().numpy()))
        out["opt.iterations"] = np.array(self.iterations, dtype=np.int64)
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        from mnistlab.errors import RunError
        from mnistlab.models import _torch_layout, load_weights

        torch = self._torch
        load_weights(self.net, {k: v for k, v in state.items() if not k.startswith("opt.")})
        for slot, tensors in self.slots.items():
            for k, t in tensors.items():
                key = f"opt.{slot}.{k}"
                if key not in state:
                    raise RunError(f"optimizer state {key!r} is missing (was the run trained "
                                   f"with another optimizer?)")
                value = np.ascontiguousarray(_torch_layout(k, state[key]), dtype=np.float32)
                if value.shape != tuple(t.shape):
                    raise RunError(f"optimizer state {key!r} has shape {state[key].shape}")
                t.copy_(torch.from_numpy(value))
        if "opt.iterations" not in state:
            raise RunError("optimizer state 'opt.iterations' is missing")
        self.iterations = int(state["opt.iterations"])
