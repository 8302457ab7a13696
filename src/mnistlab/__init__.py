"""mnistlab: the classic deep-learning-on-MNIST workflow as one command or one call per step.

>>> import mnistlab
>>> ds = mnistlab.datasets.load("mnist-sample")
>>> ds.x_train.shape[1:]
(28, 28)
"""

__version__ = "0.1.0"

from mnistlab import datasets  # noqa: E402  (light: numpy only)

__all__ = ["datasets", "__version__"]
