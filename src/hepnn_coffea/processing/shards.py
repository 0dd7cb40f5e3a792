"""Training shards: one memory-mappable file of rows per processed chunk.

Shards are written by :func:`write_shard` in the ragged Arrow format of
:mod:`hepnn_coffea.processing.shard_format` (only the real particles of every jet,
``hepnn_coffea.shards/2``); :func:`open_shard` also reads the padded ``.npy``
shards of format ``/1`` (one NumPy structured array, every jet padded). Either way
a shard has the logical fields

* ``inputs/<group>``: float32 ``(n_vars, length)`` (or ``(n_vars,)``),
* ``label`` (int64 class index) or ``target`` (float32 ``(n_targets,)``),
* ``weight`` (float32, when the data config has weights),
* ``expert`` (int64 expert index, when the data config declares ``experts``),
* ``observers/<name>``: the observer's own dtype.

Shards are written atomically (temporary file, then ``os.replace``) under a
deterministic name built from sample, file and entry range, so a retried or
repeated task overwrites instead of duplicating.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hepnn_coffea.processing.shard_format import SUFFIX, RaggedShard, batch_to_arrow, write_arrow

if TYPE_CHECKING:
    from hepnn_coffea.features.compute import FeatureBatch

#: name of the shard folder's manifest (written by the preprocess stage)
MANIFEST = "manifest.json"
INPUT_PREFIX = "inputs/"
OBSERVER_PREFIX = "observers/"


def shard_name(sample: str, file: str, start: int, stop: int) -> str:
    """Deterministic relative path of a chunk's shard: ``<sample>/<stem>-<hash>-<start>-<stop>.arrow``."""
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:8]
    stem = pathlib.Path(str(file).split("://")[-1]).stem
    return f"{sample}/{stem}-{digest}-{start:010d}-{stop:010d}{SUFFIX}"


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


def write_shard(
    out_dir: str | pathlib.Path, name: str, batch: FeatureBatch, storage: Mapping[str, str] | None = None
) -> pathlib.Path:
    """Atomically write a feature batch as the ragged shard ``out_dir/name``; returns the path.

    Parameters
    ----------
    batch
        Computed with ``compute_features(..., ragged=True)`` (padded groups are stored as they are).
    storage
        ``input group -> float32 | float16 | bfloat16`` (the data config's ``inputs.<group>.dtype``).
    """
    path = pathlib.Path(out_dir) / name
    record = batch_to_arrow(batch, storage)
    atomic_write_bytes(path, lambda f: write_arrow(record, f))
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


def open_shard(path: str | pathlib.Path) -> RaggedShard | PaddedShard:
    """Memory-map a shard: ragged ``.arrow`` (format ``/2``) or padded ``.npy`` (format ``/1``)."""
    path = pathlib.Path(path)
    return PaddedShard(path) if path.suffix == ".npy" else RaggedShard(path)


class PaddedShard:
    """A padded ``.npy`` shard of format ``hepnn_coffea.shards/1``, read like a :class:`RaggedShard`."""

    def __init__(self, path: str | pathlib.Path) -> None:
        self.path = pathlib.Path(path)
        self.records = np.load(self.path, mmap_mode="r", allow_pickle=False)
        if self.records.dtype.names is None:
            raise ValueError(f"{self.path}: not a shard (no record fields; re-run 'hepnn preprocess')")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.records.dtype.names)

    def is_ragged(self, field: str) -> bool:
        return False

    def shape(self, field: str) -> tuple[int, ...]:
        return tuple(self.records.dtype[field].shape)

    def take(
        self, rows: np.ndarray, fields: Sequence[str], out_lengths: Mapping[str, int] | None = None
    ) -> dict[str, np.ndarray]:
        """``field -> array`` of the rows ``rows`` (padded fields cut to ``out_lengths.get(field)`` slots)."""
        records = self.records[rows]
        cut = out_lengths or {}
        return {
            f: np.ascontiguousarray(records[f][..., : cut[f]] if f in cut else records[f]) for f in fields
        }

    def column(self, field: str) -> np.ndarray:
        return np.asarray(self.records[field])

    def __getitem__(self, field: str) -> np.ndarray:
        return self.column(field)

    def to_records(self) -> np.ndarray:
        """The shard's structured array (memory-mapped)."""
        return self.records
