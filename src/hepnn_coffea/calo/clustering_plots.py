"""Plots of the hit-clustering evaluation (:mod:`hepnn_coffea.calo.clustering_eval`): per-jet
efficiency / purity / ARI, cluster energy response (learned vs baseline) and PID confusion matrices."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from hepnn_coffea.calo.geometry import PID_CLASSES
from hepnn_coffea.evaluation.protocol import METHOD_AXIS


def plot_clustering(result: dict[str, Any], out_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """One PNG per metric (methods overlaid, all samples summed) and one confusion matrix per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    hists = result["hists"]
    for name in ("efficiency", "purity", "ari", "energy_ratio"):
        fig, ax = plt.subplots(figsize=(5, 4))
        for method in hists[name].axes[METHOD_AXIS]:
            h = hists[name][{METHOD_AXIS: method}][sum, :]
            if h.sum() > 0:
                h.plot1d(ax=ax, label=method, density=True)
        ax.set_ylabel("density")
        ax.legend()
        fig.tight_layout()
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1])
        plt.close(fig)
    for method in hists["pid"].axes[METHOD_AXIS]:
        matrix = hists["pid"][{METHOD_AXIS: method}][sum, :, :].values()
        norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        ax.set_xticks(range(len(PID_CLASSES)), PID_CLASSES, rotation=45, ha="right")
        ax.set_yticks(range(len(PID_CLASSES)), PID_CLASSES)
        ax.set_xlabel("predicted type")
        ax.set_ylabel("true type")
        ax.set_title(method)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        paths.append(out / f"pid_confusion_{method}.png")
        fig.savefig(paths[-1])
        plt.close(fig)
    return paths
