"""Regression performance from ``hist`` objects: residuals, resolution and bias vs the true value.

Per target ``t`` the evaluation fills (weighted storage, axes ``process`` = sample,
``estimator`` = ``model`` / ``naive`` / ..., ``expert`` = expert name or ``all``):

``residual_<t>``      true value x (prediction - true)
``relres_<t>``        true value x (prediction - true) / true   (targets with a positive range only)
``pred_vs_true_<t>``  true value x prediction

The residual axes are sinh-spaced (fine near 0, wide in the tails), so one
binning resolves both a ~1% pT resolution and the tails. Resolution is given as
half the 16-84% interquantile range and as the sigma of a Gaussian fitted to the
core; bias vs true is the median residual per true-value bin, summarised by a
weighted linear slope and the spread of the medians. The summary computes every
metric from the per-entry table in the hists' binning (the same numbers) and quotes the
value +- the standard deviation of seeded bootstrap replicas over the entries
(:func:`~hepnn_coffea.evaluation.intervals.bootstrap_interval`); :func:`regression_report` is
the Markdown table of the summary (:mod:`hepnn_coffea.evaluation.protocol`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import hist
import numpy as np

if TYPE_CHECKING:
    from hepnn_coffea.evaluation.protocol import Block

RESIDUAL_BINS = 400
TRUE_BINS = 20
#: Summary metrics that cannot be negative (their intervals stop at 0).
NON_NEGATIVE = {
    "iqr68": 0.0,
    "gauss_sigma": 0.0,
    "rel_iqr68": 0.0,
    "rel_gauss_sigma": 0.0,
    "bias_spread": 0.0,
}


def _sinh_edges(half_range: float, n: int = RESIDUAL_BINS, stretch: float = 7.0) -> np.ndarray:
    return half_range * np.sinh(np.linspace(-stretch, stretch, n + 1)) / np.sinh(stretch)


def target_binning(offset: float, scale: float) -> dict[str, Any]:
    """Axes ranges of one target from its training mean and standard deviation."""
    low, high = offset - 3.5 * scale, offset + 3.5 * scale
    return {"true": (float(low), float(high)), "residual": 3.0 * float(scale), "relative": low > 0}


def make_regression_hists(binning: dict[str, dict[str, Any]]) -> dict[str, hist.Hist]:
    """Empty hists for every target in ``binning`` (see :func:`target_binning`)."""
    from hepnn_coffea.evaluation.protocol import method_axis, sample_axis

    out = {}
    for target, b in binning.items():
        low, high = b["true"]
        cats = [
            sample_axis(),
            method_axis(),
            hist.axis.StrCategory([], growth=True, name="expert", label="Expert"),
        ]
        true = hist.axis.Regular(TRUE_BINS, low, high, name="true", label=f"true {target}")
        out[f"residual_{target}"] = hist.Hist(
            *cats,
            true,
            hist.axis.Variable(_sinh_edges(b["residual"]), name="residual", label=f"{target}: pred - true"),
            storage=hist.storage.Weight(),
        )
        if b["relative"]:
            out[f"relres_{target}"] = hist.Hist(
                *cats,
                true,
                hist.axis.Variable(
                    _sinh_edges(1.0), name="residual", label=f"{target}: (pred - true) / true"
                ),
                storage=hist.storage.Weight(),
            )
        out[f"pred_vs_true_{target}"] = hist.Hist(
            *cats[:2],
            hist.axis.Regular(50, low, high, name="true", label=f"true {target}"),
            hist.axis.Regular(50, low, high, name="pred", label=f"predicted {target}"),
            storage=hist.storage.Weight(),
        )
    return out


def fill_regression(
    hists: dict[str, hist.Hist],
    target: str,
    *,
    process: str,
    estimator: str,
    true: np.ndarray,
    pred: np.ndarray,
    weight: np.ndarray,
    expert: np.ndarray | None = None,
) -> None:
    """Fill one target's hists for one estimator; ``expert`` (names per entry) also fills ``all``."""
    residual = pred - true
    groups = [("all", slice(None))]
    if expert is not None:
        groups += [(str(e), expert == e) for e in np.unique(expert)]
    for name, rows in groups:
        common = {
            "process": process,
            "estimator": estimator,
            "expert": name,
            "true": true[rows],
            "weight": weight[rows],
        }
        hists[f"residual_{target}"].fill(**common, residual=residual[rows])
        if f"relres_{target}" in hists:
            with np.errstate(divide="ignore", invalid="ignore"):
                hists[f"relres_{target}"].fill(**common, residual=(residual / true)[rows])
    hists[f"pred_vs_true_{target}"].fill(
        process=process, estimator=estimator, true=true, pred=pred, weight=weight
    )


def quantiles(counts: np.ndarray, edges: np.ndarray, qs: list[float], flow: bool = False) -> np.ndarray:
    """Quantiles of a binned distribution (linear inside bins); NaN if empty.

    With ``flow=True`` ``counts`` has an underflow and an overflow bin around the
    ``len(edges) - 1`` regular ones; they count in the total, and a quantile inside
    them is clamped to the axis edge.
    """
    counts = np.clip(np.asarray(counts, dtype=np.float64), 0, None)
    under, over = (counts[0], counts[-1]) if flow else (0.0, 0.0)
    inner = counts[1:-1] if flow else counts
    total = inner.sum() + under + over
    if not total > 0:
        return np.full(len(qs), np.nan)
    cumulative = (under + np.concatenate([[0.0], np.cumsum(inner)])) / total
    return np.interp(qs, cumulative, edges)


def _gauss_sigma(counts: np.ndarray, edges: np.ndarray, median: float, width: float) -> tuple[float, float]:
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    centers, widths = 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)
    core = (np.abs(centers - median) < 2 * width) & (counts > 0)
    if core.sum() < 5 or not width > 0:
        return float("nan"), float("nan")
    density = counts[core] / widths[core]

    def gauss(x: np.ndarray, norm: float, mu: float, sigma: float) -> np.ndarray:
        return norm * np.exp(-0.5 * ((x - mu) / sigma) ** 2)

    try:
        with warnings.catch_warnings():  # the parameters' covariance is not used
            warnings.simplefilter("ignore", OptimizeWarning)
            (_, mu, sigma), _ = curve_fit(
                gauss, centers[core], density, p0=(density.max(), median, width), maxfev=5000
            )
    except (RuntimeError, ValueError):
        return float("nan"), float("nan")
    return float(mu), float(abs(sigma))


def resolution(h: hist.Hist) -> dict[str, float]:
    """Median, 68% half-width, Gaussian core (mean, sigma) and sum of weights of a 1D residual hist.

    Entries beyond the residual axis (flow bins) count in the quantiles and in ``n``.
    """
    return resolution_from_counts(h.values(flow=True), h.axes[0].edges)


def resolution_from_counts(counts: np.ndarray, edges: np.ndarray) -> dict[str, float]:
    """:func:`resolution` of the sums of weights of a residual axis (``len(edges) + 1`` bins, flow
    included)."""
    q16, q50, q84 = quantiles(counts, edges, [0.16, 0.5, 0.84], flow=True)
    width = 0.5 * (q84 - q16)
    mu, sigma = _gauss_sigma(counts[1:-1], edges, q50, width)
    return {
        "median": float(q50),
        "iqr68": float(width),
        "gauss_mean": mu,
        "gauss_sigma": sigma,
        "n": float(counts.sum()),
    }


def bias_vs_true(h: hist.Hist, min_entries: float = 20) -> dict[str, Any]:
    """Median residual per true bin; ``slope`` (weighted linear fit) and ``spread`` of the medians."""
    counts = h.values(flow=True)[1:-1]  # (true bins, residual bins with flow)
    return bias_from_counts(counts, h.axes["residual"].edges, h.axes["true"].centers, min_entries)


def bias_from_counts(
    counts: np.ndarray, edges: np.ndarray, centers: np.ndarray, min_entries: float = 20
) -> dict[str, Any]:
    """:func:`bias_vs_true` of sums of weights (true bins x residual bins with flow)."""
    n = counts.sum(axis=1)
    medians = np.array([quantiles(c, edges, [0.5], flow=True)[0] for c in counts])
    ok = n >= min_entries
    out = {
        "true": centers.tolist(),
        "median": medians.tolist(),
        "n": n.tolist(),
        "slope": float("nan"),
        "spread": float("nan"),
    }
    if ok.sum() >= 2:
        slope, _ = np.polyfit(centers[ok], medians[ok], 1, w=np.sqrt(n[ok]))
        mean = np.average(medians[ok], weights=n[ok])
        out.update(
            slope=float(slope), spread=float(np.sqrt(np.average((medians[ok] - mean) ** 2, weights=n[ok])))
        )
    return out


def flow_counts(values: Sequence[np.ndarray], edges: Sequence[np.ndarray], weight: np.ndarray) -> np.ndarray:
    """Sums of ``weight`` binned as a ``hist`` with flow bins (``len(e) + 1`` per axis; NaN goes above)."""
    shape = tuple(len(e) + 1 for e in edges)
    index = np.ravel_multi_index([np.digitize(v, e) for v, e in zip(values, edges)], shape)
    return np.bincount(index, weights=weight, minlength=int(np.prod(shape))).reshape(shape)


def entry_metrics(
    true: np.ndarray,
    pred: np.ndarray,
    weight: np.ndarray,
    *,
    true_edges: np.ndarray,
    residual_edges: np.ndarray,
    relative_edges: np.ndarray | None = None,
) -> dict[str, float]:
    """The metrics of one summary row from its entries, binned as the residual hists are.

    Returns ``median``, ``iqr68``, ``gauss_mean``, ``gauss_sigma`` (of pred - true),
    ``bias_slope``, ``bias_spread`` and, with ``relative_edges``, ``rel_median``, ``rel_iqr68``,
    ``rel_gauss_sigma`` (of (pred - true) / true): exactly :func:`resolution` and
    :func:`bias_vs_true` of the hists these entries fill.
    """
    residual = pred - true
    counts = flow_counts([true, residual], [true_edges, residual_edges], weight)
    res = resolution_from_counts(counts.sum(axis=0), residual_edges)
    bias = bias_from_counts(counts[1:-1], residual_edges, 0.5 * (true_edges[1:] + true_edges[:-1]))
    out = {k: res[k] for k in ("median", "iqr68", "gauss_mean", "gauss_sigma")}
    out.update(bias_slope=bias["slope"], bias_spread=bias["spread"])
    if relative_edges is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = resolution_from_counts(
                flow_counts([residual / true], [relative_edges], weight), relative_edges
            )
        out.update(rel_median=rel["median"], rel_iqr68=rel["iqr68"], rel_gauss_sigma=rel["gauss_sigma"])
    return out


def regression_summary(
    hists: dict[str, hist.Hist],
    targets: list[str],
    table: Mapping[str, np.ndarray],
    *,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per target, estimator and expert: resolution, relative resolution, bias slope/spread.

    Every metric is an interval ``{"value", "low", "high"}``: :func:`entry_metrics` of the
    ``table``'s entries (``scores.parquet``: ``weight``, ``expert``, ``true_<t>``, ``pred_<t>``,
    ``<estimator>_<t>``) in the binning of the ``hists``, +- the standard deviation of
    ``n_bootstrap`` seeded bootstrap replicas over the entries (weights travel with them);
    widths and spreads stop at 0 (:data:`NON_NEGATIVE`). ``n``: the sum of weights.
    """
    from hepnn_coffea.evaluation.intervals import bootstrap_interval

    weight = np.asarray(table["weight"], dtype=np.float64)
    expert = np.asarray(table["expert"]).astype(str) if "expert" in table else np.full(len(weight), "all")
    rows = []
    for target in targets:
        h, rel = hists[f"residual_{target}"], hists.get(f"relres_{target}")
        stat = partial(
            entry_metrics,
            true_edges=h.axes["true"].edges,
            residual_edges=h.axes["residual"].edges,
            relative_edges=None if rel is None else rel.axes["residual"].edges,
        )
        true = np.asarray(table[f"true_{target}"], dtype=np.float64)
        for estimator in h.axes["estimator"]:
            pred = np.asarray(
                table[f"{'pred' if estimator == 'model' else estimator}_{target}"], dtype=np.float64
            )
            for name in h.axes["expert"]:
                sel = np.ones(len(true), dtype=bool) if name == "all" else expert == name
                row = {
                    "target": target,
                    "estimator": estimator,
                    "expert": name,
                    "n": float(weight[sel].sum()),
                }
                row.update(
                    bootstrap_interval(
                        stat,
                        (true[sel], pred[sel]),
                        weight[sel],
                        n=n_bootstrap,
                        seed=seed,
                        floor=NON_NEGATIVE,
                    )
                )
                rows.append(row)
    return rows


#: Columns of the regression table: summary row key -> header.
REPORT_COLUMNS = {
    "target": "target",
    "estimator": "estimator",
    "expert": "expert",
    "n": "entries",
    "median": "bias (median)",
    "iqr68": "resolution (68%/2)",
    "gauss_sigma": "core sigma",
    "rel_median": "rel. bias",
    "rel_iqr68": "rel. resolution",
    "bias_slope": "bias slope vs true",
    "bias_spread": "bias spread vs true",
}


def regression_report(summary: Mapping[str, Any]) -> list[Block]:
    """The report of ``summary.md``: one table row per :func:`regression_summary` row
    (``value +high -low``)."""
    from hepnn_coffea.evaluation.protocol import Table

    return [
        Table(
            list(REPORT_COLUMNS.values()), [[row.get(k) for k in REPORT_COLUMNS] for row in summary["rows"]]
        )
    ]
