"""mplhep-styled evaluation plots (PNG + PDF): ROC, score per sample, score vs mass."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from hepnn_coffea._optional import require
from hepnn_coffea.evaluation.roc import Roc


def _pyplot() -> Any:
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    require("mplhep").style.use("CMS")
    return plt


def plot_roc(rocs: dict[str, Roc], path: pathlib.Path) -> pathlib.Path:
    """Background rejection vs signal efficiency (log scale), one curve per model."""
    plt = _pyplot()
    fig, ax = plt.subplots()
    for name, roc in rocs.items():
        keep = roc.eff_background > 0
        ax.plot(roc.eff_signal[keep], 1 / roc.eff_background[keep], label=f"{name} (AUC {roc.auc:.4f})")
    ax.set_yscale("log")
    ax.set_xlabel("Signal efficiency")
    ax.set_ylabel("Background rejection 1/$\\epsilon_B$")
    ax.set_xlim(0, 1)
    ax.legend()
    return _save(fig, path)


def plot_scores(h: Any, output: str, path: pathlib.Path) -> pathlib.Path:
    """Normalised score distributions per sample and true class."""
    mplhep = require("mplhep")
    plt = _pyplot()
    fig, ax = plt.subplots()
    view = h[{"output": output}]
    for sample in view.axes["process"]:
        for truth in view.axes["truth"]:
            sub = view[{"process": sample, "truth": truth}][::hist_rebin(view.axes["score"].size)]
            if sub.sum().value > 0:
                mplhep.histplot(sub, ax=ax, density=True, label=f"{sample} (true {truth})")
    ax.set_yscale("log")
    ax.set_xlabel(f"{output} score")
    ax.set_ylabel("Density")
    ax.legend(fontsize="small")
    return _save(fig, path)


def hist_rebin(n_bins: int, target: int = 50) -> Any:
    import hist

    return hist.rebin(max(1, n_bins // target))


def plot_score_vs_mass(h: Any, path: pathlib.Path, thresholds: tuple[float, ...] = (0.0, 0.5, 0.9)) -> pathlib.Path:
    """Mass distribution of background jets above score thresholds (mass sculpting)."""
    mplhep = require("mplhep")
    plt = _pyplot()
    fig, ax = plt.subplots()
    truths = list(h.axes["truth"])
    background = h[{"process": sum, "truth": truths[1]}] if len(truths) > 1 else h[{"process": sum, "truth": sum}]
    edges = background.axes["score"].edges
    for cut in thresholds:
        start = int(np.searchsorted(edges, cut))
        sub = background[{"score": slice(start, None, sum)}]
        if sub.sum().value > 0:
            mplhep.histplot(sub, ax=ax, density=True, label=f"true {truths[-1]}, score > {cut:g}")
    ax.set_xlabel(background.axes["mass"].label)
    ax.set_ylabel("Density")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_efficiency_vs_pt(h: Any, points: dict[str, dict[str, float]], path: pathlib.Path) -> pathlib.Path:
    """Signal and background efficiency vs pT at each working point (thresholds on the score axis)."""
    plt = _pyplot()
    fig, ax = plt.subplots()
    truths = list(h.axes["truth"])
    edges = h.axes["score"].edges
    for truth, style in zip(truths, ("-", "--")):
        view = h[{"process": sum, "truth": truth}]
        total = view.project("pt").values()
        for name, wp in points.items():
            start = int(np.searchsorted(edges, wp["threshold"] - 1e-12))
            passed = view[{"score": slice(start, None, sum)}].values()
            eff = np.divide(passed, total, out=np.full_like(passed, np.nan), where=total > 0)
            ax.step(view.axes["pt"].centers, eff, where="mid", linestyle=style, label=f"true {truth}, {name}")
    ax.set_yscale("log")
    ax.set_xlabel(h.axes["pt"].label)
    ax.set_ylabel("Efficiency")
    ax.legend(fontsize="x-small")
    return _save(fig, path)


def plot_all(hists: dict[str, Any], rocs: dict[str, Roc], classes: list[str], out: pathlib.Path,
             points: dict[str, dict[str, float]] | None = None) -> list[pathlib.Path]:  # fmt: skip
    """Every standard evaluation figure into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        plot_roc(rocs, out / "roc.png"),
        plot_scores(hists["score"], classes[0], out / "score_per_sample.png"),
        plot_score_vs_mass(hists["score_vs_mass"], out / "score_vs_mass.png"),
    ]
    if points:
        paths.append(plot_efficiency_vs_pt(hists["score_vs_pt"], points, out / "efficiency_vs_pt.png"))
    return paths


def _save(fig: Any, path: pathlib.Path) -> pathlib.Path:
    """Write ``path`` (PNG) and the same figure as PDF beside it; returns the PNG path."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    plt.close(fig)
    return path
