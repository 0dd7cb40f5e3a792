"""The exception types that report bad user input (config, fileset, features, model)."""

from __future__ import annotations

from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.export.metadata import ExportError  # torch-free (not export.onnx_export)
from hepnn_coffea.features.compute import FeatureError
from hepnn_coffea.inference.tagger import TaggerError
from hepnn_coffea.processing.bad_files import BadInputError
from hepnn_coffea.processing.fileset import FilesetError
from hepnn_coffea.processing.preprocess import ReconciliationError

USER_ERRORS = (
    BadInputError,
    ConfigError,
    ExportError,
    FeatureError,
    FilesetError,
    ReconciliationError,
    TaggerError,
    FileNotFoundError,
    FileExistsError,
)

__all__ = [
    "USER_ERRORS",
    "BadInputError",
    "ConfigError",
    "ExportError",
    "FeatureError",
    "FilesetError",
    "ReconciliationError",
    "TaggerError",
]
