"""The variations plot: relative shifts of signal efficiency and background rejection vs pT."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np


def _series(bins: list[dict[str, Any]], variation: str, key: str) -> np.ndarray:
    return np.array(
        [np.nan if b["shifts"][variation][key] is None else 100 * b["shifts"][variation][key] for b in bins]
    )


def _stat_band(bins: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """The nominal's 68% interval relative to its value, in percent (down, up)."""
    low, high = [], []
    for b in bins:
        iv = b["nominal"][key]
        ok = iv["value"] not in (None, 0) and iv["low"] is not None and iv["high"] is not None
        low.append(100 * (iv["low"] / iv["value"] - 1) if ok else np.nan)
        high.append(100 * (iv["high"] / iv["value"] - 1) if ok else np.nan)
    return np.array(low), np.array(high)


def plot_variation_shifts(report: Mapping[str, Any], out: pathlib.Path) -> list[pathlib.Path]:
    """One figure per discriminant: rows = working points, columns = eps_S and 1/eps_B relative shifts.

    Lines are the variations (per pT bin), the grey band is the nominal's statistical 68%
    interval; the inclusive (all-jets) shift is marked at the left edge.
    """
    from hepnn_coffea.plotting.plots import _pyplot, _save

    plt = _pyplot()
    edges = np.asarray(report["pt_edges"], dtype=np.float64)
    names = report["variations"]
    colors = [plt.get_cmap("tab10")(i % 10) for i in range(len(names))]
    paths = []
    for name, entry in report["discriminants"].items():
        points = entry["working_points"]
        fig, axes = plt.subplots(len(points), 2, figsize=(13, 4.2 * len(points)), squeeze=False, sharex=True)
        for row, (wp, point) in enumerate(points.items()):
            inclusive, bins = point["bins"][0], point["bins"][1:]
            for col, (key, shift, title) in enumerate(
                (
                    ("eff_signal", "rel_eff_signal", r"$\varepsilon_S$"),
                    ("rejection", "rel_rejection", r"$1/\varepsilon_B$"),
                )
            ):
                ax = axes[row, col]
                low, high = _stat_band(bins, key)
                ax.stairs(high, edges, baseline=low, fill=True, color="0.85", label="nominal stat. (68%)")
                ax.axhline(0.0, color="0.3", linewidth=0.8)
                extent = [0.0]
                for v, color in zip(names, colors):
                    style = "--" if v.endswith(("down", "dn", "minus")) else "-"
                    values = _series(bins, v, shift)
                    ax.stairs(values, edges, color=color, linestyle=style, linewidth=1.8, label=v)
                    value = inclusive["shifts"][v][shift]
                    if value is not None:
                        ax.plot(
                            [edges[0]], [100 * value], marker="<", color=color, markersize=9, clip_on=False
                        )
                        extent.append(abs(100 * value))
                    extent += list(np.abs(values[np.isfinite(values)]))
                band = np.nanmedian(np.abs(np.r_[low, high])) if np.isfinite(np.r_[low, high]).any() else 0.0
                limit = 1.25 * max(max(extent), band, 0.5)
                ax.set_ylim(-limit, limit)
                ax.set_ylabel(f"{title} shift [%]")
                ax.set_title(f"{name}, {wp} (threshold {point['threshold']:.4g})", fontsize=13)
                if row == len(points) - 1:
                    ax.set_xlabel(f"{report['pt_column']} [GeV]")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        handles.append(plt.Line2D([], [], color="0.3", marker="<", linestyle="none", markersize=9))
        labels.append("all jets")
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=12, frameon=False)
        fig.tight_layout()
        paths.append(_save(fig, out / f"variations_{name}.png"))
    return paths
