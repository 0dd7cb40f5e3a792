"""Focused-track samples as a coffea stage: the processor, the stage and ``calo_fileset``.

The samples themselves (one point cloud per focused track, their branches, the ordering and
truncation rule) are built by :mod:`hepnn_coffea.calo.focused_tracks`; its names are importable
from here too. :class:`FocusedTrackSampleProcessor` writes them per chunk,
:func:`focused_track_samples` runs it over calorimeter-view files and writes the manifest, and
:func:`calo_fileset` turns a calorimeter-workflow folder into a coffea fileset.
"""

from __future__ import annotations

from typing import Any

from hepnn_coffea.calo.focused_tracks import (
    CELL,
    CELL_INPUTS,
    FOCUS,
    OTHER,
    POINT_FIELDS,
    SAMPLE_FIELDS,
    TRACK_INPUTS,
    VIEW_BRANCHES,
    build_samples,
    delta_phi,
    focus_mask,
    write_samples,
)
from hepnn_coffea.processing.processor import ChunkInfo, ChunkProcessor

__all__ = [
    "CELL",
    "CELL_INPUTS",
    "FOCUS",
    "OTHER",
    "POINT_FIELDS",
    "SAMPLE_COUNT_KEYS",
    "SAMPLE_FIELDS",
    "TRACK_INPUTS",
    "VIEW_BRANCHES",
    "FocusedTrackSampleProcessor",
    "build_samples",
    "calo_fileset",
    "delta_phi",
    "focus_mask",
    "focused_track_samples",
    "write_samples",
]


class FocusedTrackSampleProcessor(ChunkProcessor):
    """Coffea processor: focused-track samples of each chunk of calorimeter-view files.

    Writes ``out_dir/<split>/<sample>/<file>-<hash>-<start>-<stop>.root`` (tree ``tree``, see
    :func:`write_samples`) and returns ``{"chunks": [record]}`` with the chunk's counts. The
    split is the dataset's (``metadata["split"]``): a sample inherits its jet's split, and all
    jets of an event sit in the same view file, so the split is by event.
    """

    def __init__(self, out_dir: Any, *, pt_min: float = 1.0, radius: float = 0.2, min_cells: int = 1) -> None:
        self.out_dir = str(out_dir)
        self.pt_min, self.radius, self.min_cells = float(pt_min), float(radius), int(min_cells)

    def columns(self) -> list[str]:
        return list(VIEW_BRANCHES)

    def process_chunk(self, events: Any, chunk: ChunkInfo) -> dict[str, Any]:
        import pathlib

        from hepnn_coffea.calo.processor import view_file_name

        view = {b: events[b] for b in VIEW_BRANCHES}
        samples = build_samples(
            view, pt_min=self.pt_min, radius=self.radius, min_cells=self.min_cells, entry_start=chunk.start
        )
        split = chunk.metadata.get("split", "train")
        sample = chunk.metadata.get("sample", chunk.dataset)
        name = view_file_name(split, sample, chunk.file, chunk.start, chunk.stop)
        write_samples(pathlib.Path(self.out_dir) / name, samples)
        record = {
            **chunk.provenance(sample, split),
            "output": name,
            "jets": len(view["event_no"]),
            **samples["counts"],
        }
        return {"chunks": [record]}


#: counts summed over chunks in the manifest
SAMPLE_COUNT_KEYS = (
    "jets",
    "tracks",
    "focused_tracks",
    "samples",
    "dropped_few_cells",
    "points",
    "cells_in_cones",
)


def calo_fileset(source: Any, split: str | None = None, treename: str = "tree") -> dict[str, Any]:
    """The coffea fileset of a calorimeter-workflow output, optionally only one split's datasets.

    Parameters
    ----------
    source
        A :func:`~hepnn_coffea.calo.calorimeter_view` folder (its manifest lists ``chunks``: one
        dataset per (sample, split)), a :func:`focused_track_samples` folder (its manifest holds
        the ``fileset``), a fileset JSON file or a fileset dict.
    split
        Keep the datasets whose metadata ``split`` is this (default: all).
    """
    import json
    import pathlib

    if isinstance(source, dict):
        fileset = source
    elif (pathlib.Path(source) / "manifest.json").is_file():
        folder = pathlib.Path(source)
        manifest = json.loads((folder / "manifest.json").read_text())
        if "fileset" in manifest:
            fileset = manifest["fileset"]
        else:
            fileset = {}
            for record in manifest["chunks"]:
                meta = {"sample": record["sample"], "split": record["split"]}
                entry = fileset.setdefault(
                    f"{record['sample']}_{record['split']}", {"files": {}, "metadata": meta}
                )
                entry["files"][str((folder / record["output"]).resolve())] = treename
    else:
        fileset = json.loads(pathlib.Path(source).read_text())
    if split is None:
        return dict(fileset)
    return {k: v for k, v in fileset.items() if v.get("metadata", {}).get("split") == split}


def focused_track_samples(
    view_dir_or_fileset: Any,
    out_dir: Any,
    *,
    pt_min: float = 1.0,
    radius: float = 0.2,
    min_cells: int = 1,
    executor: str = "iterative",
    mode: str = "runner",
    workers: int = 2,
    scheduler: str | None = None,
    chunksize: int = 2000,
    treename: str = "tree",
) -> dict[str, Any]:
    """Run :class:`FocusedTrackSampleProcessor` over calorimeter-view files; write ``out_dir/manifest.json``.

    Parameters
    ----------
    view_dir_or_fileset
        A :func:`~hepnn_coffea.calo.calorimeter_view` output folder (its manifest gives the
        files, samples and splits) or a fileset (JSON path or dict) of view files.
    out_dir
        Output folder: ``<split>/<sample>/<file>-<hash>-<start>-<stop>.root`` + ``manifest.json``.
    pt_min, radius, min_cells
        See :func:`build_samples`.
    executor, mode, workers, scheduler, chunksize
        As in :func:`hepnn_coffea.processing.runner.run_processor`.

    Returns
    -------
    dict
        The manifest: parameters, counts (``tracks`` considered, ``focused_tracks``, ``samples``
        written, ...) overall and per split, the chunk records, the fileset of the written
        sample files (``fileset``, one dataset per sample and split) and the branch names.

    Example
    -------
    >>> from hepnn_coffea.calo import calorimeter_view, focused_track_samples   # doctest: +SKIP
    >>> calorimeter_view("tests/samples/fileset.json", "calo_view/", seed=1)    # doctest: +SKIP
    >>> manifest = focused_track_samples("calo_view/", "calo_samples/", pt_min=2.0)  # doctest: +SKIP
    """
    import pathlib

    from hepnn_coffea.processing.fileset import load_fileset
    from hepnn_coffea.processing.runner import run_processor
    from hepnn_coffea.processing.shards import write_json

    source = (
        pathlib.Path(view_dir_or_fileset) if isinstance(view_dir_or_fileset, (str, pathlib.Path)) else None
    )
    if source is not None and source.is_dir():
        files = load_fileset(calo_fileset(source, treename=treename), treename=treename)
    else:
        files = load_fileset(view_dir_or_fileset, treename=treename)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    proc = FocusedTrackSampleProcessor(out, pt_min=pt_min, radius=radius, min_cells=min_cells)
    result = run_processor(
        files, proc, mode=mode, executor=executor, workers=workers, scheduler=scheduler, chunksize=chunksize
    )
    chunks = sorted(
        result.get("chunks", []), key=lambda r: (r["split"], r["sample"], r["file"], r["entry_start"])
    )

    def total(records: list[dict[str, Any]]) -> dict[str, int]:
        return {k: int(sum(r[k] for r in records)) for k in SAMPLE_COUNT_KEYS}

    fileset: dict[str, Any] = {}
    for r in chunks:
        entry = fileset.setdefault(
            f"{r['sample']}_{r['split']}",
            {"files": {}, "metadata": {"sample": r["sample"], "split": r["split"]}},
        )
        entry["files"][str((out / r["output"]).resolve())] = "tree"
    manifest = {
        "parameters": {
            "pt_min": float(pt_min),
            "radius": float(radius),
            "min_cells": int(min_cells),
            "chunksize": int(chunksize),
        },
        "ordering": "points sorted by Delta R to the focused track (focused track first); truncation to the "
        "data-derived length keeps the nearest points",
        "counts": total(chunks),
        "splits": {
            s: total([r for r in chunks if r["split"] == s]) for s in sorted({r["split"] for r in chunks})
        },
        "branches": {"point": [f"point_{f}" for f in POINT_FIELDS], "sample": list(SAMPLE_FIELDS)},
        "fileset": fileset,
        "chunks": chunks,
    }
    write_json(out / "manifest.json", manifest)
    return manifest
