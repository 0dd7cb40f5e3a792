"""The calorimeter view of a chunk of jets: tracks, cells, truth contributions, particle bookkeeping.

:func:`build_view` is the whole per-chunk transform (flatten the jagged particles once,
run :mod:`~hepnn_coffea.calo.tracks` and :mod:`~hepnn_coffea.calo.deposit` on flat arrays,
unflatten with per-jet counts). :func:`chunk_rng` derives the random stream from
(seed, file, entry range) only, so any executor gives the same output for the same chunks.
:func:`write_view` writes the ROOT file; :func:`view_counts` the bookkeeping totals.
"""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

import awkward as ak
import numpy as np

from hepnn_coffea.calo.deposit import aggregate_cells, cell_positions, layer_energies
from hepnn_coffea.calo.geometry import CaloGeometry
from hepnn_coffea.calo.tracks import extrapolate, particle_types, track_mask

#: particle inputs read from the jets
PARTICLE_BRANCHES = ("part_px", "part_py", "part_pz", "part_energy", "part_charge", "part_pid")
#: jet-level branches copied to the output when present
JET_BRANCHES = (
    "jet_pt",
    "jet_eta",
    "jet_phi",
    "jet_energy",
    "jet_mass",
    "jet_nparticles",
    "event_no",
    "label_Tbqq",
    "label_QCD",
)
#: fields of the output collections (branch ``<collection>_<field>``, counter ``n<collection>``)
TRACK_FIELDS = (
    "px",
    "py",
    "pz",
    "pt",
    "eta",
    "phi",
    "charge",
    "particle",
    "calo_eta",
    "calo_phi",
    "calo_x",
    "calo_y",
    "calo_z",
    "reaches_calo",
)
CELL_FIELDS = ("eta", "phi", "layer", "x", "y", "z", "E", "noise", "main_particle")
CONTRIB_FIELDS = ("cell", "particle", "energy")
PART_FIELDS = (
    "px",
    "py",
    "pz",
    "energy",
    "charge",
    "pid",
    "type",
    "track",
    "reaches_calo",
    "calo_eta",
    "calo_phi",
    "expected_energy",
    "deposited_energy",
    "deposited_em_energy",
    "below_threshold_energy",
)
COLLECTIONS = {"track": TRACK_FIELDS, "cell": CELL_FIELDS, "contrib": CONTRIB_FIELDS, "part": PART_FIELDS}


def chunk_rng(seed: int, file: str, start: int, stop: int) -> np.random.Generator:
    """Generator seeded by (seed, sha1 of the file name, entry range) only."""
    digest = int(hashlib.sha1(str(file).encode()).hexdigest()[:8], 16)
    return np.random.default_rng([int(seed), digest, int(start), int(stop)])


def _flat(array: Any, dtype: Any = np.float64) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(array, axis=1)), dtype=dtype)


def build_view(events: Any, geometry: CaloGeometry, rng: np.random.Generator) -> dict[str, Any]:
    """Detector view of a chunk of jets.

    Parameters
    ----------
    events
        Jets with the jagged :data:`PARTICLE_BRANCHES` (any awkward record array or mapping;
        coffea events work) and optionally :data:`JET_BRANCHES`.
    geometry
        Detector constants.
    rng
        Random stream of the chunk (see :func:`chunk_rng`).

    Returns
    -------
    dict
        ``track``, ``cell``, ``contrib``, ``part``: dicts of jagged float64/int arrays (one list per
        jet; indices in ``track_particle``, ``cell_main_particle``, ``contrib_particle`` point into
        the jet's particles, ``contrib_cell`` into its cells, ``part_track`` into its tracks or -1);
        ``jet``: dict of flat arrays.
    """
    counts = np.asarray(ak.to_numpy(ak.num(events["part_px"], axis=1)), dtype=np.int64)
    n_jets = len(counts)
    offsets = np.r_[0, np.cumsum(counts)]
    jet = np.repeat(np.arange(n_jets), counts)
    px, py, pz, energy, charge = (_flat(events[b]) for b in PARTICLE_BRANCHES[:5])
    pid = _flat(events["part_pid"], np.int64)
    types = particle_types(pid, charge)

    calo_eta, calo_phi, _, reaches = extrapolate(px, py, pz, charge, geometry.em_radius, geometry.b_field)
    active = reaches & (np.abs(np.nan_to_num(calo_eta, nan=np.inf)) < geometry.eta_max)
    expected, deposited = layer_energies(types, energy, active, geometry, rng)
    cells = aggregate_cells(jet, calo_eta, calo_phi, deposited, n_jets, geometry, rng)

    is_track = track_mask(px, py, pz, charge, geometry)
    track_index = np.flatnonzero(is_track)
    tracks_per_jet = np.bincount(jet[track_index], minlength=n_jets)
    track_offsets = np.r_[0, np.cumsum(tracks_per_jet)]
    part_track = np.full(len(px), -1, dtype=np.int64)
    part_track[track_index] = np.arange(len(track_index)) - track_offsets[jet[track_index]]
    t_eta, t_phi, t_z, _ = extrapolate(
        px[track_index],
        py[track_index],
        pz[track_index],
        charge[track_index],
        geometry.em_radius,
        geometry.b_field,
    )
    t_pt = np.hypot(px[track_index], py[track_index])
    track = {
        "px": px[track_index],
        "py": py[track_index],
        "pz": pz[track_index],
        "pt": t_pt,
        "eta": np.arcsinh(pz[track_index] / t_pt),
        "phi": np.arctan2(py[track_index], px[track_index]),
        "charge": charge[track_index].astype(np.int32),
        "particle": track_index - offsets[jet[track_index]],
        "calo_eta": t_eta,
        "calo_phi": t_phi,
        "calo_x": geometry.em_radius * np.cos(t_phi),
        "calo_y": geometry.em_radius * np.sin(t_phi),
        "calo_z": t_z,
        "reaches_calo": reaches[track_index],
    }

    c_eta, c_phi, c_x, c_y, c_z = cell_positions(cells.layer, cells.ieta, cells.iphi, geometry)
    cell_offsets = np.r_[0, np.cumsum(cells.cells_per_jet)]
    cell = {
        "eta": c_eta,
        "phi": c_phi,
        "layer": cells.layer.astype(np.int32),
        "x": c_x,
        "y": c_y,
        "z": c_z,
        "E": cells.energy,
        "noise": cells.noise,
        "main_particle": cells.main_particle - offsets[cells.jet],
    }
    contrib_jet = jet[cells.contrib_particle]
    contrib = {
        "cell": cells.contrib_cell - cell_offsets[contrib_jet],
        "particle": cells.contrib_particle - offsets[contrib_jet],
        "energy": cells.contrib_energy,
    }
    part = {
        "px": px,
        "py": py,
        "pz": pz,
        "energy": energy,
        "charge": charge.astype(np.int32),
        "pid": pid.astype(np.int32),
        "type": types,
        "track": part_track,
        "reaches_calo": reaches,
        "calo_eta": calo_eta,
        "calo_phi": calo_phi,
        "expected_energy": expected.sum(axis=1),
        "deposited_energy": deposited.sum(axis=1),
        "deposited_em_energy": deposited[:, 0],
        "below_threshold_energy": cells.below_threshold,
    }
    fields = set(events.fields) if hasattr(events, "fields") else set(events)
    jets = {b: ak.to_numpy(events[b]) for b in JET_BRANCHES if b in fields}
    return {
        "track": {k: ak.unflatten(v, tracks_per_jet) for k, v in track.items()},
        "cell": {k: ak.unflatten(v, cells.cells_per_jet) for k, v in cell.items()},
        "contrib": {k: ak.unflatten(v, cells.contribs_per_jet) for k, v in contrib.items()},
        "part": {k: ak.unflatten(v, counts) for k, v in part.items()},
        "jet": jets,
    }


def view_counts(view: dict[str, Any]) -> dict[str, float]:
    """Totals of a view; ``energy_deposited == energy_kept + energy_below_threshold`` and
    ``energy_measured == energy_kept + energy_noise`` (up to float rounding)."""
    part, cell, contrib = view["part"], view["cell"], view["contrib"]
    n_jets = len(part["px"])
    return {
        "jets": int(n_jets),
        "particles": int(ak.sum(ak.num(part["px"], axis=1))),
        "tracks": int(ak.sum(ak.num(view["track"]["px"], axis=1))),
        "tracks_reaching_calo": int(ak.sum(view["track"]["reaches_calo"])),
        "cells": int(ak.sum(ak.num(cell["E"], axis=1))),
        "contributions": int(ak.sum(ak.num(contrib["energy"], axis=1))),
        "energy_in": float(ak.sum(part["energy"])),
        "energy_expected": float(ak.sum(part["expected_energy"])),
        "energy_deposited": float(ak.sum(part["deposited_energy"])),
        "energy_kept": float(ak.sum(contrib["energy"])),
        "energy_below_threshold": float(ak.sum(part["below_threshold_energy"])),
        "energy_noise": float(ak.sum(cell["noise"])),
        "energy_measured": float(ak.sum(cell["E"])),
    }


def write_view(path: str | pathlib.Path, view: dict[str, Any], dtype: Any = np.float32) -> pathlib.Path:
    """Atomically write a view as a ROOT TTree ``tree`` (floats as ``dtype``), one entry per jet.

    Branches: ``track_*``, ``cell_*``, ``contrib_*``, ``part_*`` (jagged, counters ``ntrack``,
    ``ncell``, ``ncontrib``, ``npart``) and the flat jet branches (``jet_*``, ``event_no``, labels).
    """

    def cast(a: Any) -> Any:
        return ak.values_astype(a, dtype) if "float" in str(ak.type(a)) else a

    branches: dict[str, Any] = {
        name: ak.zip({k: cast(v) for k, v in view[name].items()}) for name in COLLECTIONS
    }
    branches.update({k: (v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in view["jet"].items()})
    return write_tree(path, branches, "calorimeter view")


def write_tree(path: str | pathlib.Path, branches: dict[str, Any], title: str) -> pathlib.Path:
    """Atomically write ``branches`` as the ROOT TTree ``tree`` (LZ4); works for zero entries too."""
    import os
    import tempfile

    import uproot

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp.root")
    os.close(fd)
    try:
        with uproot.recreate(tmp, compression=uproot.LZ4(1)) as f:
            types = {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in branches.items()}
            f.mktree("tree", types, title=title)
            if len(next(iter(branches.values()))):
                f["tree"].extend(branches)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path
