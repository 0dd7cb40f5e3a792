"""Lazy imports of optional dependencies with a pip hint, as coffea does.

The core install (``pip install hepnn_coffea``) preprocesses, runs ONNX models in processors and
evaluates; training and export need the ``train`` extra (torch, tensorboard, tqdm). Modules that
need it import torch as::

    try:
        import torch
    except ModuleNotFoundError as err:
        raise missing_extra(err, "train") from None
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: top-level modules each extra of ``pyproject.toml`` provides
EXTRAS: dict[str, tuple[str, ...]] = {"train": ("torch", "tensorboard")}

#: pip names of core dependencies whose module name differs
_PIP_NAMES = {"sklearn": "scikit-learn"}


def extra_of(module: str) -> str | None:
    """The extra of ``pyproject.toml`` that provides ``module`` (``None``: a core dependency or unknown)."""
    top = module.split(".")[0]
    return next((extra for extra, modules in EXTRAS.items() if top in modules), None)


def install_hint(module: str) -> str:
    """What to run to get ``module``."""
    extra = extra_of(module)
    if extra is None:
        return f"pip install '{_PIP_NAMES.get(module, module.split('.')[0])}'"
    return f"pip install 'hepnn_coffea[{extra}]'"


def require(module: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"hepnn_coffea needs '{module}' for this feature: {install_hint(module)}") from err


def missing_extra(err: ModuleNotFoundError, extra: str) -> ImportError:
    """The error to raise when a module-level import of ``extra``'s dependency failed.

    Parameters
    ----------
    err
        The failed import.
    extra
        The extra (``"train"``) the importing module belongs to.

    Returns
    -------
    ImportError
        A new error naming the extra and the pip command when the missing module is one of
        the extra's; ``err`` itself otherwise (a broken install is not hidden).
    """
    missing = err.name or ""
    if extra_of(missing) != extra:
        return err
    return ImportError(
        f"hepnn_coffea: '{missing}' is not installed; training and ONNX export need the "
        f"'{extra}' extra: {install_hint(missing)}"
    )
