"""Evaluation stage: ``infer`` (a model over a fileset -> hists + per-jet table) and ``evaluate``.

Every evaluation flow (flat-jet classifier and regression, event-level NanoAOD, and the
calorimeter flows of :mod:`hepnn_coffea.calo`) has one shape, :mod:`~hepnn_coffea.evaluation.protocol`:
an :class:`EvaluationProcessor` (hists with the axes :data:`SAMPLE_AXIS` / :data:`METHOD_AXIS`),
a summary (:class:`EvaluationSummary`) and :func:`write_summary` (``summary.json`` and ``summary.md``).

Names are imported on first use.
"""

from hepnn_coffea._lazy import lazy_exports

_EXPORTS = {
    # the stages
    "infer": "hepnn_coffea.evaluation.stages:infer",
    "evaluate": "hepnn_coffea.evaluation.stages:evaluate",
    "summary_markdown": "hepnn_coffea.evaluation.stages:summary_markdown",
    "evaluate_classifier": "hepnn_coffea.evaluation.classifier_eval:evaluate_classifier",
    "evaluate_events": "hepnn_coffea.evaluation.events_eval:evaluate_events",
    "evaluate_regression": "hepnn_coffea.evaluation.regression_stage:evaluate_regression",
    "summarize_regression": "hepnn_coffea.evaluation.regression_stage:summarize_regression",
    # the protocol
    "EvaluationProcessor": "hepnn_coffea.evaluation.protocol:EvaluationProcessor",
    "EvaluationSummary": "hepnn_coffea.evaluation.protocol:EvaluationSummary",
    "Table": "hepnn_coffea.evaluation.protocol:Table",
    "write_summary": "hepnn_coffea.evaluation.protocol:write_summary",
    "render_markdown": "hepnn_coffea.evaluation.protocol:render_markdown",
    "sample_axis": "hepnn_coffea.evaluation.protocol:sample_axis",
    "method_axis": "hepnn_coffea.evaluation.protocol:method_axis",
    "SAMPLE_AXIS": "hepnn_coffea.evaluation.protocol:SAMPLE_AXIS",
    "METHOD_AXIS": "hepnn_coffea.evaluation.protocol:METHOD_AXIS",
    # the processors and their hists
    "TaggerEvaluationProcessor": "hepnn_coffea.evaluation.processor:TaggerEvaluationProcessor",
    "RegressionEvaluationProcessor": "hepnn_coffea.evaluation.processor:RegressionEvaluationProcessor",
    "EventTaggerProcessor": "hepnn_coffea.evaluation.events_processor:EventTaggerProcessor",
    "make_histograms": "hepnn_coffea.evaluation.processor:make_histograms",
    "make_regression_hists": "hepnn_coffea.evaluation.regression:make_regression_hists",
    "make_event_hists": "hepnn_coffea.evaluation.events_eval:make_event_hists",
    # working points, variations, intervals
    "write_working_points": "hepnn_coffea.evaluation.working_points:write_working_points",
    "find_working_points": "hepnn_coffea.evaluation.working_points:find_working_points",
    "write_variation_report": "hepnn_coffea.evaluation.variation_report:write_variation_report",
    "format_interval": "hepnn_coffea.evaluation.intervals:format_interval",
    "bootstrap_interval": "hepnn_coffea.evaluation.intervals:bootstrap_interval",
    "roc_from_hist": "hepnn_coffea.evaluation.roc:roc_from_hist",
    "roc_from_scores": "hepnn_coffea.evaluation.roc:roc_from_scores",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
