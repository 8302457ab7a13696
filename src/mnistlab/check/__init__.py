"""Checks for the tutorial's exercises (notebooks/exercises.ipynb), for answers written with
mnistlab, NumPy, PyTorch or Keras: each reads the learner's objects, prints a short verdict
and returns a ``Result``."""

from mnistlab.check.beat import beat_this
from mnistlab.check.data import data
from mnistlab.check.metrics import metrics
from mnistlab.check.model import model
from mnistlab.check.scaling import standardization
from mnistlab.check.training import learning_rates, raw_pixels
from mnistlab.check.verdict import NotDone, Result

__all__ = [
    "NotDone",
    "Result",
    "beat_this",
    "data",
    "learning_rates",
    "metrics",
    "model",
    "raw_pixels",
    "standardization",
]
