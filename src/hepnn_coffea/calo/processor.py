"""Coffea processor of the calorimeter view: one ROOT file per chunk, counts per chunk.

Thin: the physics is in :func:`hepnn_coffea.calo.view.build_view`; this class reads the
jets, seeds the chunk's generator from (seed, file, entry range), writes the file and
returns the chunk's bookkeeping. It runs under ``processor.Runner`` (any executor) and
under the dask-awkward path through :class:`~hepnn_coffea.processing.processor.ChunkProcessor`.
"""

from __future__ import annotations

import pathlib
from typing import Any

from hepnn_coffea.calo.geometry import CaloGeometry, load_geometry
from hepnn_coffea.calo.view import (
    JET_BRANCHES,
    PARTICLE_BRANCHES,
    build_view,
    chunk_rng,
    view_counts,
    write_view,
)
from hepnn_coffea.processing.processor import ChunkInfo, ChunkProcessor
from hepnn_coffea.processing.shards import shard_name


def view_file_name(split: str, sample: str, file: str, start: int, stop: int) -> str:
    """Relative path of a chunk's view: ``<split>/<sample>/<stem>-<hash>-<start>-<stop>.root``."""
    return f"{split}/{shard_name(sample, file, start, stop).rsplit('.', 1)[0]}.root"


class CalorimeterViewProcessor(ChunkProcessor):
    """Writes the calorimeter view of each chunk to ``out_dir`` and returns ``{"chunks": [record]}``.

    Parameters
    ----------
    out_dir
        Output folder; files go to :func:`view_file_name` under it.
    geometry
        :class:`CaloGeometry`, a YAML path, a mapping, or ``None`` for the defaults.
    seed
        Global seed; the chunk generator is :func:`~hepnn_coffea.calo.view.chunk_rng`.
    """

    def __init__(
        self, out_dir: str | pathlib.Path, geometry: CaloGeometry | str | dict | None = None, seed: int = 0
    ) -> None:
        self.out_dir = str(out_dir)
        self.geometry = load_geometry(geometry)
        self.seed = int(seed)

    def columns(self) -> list[str]:
        return [*PARTICLE_BRANCHES, *JET_BRANCHES]

    def process_chunk(self, events: Any, chunk: ChunkInfo) -> dict[str, Any]:
        view = build_view(events, self.geometry, chunk_rng(self.seed, chunk.file, chunk.start, chunk.stop))
        split = chunk.metadata.get("split", "train")
        sample = chunk.metadata.get("sample", chunk.dataset)
        name = view_file_name(split, sample, chunk.file, chunk.start, chunk.stop)
        write_view(pathlib.Path(self.out_dir) / name, view)
        record = {**chunk.provenance(sample, split), "output": name, **view_counts(view)}
        return {"chunks": [record]}
