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
weighted linear slope and the spread of the medians.
"""

from __future__ import annotations

from typing import Any

import hist
import numpy as np

RESIDUAL_BINS = 400
TRUE_BINS = 20


def _sinh_edges(half_range: float, n: int = RESIDUAL_BINS, stretch: float = 7.0) -> np.ndarray:
    return half_range * np.sinh(np.linspace(-stretch, stretch, n + 1)) / np.sinh(stretch)


def target_binning(offset: float, scale: float) -> dict[str, Any]:
    """Axes ranges of one target from its training mean and standard deviation."""
    low, high = offset - 3.5 * scale, offset + 3.5 * scale
    return {"true": (float(low), float(high)), "residual": 3.0 * float(scale), "relative": low > 0}


def make_regression_hists(binning: dict[str, dict[str, Any]]) -> dict[str, hist.Hist]:
    """Empty hists for every target in ``binning`` (see :func:`target_binning`)."""
    out = {}
    for target, b in binning.items():
        low, high = b["true"]
        cats = [hist.axis.StrCategory([], growth=True, name=n, label=label)
                for n, label in (("process", "Sample"), ("estimator", "Estimator"), ("expert", "Expert"))]  # fmt: skip
        true = hist.axis.Regular(TRUE_BINS, low, high, name="true", label=f"true {target}")
        out[f"residual_{target}"] = hist.Hist(
            *cats, true, hist.axis.Variable(_sinh_edges(b["residual"]), name="residual", label=f"{target}: pred - true"),
            storage=hist.storage.Weight())  # fmt: skip
        if b["relative"]:
            out[f"relres_{target}"] = hist.Hist(
                *cats, true, hist.axis.Variable(_sinh_edges(1.0), name="residual", label=f"{target}: (pred - true) / true"),
                storage=hist.storage.Weight())  # fmt: skip
        out[f"pred_vs_true_{target}"] = hist.Hist(
            *cats[:2], hist.axis.Regular(50, low, high, name="true", label=f"true {target}"),
            hist.axis.Regular(50, low, high, name="pred", label=f"predicted {target}"), storage=hist.storage.Weight())  # fmt: skip
    return out


def fill_regression(hists: dict[str, hist.Hist], target: str, *, process: str, estimator: str, true: np.ndarray,
                    pred: np.ndarray, weight: np.ndarray, expert: np.ndarray | None = None) -> None:  # fmt: skip
    """Fill one target's hists for one estimator; ``expert`` (names per entry) also fills ``all``."""
    residual = pred - true
    groups = [("all", slice(None))]
    if expert is not None:
        groups += [(str(e), expert == e) for e in np.unique(expert)]
    for name, rows in groups:
        common = {"process": process, "estimator": estimator, "expert": name, "true": true[rows], "weight": weight[rows]}
        hists[f"residual_{target}"].fill(**common, residual=residual[rows])
        if f"relres_{target}" in hists:
            with np.errstate(divide="ignore", invalid="ignore"):
                hists[f"relres_{target}"].fill(**common, residual=(residual / true)[rows])
    hists[f"pred_vs_true_{target}"].fill(process=process, estimator=estimator, true=true, pred=pred, weight=weight)


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
    from scipy.optimize import curve_fit

    centers, widths = 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)
    core = (np.abs(centers - median) < 2 * width) & (counts > 0)
    if core.sum() < 5 or not width > 0:
        return float("nan"), float("nan")
    density = counts[core] / widths[core]

    def gauss(x: np.ndarray, norm: float, mu: float, sigma: float) -> np.ndarray:
        return norm * np.exp(-0.5 * ((x - mu) / sigma) ** 2)

    try:
        (_, mu, sigma), _ = curve_fit(gauss, centers[core], density, p0=(density.max(), median, width), maxfev=5000)
    except (RuntimeError, ValueError):
        return float("nan"), float("nan")
    return float(mu), float(abs(sigma))


def resolution(h: hist.Hist) -> dict[str, float]:
    """Median, 68% half-width, Gaussian core (mean, sigma) and sum of weights of a 1D residual hist.

    Entries beyond the residual axis (flow bins) count in the quantiles and in ``n``.
    """
    counts, edges = h.values(flow=True), h.axes[0].edges
    q16, q50, q84 = quantiles(counts, edges, [0.16, 0.5, 0.84], flow=True)
    width = 0.5 * (q84 - q16)
    mu, sigma = _gauss_sigma(counts[1:-1], edges, q50, width)
    return {"median": float(q50), "iqr68": float(width), "gauss_mean": mu, "gauss_sigma": sigma,
            "n": float(counts.sum())}  # fmt: skip


def bias_vs_true(h: hist.Hist, min_entries: float = 20) -> dict[str, Any]:
    """Median residual per true bin; ``slope`` (weighted linear fit) and ``spread`` of the medians."""
    counts = h.values(flow=True)[1:-1]  # (true bins, residual bins with flow)
    edges = h.axes["residual"].edges
    centers = h.axes["true"].centers
    n = counts.sum(axis=1)
    medians = np.array([quantiles(c, edges, [0.5], flow=True)[0] for c in counts])
    ok = n >= min_entries
    out = {"true": centers.tolist(), "median": medians.tolist(), "n": n.tolist(), "slope": float("nan"),
           "spread": float("nan")}  # fmt: skip
    if ok.sum() >= 2:
        slope, _ = np.polyfit(centers[ok], medians[ok], 1, w=np.sqrt(n[ok]))
        mean = np.average(medians[ok], weights=n[ok])
        out.update(slope=float(slope), spread=float(np.sqrt(np.average((medians[ok] - mean) ** 2, weights=n[ok]))))
    return out


def regression_summary(hists: dict[str, hist.Hist], targets: list[str]) -> list[dict[str, Any]]:
    """One row per target, estimator and expert: resolution, relative resolution, bias slope/spread."""
    rows = []
    for target in targets:
        h = hists[f"residual_{target}"][{"process": sum}]
        rel = hists.get(f"relres_{target}")
        rel = rel[{"process": sum}] if rel is not None else None
        for estimator in h.axes["estimator"]:
            for expert in h.axes["expert"]:
                sub = h[{"estimator": estimator, "expert": expert}]
                row = {"target": target, "estimator": estimator, "expert": expert,
                       **resolution(sub[{"true": sum}])}  # fmt: skip
                bias = bias_vs_true(sub)
                row.update(bias_slope=bias["slope"], bias_spread=bias["spread"])
                if rel is not None:
                    r = resolution(rel[{"estimator": estimator, "expert": expert, "true": sum}])
                    row.update(rel_median=r["median"], rel_iqr68=r["iqr68"], rel_gauss_sigma=r["gauss_sigma"])
                rows.append(row)
    return rows


def summary_markdown(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`regression_summary` rows."""
    cols = [("target", "target"), ("estimator", "estimator"), ("expert", "expert"), ("n", "entries"),
            ("median", "bias (median)"), ("iqr68", "resolution (68%/2)"), ("gauss_sigma", "core sigma"),
            ("rel_median", "rel. bias"), ("rel_iqr68", "rel. resolution"), ("bias_slope", "bias slope vs true"),
            ("bias_spread", "bias spread vs true")]  # fmt: skip
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = []
        for key, _ in cols:
            value = row.get(key)
            cells.append("-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
