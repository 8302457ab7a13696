"""The reference engine: torch autograd for every recipe, Keras' optimizer arithmetic by hand.

It is the plain path the fast engine is tested against, and the one that runs on CUDA (and
CNNs where numba is missing). Speed still matters here: the whole training array
becomes one tensor once (zero-copy on the CPU, one upload on a GPU), batches are index slices of
the epoch's ``order``, the optimizer updates all tensors with fused ``torch._foreach_*`` calls,
losses accumulate on the device (no per-step sync), and evaluation runs in batches of 8192.

The optimizers are written out rather than taken from ``torch.optim`` because Keras' formulas
differ (SGD momentum folds the learning rate into the velocity; Adam's epsilon sits outside the
bias correction); ``engines/spec.py`` has the exact formulas, and the per-step scalars come from
``optim.step_scalars`` as in the fast engine. Dropout takes the fast engine's very masks
(``masks.dropout_keys``/``keep_mask``), so both engines stay equal with dropout on.

On the CPU, training, evaluation and prediction run with subnormals flushed to zero on the
calling thread (``engines/fpmode``, restored after; ``self.subnormals`` records what was
covered: torch's other intra-op threads keep their own mode).

>>> from mnistlab.recipe import Recipe
>>> from mnistlab.engines.init import init_weights
>>> import numpy as np
>>> r = Recipe(hidden=[16], batch_size=4)
>>> eng = ReferenceEngine(r, init_weights(r), device="cpu")
>>> x = np.zeros((8, 784), np.float32); y = np.arange(8) % 10
>>> loss, acc = eng.train_epoch(x, y, np.arange(8), np.full(2, 0.01), epoch=0)
>>> eng.predict_proba(x).shape
(8, 10)
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable

import numpy as np

from mnistlab.engines import fpmode
from mnistlab.engines.device import select_device
from mnistlab.engines.masks import dropout_keys, keep_mask
from mnistlab.engines.optim import MAXNORM_EPSILON, Hyperparameters, optimizer_slots, step_scalars
from mnistlab.recipe import Recipe
from mnistlab.recipe.optimizers import OPTIMIZERS

EVAL_BATCH = 8192
# A conv net's activations at 8,192 images overflow the caches: evaluating 10,000 images took
# 1.0-1.9 s in chunks of 10,000 against 0.2-0.5 s in chunks of 512 (fast-cnn, best-cnn, 2 cores).
CONV_EVAL_BATCH = 512


def _flushing(method):
    """``method`` run with subnormals flushed on the calling thread, restored after."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._subnormal_mode():
            return method(self, *args, **kwargs)

    return run


class ReferenceEngine:
    """Torch autograd engine; see the module docstring and ``engines.protocol.Engine``."""

    name = "reference"
    backend = "torch"
    reason = ""

    def __init__(self, recipe: Recipe, weights: dict[str, np.ndarray], device: str | None = None):
        self.device = select_device(device)
        if self.device.startswith("cuda"):
            # cuBLAS needs this set before its first use to be deterministic.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        import torch

        from mnistlab.engines import torch_net as models

        self._torch = torch
        if recipe.threads is not None:
            torch.set_num_threads(recipe.threads)
        elif self.device == "cpu" and recipe.kind == "mlp":
            # At batch-32 MLP shapes one thread is as fast as two (bench/README.md), and it
            # does not collapse when another process wants the second core.
            torch.set_num_threads(1)
        self.threads = torch.get_num_threads()
        self._torch_flush = False  # torch's switch, where fpmode has no way to the register
        if not self.device.startswith("cpu"):
            self.subnormals = f"not set: the arithmetic runs on {self.device}"
        elif fpmode.control() is None and torch.set_flush_denormal(True):  # x86 only
            torch.set_flush_denormal(False)
            self._torch_flush = True
            self.subnormals = fpmode.status(self.threads, "torch", "FTZ+DAZ by torch")
        else:
            self.subnormals = fpmode.status(self.threads, "torch")
        if self.device.startswith("cuda"):
            # CUDA has non-deterministic kernels (atomic adds); the CPU kernels this engine uses
            # are deterministic already. On the CPU the flag would only cost: setting it imports
            # torch._inductor (1.5-1.9 s of start-up here) and fills every new tensor with NaN.
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        self.recipe = recipe = recipe.resolved()  # per-optimizer defaults filled in
        self.hyper = Hyperparameters.of(recipe)
        self.net = models.build_model(recipe, weights, self.device)
        self.params = models.trainable(self.net)
        self.iterations = 0
        self.u_product = 1.0  # nadam's running product (Keras state)
        slots, fill = optimizer_slots(recipe)
        self.slots = {
            s: {k: torch.full_like(p, fill).detach() for k, p in self.params.items()} for s in slots
        }
        self._cache: dict[str, tuple[np.ndarray, object]] = {}

    # ---- data --------------------------------------------------------------------------
    def _tensor(self, key: str, a: np.ndarray):
        """``a`` as a device tensor, uploaded once per array (the epoch loop passes the
        same one)."""
        hit = self._cache.get(key)
        if hit is not None and hit[0] is a:
            return hit[1]
        t = self._torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
        self._cache[key] = (a, t)  # holding ``a`` keeps its identity valid
        return t

    # ---- training ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _subnormal_mode(self):
        """Subnormals flushed on the calling thread inside the block (see __init__)."""
        if not self.device.startswith("cpu"):
            yield
        elif self._torch_flush:  # no way to read the mode: off before, off after
            self._torch.set_flush_denormal(True)
            try:
                yield
            finally:
                self._torch.set_flush_denormal(False)
        else:
            with fpmode.flushing():
                yield

    def _loss(self, logits, y, reduction: str = "mean"):
        import torch.nn.functional as F

        return F.cross_entropy(
            logits, y, reduction=reduction, label_smoothing=self.recipe.label_smoothing
        )

    @_flushing
    def train_epoch(
        self,
        x: np.ndarray,
        y: np.ndarray,
        order: np.ndarray,
        lrs: np.ndarray,
        epoch: int,
        on_progress: Callable[[int, float, float], None] | None = None,
    ) -> tuple[float, float]:
        torch = self._torch
        X, Y = self._tensor("x", x), self._tensor("y", np.asarray(y, dtype=np.int64))
        idx_all = torch.from_numpy(np.asarray(order, dtype=np.int64)).to(self.device)
        n, bs = len(order), self.recipe.batch_size
        steps = len(lrs)
        if steps != -(-n // bs):
            raise ValueError(f"{steps} learning rates for {-(-n // bs)} steps")
        h = self.hyper
        scalars, prods = step_scalars(
            h, np.asarray(lrs, np.float32), self.iterations, self.u_product
        )
        n_hidden = len(self.recipe.hidden)
        keys = dropout_keys(h.seed, epoch, steps, n_hidden) if h.dropout > 0 else None
        scale = np.float32(1.0 / (1.0 - h.dropout)) if h.dropout > 0 else None
        self.net.train()
        l2 = self.recipe.l2
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        every = max(1, steps // 20)
        names = list(self.params)
        ws = [self.params[k] for k in names]
        zero_bias = list(self.net.dense)[: len(self.net.bns)]
        for k in range(steps):
            idx = idx_all[k * bs : (k + 1) * bs]
            xb, yb = X.index_select(0, idx), Y.index_select(0, idx)
            if keys is not None:  # the fast engine's masks, bit for bit
                self.net.masks = [
                    torch.from_numpy(keep_mask(keys[k, j], len(idx), width, h.dropout) * scale).to(
                        self.device
                    )
                    for j, width in enumerate(self.recipe.hidden)
                ]
            logits = self.net(xb)
            loss = self._loss(logits, yb)
            if l2 > 0:
                loss = loss + l2 * self.net.l2_penalty()
            for w in ws:
                w.grad = None
            loss.backward()
            for layer in zero_bias:  # exactly 0 under batch norm, as spec.py has it
                layer.bias.grad.zero_()
            self._step([w.grad for w in ws], ws, names, scalars[k])
            self.u_product = float(prods[k])
            with torch.no_grad():
                loss_sum += loss.detach().double() * len(idx)
                correct += (logits.argmax(1) == yb).sum()
            if on_progress is not None and ((k + 1) % every == 0 or k + 1 == steps):
                seen = min((k + 1) * bs, n)
                on_progress(k + 1, loss_sum.item() / seen, correct.item() / seen)
        self.net.masks = []
        return loss_sum.item() / n, correct.item() / n

    @staticmethod
    def _lerp_(a, b, w):
        """a += (b - a) * w, Keras' spelling of an exponential moving average."""
        import torch

        diff = torch._foreach_sub(b, a)
        torch._foreach_mul_(diff, w)
        torch._foreach_add_(a, diff)

    def _step(self, gs, ws, names, sc) -> None:
        """One Keras-exact optimizer update (``spec.update``); ``sc``: a ``step_scalars`` row."""
        torch, r = self._torch, self.recipe
        opt, row = r.optimizer, OPTIMIZERS[r.optimizer]
        eps, rho = row.epsilon, row.rho
        c0, c1, c2, c3 = (float(c) for c in sc)
        slot = {s: [self.slots[s][k] for k in names] for s in self.slots}
        with torch.no_grad():
            self.iterations += 1
            if opt == "sgd":
                vs = slot["momentum"]
                torch._foreach_mul_(vs, c1)
                torch._foreach_add_(vs, gs, alpha=-c0)  # v = m*v - lr*g
                upd = torch._foreach_mul(vs, c2)
                torch._foreach_add_(upd, gs, alpha=-c0 * c3)  # a*v - c*lr*g
                torch._foreach_add_(ws, upd)
            elif opt in ("adam", "adamw", "nadam"):
                if opt == "adamw" and c1 != 1.0:
                    torch._foreach_mul_(ws, c1)
                ms, vs = slot["m"], slot["v"]
                self._lerp_(ms, gs, 1 - row.beta_1)
                self._lerp_(vs, torch._foreach_mul(gs, gs), 1 - row.beta_2)
                if opt == "nadam":  # m_hat = c1*m + c2*g, v_hat = c3*v
                    num = torch._foreach_mul(ms, c1)
                    torch._foreach_add_(num, gs, alpha=c2)
                    denom = torch._foreach_mul(vs, c3)
                    torch._foreach_sqrt_(denom)
                else:
                    num, denom = ms, torch._foreach_sqrt(vs)
                torch._foreach_add_(denom, eps)
                torch._foreach_addcdiv_(ws, num, denom, value=-c0)
            elif opt == "rmsprop":
                vel = slot["velocity"]
                torch._foreach_mul_(vel, rho)
                torch._foreach_add_(vel, torch._foreach_mul(gs, gs), alpha=1 - rho)
                denom = torch._foreach_add(vel, eps)
                torch._foreach_sqrt_(denom)
                inc = torch._foreach_div(torch._foreach_mul(gs, c0), denom)
                if "momentum" in slot:
                    mom = slot["momentum"]
                    torch._foreach_mul_(mom, c1)
                    torch._foreach_add_(mom, inc)
                    torch._foreach_sub_(ws, mom)
                else:
                    torch._foreach_sub_(ws, inc)
            elif opt == "adagrad":
                acc = slot["accumulator"]
                torch._foreach_add_(acc, torch._foreach_mul(gs, gs))
                denom = torch._foreach_add(acc, eps)
                torch._foreach_sqrt_(denom)
                torch._foreach_addcdiv_(ws, gs, denom, value=-c0)
            else:  # adadelta
                acc_g, acc_d = slot["accumulated_grad"], slot["accumulated_delta_var"]
                torch._foreach_mul_(acc_g, rho)
                torch._foreach_add_(acc_g, torch._foreach_mul(gs, gs), alpha=1 - rho)
                rms_d = torch._foreach_add(acc_d, eps)
                torch._foreach_sqrt_(rms_d)
                rms_g = torch._foreach_add(acc_g, eps)
                torch._foreach_sqrt_(rms_g)
                delta = torch._foreach_mul(gs, rms_d)
                torch._foreach_div_(delta, rms_g)  # -delta of spec.update
                torch._foreach_mul_(acc_d, rho)
                torch._foreach_add_(acc_d, torch._foreach_mul(delta, delta), alpha=1 - rho)
                torch._foreach_add_(ws, delta, alpha=-c0)
            if r.max_norm > 0:  # Keras MaxNorm(axis=0) on Dense kernels: torch's dim 1
                for layer in self.net.dense:
                    w = layer.weight
                    norms = w.square().sum(1, keepdim=True).sqrt()
                    w.mul_(norms.clamp(max=r.max_norm) / (MAXNORM_EPSILON + norms))

    # ---- inference ---------------------------------------------------------------------
    def _logits_batches(self, x: np.ndarray):
        torch = self._torch
        self.net.eval()
        with torch.no_grad():
            size = CONV_EVAL_BATCH if self.net.convs else EVAL_BATCH
            for s in range(0, len(x), size):
                xb = torch.from_numpy(np.ascontiguousarray(x[s : s + size], dtype=np.float32))
                yield s, self.net(xb.to(self.device))

    @_flushing
    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Loss (cross-entropy + L2 penalty, as Keras' val_loss) and accuracy."""
        torch = self._torch
        y_t = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(self.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for s, logits in self._logits_batches(x):
            yb = y_t[s : s + len(logits)]
            loss_sum += self._loss(logits, yb, reduction="sum").double()
            correct += (logits.argmax(1) == yb).sum()
        n = len(x)
        loss = loss_sum.item() / n
        if self.recipe.l2 > 0:
            with torch.no_grad():
                loss += self.recipe.l2 * self.net.l2_penalty().item()
        return loss, correct.item() / n

    @_flushing
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), self.net.dense[-1].out_features), np.float32)
        for s, logits in self._logits_batches(x):
            out[s : s + len(logits)] = self._torch.softmax(logits, 1).cpu().numpy()
        return out

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        """The logits (N, n_classes) float32 that ``predict_proba`` takes the softmax of."""
        out = np.empty((len(x), self.net.dense[-1].out_features), np.float32)
        for s, logits in self._logits_batches(x):
            out[s : s + len(logits)] = logits.cpu().numpy()
        return out

    # ---- state -------------------------------------------------------------------------
    def weights(self) -> dict[str, np.ndarray]:
        from mnistlab.engines.torch_net import export_weights

        return export_weights(self.net)

    def state(self) -> dict[str, np.ndarray]:
        from mnistlab.engines.torch_net import _keras_layout

        out = self.weights()
        for slot, tensors in self.slots.items():
            for k, t in tensors.items():
                out[f"opt.{slot}.{k}"] = np.ascontiguousarray(_keras_layout(k, t.cpu().numpy()))
        out["opt.iterations"] = np.array(self.iterations, dtype=np.int64)
        if OPTIMIZERS[self.recipe.optimizer].product_state:
            out["opt.u_product"] = np.array(self.u_product, dtype=np.float64)
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        from mnistlab.engines.torch_net import _torch_layout, load_weights
        from mnistlab.errors import RunError

        torch = self._torch
        load_weights(self.net, {k: v for k, v in state.items() if not k.startswith("opt.")})
        for slot, tensors in self.slots.items():
            for k, t in tensors.items():
                key = f"opt.{slot}.{k}"
                if key not in state:
                    raise RunError(
                        f"optimizer state {key!r} is missing (was the run trained "
                        f"with another optimizer?)"
                    )
                value = np.ascontiguousarray(_torch_layout(k, state[key]), dtype=np.float32)
                if value.shape != tuple(t.shape):
                    raise RunError(f"optimizer state {key!r} has shape {state[key].shape}")
                t.copy_(torch.from_numpy(value))
        product = OPTIMIZERS[self.recipe.optimizer].product_state
        for key in ("opt.iterations",) + (("opt.u_product",) if product else ()):
            if key not in state:
                raise RunError(f"optimizer state {key!r} is missing")
        self.iterations = int(state["opt.iterations"])
        self.u_product = float(state["opt.u_product"]) if product else 1.0
