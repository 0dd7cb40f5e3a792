"""mplhep-styled plots of the per-point (JetPointNet) evaluation: residuals, metrics vs track pT,
and event displays of focused-track samples (cells coloured by predicted and by true fraction)."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np

from hepnn_coffea.plotting.plots import _pyplot, _save


def plot_relative_residuals(h: Any, estimators: Sequence[str], path: pathlib.Path) -> pathlib.Path:
    """Normalised (pred - true)/true of every estimator, all samples and track pT summed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 7))
    for est in estimators:
        counts = h[{"process": sum, "estimator": est, "pt": sum}]
        values = counts.values()
        total = values.sum()
        if total > 0:
            ax.stairs(values / total, counts.axes[0].edges, label=est)
    ax.set_xlabel("(predicted - true) / true deposited energy")
    ax.set_ylabel("Fraction of tracks")
    ax.legend()
    return _save(fig, path)


def plot_metric_vs_pt(
    rows: Sequence[Mapping[str, Any]], estimators: Sequence[str], metric: str, path: pathlib.Path
) -> pathlib.Path:
    """``<estimator>_<metric>`` per track-pT bin (the ``all`` row left out), with its 68% interval."""
    from hepnn_coffea.plotting.common import interval_values, log_ticks

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 7))
    binned = [r for r in rows if r["pt_bin"] != "all"]
    centres = np.array([np.sqrt(r["pt_low"] * r["pt_high"]) for r in binned])
    for est in estimators:
        value, down, up, _ = (
            np.array(x, dtype=float) for x in zip(*(interval_values(r[f"{est}_{metric}"]) for r in binned))
        )
        ax.errorbar(centres, value, yerr=[down, up], marker="o", capsize=3, label=est)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Track $p_T$ [GeV]")
    ax.set_ylabel({"mape": "MAPE", "resolution": "Resolution (68% IQR / 2)"}.get(metric, metric))
    log_ticks(ax, "x")
    log_ticks(ax, "y")
    ax.legend(title="68% bootstrap intervals", title_fontsize="x-small")
    return _save(fig, path)


def plot_per_point(
    hists: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], estimators: Sequence[str], out: pathlib.Path
) -> list[pathlib.Path]:
    """Residuals, MAPE vs pT and resolution vs pT under ``out``."""
    out = pathlib.Path(out)
    return [
        plot_relative_residuals(hists["relative_residual"], estimators, out / "relative_residual.png"),
        plot_metric_vs_pt(rows, estimators, "mape", out / "mape_vs_pt.png"),
        plot_metric_vs_pt(rows, estimators, "resolution", out / "resolution_vs_pt.png"),
    ]


def plot_event_display(
    points: Mapping[str, np.ndarray], pred: np.ndarray, path: pathlib.Path, title: str = ""
) -> pathlib.Path:
    """One sample in (Delta eta, Delta phi) around the focused track: two panels, cells coloured by
    the predicted and by the true fraction of their energy from the focused particle (marker size
    ~ cell energy; squares EM, circles HAD); the focused track a star, other tracks crosses.

    ``points``: ``deta, dphi, e, layer, type, label`` of the kept points; ``pred`` per kept point.
    """
    plt = _pyplot()
    cell = points["type"] == 0
    e = np.maximum(points["e"][cell], 1e-6)
    frac_true = np.clip(points["label"][cell] / e, 0, 1)
    frac_pred = np.clip(pred[cell] / e, 0, 1)
    size = 20 + 200 * np.sqrt(e / e.max()) if len(e) else e
    fig, axes = plt.subplots(1, 2, figsize=(16, 7), sharey=True)
    for ax, frac, name in zip(axes, (frac_pred, frac_true), ("predicted", "true")):
        for layer, marker in ((0, "s"), (1, "o")):
            sel = points["layer"][cell] == layer
            sc = ax.scatter(
                points["deta"][cell][sel],
                points["dphi"][cell][sel],
                c=frac[sel],
                s=size[sel],
                marker=marker,
                cmap="viridis",
                vmin=0,
                vmax=1,
                alpha=0.8,
                edgecolors="none",
            )
        for kind, marker, colour in ((1, "*", "red"), (2, "x", "black")):
            sel = points["type"] == kind
            ax.scatter(
                points["deta"][sel],
                points["dphi"][sel],
                marker=marker,
                s=250,
                c=colour,
                label="focused track" if kind == 1 else "other tracks",
            )
        ax.set_xlabel(r"$\Delta\eta$ to the focused track")
        ax.set_title(f"{name} fraction", fontsize=18)
        ax.set_xlim(-0.21, 0.21)
        ax.set_ylim(-0.21, 0.21)
    axes[0].set_ylabel(r"$\Delta\phi$ to the focused track")
    axes[1].legend(fontsize=12, loc="upper right")
    fig.colorbar(sc, ax=axes, label="Energy fraction of the focused particle")
    if title:
        fig.suptitle(title, fontsize=16)
    return _save(fig, path)


def plot_event_displays(
    tagger: Any, file: str, out: pathlib.Path, *, n: int = 4, model: str = "model", min_cells: int = 20
) -> list[pathlib.Path]:
    """Event displays of the first ``n`` samples of ``file`` with at least ``min_cells`` cells."""
    import uproot

    events = uproot.open(file)["tree"].arrays()
    events = events[events.n_cells >= min_cells][:n]
    if not len(events):
        return []
    pred = tagger(events)[tagger.output_fields[0]]
    paths = []
    for i in range(len(events)):
        p = np.asarray(ak.to_numpy(pred[i]), dtype=np.float64)
        pts = {
            k: np.asarray(ak.to_numpy(events[f"point_{k}"][i]))[: len(p)]
            for k in ("deta", "dphi", "e", "layer", "type", "label")
        }
        ev = events[i]
        cells = pts["type"] == 0
        title = (
            f"{model}: track $p_T$ {ev.focus_pt:.1f} GeV, true {ev.label_sum:.1f} GeV, "
            f"predicted {p[cells].sum():.1f} GeV, cone {ev.cone_energy:.1f} GeV"
        )
        paths.append(plot_event_display(pts, p, pathlib.Path(out) / f"event_display_{i}.png", title))
    return paths
