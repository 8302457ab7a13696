"""A workflow step's module is also its verb: ``mnistlab.explore(ds)`` calls
``mnistlab.explore.explore(ds)``.

The steps are modules named after what they do (explore, evaluate, predict), and the package's
verbs want those same names. Python binds a submodule to the package attribute of its name as
soon as anything imports it, so a separate ``mnistlab.explore`` function would be replaced by
the module at the first ``from mnistlab import explore``. The module itself is made callable
instead, so both spellings keep working whatever was imported first.
"""

from __future__ import annotations

import sys
import types


class VerbModule(types.ModuleType):
    """A module that, called, runs its function of the same name."""

    def __call__(self, *args, **kwargs):
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Call at the end of a step module: ``make_callable(__name__)``."""
    sys.modules[module_name].__class__ = VerbModule
