"""hepnn_coffea: neural networks in columnar HEP analyses with coffea.

Stages (one subpackage each): :mod:`~hepnn_coffea.config`, :mod:`~hepnn_coffea.features`,
:mod:`~hepnn_coffea.processing` (preprocess to shards), :mod:`~hepnn_coffea.training`,
:mod:`~hepnn_coffea.export` (ONNX), :mod:`~hepnn_coffea.inference` (in processors),
:mod:`~hepnn_coffea.evaluation` and :mod:`~hepnn_coffea.plotting`; event-level NanoAOD helpers in
:mod:`~hepnn_coffea.events`, the calorimeter workflows in :mod:`~hepnn_coffea.calo`.

The main entry point of every stage is importable from here (imported on first use)::

    from hepnn_coffea import preprocess, train, export_onnx, infer, evaluate, OnnxTagger

Each subpackage lists its public names in ``__all__`` (``hepnn_coffea.processing.__all__``, ...);
names that need torch (training, export, the model zoo) load it only when used.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from hepnn_coffea import _compat  # noqa: F401  (dependency work-arounds, see module)
from hepnn_coffea._lazy import lazy_exports

try:
    __version__ = version("hepnn_coffea")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

_EXPORTS = {
    # configuration
    "DataConfig": "hepnn_coffea.config.data_config:DataConfig",
    "ConfigError": "hepnn_coffea.config.data_config:ConfigError",
    "ModelConfig": "hepnn_coffea.config.training_config:ModelConfig",
    "load_model_config": "hepnn_coffea.config:load_model_config",
    # the stages
    "preprocess": "hepnn_coffea.processing.preprocess:preprocess",
    "train": "hepnn_coffea.training.trainer:train",
    "export_onnx": "hepnn_coffea.export:export_onnx",
    "OnnxTagger": "hepnn_coffea.inference.tagger:OnnxTagger",
    "infer": "hepnn_coffea.evaluation.stages:infer",
    "evaluate": "hepnn_coffea.evaluation.stages:evaluate",
    "calorimeter_view": "hepnn_coffea.calo.stage:calorimeter_view",
    # what the stages share: filesets, executors, features, model metadata, trained networks
    "load_fileset": "hepnn_coffea.processing.fileset:load_fileset",
    "select_split": "hepnn_coffea.processing.fileset:select_split",
    "run_runner": "hepnn_coffea.processing.runner:run_runner",
    "run_dask": "hepnn_coffea.processing.runner:run_dask",
    "compute_features": "hepnn_coffea.features.compute:compute_features",
    "read_metadata": "hepnn_coffea.export.metadata:read_metadata",
    "load_network": "hepnn_coffea.training.run_files:load_network",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [*_EXPORTS, "__version__"]
