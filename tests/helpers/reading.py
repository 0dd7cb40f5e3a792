"""Helpers of the input-file tests (``test_bad_files``, ``test_remote_files``): CLI chunking, shard rows
in file order, the scores of one sample."""

from __future__ import annotations

import json
import pathlib

import numpy as np

from hepnn_coffea.processing.shards import open_shard

RUN = ["--executor", "iterative", "--chunksize", "100"]


def _rows(shards: pathlib.Path, split: str, sample: str) -> np.ndarray:
    """The rows of one sample's shards, in the order of their source files and entries."""
    manifest = json.loads((shards / "manifest.json").read_text())
    entry = manifest["splits"][split][sample]
    parts = [
        open_shard(shards / s["path"]).to_records()
        for s in sorted(entry["shards"], key=lambda s: (s["file"], s["entry_start"]))
    ]
    return np.concatenate(parts)


def _scores(table: dict, sample: str) -> np.ndarray:
    """The top scores (``score_jet_isTop``) of the jets of ``sample`` in an ``infer`` table."""
    keep = np.asarray(table["sample"]) == sample
    return np.asarray(table["score_jet_isTop"])[keep]
