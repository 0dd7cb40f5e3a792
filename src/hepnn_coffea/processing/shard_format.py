"""Ragged training shards: one Arrow IPC file per chunk, only the real particles stored.

A shard (format ``hepnn_coffea.shards/2``) holds one record batch with one row per
selected jet:

* ``ragged/<collection>``: ``list<struct<...>>`` of the per-particle values of every
  input group (and per-point target) that shares this multiplicity; each variable is
  stored once even when several groups use it, in the precision its group asks for
  (``inputs.<group>.dtype``: ``float32``, ``float16``, or ``bfloat16`` as ``uint16``);
  a variable with one value for every particle of the shard (a mask) is stored as
  that constant alone;
* ``inputs/<group>`` of groups without a length (and of groups whose variables have
  different multiplicities, padded), ``label``/``target``, ``weight``, ``expert`` and
  ``observers/<name>``: one value (or fixed-size list) per row.

The schema metadata (key ``hepnn_coffea``) maps every logical field to its storage,
so :class:`RaggedShard` returns the same arrays the padded ``.npy`` shards of format
``/1`` held, padded (or cut to the batch's longest jet) only when a batch is gathered.
Files are memory-mapped: a batch reads only its rows' particles. ``awkward.from_arrow``
or ``pyarrow.ipc`` read them as they are.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from hepnn_coffea.features.ragged import RaggedGroup, as_storage, from_bfloat16, offsets_of, pad_rows

FORMAT = "hepnn_coffea.shards/2"
SUFFIX = ".arrow"
META_KEY = b"hepnn_coffea"
RAGGED_PREFIX = "ragged/"


class ShardFormatError(ValueError):
    """A shard file cannot be read as a training shard (the message names the file)."""


def logical_fields(batch: Any) -> dict[str, Any]:
    """``field name -> array or RaggedGroup`` of a :class:`~hepnn_coffea.features.compute.FeatureBatch`."""
    fields: dict[str, Any] = {f"inputs/{k}": v for k, v in batch.inputs.items()}
    if batch.labels is not None:
        is_label = not isinstance(batch.labels, RaggedGroup) and batch.labels.ndim == 1
        fields["label" if is_label else "target"] = batch.labels
    if batch.weights is not None:
        fields["weight"] = batch.weights
    if batch.expert is not None:
        fields["expert"] = batch.expert
    fields.update({f"observers/{k}": v for k, v in batch.observers.items()})
    return fields


def _constant(values: np.ndarray, dtype: str) -> float | None:
    """The one value of ``values`` as read back in ``dtype`` (``None`` when they differ)."""
    if not len(values):
        return 0.0
    first = values[0]
    if not np.isfinite(first) or not (values == first).all():
        return None
    stored = as_storage(np.asarray([first], dtype=np.float32), dtype)
    return float(from_bfloat16(stored)[0] if dtype == "bfloat16" else stored[0])


class _Collection:
    """The particles of the ragged fields that share one multiplicity."""

    def __init__(self, name: str, counts: np.ndarray) -> None:
        self.name, self.counts = name, counts
        self.children: dict[str, np.ndarray] = {}

    def add(self, key: str, values: np.ndarray | float, dtype: str) -> dict[str, Any]:
        """Store ``values`` under ``key`` (once per key and dtype); returns the field's column reference."""
        values = np.float32(values) if not isinstance(values, np.ndarray) else values
        constant = float(values) if np.ndim(values) == 0 else _constant(values, dtype)
        if constant is not None:
            return {"constant": constant}
        name = key if dtype == "float32" else f"{key}:{dtype}"
        if name not in self.children:
            self.children[name] = as_storage(values, dtype)
        return {"column": name, **({"encoding": "bfloat16"} if dtype == "bfloat16" else {})}

    def to_arrow(self) -> pa.Array:
        offsets = offsets_of(self.counts)
        index_type = np.int32 if offsets[-1] < 2**31 else np.int64
        if self.children:
            values = pa.StructArray.from_arrays(
                [pa.array(v) for v in self.children.values()], list(self.children)
            )
        else:  # every value constant: the offsets alone
            values = pa.nulls(int(offsets[-1]))
        cls = pa.ListArray if index_type is np.int32 else pa.LargeListArray
        return cls.from_arrays(pa.array(offsets.astype(index_type)), values)


def _fixed_array(values: np.ndarray) -> pa.Array:
    flat = pa.array(values.reshape(-1)) if values.ndim > 1 else pa.array(values)
    return (
        pa.FixedSizeListArray.from_arrays(flat, int(np.prod(values.shape[1:]))) if values.ndim > 1 else flat
    )


def batch_to_arrow(batch: Any, storage: Mapping[str, str] | None = None) -> pa.RecordBatch:
    """Pack a feature batch (``compute_features(..., ragged=True)``) into one Arrow record batch.

    Parameters
    ----------
    batch
        The chunk's :class:`~hepnn_coffea.features.compute.FeatureBatch`.
    storage
        ``input group -> float32 | float16 | bfloat16`` (default float32).
    """
    storage = dict(storage or {})
    collections: list[_Collection] = []
    columns: dict[str, pa.Array] = {}
    fields: dict[str, Any] = {}
    for name, value in logical_fields(batch).items():
        dtype = storage.get(name[len("inputs/") :], "float32") if name.startswith("inputs/") else "float32"
        if isinstance(value, RaggedGroup):
            coll = next((c for c in collections if np.array_equal(c.counts, value.counts)), None)
            if coll is None:
                coll = _Collection(f"c{len(collections)}", value.counts)
                collections.append(coll)
            prefix = "" if name.startswith("inputs/") else f"{name}/"
            refs = [coll.add(prefix + var, col, dtype) for var, col in zip(value.names, value.columns)]
            fields[name] = {
                "ragged": coll.name,
                "columns": refs,
                "length": value.length,
                "pad_mode": value.pad_mode,
                "pad_values": list(value.pad_values),
            }
            continue
        values = np.asarray(value)
        stored = as_storage(values, dtype) if dtype != "float32" else values
        columns[name] = _fixed_array(stored)
        fields[name] = {
            "shape": list(values.shape[1:]),
            "dtype": str(values.dtype),
            **({"storage": dtype} if dtype != "float32" else {}),
        }
    for coll in collections:
        columns[RAGGED_PREFIX + coll.name] = coll.to_arrow()
    meta = {"format": FORMAT, "rows": len(batch), "fields": fields}
    record = pa.RecordBatch.from_arrays(list(columns.values()), names=list(columns))
    return record.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})


def write_arrow(record: pa.RecordBatch, fileobj: Any) -> None:
    """Write ``record`` as an (uncompressed, memory-mappable) Arrow IPC file."""
    with pa.ipc.new_file(fileobj, record.schema) as writer:
        writer.write_batch(record)


def _numpy(array: pa.Array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=not pa.types.is_boolean(array.type))


class RaggedShard:
    """A memory-mapped ``hepnn_coffea.shards/2`` file; fields come back as the padded arrays.

    Parameters
    ----------
    path
        The ``.arrow`` shard.
    """

    def __init__(self, path: str | pathlib.Path) -> None:
        self.path = pathlib.Path(path)
        source = None
        try:
            source = pa.memory_map(str(self.path), "r")
            reader = pa.ipc.open_file(source)
            meta = json.loads((reader.schema.metadata or {}).get(META_KEY, b"null"))
            batch = reader.get_batch(0) if reader.num_record_batches == 1 else None
        except (OSError, pa.ArrowException, ValueError) as err:
            raise ShardFormatError(f"{self.path}: not a readable shard ({err})") from None
        finally:  # the mapping lives on in the batch's buffers; no file descriptor stays open per shard
            if source is not None:
                source.close()
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or batch is None:
            raise ShardFormatError(f"{self.path}: not a {FORMAT} shard (re-run 'hepnn preprocess')")
        self._batch, self._meta = batch, meta["fields"]
        self._columns: dict[str, np.ndarray] = {}
        self._offsets: dict[str, np.ndarray] = {}
        self._children: dict[str, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return self._batch.num_rows

    @property
    def fields(self) -> tuple[str, ...]:
        """The logical fields (``inputs/<group>``, ``label``, ``observers/<name>``, ...)."""
        return tuple(self._meta)

    def is_ragged(self, field: str) -> bool:
        return "ragged" in self._meta[field]

    def zero_padded(self, field: str) -> bool:
        """True for a ragged ``constant``-mode field whose padded slots are all 0 (a particle mask)."""
        spec = self._meta[field]
        return "ragged" in spec and spec["pad_mode"] == "constant" and not any(spec["pad_values"])

    def shape(self, field: str) -> tuple[int, ...]:
        """Per-row shape of ``field`` as returned (padded to the group's length)."""
        spec = self._meta[field]
        return (len(spec["columns"]), spec["length"]) if "ragged" in spec else tuple(spec["shape"])

    def _collection(self, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if name not in self._offsets:
            array = self._batch.column(RAGGED_PREFIX + name)
            offsets = _numpy(array.offsets).astype(np.int64)
            values = array.values
            children = (
                {}
                if pa.types.is_null(values.type)
                else {
                    values.type.field(i).name: _numpy(values.field(i)) for i in range(values.type.num_fields)
                }
            )
            if offsets[-1] != len(values) or len(offsets) != len(self) + 1:
                raise ShardFormatError(f"{self.path}: collection '{name}' has inconsistent offsets")
            self._offsets[name], self._children[name] = offsets, children
        return self._offsets[name], self._children[name]

    def lengths(self, field: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Stored values per row (of ``rows``, default all) of a ragged field, at most its length."""
        spec = self._meta[field]
        offsets, _ = self._collection(spec["ragged"])
        counts = np.diff(offsets) if rows is None else offsets[rows + 1] - offsets[rows]
        return np.minimum(counts, spec["length"])

    def _fixed(self, field: str) -> np.ndarray:
        if field not in self._columns:
            spec, array = self._meta[field], self._batch.column(field)
            values = _numpy(array.values if spec["shape"] else array)
            self._columns[field] = values.reshape((len(self), *spec["shape"]))
        return self._columns[field]

    def take(
        self, rows: np.ndarray, fields: Sequence[str], out_lengths: Mapping[str, int] | None = None
    ) -> dict[str, np.ndarray]:
        """``field -> array`` of ``rows``; ragged fields get ``out_lengths.get(field)`` slots."""
        out_lengths = out_lengths or {}
        out = {}
        for field in fields:
            spec = self._meta.get(field)
            if spec is None:
                raise KeyError(f"{self.path}: shard has no field '{field}'")
            if "ragged" in spec:
                offsets, children = self._collection(spec["ragged"])
                columns = [
                    ref["constant"] if "constant" in ref else children[ref["column"]]
                    for ref in spec["columns"]
                ]
                out[field] = pad_rows(
                    columns,
                    offsets,
                    rows,
                    length=spec["length"],
                    pad_values=spec["pad_values"],
                    pad_mode=spec["pad_mode"],
                    out_length=out_lengths.get(field),
                )
                continue
            values = self._fixed(field)[rows]
            if spec.get("storage") == "bfloat16":
                values = from_bfloat16(values)
            elif spec.get("storage") == "float16":
                values = values.astype(np.float32)
            out[field] = values
        return out

    def column(self, field: str) -> np.ndarray:
        """The whole field (every row), as the padded shards held it."""
        return self.take(np.arange(len(self)), [field])[field]

    def __getitem__(self, field: str) -> np.ndarray:
        return self.column(field)

    def to_records(self) -> np.ndarray:
        """Every row as one structured array, every field padded (what a format ``/1`` shard held)."""
        columns = self.take(np.arange(len(self)), self.fields)
        records = np.empty(len(self), dtype=[(f, v.dtype, v.shape[1:]) for f, v in columns.items()])
        for field, values in columns.items():
            records[field] = values
        return records
