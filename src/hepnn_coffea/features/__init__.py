"""Feature computation shared by preprocessing and inference (one code path).

:func:`compute_features` turns a chunk of awkward arrays into the padded, standardized model
inputs of a :class:`~hepnn_coffea.config.DataConfig` (a :class:`FeatureBatch`); the data
config's expressions are checked :class:`Expression` objects evaluated over a
:class:`VariableTable`; :func:`parse_filters` / :func:`apply_filters` are the row filters.

Names are imported on first use.
"""

from hepnn_coffea._lazy import lazy_exports

_EXPORTS = {
    "compute_features": "hepnn_coffea.features.compute:compute_features",
    "FeatureBatch": "hepnn_coffea.features.compute:FeatureBatch",
    "FeatureError": "hepnn_coffea.features.compute:FeatureError",
    "pad_jagged": "hepnn_coffea.features.compute:pad_jagged",
    "Expression": "hepnn_coffea.features.expressions:Expression",
    "ExpressionError": "hepnn_coffea.features.validation:ExpressionError",
    "VariableTable": "hepnn_coffea.features.expressions:VariableTable",
    "Filter": "hepnn_coffea.features.filters:Filter",
    "FilterError": "hepnn_coffea.features.filters:FilterError",
    "parse_filters": "hepnn_coffea.features.filters:parse_filters",
    "apply_filters": "hepnn_coffea.features.filters:apply_filters",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
