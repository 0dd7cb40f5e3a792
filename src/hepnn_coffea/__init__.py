"""hepnn_coffea: neural networks in columnar HEP analyses with coffea.

Stages (one subpackage each): :mod:`~hepnn_coffea.config`, :mod:`~hepnn_coffea.features`,
:mod:`~hepnn_coffea.processing` (preprocess to shards), :mod:`~hepnn_coffea.training`,
:mod:`~hepnn_coffea.export` (ONNX), :mod:`~hepnn_coffea.inference` (in processors),
:mod:`~hepnn_coffea.evaluation` and :mod:`~hepnn_coffea.plotting`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from hepnn_coffea import _compat  # noqa: F401  (dependency work-arounds, see module)

try:
    __version__ = version("hepnn_coffea")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"


def __getattr__(name: str):
    """Lazy access to the main entry points (keeps ``import hepnn_coffea`` light)."""
    if name == "OnnxTagger":
        from hepnn_coffea.inference.tagger import OnnxTagger

        return OnnxTagger
    if name == "DataConfig":
        from hepnn_coffea.config.data_config import DataConfig

        return DataConfig
    raise AttributeError(f"module 'hepnn_coffea' has no attribute {name!r}")


__all__ = ["DataConfig", "OnnxTagger", "__version__"]
