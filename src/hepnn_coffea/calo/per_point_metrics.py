"""Metrics of the per-point evaluation, per track-pT bin, and their Markdown table.

Metrics in bins of track pT (and overall), on samples with ``true >= min_true`` (the relative
error is undefined at 0): MAPE = mean |pred - true| / true, resolution = half the 16-84%
interquantile range of (pred - true) / true, bias = its median; each with the 68% interval of
seeded bootstrap replicas over the tracks (:func:`per_point_summary`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepnn_coffea.calo.per_point_baselines import PT_EDGES
from hepnn_coffea.evaluation.intervals import format_interval
from hepnn_coffea.evaluation.protocol import Block, Table, render_markdown

__all__ = [
    "metrics",
    "per_point_report",
    "per_point_summary",
    "per_point_table",
    "relative_metrics",
    "summary_markdown",
]


def relative_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAPE, resolution (half the 16-84% interquantile range of (pred - true)/true), bias (median); NaN if
    empty."""
    if not len(true):
        return {"mape": float("nan"), "resolution": float("nan"), "bias": float("nan")}
    rel = (pred - true) / true
    q16, q50, q84 = np.quantile(rel, [0.16, 0.5, 0.84])
    return {"mape": float(np.mean(np.abs(rel))), "resolution": float((q84 - q16) / 2), "bias": float(q50)}


def metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """:func:`relative_metrics` and the number of tracks ``n``."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    return {"n": int(len(true)), **relative_metrics(pred, true)}


def per_point_summary(
    table: Mapping[str, np.ndarray],
    estimators: Sequence[str],
    pt_edges: Sequence[float] = PT_EDGES,
    min_true: float = 0.5,
    *,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Rows ``{"pt_bin", "pt_low", "pt_high", "n", "<estimator>_mape", ..._resolution, ..._bias}``,
    one per track-pT bin and a last one for all tracks (``pt_bin: "all"``), on ``true >= min_true``.

    Every metric is an interval ``{"value", "low", "high"}``: value +- the standard deviation of
    ``n_bootstrap`` seeded bootstrap replicas over the bin's tracks
    (:func:`~hepnn_coffea.evaluation.intervals.bootstrap_interval`).
    """
    from hepnn_coffea.evaluation.intervals import bootstrap_interval

    true = np.asarray(table["true"], dtype=np.float64)
    pt = np.asarray(table["focus_pt"], dtype=np.float64)
    ok = true >= min_true
    edges = list(pt_edges)
    rows = []
    bins = [(f"{lo:g}-{hi:g}", lo, hi) for lo, hi in zip(edges[:-1], edges[1:])] + [
        ("all", edges[0], edges[-1])
    ]
    for name, lo, hi in bins:
        sel = ok & (pt >= lo) & (pt < hi) if name != "all" else ok
        row: dict[str, Any] = {"pt_bin": name, "pt_low": lo, "pt_high": hi, "n": int(sel.sum())}
        for est in estimators:
            pred = np.asarray(table[f"pred_{est}"], dtype=np.float64)[sel]
            m = bootstrap_interval(
                relative_metrics,
                (pred, true[sel]),
                n=n_bootstrap,
                seed=seed,
                floor={"mape": 0.0, "resolution": 0.0},
            )
            row.update({f"{est}_{k}": m[k] for k in ("mape", "resolution", "bias")})
        rows.append(row)
    return rows


def per_point_table(rows: Sequence[Mapping[str, Any]], estimators: Sequence[str]) -> Table:
    """One row per pT bin: tracks, then MAPE / resolution per estimator (``value +high -low``)."""
    return Table(
        ["track pT [GeV]", "tracks", *(f"{e} MAPE / res." for e in estimators)],
        [
            [
                r["pt_bin"],
                r["n"],
                *(
                    f"{format_interval(r[f'{e}_mape'])} / {format_interval(r[f'{e}_resolution'])}"
                    for e in estimators
                ),
            ]
            for r in rows
        ],
    )


def per_point_report(summary: Mapping[str, Any]) -> list[Block]:
    """The report of ``summary.md``: :func:`per_point_table` of the summary's rows."""
    return [per_point_table(summary["rows"], summary["estimators"])]


def summary_markdown(rows: Sequence[Mapping[str, Any]], estimators: Sequence[str]) -> str:
    """The Markdown of :func:`per_point_table` (no newline at the end)."""
    return render_markdown([per_point_table(rows, estimators)]).rstrip("\n")
