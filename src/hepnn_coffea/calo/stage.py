"""One call that makes the calorimeter view of a fileset: ROOT files per chunk + ``manifest.json``.

Example
-------
>>> from hepnn_coffea.calo import calorimeter_view
>>> manifest = calorimeter_view("tests/samples/fileset.json", "calo_view/", seed=1,
...                             geometry="models/data/calo_geometry.yaml", executor="iterative")
>>> manifest["counts"]["cells"] > 0
True
>>> import uproot
>>> tree = uproot.open("calo_view/" + manifest["chunks"][0]["output"])["tree"]
>>> cells = tree.arrays(["cell_eta", "cell_phi", "cell_layer", "cell_E"])

The view is a *simplified detector* (see :mod:`hepnn_coffea.calo`): the output depends only on
(seed, geometry, file, entry range), so the executor does not change it.
"""

from __future__ import annotations

import pathlib
from typing import Any

from hepnn_coffea.calo.geometry import CaloGeometry, load_geometry
from hepnn_coffea.calo.processor import CalorimeterViewProcessor
from hepnn_coffea.calo.view import COLLECTIONS, JET_BRANCHES
from hepnn_coffea.processing.fileset import load_fileset
from hepnn_coffea.processing.runner import run_processor
from hepnn_coffea.processing.shards import write_json

#: counts that are summed over chunks in the manifest
COUNT_KEYS = (
    "jets",
    "particles",
    "tracks",
    "tracks_reaching_calo",
    "cells",
    "contributions",
    "energy_in",
    "energy_expected",
    "energy_deposited",
    "energy_kept",
    "energy_below_threshold",
    "energy_noise",
    "energy_measured",
)


def sum_counts(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the :data:`COUNT_KEYS` of chunk records (in their given order)."""
    return {k: sum(r[k] for r in records) for k in COUNT_KEYS}


def calorimeter_view(
    fileset: str | pathlib.Path | dict[str, Any],
    out_dir: str | pathlib.Path,
    *,
    geometry: CaloGeometry | str | pathlib.Path | dict[str, Any] | None = None,
    seed: int = 0,
    executor: str = "iterative",
    mode: str = "runner",
    workers: int = 2,
    scheduler: str | None = None,
    chunksize: int = 2000,
    treename: str = "tree",
) -> dict[str, Any]:
    """Run :class:`CalorimeterViewProcessor` over a fileset and write ``out_dir/manifest.json``.

    Parameters
    ----------
    fileset
        Fileset JSON path or dict (see :func:`hepnn_coffea.processing.fileset.load_fileset`).
    out_dir
        Output folder: ``<split>/<sample>/<file>-<hash>-<start>-<stop>.root`` + ``manifest.json``.
    geometry
        :class:`CaloGeometry`, YAML path, mapping, or ``None`` (defaults).
    seed
        Global seed of the fluctuations and noise.
    executor, mode, workers, scheduler, chunksize
        As in :func:`hepnn_coffea.processing.runner.run_processor`.

    Returns
    -------
    dict
        The manifest: geometry, seed, chunk records (sorted by split, sample, file, entry range),
        summed counts overall and per split, and the branch names of the output trees.
    """
    geo = load_geometry(geometry)
    files = load_fileset(fileset, treename=treename)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    proc = CalorimeterViewProcessor(out, geo, seed)
    result = run_processor(
        files, proc, mode=mode, executor=executor, workers=workers, scheduler=scheduler, chunksize=chunksize
    )
    chunks = sorted(
        result.get("chunks", []), key=lambda r: (r["split"], r["sample"], r["file"], r["entry_start"])
    )
    splits = sorted({r["split"] for r in chunks})
    manifest = {
        "seed": int(seed),
        "chunksize": int(chunksize),
        "geometry": geo.to_dict(),
        "counts": sum_counts(chunks),
        "splits": {s: sum_counts([r for r in chunks if r["split"] == s]) for s in splits},
        "branches": {
            **{name: [f"{name}_{f}" for f in fields] for name, fields in COLLECTIONS.items()},
            "jet": list(JET_BRANCHES),
        },
        "chunks": chunks,
    }
    write_json(out / "manifest.json", manifest)
    return manifest
