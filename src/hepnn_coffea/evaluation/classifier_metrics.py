"""Binary-classifier metrics with 68% intervals, from the per-jet table or from the score hist.

Every number is an interval ``{"value", "low", "high"}`` (see
:mod:`hepnn_coffea.evaluation.intervals`), defined as in the event-level evaluation
(:mod:`hepnn_coffea.evaluation.sculpting`, whose helpers are used here):

* AUC: value +- the standard deviation of seeded Poisson-bootstrap replicas over jets
  (every jet's weight times a Poisson(1) count). From a hist, every score bin is one group of
  tied scores and a replica draws its content as ``sum_w / n_eff * Poisson(n_eff)`` with the
  bin's Kish ``n_eff = sum_w^2 / sum_w2`` (exactly the jet bootstrap for unit weights);
* efficiencies and accuracy: Clopper-Pearson with the Kish effective number of entries;
* background rejection ``1/eps_B`` at a signal efficiency: the inverted efficiency interval
  (threshold taken as fixed);
* comparisons of two models scored on the same jets (:func:`paired_comparison`): the AUC
  difference and the rejection ratio with the spread of *paired* bootstrap replicas (both
  models see the same replica weights), so the correlation of the two is accounted for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hepnn_coffea.evaluation import weighted_roc as sc
from hepnn_coffea.evaluation.intervals import (
    Interval,
    efficiency_interval,
    interval,
    kish_n_eff,
    rejection_interval,
)

#: Signal efficiencies of the quoted ``rejection_at_<pct>`` metrics.
WORKING_POINTS = (0.3, 0.5)


def _pct(efficiency: float) -> int:
    return round(efficiency * 100)


def table_metrics(
    score: np.ndarray,
    is_signal: np.ndarray,
    weight: np.ndarray,
    correct: np.ndarray | None = None,
    *,
    efficiencies: Sequence[float] = WORKING_POINTS,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """AUC, accuracy and background rejection of per-jet scores, each with its 68% interval.

    Parameters
    ----------
    score, is_signal, weight
        Signal score, truth and weight of every jet.
    correct
        Whether each jet's predicted class is its true one (accuracy; ``None``: not quoted).
    efficiencies
        Signal efficiencies of the working points (cut ``score >= threshold``).

    Returns
    -------
    dict
        ``auc``, ``accuracy`` (or None), ``rejection_at_<pct>``, ``eff_background_at_<pct>``
        (intervals), ``threshold_at_<pct>``, ``n_eff_signal``, ``n_eff_background``.
    """
    score = np.asarray(score, dtype=np.float64)
    is_signal = np.asarray(is_signal, dtype=bool)
    weight = np.asarray(weight, dtype=np.float64)
    out: dict[str, Any] = {
        "auc": sc.auc_interval(score, is_signal, weight, n_bootstrap=n_bootstrap, seed=seed),
        "accuracy": None
        if correct is None
        else efficiency_interval(
            float(weight[np.asarray(correct, dtype=bool)].sum()), float(weight.sum()), kish_n_eff(weight)
        ),
        "n_eff_signal": kish_n_eff(weight[is_signal]),
        "n_eff_background": kish_n_eff(weight[~is_signal]),
    }
    for eff in efficiencies:
        wp = sc.working_point(score[is_signal], weight[is_signal], score[~is_signal], weight[~is_signal], eff)
        out[f"rejection_at_{_pct(eff)}"] = wp["rejection"]
        out[f"eff_background_at_{_pct(eff)}"] = wp["eff_background"]
        out[f"threshold_at_{_pct(eff)}"] = wp["threshold"]
    return out


# --- from the score hist ------------------------------------------------------------------------


def hist_counts(h: Any, signal: str, samples: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Per score bin (underflow and overflow included, so a score of exactly 1 counts) sums of the signal
    score.

    ``h``: the evaluation ``score`` hist (``process`` x ``truth`` x ``output`` x ``score``, weighted).
    Signal = jets whose truth is ``signal``; background = every other truth.

    Returns
    -------
    dict
        ``edges`` (with -inf and +inf for the flow bins), ``sig``, ``sig_w2``, ``bkg``, ``bkg_w2``.
    """
    view = h[{"output": signal}]
    names = list(view.axes["process"]) if samples is None else list(samples)
    n = view.axes["score"].size + 2
    out = {k: np.zeros(n) for k in ("sig", "sig_w2", "bkg", "bkg_w2")}
    for sample in names:
        for truth in view.axes["truth"]:
            sub = view[{"process": sample, "truth": truth}]
            key = "sig" if truth == signal else "bkg"
            out[key] += sub.values(flow=True)
            out[key + "_w2"] += sub.variances(flow=True)
    out["edges"] = np.concatenate([[-np.inf], view.axes["score"].edges, [np.inf]])
    return out


def _bin_replicas(values: np.ndarray, w2: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` Poisson replicas of weighted bin contents: ``sum_w / n_eff * Poisson(n_eff)`` per bin."""
    n_eff = np.divide(values**2, w2, out=np.zeros_like(values), where=w2 > 0)
    scale = np.divide(values, n_eff, out=np.zeros_like(values), where=n_eff > 0)
    return scale * rng.poisson(n_eff, size=(n, len(values)))


def binned_auc_interval(counts: dict[str, np.ndarray], *, n_bootstrap: int = 100, seed: int = 0) -> Interval:
    """AUC of binned scores (each bin a tie group) +- the spread of bin-level Poisson replicas."""
    starts = np.arange(len(counts["sig"]))
    value = float(sc._auc_from_groups(counts["sig"], counts["bkg"], starts))
    if n_bootstrap < 2:
        return interval(value, value, value)
    rng = np.random.default_rng(seed)
    sig = _bin_replicas(counts["sig"], counts["sig_w2"], n_bootstrap, rng)
    bkg = _bin_replicas(counts["bkg"], counts["bkg_w2"], n_bootstrap, rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = float(np.nanstd(sc._auc_from_groups(sig, bkg, starts), ddof=1))
    return interval(value, max(value - spread, 0.0), min(value + spread, 1.0))


def hist_metrics(
    h: Any,
    classes: Sequence[str],
    *,
    efficiencies: Sequence[float] = WORKING_POINTS,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """The :func:`table_metrics` of the ``score`` hist (signal = ``classes[0]``).

    The rejection at a signal efficiency interpolates the binned ROC linearly inside the
    score bin where the efficiency is reached; its interval is Clopper-Pearson with the
    background's Kish ``n_eff``. The accuracy counts jets on the correct side of score 0.5
    (exact for two classes).
    """
    c = hist_counts(h, classes[0])
    n_eff_b = c["bkg"].sum() ** 2 / c["bkg_w2"].sum() if c["bkg_w2"].sum() > 0 else 0.0
    n_eff_s = c["sig"].sum() ** 2 / c["sig_w2"].sum() if c["sig_w2"].sum() > 0 else 0.0
    # efficiencies of "score >= lower edge of bin i" (the ROC from the top score down)
    eff_s = np.cumsum(c["sig"][::-1])[::-1] / c["sig"].sum()
    eff_b = np.cumsum(c["bkg"][::-1])[::-1] / c["bkg"].sum()
    above = c["edges"][:-1] >= 0.5
    total, total_w2 = c["sig"].sum() + c["bkg"].sum(), c["sig_w2"].sum() + c["bkg_w2"].sum()
    correct = c["sig"][above].sum() + c["bkg"][~above].sum()
    out: dict[str, Any] = {
        "auc": binned_auc_interval(c, n_bootstrap=n_bootstrap, seed=seed),
        "accuracy": efficiency_interval(correct, total, total**2 / total_w2 if total_w2 > 0 else 0.0),
        "n_eff_signal": float(n_eff_s),
        "n_eff_background": float(n_eff_b),
    }
    # np.interp needs increasing x: walk the ROC from the highest threshold (eff 0) down
    roc_s, roc_b = np.concatenate([eff_s[::-1], [1.0]]), np.concatenate([eff_b[::-1], [1.0]])
    roc_s, roc_b = np.concatenate([[0.0], roc_s]), np.concatenate([[0.0], roc_b])
    for eff in efficiencies:
        value = float(np.interp(eff, roc_s, roc_b))
        passed = value * c["bkg"].sum()
        eff_b_iv = efficiency_interval(passed, float(c["bkg"].sum()), float(n_eff_b))
        out[f"rejection_at_{_pct(eff)}"] = rejection_interval(eff_b_iv)
        out[f"eff_background_at_{_pct(eff)}"] = eff_b_iv
    return out


# --- comparing two models on the same jets ------------------------------------------------------------


def paired_comparison(
    score: np.ndarray,
    score_reference: np.ndarray,
    is_signal: np.ndarray,
    weight: np.ndarray,
    *,
    efficiencies: Sequence[float] = WORKING_POINTS,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """AUC difference and rejection ratios of a model to a reference scored on the same jets.

    Both models see the same Poisson-bootstrap replica weights, so the interval is that of the
    *difference* (much narrower than the two AUC intervals when the models are correlated).

    Returns
    -------
    dict
        ``auc_difference`` (model - reference) and ``rejection_ratio_at_<pct>`` (model /
        reference): intervals value +- replica std; ``auc_significance``: difference / std
        (in standard deviations; None without replicas).
    """
    score = np.asarray(score, dtype=np.float64)
    score_reference = np.asarray(score_reference, dtype=np.float64)
    s = np.asarray(is_signal, dtype=bool)
    w = np.asarray(weight, dtype=np.float64)
    if score.shape != score_reference.shape or score.shape != s.shape:
        raise ValueError(
            f"paired comparison needs the same jets: {score.shape} vs {score_reference.shape} scores"
        )

    def metrics(wr: np.ndarray) -> np.ndarray:
        auc = sc.weighted_auc(score, s, wr) - sc.weighted_auc(score_reference, s, wr)
        ratios = []
        for eff in efficiencies:
            rej = []
            for sco in (score, score_reference):
                t = sc.thresholds_at_efficiency(sco[s], wr[s], eff)
                passed = float(sc.weight_above(sco[~s], wr[~s], t))
                rej.append(wr[~s].sum() / passed if passed > 0 else np.inf)
            ratios.append(rej[0] / rej[1] if np.isfinite(rej[1]) else np.nan)
        return np.array([auc, *ratios])

    value = metrics(w)
    rng = np.random.default_rng(seed)
    reps = (
        np.array([metrics(w * rng.poisson(1.0, len(w))) for _ in range(n_bootstrap)])
        if n_bootstrap >= 2
        else None
    )
    with np.errstate(invalid="ignore"):
        spread = (
            np.nanstd(np.where(np.isfinite(reps), reps, np.nan), axis=0, ddof=1)
            if reps is not None
            else 0 * value
        )
    out: dict[str, Any] = {
        "auc_difference": interval(value[0], value[0] - spread[0], value[0] + spread[0]),
        "auc_significance": float(value[0] / spread[0]) if spread[0] > 0 else None,
    }
    for i, eff in enumerate(efficiencies, start=1):
        out[f"rejection_ratio_at_{_pct(eff)}"] = interval(
            value[i], max(value[i] - spread[i], 0.0), value[i] + spread[i]
        )
    return out


def align_rows(
    reference: dict[str, np.ndarray], other: dict[str, np.ndarray], keys: Sequence[str]
) -> np.ndarray | None:
    """Indices ordering ``other``'s rows as ``reference``'s, matched on the columns ``keys``.

    Returns None when a key is missing, the key tuples are not unique, or the two tables do
    not hold the same jets (then a comparison cannot be paired).
    """
    if not keys or any(k not in reference or k not in other for k in keys):
        return None
    a = [np.asarray(reference[k]) for k in keys]
    b = [np.asarray(other[k]) for k in keys]
    if len(a[0]) != len(b[0]):
        return None
    order_a, order_b = np.lexsort(a[::-1]), np.lexsort(b[::-1])
    sorted_a = [x[order_a] for x in a]
    if not all(np.array_equal(x, y[order_b]) for x, y in zip(sorted_a, b)):
        return None
    if len(order_a) > 1 and not np.any([x[1:] != x[:-1] for x in sorted_a], axis=0).all():
        return None  # duplicate keys: the match would be ambiguous
    index = np.empty(len(order_a), dtype=np.int64)
    index[order_a] = order_b
    return index
