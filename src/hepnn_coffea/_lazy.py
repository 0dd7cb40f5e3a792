"""Lazy public names of a package: ``name -> "module:attribute"``, imported on first access.

Keeps ``import hepnn_coffea`` (and a worker that only runs an ONNX model) light: the training
stage's torch, for one, is imported only when ``hepnn_coffea.train`` is used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package`` serving ``exports``.

    A resolved name is stored on the package, so later look-ups are plain attribute reads and a
    name that is also a submodule's (``processing.preprocess``) keeps meaning the exported object
    once it was resolved; the package imports such a name eagerly to be safe from the start.

    Parameters
    ----------
    package
        The package's ``__name__`` (for the error message).
    exports
        Public name -> ``"module.path:attribute"``.

    Returns
    -------
    tuple
        The package's ``__getattr__`` and ``__dir__``.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = exports[name].partition(":")
        value = getattr(importlib.import_module(module), attribute)
        setattr(sys.modules[package], name, value)  # after the import, which may have bound a submodule here
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
