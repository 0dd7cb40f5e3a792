"""mplhep-styled regression plots: residuals, predicted vs true, bias and resolution vs true."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from hepnn_coffea._optional import require
from hepnn_coffea.evaluation.regression import bias_vs_true, quantiles
from hepnn_coffea.plotting.plots import _pyplot, _save


def plot_residuals(h: Any, target: str, path: pathlib.Path, relative: bool = False) -> pathlib.Path:
    """Residual distribution of every estimator (all experts), log scale."""
    plt = _pyplot()
    fig, ax = plt.subplots()
    proj = h[{"process": sum, "expert": "all", "true": sum}]
    edges = proj.axes["residual"].edges
    for estimator in proj.axes["estimator"]:
        counts = proj[{"estimator": estimator}].values()
        q16, q84 = quantiles(counts, edges, [0.16, 0.84])
        density = counts / np.diff(edges) / max(counts.sum(), 1e-12)
        ax.stairs(density, edges, label=f"{estimator} (68%/2 = {(q84 - q16) / 2:.3g})")
    ax.set_yscale("log")
    width = 6 * max(abs(q) for q in quantiles(proj.values().sum(axis=0), edges, [0.05, 0.95]))
    ax.set_xlim(-width, width)
    ax.set_xlabel(f"({target} pred - true) / true" if relative else f"{target}: pred - true")
    ax.set_ylabel("Density")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_pred_vs_true(h: Any, estimator: str, target: str, path: pathlib.Path) -> pathlib.Path:
    """2D predicted vs true for one estimator, with the diagonal."""
    mplhep = require("mplhep")
    plt = _pyplot()
    fig, ax = plt.subplots()
    sub = h[{"process": sum, "estimator": estimator}]
    mplhep.hist2dplot(sub, ax=ax, cmin=1e-9)
    low, high = sub.axes["true"].edges[[0, -1]]
    ax.plot([low, high], [low, high], color="white", linestyle="--", linewidth=1)
    ax.set_title(estimator, fontsize="medium")
    return _save(fig, path)


def plot_bias_vs_true(h: Any, target: str, path: pathlib.Path) -> pathlib.Path:
    """Median residual per true-value bin for every estimator (all experts)."""
    plt = _pyplot()
    fig, ax = plt.subplots()
    proj = h[{"process": sum, "expert": "all"}]
    for estimator in proj.axes["estimator"]:
        bias = bias_vs_true(proj[{"estimator": estimator}])
        ok = np.asarray(bias["n"]) >= 20
        ax.plot(
            np.asarray(bias["true"])[ok],
            np.asarray(bias["median"])[ok],
            marker="o",
            label=f"{estimator} (slope {bias['slope']:.3g})",
        )
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xlabel(f"true {target}")
    ax.set_ylabel("median (pred - true)")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_regression(hists: dict[str, Any], targets: list[str], out: pathlib.Path) -> list[pathlib.Path]:
    """Every regression plot of an ``infer`` output."""
    paths = []
    for t in targets:
        paths.append(plot_residuals(hists[f"residual_{t}"], t, out / f"residual_{t}.png"))
        if f"relres_{t}" in hists:
            paths.append(plot_residuals(hists[f"relres_{t}"], t, out / f"relres_{t}.png", relative=True))
        paths.append(plot_bias_vs_true(hists[f"residual_{t}"], t, out / f"bias_vs_true_{t}.png"))
        h2 = hists[f"pred_vs_true_{t}"]
        for estimator in h2.axes["estimator"]:
            paths.append(plot_pred_vs_true(h2, estimator, t, out / f"pred_vs_true_{t}_{estimator}.png"))
    return paths
