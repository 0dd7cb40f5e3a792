"""Lazy public names of a package: ``name -> "module:attribute"``, imported on first access.

Keeps ``import hepnn_coffea`` (and a worker that only runs an ONNX model) light: the training
stage's torch, for one, is imported only when ``hepnn_coffea.train`` is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package`` serving ``exports``.

    Parameters
    ----------
    package
        The package's ``__name__`` (for the error message).
    exports
        Public name -> ``"module.path:attribute"``.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = exports[name].partition(":")
        return getattr(importlib.import_module(module), attribute)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
