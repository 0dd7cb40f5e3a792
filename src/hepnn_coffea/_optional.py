"""Lazy imports of optional dependencies with a pip hint, as coffea does."""

from __future__ import annotations

import importlib
from types import ModuleType

_PIP_NAMES = {
    "torch": "torch==2.13.0",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "mplhep": "mplhep",
    "matplotlib": "matplotlib",
    "sklearn": "scikit-learn",
    "torch.utils.tensorboard": "tensorboard",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        pip_name = _PIP_NAMES.get(module, module.split(".")[0])
        raise ImportError(
            f"hepnn_coffea needs '{module}' for this feature: pip install '{pip_name}'"
        ) from err
