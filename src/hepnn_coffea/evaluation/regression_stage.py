"""``evaluate`` for regression models: resolution/bias table (JSON + Markdown) and plots."""

from __future__ import annotations

import pathlib
from typing import Any

from hepnn_coffea.evaluation.regression import regression_summary, summary_markdown
from hepnn_coffea.processing.shards import write_json


def evaluate_regression(out: pathlib.Path, hists: dict[str, Any], info: dict[str, Any], *, plots: bool = True,
                        n_bootstrap: int = 100, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Write ``summary.json`` / ``summary.md`` (one row per target, estimator and expert) and plots.

    Every metric is ``{"value", "low", "high"}``: the value from the entries of ``scores.parquet``
    in the hists' binning, the 68% interval from ``n_bootstrap`` bootstrap replicas (``seed``).
    """
    import pyarrow.parquet as pq

    targets = list(info["classes"])
    scores = pq.read_table(out / "scores.parquet")
    table = {name: scores.column(name).to_numpy() for name in scores.column_names}
    rows = regression_summary(hists, targets, table, n_bootstrap=n_bootstrap, seed=seed)
    summary: dict[str, Any] = {
        "task": "regression", "targets": targets, "n_jets": info["n_jets"],
        "intervals": f"68.27%: value +- std of {n_bootstrap} bootstrap replicas over the entries (seed {seed})",
        "rows": rows,
    }  # fmt: skip
    write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(summary_markdown(rows))
    if plots:
        from hepnn_coffea.plotting.regression_plots import plot_regression

        summary["plots"] = [str(p) for p in plot_regression(hists, targets, out / "plots")]
        write_json(out / "summary.json", summary)
    return summary
