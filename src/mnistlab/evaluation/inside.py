"""Look inside a trained run: what its layers compute for one digit, which pixels pushed its
answer, what its first layer looks for, and how it arranges the test digits.

Everything is float64 NumPy on the run's own weights, so it works for a run of any engine: the
layers are walked by ``engines/arch.network`` and computed with ``engines/spec``'s maths (its
activations and their derivatives, its conv blocks), in inference mode (batch norm's moving
statistics, no dropout), as the engines predict. Inputs are the model's: images standardized
as the run's training was, (N, 784).

* :class:`Model`: ``trace`` keeps every hidden layer's values, ``backward`` takes a gradient of
  the logits back to the input pixels.
* :func:`integrated_gradients`: how much each pixel moved one logit, from a black image (no ink;
  in the model's input space, the standardized zero) to the digit. Where the network is
  piecewise linear (relu MLPs, with or without batch norm), the path is cut at every place a
  relu switches, and the integral is exact; elsewhere (other activations, conv nets) it is the
  trapezoid rule on a path refined where it disagrees with the model's own logit change. The
  attributions add up to the logit change (completeness); ``gap`` says by how much they miss.
* :func:`look`: each hidden layer's activations for a digit, and how much each unit of the last
  hidden layer pushes each class (activation x weight into the logit).
* :func:`first_layer`: the first layer's units as 28x28 templates (a CNN: its first filters),
  ordered by how much the network uses them.
* :func:`embedding`: the last hidden layer of many digits in 2-D (PCA; UMAP with the extra).

>>> from mnistlab.recipe import Recipe
>>> from mnistlab.engines.init import init_weights
>>> r = Recipe(hidden=[16, 8])
>>> m = Model(r, init_weights(r), mean=33.0, std=78.0, class_names=tuple("0123456789"))
>>> digit = np.zeros((28, 28), np.uint8); digit[6:22, 13:16] = 255
>>> a = integrated_gradients(m, digit[None])[0]
>>> a.values.shape, a.exact, abs(a.gap) < 1e-9     # the attributions add up to the change
((28, 28), True, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from mnistlab.engines import spec
from mnistlab.engines.arch import Network, network
from mnistlab.engines.optim import Hyperparameters
from mnistlab.errors import MnistlabError
from mnistlab.recipe import Recipe

STEPS = 64  # first cut of the path from the baseline to the digit, in equal steps
MIN_STEPS = 16  # the coarsest first cut a budget may force
EVALUATIONS = 2048  # at most this many gradients per path; then the gap is what it is
TOLERANCE = 1e-4  # a path is refined until its intervals miss the logit change by less in all
CHUNK = 256  # points per forward/backward: bounds the conv blocks' window arrays
EMBED = 2000  # test digits in the embedding
# A conv layer's multiply-add costs ~4 of a Dense layer's here (im2col copies in float64 NumPy:
# ~0.7 against ~3.5 G multiply-adds/s measured on one core for a small CNN and the notebook MLP)
CONV_COST = 4


# ---- the network, forward and back -------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Trace:
    """One forward pass: ``logits`` (N, C); ``hidden``: each hidden layer's output by name, a
    conv block's (N, h, w, c) after its relu, a Dense layer's (N, width) after its activation;
    ``last``: the input of the last Dense layer (the last hidden layer, or the features)."""

    logits: np.ndarray
    hidden: dict[str, np.ndarray]
    last: np.ndarray
    convs: list[dict[str, Any]]
    dense: list[dict[str, np.ndarray]]


class Model:
    """A run's network as float64 arrays, in inference mode."""

    def __init__(self, recipe: Recipe, weights, mean: float, std: float, class_names):
        self.recipe = recipe
        self.class_names = tuple(class_names)
        self.net: Network = network(recipe, len(self.class_names))
        self.p = {k: np.asarray(v, np.float64) for k, v in weights.items()}
        self.mean, self.std = float(mean), float(std)
        self.hyper = Hyperparameters.of(recipe)
        missing = sorted(set(self.net.shapes) - set(self.p))
        if missing:
            raise MnistlabError(f"weights do not fit the recipe's network: missing {missing}")

    @classmethod
    def of(cls, run) -> Model:
        """The network of a loaded ``rundir.Run``."""
        return cls(run.recipe, run.weights, run.mean, run.std, run.class_names)

    @property
    def piecewise_linear(self) -> bool:
        """relu everywhere (conv blocks are relu too): the logits are linear between switches."""
        return self.hyper.activation == "relu"

    @property
    def switch_units(self) -> int | None:
        """How many relus a piecewise-linear MLP has (where its logits can bend), None when
        they are not followed: other activations bend everywhere, a conv net's switches are
        too many to follow."""
        if not self.piecewise_linear or self.net.of("conv"):
            return None
        return sum(layer.width for layer in self.net.of("dense")[:-1])

    @property
    def cost(self) -> int:
        """What one gradient (a forward and a backward pass of one input) costs, in a Dense
        layer's multiply-adds: a conv layer's count ``CONV_COST`` times, as NumPy runs them."""
        total = 0
        for layer in self.net.layers:
            if layer.kind == "conv":
                k, _, c_in, c_out = layer.weights[0].shape
                total += CONV_COST * layer.shape[0] * layer.shape[1] * k * k * c_in * c_out
            elif layer.kind == "dense":
                total += layer.weights[0].size
        return total

    def budget(self, cost: float, paths: int = 1) -> tuple[int, int]:
        """(steps, max_evaluations) for ``paths`` attributions that may cost ``cost`` in all
        (in ``cost``'s units): the most evaluations that fit, at least a first cut of
        ``MIN_STEPS``, at most ``EVALUATIONS``."""
        fits = int(cost / (max(paths, 1) * self.cost))
        evaluations = max(MIN_STEPS + 1, min(EVALUATIONS, fits))
        return min(STEPS, evaluations - 1), evaluations

    @property
    def baseline(self) -> np.ndarray:
        """The black image (no ink) in the model's input space: (0 - mean) / std per pixel."""
        return np.full(self.net.n_inputs, (0.0 - self.mean) / self.std)

    def inputs(self, images) -> np.ndarray:
        """Images (N, 28, 28) in grey levels 0..255 -> the model's inputs (N, 784) float64."""
        x = np.asarray(images, np.float64)
        return (x.reshape(len(x), -1) - self.mean) / self.std

    def trace(self, x: np.ndarray) -> Trace:
        """Every hidden layer of the inputs ``x`` (N, 784)."""
        convs: list[dict[str, Any]] = []
        features = spec.conv_features(self.p, np.asarray(x, np.float64), convs)
        logits, dense, _ = spec.dense_forward(self.p, features, self.hyper, training=False)
        hidden = {f"relu_{j}": c["out"] for j, c in enumerate(convs)}
        hidden |= {f"activation_{i}": c["a"] for i, c in enumerate(dense)}
        last = dense[-1]["a"] if dense else features
        return Trace(logits, hidden, last, convs, dense)

    def backward(self, t: Trace, dlogits: np.ndarray) -> np.ndarray:
        """The gradient with respect to the inputs (N, 784) of ``sum(dlogits * logits)``."""
        d = np.asarray(dlogits, np.float64)
        for i in range(len(t.dense), 0, -1):
            d = d @ self.p[f"dense_{i}.kernel"].T
            c = t.dense[i - 1]
            d = d * spec.ACT_GRAD[self.hyper.activation](c["z"], c["a"])
            if self.hyper.batch_norm:
                d = d * self.p[f"bn_{i - 1}.gamma"] * c["inv"]
        d = d @ self.p["dense_0.kernel"].T
        for j in range(len(t.convs) - 1, -1, -1):
            c, kernel = t.convs[j], self.p[f"conv_{j}.kernel"]
            k, _, c_in, c_out = kernel.shape
            dz = spec.unpool(d.reshape(c["out"].shape) * (c["out"] > 0), c["arg"], c["side"])
            d = spec.col2im(dz @ kernel.reshape(-1, c_out).T, k, c_in)
        return d.reshape(len(d), -1)

    def loss_gradients(self, x: np.ndarray, labels) -> np.ndarray:
        """The gradient of each input's cross-entropy loss against its label (N, 784)."""
        labels = np.asarray(labels)
        out = []
        for s in range(0, len(x), CHUNK):
            t = self.trace(x[s : s + CHUNK])
            e = np.exp(t.logits - t.logits.max(axis=1, keepdims=True))
            d = e / e.sum(axis=1, keepdims=True)
            d[np.arange(len(d)), labels[s : s + CHUNK]] -= 1.0
            out.append(self.backward(t, d))
        return np.concatenate(out) if out else np.zeros((0, self.net.n_inputs))

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [self.trace(x[s : s + CHUNK]).logits for s in range(0, len(x), CHUNK)]
        )

    def gradients(self, x: np.ndarray, targets: np.ndarray):
        """(target logit (N,), its input gradient (N, 784), relu pre-activations (N, units) or
        None) of the inputs ``x``, in chunks; the pre-activations are where a piecewise-linear
        MLP switches (a conv net's switches are too many to follow: None)."""
        targets = np.asarray(targets)
        out = []
        for s in range(0, len(x), CHUNK):
            t = self.trace(x[s : s + CHUNK])
            rows = np.arange(len(t.logits))
            onehot = np.zeros_like(t.logits)
            onehot[rows, targets[s : s + CHUNK]] = 1.0
            kinks = (
                None
                if self.switch_units is None
                else np.concatenate([c["z"] for c in t.dense] + [np.zeros((len(rows), 0))], 1)
            )
            out.append((t.logits[rows, targets[s : s + CHUNK]], self.backward(t, onehot), kinks))
        kinks = None if out[0][2] is None else np.concatenate([o[2] for o in out])
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out]), kinks


# ---- attribution -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Attribution:
    """Integrated gradients of one image for the class ``target``.

    ``values`` (28, 28): each pixel's share of the target logit's change from the baseline (in
    logits; positive pixels pushed the class up). ``saliency`` (28, 28): the plain gradient of
    the target logit at the image. ``gap``: ``values.sum() - (logit - baseline_logit)``, 0 for
    an exact integral. ``exact``: the network is piecewise linear and the path was cut at each
    of its switches, so ``values`` are the integral itself, not an approximation of it.
    """

    target: int
    values: np.ndarray
    saliency: np.ndarray
    logit: float
    baseline_logit: float
    gap: float
    evaluations: int
    exact: bool


class _Path:
    """The points evaluated on the straight path baseline + alpha * v, alpha 0..1: kept in the
    order they came (buffers of ``capacity`` rows), read in the order of alpha."""

    def __init__(self, v: np.ndarray, target: int, capacity: int, units: int | None):
        self.v, self.target, self.n = v, target, 0
        self.alpha, self.f, self.slope = np.zeros(capacity), np.zeros(capacity), np.zeros(capacity)
        self.g = np.zeros((capacity, len(v)))  # the target logit's input gradient at each point
        self.z = None if units is None else np.zeros((capacity, units))  # relu pre-activations
        self.order = np.zeros(0, np.int64)

    def add(self, alpha, f, g, z) -> None:
        part = slice(self.n, self.n + len(alpha))
        self.alpha[part], self.f[part], self.g[part] = alpha, f, g
        self.slope[part] = g @ self.v  # d(target logit) / d(alpha) at each point
        if self.z is not None:
            self.z[part] = z
        self.n += len(alpha)
        self.order = np.argsort(self.alpha[: self.n], kind="stable")

    def rule(self):
        """Per interval (in alpha's order): the weights of its two ends' gradients, its error
        against the logit change, and how many relus switch inside it (None when not followed).

        No switch: the gradient is constant inside, both ends weigh half (exact when linear,
        the trapezoid rule otherwise). One switch of unit u: its pre-activation is linear
        inside, so it crosses 0 at s = z_a / (z_a - z_b) of the interval; the left gradient
        holds up to there, the right one after: exact."""
        o = self.order
        length = np.diff(self.alpha[o])
        left, right, switches = length / 2, length / 2, None
        if self.z is not None:
            z = self.z[o]
            flips = (z[1:] > 0) != (z[:-1] > 0)
            switches = flips.sum(axis=1)
            one = np.flatnonzero(switches == 1)
            unit = flips[one].argmax(axis=1)
            za, zb = z[one, unit], z[one + 1, unit]
            s = za / (za - zb)
            left[one], right[one] = length[one] * s, length[one] * (1 - s)
        slope = self.slope[o]
        error = left * slope[:-1] + right * slope[1:] - np.diff(self.f[o])
        return left, right, error, switches

    def to_split(self, budget: int, tolerance: float) -> np.ndarray:
        """Midpoints of the intervals to cut next: those with more than one switch or an error
        above their share of ``tolerance``, the worst first, at most ``budget``."""
        _, _, error, switches = self.rule()
        a = self.alpha[self.order]
        bad = np.abs(error) > tolerance / len(error)
        if switches is not None:
            bad |= switches > 1
        bad &= np.diff(a) > 1e-12
        worst = np.flatnonzero(bad)[np.argsort(-np.abs(error[bad]), kind="stable")][:budget]
        return (a[worst] + a[worst + 1]) / 2

    def result(self) -> Attribution:
        left, right, error, switches = self.rule()
        o = self.order
        integral = left @ self.g[o[:-1]] + right @ self.g[o[1:]]
        values = integral * self.v
        f = self.f[o]
        change = float(f[-1] - f[0])
        side = int(np.sqrt(len(self.v)))
        exact = switches is not None and int(switches.max(initial=0)) <= 1
        return Attribution(
            target=self.target,
            values=values.reshape(side, side),
            saliency=self.g[o[-1]].reshape(side, side),
            logit=float(f[-1]),
            baseline_logit=float(f[0]),
            gap=float(values.sum() - change),
            evaluations=self.n,
            exact=exact and float(np.abs(error).max(initial=0)) <= 1e-9 * max(1.0, abs(change)),
        )


def integrated_gradients(
    model: Model,
    images,
    targets: Sequence[int] | np.ndarray | None = None,
    steps: int = STEPS,
    max_evaluations: int = EVALUATIONS,
    tolerance: float = TOLERANCE,
) -> list[Attribution]:
    """Integrated gradients (Sundararajan et al. 2017) of each image (N, 28, 28) in grey levels,
    for ``targets`` (default: the predicted classes), from the black baseline.

    The path starts as ``steps`` equal steps; then, round after round, the intervals with more
    than one relu switch or a logit mismatch above their share of ``tolerance`` are halved,
    until none is left or a path has used ``max_evaluations`` gradients. All paths' new points
    are evaluated together, a batch per round."""
    if steps < 1 or max_evaluations < steps + 1:
        raise ValueError(
            f"expected steps >= 1 and max_evaluations > steps, got {steps}, {max_evaluations}"
        )
    x = model.inputs(images)
    if targets is None:
        targets = model.logits(x).argmax(axis=1)
    base = model.baseline
    paths = [
        _Path(xi - base, int(t), max_evaluations, model.switch_units)
        for xi, t in zip(x, np.asarray(targets))
    ]
    new = {k: np.linspace(0.0, 1.0, steps + 1) for k in range(len(paths))}
    while new:
        _evaluate(model, base, paths, new)
        new = {}
        for k, path in enumerate(paths):
            mids = path.to_split(max_evaluations - path.n, tolerance)
            if len(mids):
                new[k] = mids
    return [path.result() for path in paths]


def _evaluate(model: Model, base: np.ndarray, paths: list[_Path], new: dict) -> None:
    """Evaluate every path's new points in one batch and file them into their paths."""
    keys = list(new)
    points = np.concatenate([base + new[k][:, None] * paths[k].v for k in keys])
    targets = np.concatenate([np.full(len(new[k]), paths[k].target) for k in keys])
    f, g, z = model.gradients(points, targets)
    at = 0
    for k in keys:
        part = slice(at, at + len(new[k]))
        paths[k].add(new[k], f[part], g[part], None if z is None else z[part])
        at += len(new[k])


# ---- one digit, layer by layer -----------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LayerValues:
    """A hidden layer's output for one digit: ``values`` (h, w, c) for a conv block (after its
    pool and relu), (width,) for a Dense layer (after its activation)."""

    name: str
    title: str
    values: np.ndarray


@dataclasses.dataclass(frozen=True)
class Look:
    """One digit inside the network: ``layers`` in order, the logits and probabilities, and
    ``contributions`` (units, classes): each unit of the last hidden layer's activation times
    its weight into each class's logit, so ``contributions.sum(0) + bias == logits``."""

    layers: list[LayerValues]
    logits: np.ndarray
    probabilities: np.ndarray
    activations: np.ndarray  # the last hidden layer's (the last Dense layer's input)
    contributions: np.ndarray
    bias: np.ndarray
    last_layer: str

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.logits))

    def pushes(self, cls: int, top: int = 8) -> list[tuple[int, float]]:
        """The ``top`` units that push class ``cls`` up most: (unit, contribution), largest
        first (ties: lower unit first); only units that push it up."""
        c = self.contributions[:, cls]
        order = np.lexsort((np.arange(len(c)), -c))[:top]
        return [(int(u), float(c[u])) for u in order if c[u] > 0]


def _title(model: Model, name: str) -> str:
    layer = model.net.find(name)
    if layer.kind == "activation" and len(layer.shape) == 3:
        h, w, c = layer.shape
        return f"conv block {layer.index + 1}: {c} maps of {h}\u00d7{w}"
    return f"hidden layer {layer.index + 1}: {layer.width} {layer.fn}"


def _last_title(model: Model) -> str:
    """What feeds the last Dense layer: the last hidden layer, else the conv features or pixels."""
    n = len(model.net.of("dense"))
    if n > 1:
        return _title(model, f"activation_{n - 2}")
    return "the conv features" if model.net.of("conv") else "the pixels"


def look(model: Model, image) -> Look:
    """The inside of the network for one image (28, 28) in grey levels 0..255."""
    t = model.trace(model.inputs(np.asarray(image)[None]))
    n = len(model.net.of("dense"))
    kernel = model.p[f"dense_{n - 1}.kernel"]
    logits = t.logits[0]
    e = np.exp(logits - logits.max())
    return Look(
        layers=[LayerValues(k, _title(model, k), v[0]) for k, v in t.hidden.items()],
        logits=logits,
        probabilities=e / e.sum(),
        activations=t.last[0],
        contributions=t.last[0][:, None] * kernel,
        bias=model.p[f"dense_{n - 1}.bias"],
        last_layer=_last_title(model),
    )


# ---- what the first layer looks for --------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Templates:
    """The first layer's units as images: ``weights`` (units, h, w), a Dense unit's 784 input
    weights as 28x28 or a conv filter's k x k; ``usage`` (units,): the mean magnitude of the
    unit's output on ``images`` digits times the norm of its outgoing weights (how much it
    sends on, on an average digit); ``order``: most used first; ``dead``: never active."""

    layer: str
    weights: np.ndarray
    usage: np.ndarray
    order: np.ndarray
    dead: np.ndarray
    images: int

    HOW = (
        "used = mean |output| over the test digits \u00d7 the norm of the unit's outgoing "
        "weights: how much it passes on to the next layer on an average digit"
    )


def _outgoing(model: Model, first) -> np.ndarray:
    """Norm of each first-layer unit's weights into the next layer (1 for the output layer)."""
    p = model.p
    if first.kind == "conv":
        c = first.shape[2]
        if "conv_1.kernel" in p:
            k = p["conv_1.kernel"]
            return np.sqrt((k**2).sum(axis=(0, 1, 3)))
        return np.sqrt(
            (p["dense_0.kernel"].reshape(-1, c, p["dense_0.kernel"].shape[1]) ** 2).sum(axis=(0, 2))
        )
    if "dense_1.kernel" in p:
        return np.sqrt((p["dense_1.kernel"] ** 2).sum(axis=1))
    return np.ones(first.width)


def first_layer(model: Model, images) -> Templates:
    """The first layer's templates, ordered by how much ``images`` (N, 28, 28) use them."""
    first = (model.net.of("conv") or model.net.of("dense"))[0]
    outs = []
    x = model.inputs(images)
    for s in range(0, len(x), CHUNK):
        t = model.trace(x[s : s + CHUNK])
        outs.append(t.convs[0]["out"] if t.convs else t.dense[0]["a"] if t.dense else t.logits)
    out = np.concatenate(outs)
    axes = tuple(range(out.ndim - 1))
    magnitude = np.abs(out).mean(axis=axes)
    usage = magnitude * _outgoing(model, first)
    kernel = model.p[f"{first.name}.kernel"]
    if first.kind == "conv":
        weights = np.moveaxis(kernel[:, :, 0, :], 2, 0)
    else:
        side = model.net.input_shape[0]
        weights = kernel.T.reshape(-1, side, side)
    return Templates(
        layer=first.name,
        weights=weights,
        usage=usage,
        order=np.lexsort((np.arange(len(usage)), -usage)),
        dead=np.abs(out).max(axis=axes) == 0,
        images=len(x),
    )


# ---- the last hidden layer of many digits, in 2-D ------------------------------------------
@dataclasses.dataclass(frozen=True)
class Embedding:
    """``points`` (N, 2) of the digits' last hidden layer; ``method`` "PCA" or "UMAP"; ``note``
    says what the axes are."""

    points: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    method: str
    note: str
    layer: str


METHODS = ("auto", "pca", "umap")
UMAP_HINT = "pip install 'mnistlab[inside]' (umap-learn)"


def umap_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("umap") is not None


def embedding(model: Model, images, labels, method: str = "pca", seed: int = 0) -> Embedding:
    """The last hidden layer of ``images`` (N, 28, 28) projected to 2-D: "pca" (sklearn's,
    exact and deterministic, milliseconds), "umap" (umap-learn, the ``inside`` extra, seeded:
    ~30 s for 2,000 digits in a fresh process, numba's compile included) or "auto" (UMAP when
    installed, else PCA)."""
    if method not in METHODS:
        raise MnistlabError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    if method == "umap" and not umap_available():
        raise MnistlabError(f"method 'umap' needs umap-learn: {UMAP_HINT}")
    x = model.inputs(images)
    parts = [model.trace(x[s : s + CHUNK]) for s in range(0, len(x), CHUNK)]
    h = np.concatenate([t.last for t in parts])
    predicted = np.concatenate([t.logits for t in parts]).argmax(axis=1)
    layer = _last_title(model)
    if method == "umap" or (method == "auto" and umap_available()):
        import umap

        points = umap.UMAP(n_components=2, random_state=seed).fit_transform(h)
        note = f"UMAP (umap-learn, 15 neighbours, seed {seed}): near means similar; the axes "
        note += "themselves mean nothing"
        name = "UMAP"
    else:
        from sklearn.decomposition import PCA

        # the exact solver that decomposes the (width x width) covariance: milliseconds for
        # thousands of digits, where a full SVD of the digits took a third of a second
        pca = PCA(n_components=2, svd_solver="covariance_eigh").fit(h)
        points = pca.transform(h)
        shares = pca.explained_variance_ratio_
        note = (
            f"PCA: the two directions of largest variance, {shares[0]:.0%} and {shares[1]:.0%} "
            "of it"
        )
        name = "PCA"
    return Embedding(
        np.asarray(points, np.float64), np.asarray(labels), predicted, name, note, layer
    )
