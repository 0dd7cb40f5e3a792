"""Focused-track point clouds from the calorimeter view (the JetPointNet inputs).

One *sample* per charged track ("focused track") with ``pT > pt_min`` that reaches the
calorimeter. It holds every cell and every other track (that reaches the calorimeter) within
``Delta R < radius`` (default 0.2) of the focused track's impact point on the EM surface, as
points:

===============  ==========================================================================
point_x, _y, _z  cell centre, or the track's impact point on the EM surface [m]
point_dist       Delta R (eta-phi) to the focused track's impact point (0 for it)
point_deta/dphi  the signed eta / phi offsets behind ``point_dist``
point_e          cell energy (measured, with noise) or track momentum |p| [GeV]
point_layer      0 EM, 1 HAD, -1 for tracks
point_type       0 cell, 1 focused track, 2 other track  (:data:`CELL`, :data:`FOCUS`, :data:`OTHER`)
point_label      energy the focused particle deposited in the cell (its truth contribution,
                 0 if none), -1 for track points (masked by the loss)
point_index      index of the cell / track in its jet
===============  ==========================================================================

**Ordering and truncation rule.** Points are sorted by ``point_dist`` (stable; the focused
track, at distance 0, is always first). The data config's ``length: auto`` (a quantile of
the training lengths, stored in the shard manifest) then keeps the *first* ``length``
points, i.e. a longer sample loses its points farthest from the focused track.

Per-sample branches: ``focus_pt/eta/phi/p/charge`` (the track), ``focus_calo_eta/phi``,
``focus_particle``/``focus_track`` (indices in the jet), ``focus_type`` (particle type code),
``focus_deposited_energy`` (truth: everything the particle deposited, in or out of the cone,
above or below threshold), ``focus_expected_energy`` (its expected response before
fluctuations), ``label_sum`` (sum of ``point_label`` over the cone cells: the regression
target of the evaluation), ``cone_energy`` (all cell energy in the cone: the cone
baseline), ``n_points``, ``n_cells``, ``n_other_tracks``, ``event_no``, ``jet_entry`` (entry in
the view file), ``jet_pt``.

Everything is columnar: ``ak.cartesian`` (nested) of the focused tracks with the jet's cells
and tracks, masks, ``ak.argsort``; the labels are looked up by ``np.searchsorted`` of
(cell, particle) keys in the contributions (which the view stores sorted by cell, then
particle). No Python loop over jets or tracks.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from hepnn_coffea.calo.view import TRACK_FIELDS

#: point types
CELL, FOCUS, OTHER = 0, 1, 2
#: view branches the sample builder reads: every track field of the view
TRACK_INPUTS = TRACK_FIELDS
CELL_INPUTS = ("eta", "phi", "layer", "x", "y", "z", "E")
VIEW_BRANCHES = (
    *(f"track_{f}" for f in TRACK_INPUTS),
    *(f"cell_{f}" for f in CELL_INPUTS),
    "contrib_cell",
    "contrib_particle",
    "contrib_energy",
    "part_deposited_energy",
    "part_expected_energy",
    "part_type",
    "event_no",
    "jet_pt",
)
POINT_FIELDS = ("x", "y", "z", "dist", "deta", "dphi", "e", "layer", "type", "label", "index")
SAMPLE_FIELDS = (
    "focus_pt",
    "focus_eta",
    "focus_phi",
    "focus_p",
    "focus_charge",
    "focus_calo_eta",
    "focus_calo_phi",
    "focus_particle",
    "focus_track",
    "focus_type",
    "focus_deposited_energy",
    "focus_expected_energy",
    "label_sum",
    "cone_energy",
    "n_points",
    "n_cells",
    "n_other_tracks",
    "event_no",
    "jet_entry",
    "jet_pt",
)
_INT_FIELDS = {
    "layer",
    "type",
    "index",
    "focus_charge",
    "focus_particle",
    "focus_track",
    "focus_type",
    "n_points",
    "n_cells",
    "n_other_tracks",
    "event_no",
    "jet_entry",
}


def delta_phi(a: Any, b: Any) -> Any:
    """``a - b`` wrapped into ``[-pi, pi)``."""
    return (a - b + np.pi) % (2 * np.pi) - np.pi


def _offsets(counts: Any) -> np.ndarray:
    return np.r_[0, np.cumsum(np.asarray(ak.to_numpy(counts), dtype=np.int64))][:-1]


def focus_mask(tracks_pt: Any, reaches_calo: Any, calo_eta: Any, pt_min: float) -> Any:
    """Which tracks are focused: ``pT > pt_min``, reaching the calorimeter with a finite impact point."""
    return (tracks_pt > pt_min) & (reaches_calo != 0) & np.isfinite(calo_eta)


def build_samples(
    view: Any, *, pt_min: float = 1.0, radius: float = 0.2, min_cells: int = 1, entry_start: int = 0
) -> dict[str, Any]:
    """Focused-track samples of a chunk of calorimeter-view jets.

    Parameters
    ----------
    view
        Jets with the :data:`VIEW_BRANCHES` (an awkward record array, coffea events or a mapping).
    pt_min
        Focused tracks need ``track_pt > pt_min`` [GeV].
    radius
        Cone size in Delta R around the focused track's impact point.
    min_cells
        Samples with fewer cone cells are dropped (nothing to regress).
    entry_start
        Entry of the chunk's first jet in its file (for ``jet_entry``).

    Returns
    -------
    dict
        ``point``: dict of jagged arrays (one list per sample, sorted by distance, see the
        module docstring); the :data:`SAMPLE_FIELDS` as flat arrays; ``counts``: ``tracks``,
        ``focused_tracks``, ``samples``, ``dropped_few_cells``, ``points``.
    """
    n_jets = len(view["track_pt"])
    tracks = ak.zip({f: view[f"track_{f}"] for f in TRACK_INPUTS})
    tracks = ak.with_field(tracks, ak.local_index(view["track_pt"], axis=1), "index")
    tracks = ak.with_field(tracks, np.sqrt(tracks.px**2 + tracks.py**2 + tracks.pz**2), "p")
    cells = ak.zip({f: view[f"cell_{f}"] for f in CELL_INPUTS})
    cell_offsets, part_offsets = (
        _offsets(ak.num(view["cell_E"], axis=1)),
        _offsets(ak.num(view["part_type"], axis=1)),
    )
    n_parts = int(ak.sum(ak.num(view["part_type"], axis=1)))
    cells = ak.with_field(cells, ak.local_index(view["cell_E"], axis=1), "index")
    cells = ak.with_field(cells, cells.index + cell_offsets, "gid")

    focus = tracks[focus_mask(tracks.pt, tracks.reaches_calo, tracks.calo_eta, pt_min)]  # jet -> focus
    focus = ak.with_field(focus, focus.particle + part_offsets, "pgid")
    jet_entry = ak.broadcast_arrays(np.arange(n_jets, dtype=np.int64) + int(entry_start), focus.pt)[0]
    event_no = ak.broadcast_arrays(np.asarray(ak.to_numpy(view["event_no"]), dtype=np.int64), focus.pt)[0]
    jet_pt = ak.broadcast_arrays(np.asarray(ak.to_numpy(view["jet_pt"]), dtype=np.float64), focus.pt)[0]
    deposited = view["part_deposited_energy"][focus.particle]
    expected = view["part_expected_energy"][focus.particle]
    ptype = view["part_type"][focus.particle]

    # cells in the cone: (jet -> focus -> cell) pairs, flattened to (sample -> cell)
    pc = ak.cartesian({"f": focus, "c": cells}, axis=1, nested=True)
    deta = pc.c.eta - pc.f.calo_eta
    dphi = delta_phi(pc.c.phi, pc.f.calo_phi)
    dist = np.sqrt(deta**2 + dphi**2)
    cone = dist < radius
    cone_cells = ak.flatten(pc.c[cone], axis=1)
    cell_deta, cell_dphi, cell_dist = (ak.flatten(a[cone], axis=1) for a in (deta, dphi, dist))
    keys = ak.flatten((pc.c.gid * n_parts + pc.f.pgid)[cone], axis=1)

    # labels: the focused particle's contribution to each cone cell
    contrib_jet_cell = view["contrib_cell"] + cell_offsets
    contrib_keys = np.asarray(
        ak.to_numpy(ak.flatten(contrib_jet_cell * n_parts + view["contrib_particle"] + part_offsets)),
        dtype=np.int64,
    )
    contrib_energy = np.asarray(ak.to_numpy(ak.flatten(view["contrib_energy"])), dtype=np.float64)
    order = np.argsort(contrib_keys, kind="stable")  # already sorted by the view; cheap insurance
    contrib_keys, contrib_energy = contrib_keys[order], contrib_energy[order]
    flat_keys = np.asarray(ak.to_numpy(ak.flatten(keys)), dtype=np.int64)
    pos = np.clip(np.searchsorted(contrib_keys, flat_keys), 0, max(len(contrib_keys) - 1, 0))
    found = (contrib_keys[pos] == flat_keys) if len(contrib_keys) else np.zeros(len(flat_keys), dtype=bool)
    label = ak.unflatten(
        np.where(found, contrib_energy[pos] if len(contrib_keys) else 0.0, 0.0), ak.num(keys)
    )

    # other tracks in the cone (reaching the calorimeter; NaN impacts never pass the cut)
    pt_ = ak.cartesian({"f": focus, "t": tracks}, axis=1, nested=True)
    t_deta = pt_.t.calo_eta - pt_.f.calo_eta
    t_dphi = delta_phi(pt_.t.calo_phi, pt_.f.calo_phi)
    t_dist = np.sqrt(t_deta**2 + t_dphi**2)
    t_cone = (t_dist < radius) & (pt_.t.index != pt_.f.index) & (pt_.t.reaches_calo != 0)
    others = ak.flatten(pt_.t[t_cone], axis=1)
    t_deta, t_dphi, t_dist = (ak.flatten(a[t_cone], axis=1) for a in (t_deta, t_dphi, t_dist))

    f = ak.flatten(focus, axis=1)  # one entry per sample
    n_samples = len(f)
    one = ak.unflatten(np.ones(n_samples, dtype=np.float64), np.ones(n_samples, dtype=np.int64))

    def track_points(t: Any, d: Any, de: Any, dp: Any, kind: int) -> dict[str, Any]:
        return {
            "x": t.calo_x,
            "y": t.calo_y,
            "z": t.calo_z,
            "dist": d,
            "deta": de,
            "dphi": dp,
            "e": t.p,
            "layer": ak.values_astype(d * 0 - 1, np.int64),
            "type": ak.values_astype(d * 0 + kind, np.int64),
            "label": d * 0 - 1.0,
            "index": t.index,
        }

    focus_pts = track_points(
        ak.unflatten(f, np.ones(n_samples, dtype=np.int64)), one * 0, one * 0, one * 0, FOCUS
    )
    other_pts = track_points(others, t_dist, t_deta, t_dphi, OTHER)
    cell_pts = {
        "x": cone_cells.x,
        "y": cone_cells.y,
        "z": cone_cells.z,
        "dist": cell_dist,
        "deta": cell_deta,
        "dphi": cell_dphi,
        "e": cone_cells.E,
        "layer": cone_cells.layer,
        "type": ak.values_astype(cell_dist * 0 + CELL, np.int64),
        "label": label,
        "index": cone_cells.index,
    }
    points = {k: ak.concatenate([focus_pts[k], other_pts[k], cell_pts[k]], axis=1) for k in POINT_FIELDS}
    by_distance = ak.argsort(points["dist"], axis=1, stable=True)
    points = {k: v[by_distance] for k, v in points.items()}

    n_cells = np.asarray(ak.to_numpy(ak.num(cone_cells.E, axis=1)), dtype=np.int64)
    keep = n_cells >= int(min_cells)
    samples = {
        "focus_pt": f.pt,
        "focus_eta": f.eta,
        "focus_phi": f.phi,
        "focus_p": f.p,
        "focus_charge": f.charge,
        "focus_calo_eta": f.calo_eta,
        "focus_calo_phi": f.calo_phi,
        "focus_particle": f.particle,
        "focus_track": f.index,
        "focus_type": ak.flatten(ptype),
        "focus_deposited_energy": ak.flatten(deposited),
        "focus_expected_energy": ak.flatten(expected),
        "label_sum": ak.sum(label, axis=1),
        "cone_energy": ak.sum(cone_cells.E, axis=1),
        "n_points": ak.num(points["e"], axis=1),
        "n_cells": n_cells,
        "n_other_tracks": ak.num(others.pt, axis=1),
        "event_no": ak.flatten(event_no),
        "jet_entry": ak.flatten(jet_entry),
        "jet_pt": ak.flatten(jet_pt),
    }
    out: dict[str, Any] = {
        k: np.asarray(ak.to_numpy(v), dtype=np.int64 if k in _INT_FIELDS else np.float64)[keep]
        for k, v in samples.items()
    }
    out["point"] = {
        k: ak.values_astype(v[keep], np.int64 if k in _INT_FIELDS else np.float64) for k, v in points.items()
    }
    out["counts"] = {
        "tracks": int(ak.sum(ak.num(tracks.pt, axis=1))),
        "focused_tracks": int(n_samples),
        "samples": int(keep.sum()),
        "dropped_few_cells": int((~keep).sum()),
        "points": int(out["n_points"].sum()),
        "cells_in_cones": int(out["n_cells"].sum()),
    }
    return out


def write_samples(path: Any, samples: dict[str, Any], dtype: Any = np.float32) -> Any:
    """Atomically write samples as a ROOT TTree ``tree`` (one entry per sample).

    Branches: ``point_*`` (jagged, counter ``npoint``) and the flat :data:`SAMPLE_FIELDS`;
    floats as ``dtype``.
    """
    from hepnn_coffea.calo.view import write_tree

    def cast(a: Any) -> Any:
        return ak.values_astype(a, dtype) if "float" in str(ak.type(a)) else ak.values_astype(a, np.int32)

    point = ak.zip({k: cast(v) for k, v in samples["point"].items()})
    branches: dict[str, Any] = {"point": point}
    for k in SAMPLE_FIELDS:
        v = samples[k]
        branches[k] = (
            v if k == "event_no" else (v.astype(dtype) if v.dtype.kind == "f" else v.astype(np.int32))
        )
    return write_tree(path, branches, "focused-track samples")
