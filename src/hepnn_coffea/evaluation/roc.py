"""ROC curves, AUC, background rejection and accuracy from hists or from per-jet scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import hist
import numpy as np


@dataclass
class Roc:
    """Signal and background efficiencies for decreasing score thresholds (both start at 0)."""

    eff_signal: np.ndarray
    eff_background: np.ndarray

    @property
    def auc(self) -> float:
        """Area under the (eff_background, eff_signal) curve."""
        return float(np.trapezoid(self.eff_signal, self.eff_background))

    def rejection_at(self, eff_signal: float) -> float:
        """``1 / eff_background`` at the given signal efficiency (linear interpolation)."""
        eff_b = float(np.interp(eff_signal, self.eff_signal, self.eff_background))
        return 1.0 / eff_b if eff_b > 0 else float("inf")


def _from_counts(signal: np.ndarray, background: np.ndarray) -> Roc:
    """ROC from per-bin weights ordered by increasing score."""
    s = np.concatenate([[0.0], np.cumsum(signal[::-1])])
    b = np.concatenate([[0.0], np.cumsum(background[::-1])])
    if s[-1] <= 0 or b[-1] <= 0:
        raise ValueError("need both signal and background entries for a ROC curve")
    return Roc(s / s[-1], b / b[-1])


def roc_from_hist(h: hist.Hist, signal: str, samples: list[str] | None = None) -> Roc:
    """ROC of the ``signal`` class score from the evaluation ``score`` hist.

    Signal = jets whose truth is ``signal``; background = all other truths. ``samples``
    restricts the sample axis (default: all).
    """
    view = h[{"output": signal}]
    names = list(view.axes["process"]) if samples is None else samples
    sig = np.zeros(view.axes["score"].size)
    bkg = np.zeros_like(sig)
    for sample in names:
        for truth in view.axes["truth"]:
            values = view[{"process": sample, "truth": truth}].values()
            if truth == signal:
                sig += values
            else:
                bkg += values
    return _from_counts(sig, bkg)


def roc_from_scores(score: np.ndarray, is_signal: np.ndarray, weight: np.ndarray | None = None) -> Roc:
    """Exact ROC from per-jet scores (sklearn's ``roc_curve``)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(is_signal.astype(bool), score, sample_weight=weight, drop_intermediate=False)
    return Roc(tpr, fpr)


def accuracy_from_hist(h: hist.Hist, classes: list[str]) -> float:
    """Binary accuracy (signal score > 0.5) from the ``score`` hist; exact for two classes."""
    view = h[{"output": classes[0]}]
    total = correct = 0.0
    edges = view.axes["score"].edges
    above = edges[:-1] >= 0.5
    for sample in view.axes["process"]:
        for truth in view.axes["truth"]:
            values = view[{"process": sample, "truth": truth}].values()
            total += values.sum()
            correct += values[above].sum() if truth == classes[0] else values[~above].sum()
    return float(correct / total) if total else float("nan")


def working_points(
    h: hist.Hist,
    signal: str,
    background_efficiencies: tuple[float, ...] = (0.01, 0.02, 0.05),
    samples: list[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Score thresholds giving (at most) the requested background efficiencies, from the ``score`` hist.

    Returns ``{"eff_b_1%": {"threshold", "eff_background", "eff_signal"}, ...}``: the lowest bin
    edge whose background efficiency above it does not exceed the target (exact on the hist's
    binning; apply with ``score > threshold``).
    """
    view = h[{"output": signal}]
    names = list(view.axes["process"]) if samples is None else samples
    sig = np.zeros(view.axes["score"].size + 1)
    bkg = np.zeros_like(sig)
    for sample in names:
        for truth in view.axes["truth"]:
            values = view[{"process": sample, "truth": truth}].values(flow=True)[1:]  # bins + overflow
            if truth == signal:
                sig += values
            else:
                bkg += values
    edges = view.axes["score"].edges
    # efficiency of "score >= edges[i]" for every lower edge, plus the overflow edge
    eff_b = np.cumsum(bkg[::-1])[::-1] / bkg.sum()
    eff_s = np.cumsum(sig[::-1])[::-1] / sig.sum()
    out = {}
    for target in background_efficiencies:
        i = int(np.argmax(eff_b <= target))
        out[f"eff_b_{target * 100:g}%"] = {
            "threshold": float(edges[i]),
            "eff_background": float(eff_b[i]),
            "eff_signal": float(eff_s[i]),
        }
    return out


def apply_working_points(scores: Any, points: dict[str, dict[str, float]]) -> Any:
    """Boolean columns ``pass_<name>`` (``score >= threshold``) for every working point."""
    import awkward as ak

    return ak.zip(
        {
            f"pass_{name.replace('%', 'pct').replace('.', 'p')}": scores >= wp["threshold"]
            for name, wp in points.items()
        }
    )
