"""Weighted tagger metrics with uncertainties: AUC, QCD rejection, mass sculpting (1/JSD), efficiencies.

Pure functions over numpy arrays, used by :mod:`hepnn_coffea.evaluation.events_eval`.
A signal-vs-background discriminant is cut as ``score >= threshold``; a working point is
defined by its (weighted) signal efficiency. Every number comes as an *interval*
``{"value", "low", "high"}``: the central value and the bounds of a 68.27% interval
(``low <= value <= high``; ``None`` stands for an infinite or undefined bound):

* efficiencies: Clopper-Pearson with the Kish effective number of entries
  ``n_eff = (sum w)^2 / sum w^2`` (``k = eff * n_eff`` "passing" out of ``n_eff``),
  the working point's threshold taken as fixed; a rejection ``1/eps_B`` inverts the bounds;
* AUC and JSD: value +- the standard deviation of Poisson-bootstrap replicas (every jet's
  weight times a Poisson(1) count; seeded), clipped to the allowed range; 1/JSD inverts
  the JSD interval.

Mass sculpting follows the DisCo / ParticleNet-MD papers: the Jensen-Shannon divergence
(log base 2, so 0 <= JSD <= 1) between the normalised background mass distributions of
jets passing and failing the cut, quoted as 1/JSD (large = little sculpting).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepnn_coffea.evaluation.intervals import clopper_pearson, interval, kish_n_eff
from hepnn_coffea.evaluation.weighted_roc import (  # noqa: F401 (re-exported: the names lived here)
    auc_interval,
    discriminant,
    rejection_curve,
    thresholds_at_efficiency,
    weight_above,
    weighted_auc,
    working_point,
)

#: Soft-drop mass binning of the sculpting metric (GeV): 40 bins from 0 to 300.
MSD_EDGES = np.linspace(0.0, 300.0, 41)
#: Background class of every discriminant (the jets labelled so); label of jets matched to no class.
BACKGROUND = "QCD"
UNMATCHED = "unmatched"
#: Signal efficiencies of the quoted working points.
WORKING_POINTS = (0.3, 0.5)
#: Working points (signal efficiency; None = no cut) of the QCD mass-after-cut plot.
MASS_PLOT_POINTS = (None, 0.7, 0.5, 0.3)
#: Fat-jet pT bins (GeV) of the efficiency curves and hists.
PT_EDGES = np.array([200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 1000, 1200, 1500, 2000, 3000.0])
#: Soft-drop mass bins of the efficiency curves (GeV).
MSD_EFF_EDGES = np.linspace(0.0, 300.0, 16)


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (log base 2) of hists ``p``, ``q`` (normalised here; bins: last axis)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    q = q / q.sum(axis=-1, keepdims=True)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> np.ndarray:
        ratio = np.divide(a, m, out=np.ones_like(a), where=a > 0)
        return np.sum(a * np.log2(ratio), axis=-1)

    return 0.5 * kl(p) + 0.5 * kl(q)


def mass_sculpting(
    disc_background: np.ndarray,
    mass_background: np.ndarray,
    w_background: np.ndarray,
    threshold: float,
    *,
    edges: np.ndarray = MSD_EDGES,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """Background mass shapes passing/failing ``disc >= threshold`` and their JSD (log base 2).

    Jets outside ``edges`` are ignored. The JSD interval is the value +- the spread of seeded
    Poisson-bootstrap replicas of the background jets (threshold fixed); ``inv_jsd`` inverts it.

    Returns
    -------
    dict
        ``jsd``, ``inv_jsd`` (intervals), ``edges``, ``hist_pass``, ``hist_fail`` (weighted sums),
        ``inv_jsd_random_cut``: the mean 1/JSD of random cuts with the same pass fraction (the
        statistical limit: what a perfectly decorrelated tagger would get on these jets).
    """
    mass = np.asarray(mass_background, dtype=np.float64)
    w = np.asarray(w_background, dtype=np.float64)
    nbins = len(edges) - 1
    inside = (mass >= edges[0]) & (mass < edges[-1])
    passed = np.asarray(disc_background, dtype=np.float64)[inside] >= threshold
    cell = np.searchsorted(edges, mass[inside], side="right") - 1 + nbins * passed
    w = w[inside]

    def shapes(weights: np.ndarray) -> np.ndarray:
        return np.bincount(cell, weights=weights, minlength=2 * nbins).reshape(2, nbins)

    fail, pass_ = shapes(w)

    def shapes_random(chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bins = np.searchsorted(edges, mass[inside], side="right") - 1
        return (
            np.bincount(bins[chosen], weights=w[chosen], minlength=nbins),
            np.bincount(bins[~chosen], weights=w[~chosen], minlength=nbins),
        )

    if fail.sum() <= 0 or pass_.sum() <= 0:
        nan = interval(np.nan, np.nan, np.nan)
        return {"jsd": nan, "inv_jsd": nan, "edges": edges, "hist_pass": pass_, "hist_fail": fail}
    value = float(jensen_shannon(pass_, fail))
    spread = 0.0
    if n_bootstrap >= 2:
        rng = np.random.default_rng(seed)
        reps = np.array([shapes(w * rng.poisson(1.0, len(w))) for _ in range(n_bootstrap)])
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = float(np.nanstd(jensen_shannon(reps[:, 1], reps[:, 0]), ddof=1))
    low, high = max(value - spread, 0.0), min(value + spread, 1.0)
    with np.errstate(divide="ignore"):
        inv = interval(1.0 / value, 1.0 / high, 1.0 / low if low > 0 else np.inf)
    # the same pass fraction drawn at random, jet by jet: the 1/JSD of a perfectly decorrelated
    # tagger with these statistics (finite samples bias the JSD up, so 1/JSD cannot exceed it much)
    rng = np.random.default_rng([seed, 1])
    fraction = pass_.sum() / (pass_.sum() + fail.sum())
    floor = [
        jensen_shannon(*shapes_random(rng.random(len(w)) < fraction)) for _ in range(max(n_bootstrap // 5, 5))
    ]
    return {
        "jsd": interval(value, low, high),
        "inv_jsd": inv,
        "edges": edges,
        "hist_pass": pass_,
        "hist_fail": fail,
        "inv_jsd_random_cut": float(1.0 / np.mean(floor)),
    }


def binned_efficiency(
    passed: np.ndarray, variable: np.ndarray, weight: np.ndarray, edges: np.ndarray
) -> dict[str, np.ndarray]:
    """Weighted efficiency per bin of ``variable`` with Clopper-Pearson/Kish intervals (NaN if empty).

    Returns
    -------
    dict
        ``edges``, ``value``, ``low``, ``high``, ``n_eff`` arrays (one entry per bin).
    """
    x = np.asarray(variable, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    nbins = len(edges) - 1
    index = np.searchsorted(edges, x, side="right") - 1
    inside = (index >= 0) & (index < nbins)
    index, w, ok = index[inside], w[inside], np.asarray(passed, dtype=bool)[inside]
    total = np.bincount(index, weights=w, minlength=nbins)
    sum_w2 = np.bincount(index, weights=w * w, minlength=nbins)
    passing = np.bincount(index, weights=np.where(ok, w, 0.0), minlength=nbins)
    n_eff = np.divide(total**2, sum_w2, out=np.zeros(nbins), where=sum_w2 > 0)
    value = np.divide(passing, total, out=np.full(nbins, np.nan), where=total > 0)
    low, high = clopper_pearson(np.nan_to_num(value) * n_eff, n_eff)
    return {
        "edges": np.asarray(edges, dtype=np.float64),
        "value": value,
        "low": low,
        "high": high,
        "n_eff": n_eff,
    }


# --- metrics of a per-jet table ------------------------------------------------------------------


def signal_vs_background(columns: Mapping[str, np.ndarray], signal: str) -> dict[str, np.ndarray]:
    """Discriminant, weight, mass and pT of the signal (``s_*``) and QCD (``b_*``) jets."""
    label = np.asarray(columns["label"]).astype(str)
    disc = discriminant(columns[f"score_{signal}"], columns[f"score_{BACKGROUND}"])
    out = {}
    for key, sel in (("s", label == signal), ("b", label == BACKGROUND)):
        if not sel.any():
            raise ValueError(f"no jets labelled {signal if key == 's' else BACKGROUND!r} in the table")
        out[f"{key}_disc"] = disc[sel]
        for name, column in (("w", "weight"), ("msd", "FatJet_msoftdrop"), ("pt", "FatJet_pt")):
            out[f"{key}_{name}"] = np.asarray(columns[column], dtype=np.float64)[sel]
    return out


def tagger_metrics(
    columns: Mapping[str, np.ndarray], signal: str, *, n_bootstrap: int = 100, seed: int = 0
) -> dict[str, Any]:
    """AUC, QCD rejection and mass sculpting (1/JSD) of ``signal`` vs QCD at :data:`WORKING_POINTS`.

    Returns
    -------
    dict
        ``n_signal``, ``n_background``, ``n_eff_signal``, ``n_eff_background``, ``auc``,
        ``rejection_at_<pct>``, ``inv_jsd_at_<pct>`` (intervals) and ``working_points``
        (``eff_s_<pct>%``: ``threshold``, ``eff_signal``, ``eff_background``, ``rejection``,
        ``jsd``, ``inv_jsd``).
    """
    d = signal_vs_background(columns, signal)
    disc = np.concatenate([d["s_disc"], d["b_disc"]])
    is_signal = np.concatenate([np.ones(len(d["s_disc"]), bool), np.zeros(len(d["b_disc"]), bool)])
    out: dict[str, Any] = {
        "n_signal": len(d["s_w"]),
        "n_background": len(d["b_w"]),
        "n_eff_signal": kish_n_eff(d["s_w"]),
        "n_eff_background": kish_n_eff(d["b_w"]),
        "auc": auc_interval(
            disc, is_signal, np.concatenate([d["s_w"], d["b_w"]]), n_bootstrap=n_bootstrap, seed=seed
        ),
        "working_points": {},
    }
    for eff in WORKING_POINTS:
        pct = round(eff * 100)
        wp = working_point(d["s_disc"], d["s_w"], d["b_disc"], d["b_w"], eff)
        shape = mass_sculpting(
            d["b_disc"], d["b_msd"], d["b_w"], wp["threshold"], n_bootstrap=n_bootstrap, seed=seed
        )
        wp.update(
            jsd=shape["jsd"], inv_jsd=shape["inv_jsd"], inv_jsd_random_cut=shape.get("inv_jsd_random_cut")
        )
        out["working_points"][f"eff_s_{pct}%"] = wp
        out[f"rejection_at_{pct}"] = wp["rejection"]
        out[f"inv_jsd_at_{pct}"] = wp["inv_jsd"]
    return out


def mass_after_cuts(
    columns: Mapping[str, np.ndarray], signal: str, efficiencies: Sequence[float | None] = MASS_PLOT_POINTS
) -> list[dict[str, Any]]:
    """Weighted QCD soft-drop mass after cuts at signal efficiencies (``None``: no cut).

    Returns
    -------
    list of dict
        Per cut: ``eff_signal``, ``threshold``, ``eff_background``, ``inv_jsd`` (passing vs
        failing), with a cut also ``rejection`` and ``inv_jsd_interval`` (68% intervals),
        ``edges`` (:data:`MSD_EDGES`), ``values`` (sum w), ``variances`` (sum w^2).
    """
    d = signal_vs_background(columns, signal)
    out = []
    for eff in efficiencies:
        threshold = -np.inf if eff is None else float(thresholds_at_efficiency(d["s_disc"], d["s_w"], eff))
        sel = d["b_disc"] >= threshold
        values, _ = np.histogram(d["b_msd"][sel], MSD_EDGES, weights=d["b_w"][sel])
        variances, _ = np.histogram(d["b_msd"][sel], MSD_EDGES, weights=d["b_w"][sel] ** 2)
        failing, _ = np.histogram(d["b_msd"][~sel], MSD_EDGES, weights=d["b_w"][~sel])
        inv_jsd = np.nan
        if values.sum() > 0 and failing.sum() > 0:
            with np.errstate(divide="ignore"):
                inv_jsd = float(1.0 / jensen_shannon(values, failing))
        eff_b = d["b_w"][sel].sum() / d["b_w"].sum()
        intervals = {}
        if eff is not None:  # the legend quotes both numbers with their 68% intervals
            wp = working_point(d["s_disc"], d["s_w"], d["b_disc"], d["b_w"], eff)
            shape = mass_sculpting(d["b_disc"], d["b_msd"], d["b_w"], threshold, n_bootstrap=20)
            intervals = {"rejection": wp["rejection"], "inv_jsd_interval": shape["inv_jsd"]}
        out.append(
            {
                "eff_signal": eff,
                "threshold": threshold,
                "eff_background": eff_b,
                "inv_jsd": inv_jsd,
                "edges": MSD_EDGES,
                "values": values,
                "variances": variances,
                **intervals,
            }
        )
    return out
