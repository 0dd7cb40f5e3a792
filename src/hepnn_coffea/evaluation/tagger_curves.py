"""Binned performance of a binary tagger: efficiency and rejection vs a jet variable, mass after cuts.

Pure functions over per-jet arrays (score, truth, weight, variable) with the conventions of
:mod:`hepnn_coffea.evaluation.sculpting`: a cut is ``score >= threshold``, a working point is
defined by its weighted signal efficiency, and every per-bin efficiency carries its
Clopper-Pearson interval with the bin's Kish ``n_eff`` (NaN for an empty bin). A rejection
``1/eps_B`` inverts the efficiency interval (``high = inf`` where no background passes).

Two kinds of working point, as in ATLAS's ``puma``:

* global: one threshold for all jets (the signal efficiency then varies from bin to bin);
* per bin: a threshold per bin giving the target signal efficiency in every bin (the
  signal efficiency is flat by construction; the background rejection shows the tagger's
  discrimination at fixed efficiency).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hepnn_coffea.evaluation import sculpting as sc

#: Working points (signal efficiency; None = no cut) of the background-mass-after-cuts plot.
MASS_CUTS = (None, 0.7, 0.5, 0.3)


def nice_edges(x: np.ndarray, n_bins: int = 8, quantiles: tuple[float, float] = (0.005, 0.995)) -> np.ndarray:
    """About ``n_bins`` equal bins on round numbers covering the central ``quantiles`` of ``x``.

    The bin width is 1, 2, 2.5 or 5 times a power of ten; the edges are multiples of it.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        raise ValueError("no finite values to bin")
    low, high = np.quantile(x, quantiles)
    if high <= low:
        return np.array([low - 0.5, low + 0.5])
    raw = (high - low) / n_bins
    power = 10.0 ** np.floor(np.log10(raw))
    width = power * min((m for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw), default=10.0)
    start, stop = np.floor(low / width) * width, np.ceil(high / width) * width
    return np.round(np.arange(start, stop + 0.5 * width, width), 10)


def _rejection(eff: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rejection (value, low, high) from a binned efficiency; inf where the efficiency is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "value": 1.0 / eff["value"],
            "low": 1.0 / eff["high"],
            "high": 1.0 / eff["low"],
            "n_eff": eff["n_eff"],
        }


def bin_thresholds(
    score: np.ndarray, weight: np.ndarray, variable: np.ndarray, edges: np.ndarray, efficiency: float
) -> np.ndarray:
    """Per-bin thresholds giving ``efficiency`` of the (signal) weight in every bin (NaN if empty)."""
    index = np.searchsorted(edges, np.asarray(variable, dtype=np.float64), side="right") - 1
    out = np.full(len(edges) - 1, np.nan)
    for i in range(len(out)):
        sel = index == i
        if sel.any() and np.sum(weight[sel]) > 0:
            out[i] = float(sc.thresholds_at_efficiency(score[sel], weight[sel], efficiency))
    return out


def _passes_per_bin(
    score: np.ndarray, variable: np.ndarray, edges: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    index = np.clip(
        np.searchsorted(edges, np.asarray(variable, dtype=np.float64), side="right") - 1,
        0,
        len(thresholds) - 1,
    )
    t = thresholds[index]
    return np.isfinite(t) & (score >= np.where(np.isfinite(t), t, np.inf))


def performance_vs(
    score: np.ndarray,
    is_signal: np.ndarray,
    weight: np.ndarray,
    variable: np.ndarray,
    edges: np.ndarray,
    efficiency: float = 0.5,
) -> dict[str, Any]:
    """Efficiencies and background rejection per bin of ``variable`` at a signal efficiency.

    Returns
    -------
    dict
        ``edges``, ``eff_signal`` (the target), ``threshold`` (global); ``global``:
        ``signal`` and ``background`` (binned efficiencies: ``value``, ``low``, ``high``,
        ``n_eff``, see :func:`~hepnn_coffea.evaluation.sculpting.binned_efficiency`) and
        ``rejection``; ``per_bin``: the same, and the ``thresholds`` per bin. ``{"eff_signal":
        eff, variable: out["global"]}`` is what
        :func:`hepnn_coffea.plotting.events_plots.plot_efficiency` reads.
    """
    score = np.asarray(score, dtype=np.float64)
    s = np.asarray(is_signal, dtype=bool)
    w = np.asarray(weight, dtype=np.float64)
    x = np.asarray(variable, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    threshold = float(sc.thresholds_at_efficiency(score[s], w[s], efficiency))
    out: dict[str, Any] = {"edges": edges, "eff_signal": efficiency, "threshold": threshold}
    thresholds = bin_thresholds(score[s], w[s], x[s], edges, efficiency)
    for kind, passed in (
        ("global", score >= threshold),
        ("per_bin", _passes_per_bin(score, x, edges, thresholds)),
    ):
        sig = sc.binned_efficiency(passed[s], x[s], w[s], edges)
        bkg = sc.binned_efficiency(passed[~s], x[~s], w[~s], edges)
        out[kind] = {"signal": sig, "background": bkg, "rejection": _rejection(bkg)}
    out["per_bin"]["thresholds"] = thresholds
    return out


def mass_after_cuts(
    score: np.ndarray,
    is_signal: np.ndarray,
    weight: np.ndarray,
    mass: np.ndarray,
    edges: np.ndarray,
    efficiencies: Sequence[float | None] = MASS_CUTS,
    *,
    n_bootstrap: int = 20,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Background ``mass`` hist (sum w, sum w^2) without and with cuts at signal efficiencies.

    Returns
    -------
    list of dict
        Per cut: ``eff_signal`` (None = no cut), ``threshold``, ``eff_background`` (number),
        ``edges``, ``values``, ``variances``; with a cut also ``rejection`` and
        ``inv_jsd_interval`` (1/JSD of the passing vs failing background mass, see
        :func:`hepnn_coffea.evaluation.sculpting.mass_sculpting`) and ``inv_jsd``
        (its value). The format :func:`hepnn_coffea.plotting.events_plots.plot_mass_after_cuts` reads.
    """
    score = np.asarray(score, dtype=np.float64)
    s = np.asarray(is_signal, dtype=bool)
    w = np.asarray(weight, dtype=np.float64)
    m = np.asarray(mass, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    out = []
    for eff in efficiencies:
        threshold = -np.inf if eff is None else float(sc.thresholds_at_efficiency(score[s], w[s], eff))
        sel = ~s & (score >= threshold)
        values, _ = np.histogram(m[sel], edges, weights=w[sel])
        variances, _ = np.histogram(m[sel], edges, weights=w[sel] ** 2)
        cut: dict[str, Any] = {
            "eff_signal": eff,
            "threshold": threshold,
            "edges": edges,
            "values": values,
            "variances": variances,
            "eff_background": float(w[sel].sum() / w[~s].sum()),
        }
        if eff is not None:
            wp = sc.working_point(score[s], w[s], score[~s], w[~s], eff)
            shape = sc.mass_sculpting(
                score[~s], m[~s], w[~s], threshold, edges=edges, n_bootstrap=n_bootstrap, seed=seed
            )
            cut.update(
                rejection=wp["rejection"],
                inv_jsd_interval=shape["inv_jsd"],
                inv_jsd=shape["inv_jsd"]["value"],
            )
        out.append(cut)
    return out
