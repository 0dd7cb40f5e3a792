"""``evaluate`` for regression models: resolution/bias table (JSON + Markdown) and plots."""

from __future__ import annotations

import pathlib
from typing import Any

from hepnn_coffea.evaluation.regression import regression_summary, summary_markdown
from hepnn_coffea.processing.shards import write_json


def evaluate_regression(out: pathlib.Path, hists: dict[str, Any], info: dict[str, Any], *,
                        plots: bool = True) -> dict[str, Any]:  # fmt: skip
    """Write ``summary.json`` / ``summary.md`` (one row per target, estimator and expert) and plots."""
    targets = list(info["classes"])
    rows = regression_summary(hists, targets)
    summary: dict[str, Any] = {"task": "regression", "targets": targets, "n_jets": info["n_jets"], "rows": rows}
    write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(summary_markdown(rows))
    if plots:
        from hepnn_coffea.plotting.regression_plots import plot_regression

        summary["plots"] = [str(p) for p in plot_regression(hists, targets, out / "plots")]
        write_json(out / "summary.json", summary)
    return summary
