"""``evaluate`` for regression models: resolution/bias table (JSON + Markdown) and plots."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from hepnn_coffea.evaluation.protocol import EvaluationSummary, write_summary
from hepnn_coffea.evaluation.regression import regression_report, regression_summary


def summarize_regression(
    hists: dict[str, Any],
    info: Mapping[str, Any],
    table: Mapping[str, np.ndarray],
    *,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> EvaluationSummary:
    """The summary of a regression ``infer`` output: one row per target, estimator and expert.

    Every metric is ``{"value", "low", "high"}``: the value from the entries of ``table``
    (``scores.parquet``) in the hists' binning, the 68% interval from ``n_bootstrap`` bootstrap
    replicas (``seed``); see :func:`~hepnn_coffea.evaluation.regression.regression_summary`.
    """
    targets = list(info["classes"])
    rows = regression_summary(hists, targets, table, n_bootstrap=n_bootstrap, seed=seed)
    return EvaluationSummary(
        {
            "task": "regression",
            "targets": targets,
            "n_jets": info["n_jets"],
            "intervals": (
                f"68.27%: value +- std of {n_bootstrap} bootstrap replicas over the entries (seed {seed})"
            ),
            "rows": rows,
        },
        kind="regression",
        report=regression_report,
    )


def evaluate_regression(
    out: pathlib.Path,
    hists: dict[str, Any],
    info: dict[str, Any],
    *,
    plots: bool = True,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> EvaluationSummary:
    """Write ``summary.json`` / ``summary.md`` (:func:`summarize_regression`) and plots of an infer folder."""
    import pyarrow.parquet as pq

    scores = pq.read_table(out / "scores.parquet")
    table = {name: scores.column(name).to_numpy() for name in scores.column_names}
    summary = summarize_regression(hists, info, table, n_bootstrap=n_bootstrap, seed=seed)

    def figures() -> list[pathlib.Path]:
        from hepnn_coffea.plotting.regression_plots import plot_regression

        return plot_regression(hists, summary["targets"], out / "plots")

    return write_summary(summary, out, plots=figures if plots else None)
