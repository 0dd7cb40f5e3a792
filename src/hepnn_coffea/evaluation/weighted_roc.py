"""Weighted ROC quantities with intervals: AUC, thresholds at an efficiency, working points, rejection curves.

Pure functions over numpy arrays (a discriminant is cut as ``score >= threshold``); the
interval conventions are those of :mod:`hepnn_coffea.evaluation.sculpting`, which builds the
mass-sculpting metrics on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepnn_coffea.evaluation.intervals import (
    Interval,
    clopper_pearson,
    efficiency_interval,
    interval,
    kish_n_eff,
    rejection_interval,
)


def discriminant(score_signal: np.ndarray, score_background: np.ndarray) -> np.ndarray:
    """``s_S / (s_S + s_B)`` from per-class softmax scores (0 where both are 0)."""
    s = np.asarray(score_signal, dtype=np.float64)
    total = s + np.asarray(score_background, dtype=np.float64)
    return np.divide(s, total, out=np.zeros_like(s), where=total > 0)


def _tie_groups(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order sorting ``score`` ascending and the start of every group of equal scores in it."""
    order = np.argsort(score, kind="mergesort")
    starts = np.concatenate([[0], np.flatnonzero(np.diff(score[order])) + 1])
    return order, starts


def _auc_from_groups(w_signal: np.ndarray, w_background: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Weighted AUC of (replicas of) sorted weights; the last axis runs over jets, ties count 1/2."""
    sig = np.add.reduceat(w_signal, starts, axis=-1)
    bkg = np.add.reduceat(w_background, starts, axis=-1)
    below = np.cumsum(bkg, axis=-1) - bkg
    num = np.sum(sig * (below + 0.5 * bkg), axis=-1)
    return num / (sig.sum(axis=-1) * bkg.sum(axis=-1))


def weighted_auc(score: np.ndarray, is_signal: np.ndarray, weight: np.ndarray) -> float:
    """Weighted ROC AUC (the probability a signal jet scores above a background jet, ties 1/2)."""
    score = np.asarray(score, dtype=np.float64)
    is_signal = np.asarray(is_signal, dtype=bool)
    weight = np.asarray(weight, dtype=np.float64)
    if not is_signal.any() or is_signal.all():
        raise ValueError("need both signal and background jets for an AUC")
    order, starts = _tie_groups(score)
    w, s = weight[order], is_signal[order]
    return float(_auc_from_groups(np.where(s, w, 0.0), np.where(s, 0.0, w), starts))


def auc_interval(
    score: np.ndarray,
    is_signal: np.ndarray,
    weight: np.ndarray,
    *,
    n_bootstrap: int = 100,
    seed: int = 0,
    batch: int = 10,
) -> Interval:
    """Weighted AUC +- the spread of ``n_bootstrap`` seeded Poisson-bootstrap replicas (clipped to [0, 1])."""
    value = weighted_auc(score, is_signal, weight)
    if n_bootstrap < 2:
        return interval(value, value, value)
    order, starts = _tie_groups(np.asarray(score, dtype=np.float64))
    w = np.asarray(weight, dtype=np.float64)[order]
    s = np.asarray(is_signal, dtype=bool)[order]
    rng = np.random.default_rng(seed)
    replicas = []
    for done in range(0, n_bootstrap, batch):
        wr = w * rng.poisson(1.0, size=(min(batch, n_bootstrap - done), len(w)))
        replicas.append(_auc_from_groups(np.where(s, wr, 0.0), np.where(s, 0.0, wr), starts))
    spread = float(np.nanstd(np.concatenate(replicas), ddof=1))
    return interval(value, max(value - spread, 0.0), min(value + spread, 1.0))


def thresholds_at_efficiency(score: np.ndarray, weight: np.ndarray, efficiency: Any) -> np.ndarray:
    """Lowest cuts ``score >= t`` keeping at least ``efficiency`` of the (signal) weight.

    The weighted ``1 - efficiency`` quantile of ``score``: scores sorted descending, the first
    one where the cumulative weight fraction reaches the target.
    """
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    fraction = np.cumsum(np.asarray(weight, dtype=np.float64)[order])
    fraction /= fraction[-1]
    index = np.searchsorted(fraction, np.asarray(efficiency, dtype=np.float64) - 1e-12, side="left")
    return score[order][np.clip(index, 0, len(score) - 1)]


def weight_above(score: np.ndarray, weight: np.ndarray, thresholds: Any) -> np.ndarray:
    """Sum of ``weight`` of the entries with ``score >= t`` for every threshold ``t``."""
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(score, kind="mergesort")
    prefix = np.concatenate([[0.0], np.cumsum(np.asarray(weight, dtype=np.float64)[order])])
    index = np.searchsorted(score[order], np.asarray(thresholds, dtype=np.float64), side="left")
    return prefix[-1] - prefix[index]


def working_point(
    disc_signal: np.ndarray,
    w_signal: np.ndarray,
    disc_background: np.ndarray,
    w_background: np.ndarray,
    efficiency: float,
) -> dict[str, Any]:
    """Threshold at a signal efficiency and the background efficiency and rejection there.

    Returns
    -------
    dict
        ``threshold``, ``eff_signal`` (achieved, >= target), ``eff_background`` and
        ``rejection`` (intervals, Clopper-Pearson with the Kish n_eff of the background).
    """
    threshold = float(thresholds_at_efficiency(disc_signal, w_signal, efficiency))
    eff_s = float(weight_above(disc_signal, w_signal, threshold)) / float(np.sum(w_signal))
    passed = float(weight_above(disc_background, w_background, threshold))
    eff_b = efficiency_interval(passed, float(np.sum(w_background)), kish_n_eff(w_background))
    return {
        "threshold": threshold,
        "eff_signal": eff_s,
        "eff_background": eff_b,
        "rejection": rejection_interval(eff_b),
    }


def rejection_curve(
    disc_signal: np.ndarray,
    w_signal: np.ndarray,
    disc_background: np.ndarray,
    w_background: np.ndarray,
    efficiencies: Any = None,
) -> dict[str, np.ndarray]:
    """Background rejection with its 68% band on a grid of signal efficiencies (for ROC plots).

    Returns
    -------
    dict
        ``eff_signal`` (achieved), ``rejection``, ``low``, ``high`` arrays (inf where no
        background passes).
    """
    efficiencies = np.linspace(0.02, 1.0, 99) if efficiencies is None else np.asarray(efficiencies)
    thresholds = thresholds_at_efficiency(disc_signal, w_signal, efficiencies)
    eff_s = weight_above(disc_signal, w_signal, thresholds) / np.sum(w_signal)
    eff_b = weight_above(disc_background, w_background, thresholds) / np.sum(w_background)
    n_eff = kish_n_eff(w_background)
    low, high = clopper_pearson(eff_b * n_eff, n_eff)
    with np.errstate(divide="ignore"):
        return {"eff_signal": eff_s, "rejection": 1.0 / eff_b, "low": 1.0 / high, "high": 1.0 / low}
