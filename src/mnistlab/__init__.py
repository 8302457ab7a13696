"""mnistlab: the classic deep-learning-on-MNIST workflow as one command or one call per step.

One verb per step, each taking a dataset or a run folder::

    summary = mnistlab.explore("mnist")                  # dataset (name or Dataset) -> dict
    run = mnistlab.fit(mnistlab.Recipe(epochs=5))        # recipe (+ dataset) -> run folder
    metrics = mnistlab.evaluate(run.path, split="test")  # run -> metrics.json "evaluation"
    answers = mnistlab.predict(run.path, ["seven.jpg"])  # run + images -> top classes

Importing mnistlab is light (numpy only): each verb imports its step when first used.

>>> import mnistlab
>>> ds = mnistlab.datasets.load("mnist-sample")
>>> ds.x_train.shape[1:]
(28, 28)
"""

__version__ = "0.1.0"

import importlib

from mnistlab import datasets  # noqa: E402  (light: numpy only)

# name -> (module, attribute); attribute None: the step module itself, which is callable
_LAZY = {
    "explore": ("mnistlab.explore", None),
    "fit": ("mnistlab.train", "fit"),
    "evaluate": ("mnistlab.evaluate", None),
    "predict": ("mnistlab.predict", None),
    "Recipe": ("mnistlab.recipe", "Recipe"),
    "load_run": ("mnistlab.runs", "load_run"),
}

__all__ = ["datasets", "__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
