"""calibration.json: how sure a run's model should be, and which inputs are unlike anything it
was trained on; typed, read bounded and checked, and applied the same way by every command.

``mnistlab.evaluation.calibration`` fits it on the run's validation part (never the test set);
predict, serve and export read it here (``read_calibration``):

* ``temperature`` T: the calibrated probabilities are softmax(logits / T). T > 1 softens an
  overconfident model, T < 1 sharpens a timid one; the predicted class never changes.
* ``ood``: an input is "not a digit I know" when its unusualness ``score`` is above
  ``threshold``. The score is the larger of two percentiles among the validation digits: of
  the model's energy -logsumexp(logits) (logits small everywhere: nothing it knows fits), and
  of the image's negative log-likelihood under a probabilistic PCA of the training images (a
  scribble is far from every digit in pixel space even where the network is sure of a class).
  The threshold flags ``false_alarm`` of the validation digits.

The file names the model it was fitted for (a digest of the weights and the normalization): a
run resumed or retrained since is refused in one line, never miscalibrated in silence.

>>> z = np.array([[4.0, 1.0, 0.0]])
>>> softmax(z).round(3).tolist(), softmax(z, temperature=2.0).round(3).tolist()
([[0.936, 0.047, 0.017]], [[0.736, 0.164, 0.1]])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.errors import RunError
from mnistlab.fsio import atomic_write_text
from mnistlab.rundir import schema
from mnistlab.rundir.folder import CALIBRATION, LIMITS
from mnistlab.rundir.records import read_json

FORMAT = "mnistlab-calibration/1"
LEVELS = np.linspace(0.0, 1.0, 201)  # the quantile tables' levels: every half percent
DIGITS = 6  # significant digits stored: far below the sampling noise of what was fitted


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """float64 softmax(logits / temperature) per row."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def energy(logits: np.ndarray) -> np.ndarray:
    """-logsumexp(logits) per row: high where no class's logit is large."""
    from scipy.special import logsumexp

    return -logsumexp(np.asarray(logits, dtype=np.float64), axis=1)


def rounded(a: Any) -> np.ndarray:
    """``a`` as float64, each value rounded to ``DIGITS`` significant digits (what is stored)."""
    a = np.asarray(a, dtype=np.float64)
    return np.array([float(f"{v:.{DIGITS}g}") for v in a.ravel()]).reshape(a.shape)


@dataclasses.dataclass(frozen=True)
class PixelModel:
    """A probabilistic PCA (Tipping and Bishop) of training images scaled to 0..1: a Gaussian
    with variance ``variances`` along each of ``components`` and ``noise_variance`` in every
    other direction, the model of sklearn's ``PCA.score_samples``."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D), orthonormal rows
    variances: np.ndarray  # (k,)
    noise_variance: float

    def nll(self, images: np.ndarray) -> np.ndarray:
        """Negative log-likelihood of each uint8 image (N, H, W) with H*W = D, in nats."""
        x = np.asarray(images, dtype=np.float64).reshape(len(images), -1) / 255.0 - self.mean
        y = x @ self.components.T
        d, k = x.shape[1], len(self.variances)
        inside = np.einsum("ij,ij->i", y, y)
        outside = np.maximum(np.einsum("ij,ij->i", x, x) - inside, 0.0)
        logdet = float(np.sum(np.log(self.variances))) + (d - k) * math.log(self.noise_variance)
        quad = np.sum(y * y / self.variances, axis=1) + outside / self.noise_variance
        return 0.5 * (d * math.log(2 * math.pi) + logdet + quad)


@dataclasses.dataclass(frozen=True)
class OodCheck:
    """Unusualness of an input: ``score`` in [0, 1], "not a digit I know" above ``threshold``."""

    pixels: PixelModel
    energy_quantiles: np.ndarray  # the validation digits' energies at LEVELS
    pixel_quantiles: np.ndarray  # their pixel negative log-likelihoods at LEVELS
    threshold: float
    false_alarm: float  # the share of validation digits above the threshold

    def parts(self, logits: np.ndarray, images: np.ndarray) -> dict[str, np.ndarray]:
        """Energy, pixel NLL, and the score: the larger of their percentiles among validation
        digits (1.0 beyond the most unusual one)."""
        e, p = energy(logits), self.pixels.nll(images)
        score = np.maximum(
            np.interp(e, self.energy_quantiles, LEVELS),
            np.interp(p, self.pixel_quantiles, LEVELS),
        )
        return {"energy": e, "pixel_nll": p, "score": score}

    def score(self, logits: np.ndarray, images: np.ndarray) -> np.ndarray:
        return self.parts(logits, images)["score"]

    def unusual(self, score: np.ndarray) -> np.ndarray:
        return np.asarray(score) > self.threshold


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A run's calibration.json: see the module docstring."""

    temperature: float
    ood: OodCheck
    model: str  # ``model_digest`` of the run it was fitted for
    fitted_on: dict[str, Any]  # split, n, and NLL/ECE there before and after

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities: softmax(logits / temperature), float64."""
        return softmax(logits, self.temperature)

    def to_dict(self) -> dict[str, Any]:
        o, px = self.ood, self.ood.pixels
        return {
            "format": FORMAT,
            "model": self.model,
            "temperature": self.temperature,
            "fitted_on": self.fitted_on,
            "ood": {
                "false_alarm": o.false_alarm,
                "threshold": o.threshold,
                "energy_quantiles": o.energy_quantiles.tolist(),
                "pixel_quantiles": o.pixel_quantiles.tolist(),
                "pixels": {
                    "mean": px.mean.tolist(),
                    "components": px.components.tolist(),
                    "variances": px.variances.tolist(),
                    "noise_variance": px.noise_variance,
                },
            },
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any], path: str | Path) -> Calibration:
        """A checked calibration.json object (``schema.CALIBRATION``) as a Calibration;
        RunError naming ``path`` and the first value that cannot be what it claims."""
        obj = schema.check(obj, schema.CALIBRATION, path)
        if obj["format"] != FORMAT:
            raise RunError(f"{path}: not a {FORMAT} file (format {obj['format']!r})")
        o, px = obj["ood"], obj["ood"]["pixels"]
        mean, comps, var = (
            np.asarray(px[k], np.float64) for k in ("mean", "components", "variances")
        )
        tables = [np.asarray(o[k], np.float64) for k in ("energy_quantiles", "pixel_quantiles")]
        problems = {
            "['temperature'] must be a positive number": not obj["temperature"] > 0,
            "['ood']['false_alarm'] must lie in (0, 1)": not 0 < o["false_alarm"] < 1,
            "['ood']['threshold'] must lie in [0, 1]": not 0 <= o["threshold"] <= 1,
            "['ood']['pixels'] must be k components of the mean's length, k variances > 0 and "
            "a noise variance > 0": comps.ndim != 2
            or comps.shape[1:] != mean.shape
            or var.shape != comps.shape[:1]
            or not np.all(var > 0)
            or not px["noise_variance"] > 0,
            f"['ood'] quantile tables must hold {len(LEVELS)} non-decreasing numbers": any(
                t.shape != LEVELS.shape or np.any(np.diff(t) < 0) for t in tables
            ),
        }
        for problem, bad in problems.items():
            if bad:
                raise RunError(f"{path}: {problem}")
        pixels = PixelModel(mean, comps, var, float(px["noise_variance"]))
        check = OodCheck(pixels, *tables, float(o["threshold"]), float(o["false_alarm"]))
        return cls(float(obj["temperature"]), check, obj["model"], dict(obj.get("fitted_on", {})))


def model_digest(run) -> str:
    """SHA-256 of a run's weights and normalization: what a calibration was fitted for."""
    h = hashlib.sha256()
    for name in sorted(run.weights):
        a = np.require(run.weights[name], requirements="C")
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    h.update(f"normalization|{run.mean!r}|{run.std!r}".encode())
    return h.hexdigest()


def why_uncalibrated(run) -> str:
    """Why ``run`` has no calibration, without naming a path (a server's answers say it)."""
    if not run.recipe.validation_split:
        return (
            "the run cannot be calibrated: it held out no validation data (validation_split "
            "= 0), and fitting on the test set would make its numbers lie"
        )
    return "the run is not calibrated yet: `mnistlab evaluate RUN` fits it on its validation part"


def uncalibrated(run) -> str:
    """One line: why ``run`` has no calibration, and what to do about it."""
    if not run.recipe.validation_split:
        return f"{run.path}: {why_uncalibrated(run)}"
    return (
        f"{Path(run.path) / CALIBRATION}: missing: the run is not calibrated yet; "
        f"`mnistlab evaluate {run.path}` fits it on the run's validation part"
    )


def read_calibration(run) -> Calibration:
    """The calibration stored in a loaded run's folder; RunError when it is missing, damaged,
    or fitted for other weights than the run's."""
    path = Path(run.path) / CALIBRATION
    if not path.is_file():
        raise RunError(uncalibrated(run))
    cal = Calibration.from_dict(
        read_json(path, None, LIMITS[CALIBRATION], "a calibration file"), path
    )
    if cal.model != model_digest(run):
        raise RunError(
            f"{path}: fitted for other weights than {run.path}'s (trained again or resumed "
            f"since?); `mnistlab evaluate {run.path}` fits it again"
        )
    return cal


def find_calibration(run) -> Calibration | None:
    """``read_calibration``, or None when the run has no calibration.json (any other problem
    with the file is still a RunError: a damaged one is never ignored)."""
    if not (Path(run.path) / CALIBRATION).is_file():
        return None
    return read_calibration(run)


def write_calibration(run_dir: str | Path, calibration: Calibration) -> Path:
    """Write ``<run_dir>/calibration.json`` atomically; returns its path."""
    path = Path(run_dir) / CALIBRATION
    atomic_write_text(path, _json_text(calibration.to_dict()))
    return path


def _json_text(obj: dict[str, Any]) -> str:
    """Indented JSON whose number lists stay on one line each (the PCA is 16,000 numbers)."""
    lists: dict[str, str] = {}

    def stash(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: stash(x) for k, x in v.items()}
        if isinstance(v, list):
            key = f"@list{len(lists)}@"
            lists[json.dumps(key)] = json.dumps(v, separators=(",", ":"), allow_nan=False)
            return key
        return v

    text = json.dumps(stash(obj), indent=2, allow_nan=False)
    for key, value in lists.items():
        text = text.replace(key, value, 1)
    return text + "\n"
