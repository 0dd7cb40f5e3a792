"""Feature computation shared by preprocessing and inference (one code path)."""

from hepnn_coffea.features.compute import FeatureBatch, compute_features, pad_jagged
from hepnn_coffea.features.expressions import Expression, ExpressionError, VariableTable

__all__ = [
    "Expression", "ExpressionError", "FeatureBatch", "VariableTable", "compute_features",
    "pad_jagged",
]  # fmt: skip
