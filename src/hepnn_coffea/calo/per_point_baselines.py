"""The estimates the per-point models are compared with (focused-track samples, no model).

Per focused track (one sample of :mod:`hepnn_coffea.calo.focused_tracks`) the quantity compared
is the *total* energy the focused particle left in the cone's cells. A learned model's estimate
is the sum of its per-point predictions over the sample's cells (:func:`sum_cell_predictions`:
track points are excluded; the points dropped by truncation, the farthest ones, count as 0).
The baselines:

* ``cone`` baseline: all cell energy in the cone (``cone_energy``), i.e. no attribution at all;
* ``response`` baseline (an expected-response template, the strongest of the baselines): the
  track momentum times the mean calorimeter response of tracks of that pT, i.e.
  ``focus_p * R(pT)`` with ``R`` the *median* of ``label_sum / focus_p`` of the training
  samples in bins of track pT (:func:`response_calibration`). It uses only the track (the
  E/p template of energy-flow algorithms), no cell information.
* ``subtraction`` baseline (the literal expected-response subtraction): the cone energy minus
  the expected response of the *other* tracks in the cone, ``max(cone_energy - R * sum p_other,
  0)`` with ``R`` the overall median response (:func:`subtraction_baseline`); neutral
  particles in the cone are not removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np

__all__ = [
    "PT_EDGES",
    "cone_baseline",
    "response_baseline",
    "response_calibration",
    "subtraction_baseline",
    "sum_cell_predictions",
]

#: default track-pT bin edges [GeV]
PT_EDGES = (1.0, 5.0, 10.0, 20.0, 50.0, 1000.0)


def response_calibration(
    focus_pt: np.ndarray,
    focus_p: np.ndarray,
    true: np.ndarray,
    pt_edges: Sequence[float] = PT_EDGES,
    min_entries: int = 5,
) -> dict[str, Any]:
    """Median calorimeter response ``true / p`` in bins of track pT (training samples).

    Bins with fewer than ``min_entries`` samples take the overall median. Returns
    ``{"pt_edges": [...], "response": [...], "overall": float, "entries": [...]}``.
    """
    focus_pt, focus_p, true = (np.asarray(a, dtype=np.float64) for a in (focus_pt, focus_p, true))
    ok = focus_p > 0
    ratio = true[ok] / focus_p[ok]
    overall = float(np.median(ratio)) if len(ratio) else 1.0
    edges = np.asarray(pt_edges, dtype=np.float64)
    which = np.clip(np.digitize(focus_pt[ok], edges) - 1, 0, len(edges) - 2)
    response, entries = [], []
    for i in range(len(edges) - 1):
        r = ratio[which == i]
        entries.append(int(len(r)))
        response.append(float(np.median(r)) if len(r) >= min_entries else overall)
    return {"pt_edges": edges.tolist(), "response": response, "overall": overall, "entries": entries}


def response_baseline(
    focus_pt: np.ndarray, focus_p: np.ndarray, calibration: Mapping[str, Any]
) -> np.ndarray:
    """``focus_p * R(pT)`` with the binned response of :func:`response_calibration` (edge bins extend)."""
    edges = np.asarray(calibration["pt_edges"], dtype=np.float64)
    which = np.clip(np.digitize(np.asarray(focus_pt, dtype=np.float64), edges) - 1, 0, len(edges) - 2)
    return np.asarray(focus_p, dtype=np.float64) * np.asarray(calibration["response"])[which]


def cone_baseline(cone_energy: np.ndarray) -> np.ndarray:
    """All cell energy in the cone."""
    return np.asarray(cone_energy, dtype=np.float64)


def subtraction_baseline(
    cone_energy: np.ndarray, point_e: Any, point_type: Any, response: float
) -> np.ndarray:
    """``max(cone_energy - response * sum |p|`` of the other tracks in the cone
    (``point_type == 2``)``, 0)``."""
    other_p = np.asarray(
        ak.to_numpy(ak.sum(ak.where(point_type == 2, point_e, 0.0), axis=1)), dtype=np.float64
    )
    return np.maximum(np.asarray(cone_energy, dtype=np.float64) - float(response) * other_p, 0.0)


def sum_cell_predictions(pred: Any, point_type: Any) -> np.ndarray:
    """Per sample, the sum of per-point predictions over cell points (``point_type == 0``).

    ``pred`` has one value per *kept* point (the first ``len`` points after truncation);
    ``point_type`` all points of the sample, in the same order.
    """
    n_kept = ak.num(pred, axis=1)
    kept_type = point_type[ak.local_index(point_type, axis=1) < n_kept]
    return np.asarray(ak.to_numpy(ak.sum(ak.where(kept_type == 0, pred, 0.0), axis=1)), dtype=np.float64)
