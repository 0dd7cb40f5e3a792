"""The two hit-clustering methods: the learned model's clusters and a classical baseline.

The learned clustering takes the argmax slot of every hit; hits in the ``other`` slot are grouped by
their predicted cluster direction within ``other_eps`` (singletons at 0; the bench picks it on val
jets); a cluster's type is the energy-weighted vote of its hits' type probabilities
(:func:`learned_clusters`).

Baseline (documented choice, :func:`baseline_clusters`): **DBSCAN** (scikit-learn) on the cells
in (deta, dphi) to the jet axis with the cell energies as ``sample_weight`` (so ``min_energy`` is
the energy a core needs in its ``eps`` neighbourhood), noise cells as singletons, plus
**nearest-track association** for the type: each track is attached to the cluster of the
nearest cell within ``track_radius``; a cluster with a track is an electron if its EM fraction
exceeds ``em_fraction_egamma`` else a charged hadron; without a track a photon above that EM
fraction, else a neutral hadron.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hepnn_coffea.calo.geometry import PID_CLASSES

__all__ = ["DEFAULT_BASELINE", "BaselineParams", "baseline_clusters", "learned_clusters"]


def learned_clusters(
    pred: dict[str, np.ndarray],
    n_slots: int,
    hits: dict[str, np.ndarray],
    track_weight: float = 1.0,
    other_eps: float = 0.0,
) -> tuple[np.ndarray, dict[int, int]]:
    """One jet's predicted cluster label per hit and predicted type per cluster from the model's per-hit
    outputs (``pred``: ``pred_<label>`` arrays over the jet's hits, possibly fewer than the hits when
    the jet was truncated: the missing hits become singletons).

    Hits in the ``other`` slot are grouped by their predicted cluster direction (``pred_cluster_deta``,
    ``pred_cluster_dphi``): single-linkage within ``other_eps`` (DBSCAN, ``min_samples=1``); with
    ``other_eps = 0`` they stay singletons.
    """
    n = len(hits["energy"])
    slots = np.stack([pred[f] for f in _slot_fields(pred, n_slots)], axis=1)  # (m, K)
    m = len(slots)
    label = np.arange(n) + n_slots  # singletons
    slot = slots.argmax(1)
    inside = slot < n_slots - 1
    label[:m][inside] = slot[inside]
    rest = np.flatnonzero(~inside)
    if other_eps > 0 and len(rest) > 1:
        from sklearn.cluster import DBSCAN

        xy = np.stack([pred["pred_cluster_deta"][rest], pred["pred_cluster_dphi"][rest]], axis=1)
        groups = DBSCAN(eps=other_eps, min_samples=1).fit(xy).labels_
        first = {}
        for i, g in zip(rest, groups):  # each group takes the singleton label of its first hit
            label[i] = first.setdefault(int(g), int(label[i]))
    pid = np.stack([pred[f"pred_pid_{c}"] for c in PID_CLASSES], axis=1)
    prob = np.exp(pid - pid.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    weight = hits["energy"][:m] + track_weight * hits["is_track"][:m]
    types = {}
    for lab in np.unique(label[:m]):
        sel = label[:m] == lab
        types[int(lab)] = int((prob[sel] * weight[sel, None]).sum(0).argmax())
    for lab in label[m:]:
        types[int(lab)] = (
            PID_CLASSES.index("photon")
            if hits["is_em"][lab - n_slots]
            else PID_CLASSES.index("neutral_hadron")
        )
    return label, types


def _slot_fields(pred: dict[str, Any], n_slots: int) -> list[str]:
    fields = [f"pred_slot_{i}" for i in range(n_slots - 1)] + ["pred_slot_other"]
    missing = [f for f in fields if f not in pred]
    if missing:
        raise KeyError(f"model outputs lack {missing}; expected the slot_* labels of calo_clustering.yaml")
    return fields


@dataclass(frozen=True)
class BaselineParams:
    """DBSCAN + nearest-track association (see the module docstring)."""

    eps: float = 0.05
    min_energy: float = 1.0
    track_radius: float = 0.05
    em_fraction_egamma: float = 0.9


#: the baseline's default parameters
DEFAULT_BASELINE = BaselineParams()


def baseline_clusters(
    hits: dict[str, np.ndarray], params: BaselineParams = DEFAULT_BASELINE
) -> tuple[np.ndarray, dict[int, int]]:
    """One jet's baseline cluster label per hit (tracks: the cluster they are associated with, or
    their own label) and type per cluster."""
    from sklearn.cluster import DBSCAN

    n = len(hits["energy"])
    cells = np.flatnonzero(hits["is_track"] == 0)
    tracks = np.flatnonzero(hits["is_track"] != 0)
    label = np.arange(n) + n  # singletons by default
    xy = np.stack([hits["deta"], hits["dphi"]], axis=1)
    if len(cells):
        # min_samples must be an int: weights in units of min_energy, so a core needs >= min_energy around it
        db = DBSCAN(eps=params.eps, min_samples=1).fit(
            xy[cells], sample_weight=hits["energy"][cells] / params.min_energy
        )
        inside = db.labels_ >= 0
        label[cells[inside]] = db.labels_[inside]
    has_track = set()
    for t in tracks:
        if not len(cells):
            break
        d = np.hypot(*(xy[cells] - xy[t]).T)
        near = int(d.argmin())
        if d[near] < params.track_radius:
            label[t] = label[cells[near]]
            has_track.add(int(label[t]))
    types = {}
    for lab in np.unique(label):
        sel = (label == lab) & (hits["is_track"] == 0)
        e = hits["energy"][sel].sum()
        em = hits["energy"][sel & (hits["is_em"] != 0)].sum() / e if e > 0 else 0.0
        egamma = em > params.em_fraction_egamma
        if int(lab) in has_track or not sel.any():
            types[int(lab)] = PID_CLASSES.index("electron" if egamma else "charged_hadron")
        else:
            types[int(lab)] = PID_CLASSES.index("photon" if egamma else "neutral_hadron")
    return label, types
