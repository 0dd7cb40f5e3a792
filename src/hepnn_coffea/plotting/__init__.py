"""mplhep figures of the evaluation stage (PNG + PDF): classifier, event-level, regression, variations.

Names are imported on first use (matplotlib and mplhep load with the first figure).
"""

from hepnn_coffea._lazy import lazy_exports

_EXPORTS = {
    "PlotStyle": "hepnn_coffea.plotting.style:PlotStyle",
    "plot_tagger": "hepnn_coffea.plotting.tagger_plots:plot_tagger",
    "plot_roc_ratio": "hepnn_coffea.plotting.tagger_plots:plot_roc_ratio",
    "plot_rejection_vs": "hepnn_coffea.plotting.tagger_plots:plot_rejection_vs",
    "plot_events": "hepnn_coffea.plotting.events_plots:plot_events",
    "plot_roc_bands": "hepnn_coffea.plotting.events_plots:plot_roc_bands",
    "plot_regression": "hepnn_coffea.plotting.regression_plots:plot_regression",
    "plot_variation_shifts": "hepnn_coffea.plotting.variation_plots:plot_variation_shifts",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
