"""Training shards: one memory-mappable ``.npy`` file of rows per processed chunk.

A shard is a NumPy structured array (one row per selected jet) with the fields

* ``inputs/<group>``: float32 ``(n_vars, length)`` (or ``(n_vars,)``),
* ``label`` (int64 class index) or ``target`` (float32 ``(n_targets,)``),
* ``weight`` (float32, when the data config has weights),
* ``expert`` (int64 expert index, when the data config declares ``experts``),
* ``observers/<name>``: the observer's own dtype.

Rows are contiguous, so a random batch is one gather per shard when read with
``np.load(mmap_mode="r")``. Shards are written atomically (temporary file, then
``os.replace``) under a deterministic name built from sample, file and entry
range, so a retried or repeated task overwrites instead of duplicating.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the training side reads shards without the feature code
    from hepnn_coffea.features.compute import FeatureBatch

#: name of the shard folder's manifest (written by the preprocess stage)
MANIFEST = "manifest.json"
INPUT_PREFIX = "inputs/"
OBSERVER_PREFIX = "observers/"


def shard_name(sample: str, file: str, start: int, stop: int) -> str:
    """Deterministic relative path of a chunk's shard: ``<sample>/<stem>-<hash>-<start>-<stop>.npy``."""
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:8]
    stem = pathlib.Path(str(file).split("://")[-1]).stem
    return f"{sample}/{stem}-{digest}-{start:010d}-{stop:010d}.npy"


def batch_to_records(batch: FeatureBatch) -> np.ndarray:
    """Pack a :class:`FeatureBatch` into one structured array (one row per entry)."""
    columns: dict[str, np.ndarray] = {INPUT_PREFIX + k: v for k, v in batch.inputs.items()}
    if batch.labels is not None:
        columns["label" if batch.labels.ndim == 1 else "target"] = batch.labels
    if batch.weights is not None:
        columns["weight"] = batch.weights
    if batch.expert is not None:
        columns["expert"] = batch.expert
    columns.update({OBSERVER_PREFIX + k: v for k, v in batch.observers.items()})
    dtype = np.dtype([(k, v.dtype, v.shape[1:]) for k, v in columns.items()])
    records = np.empty(len(batch), dtype=dtype)
    for k, v in columns.items():
        records[k] = v
    return records


def atomic_write_bytes(path: pathlib.Path, write: Any) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path`` and move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def write_shard(out_dir: str | pathlib.Path, name: str, records: np.ndarray) -> pathlib.Path:
    """Atomically write ``records`` as ``out_dir/name``; returns the path."""
    path = pathlib.Path(out_dir) / name
    atomic_write_bytes(path, lambda f: np.save(f, records, allow_pickle=False))
    return path


def write_json(path: str | pathlib.Path, payload: Any) -> pathlib.Path:
    """Atomically write ``payload`` as indented JSON."""
    path = pathlib.Path(path)
    blob = json.dumps(payload, indent=2, sort_keys=False, default=_json_default).encode()
    atomic_write_bytes(path, lambda f: f.write(blob))
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, pathlib.Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def open_shard(path: str | pathlib.Path) -> np.ndarray:
    """Memory-map a shard (no data is read until rows are indexed)."""
    return np.load(path, mmap_mode="r", allow_pickle=False)
