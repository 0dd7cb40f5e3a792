"""Coffea processors of the preprocessing stage, for the three coffea modes.

:class:`ChunkProcessor` runs :meth:`ChunkProcessor.process_chunk` on eager
chunks: directly under ``processor.Runner`` (virtual arrays, any executor), and
under the dask path (``apply_to_fileset``) once per partition, whose branches it
declares (``columns``) are read with uproot inside the partition's dask task (so a
read error is caught there), so only those are read.

A chunk whose columns cannot be read (truncated file, corrupt basket, storage error) is
not processed: ``process()`` returns ``{"skipped": [record]}`` instead of raising (see
:mod:`hepnn_coffea.processing.bad_files`; the stage stops or goes on after the run according
to the processor's ``bad_files`` policy). Transient (``OSError``) read errors are retried
``bad_files.retries`` times first.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
from typing import Any

import numpy as np
from coffea import processor

from hepnn_coffea.config.data_config import DataConfig
from hepnn_coffea.features.compute import compute_features
from hepnn_coffea.features.standardize import auto_variables, raw_values
from hepnn_coffea.processing.bad_files import (
    SKIPPED_KEY,
    BadFilePolicy,
    UnreadableChunk,
    materialize,
    read_chunk,
    read_partition,
    skip_record,
)
from hepnn_coffea.processing.shards import shard_name, write_shard

#: key of the dataset metadata that lists the partitions of the dask path, in order
PARTITIONS_KEY = "hepnn_partitions"


@dataclasses.dataclass(frozen=True)
class ChunkInfo:
    """Where a chunk comes from, and the metadata of its dataset."""

    dataset: str
    file: str
    tree: str
    start: int
    stop: int
    metadata: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.file} (tree '{self.tree}', entries {self.start}-{self.stop})"

    def provenance(self, sample: str, split: str | None = None) -> dict[str, Any]:
        """The manifest record's first keys: dataset, sample, split (when given), file, entry range."""
        where = {"file": self.file, "entry_start": self.start, "entry_stop": self.stop}
        return {
            "dataset": self.dataset,
            "sample": sample,
            **({"split": split} if split is not None else {}),
            **where,
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ChunkInfo:
        return cls(
            dataset=metadata["dataset"],
            file=metadata["filename"],
            tree=metadata.get("treename", ""),
            start=int(metadata["entrystart"]),
            stop=int(metadata["entrystop"]),
            metadata=dict(metadata),
        )


def _is_dask(events: Any) -> bool:
    return type(events).__module__.startswith("dask_awkward")


class ChunkProcessor(processor.ProcessorABC):
    """Base class: subclasses implement ``columns`` and ``process_chunk``.

    ``bad_files`` (a :class:`~hepnn_coffea.processing.bad_files.BadFilePolicy`, set by the
    stages) gives the retries of a chunk whose columns cannot be read.
    """

    bad_files: BadFilePolicy = BadFilePolicy()

    @abc.abstractmethod
    def columns(self) -> list[str]:
        """Branches ``process_chunk`` reads."""

    @abc.abstractmethod
    def process_chunk(self, events: Any, chunk: ChunkInfo) -> dict[str, Any]:
        """Process one eager chunk; return an accumulatable dict."""

    def process(self, events: Any) -> Any:
        if _is_dask(events):
            return self._process_dask(events)
        chunk = ChunkInfo.from_metadata(events.metadata)
        return self._guarded(lambda: materialize(events, self.columns()), chunk)

    def _guarded(self, read: Any, chunk: ChunkInfo) -> dict[str, Any]:
        """Read the chunk's columns (``read()``), then ``process_chunk``; a read error becomes a record."""
        try:
            events = read_chunk(read, self.bad_files.retries)
        except UnreadableChunk as err:
            record = skip_record(chunk.dataset, chunk.file, chunk.tree, chunk.start, chunk.stop, str(err))
            return {SKIPPED_KEY: [record]}
        return self.process_chunk(events, chunk)

    def _read_and_process(self, meta: dict[str, Any]) -> dict[str, Any]:
        """One partition of the dask path: read with uproot inside the task, so read errors are caught
        here."""
        chunk = ChunkInfo.from_metadata(meta)
        columns = self.columns()
        return self._guarded(
            lambda: read_partition(chunk.file, chunk.tree, chunk.start, chunk.stop, columns), chunk
        )

    def _process_dask(self, events: Any) -> Any:
        import dask

        partitions = events.metadata.get(PARTITIONS_KEY)
        if partitions is None:
            raise RuntimeError(
                f"dataset metadata lacks '{PARTITIONS_KEY}': run through hepnn_coffea.processing.run_dask"
            )
        if events.npartitions != len(partitions):
            raise RuntimeError(
                f"{events.npartitions} dask partitions but {len(partitions)} steps in the metadata"
            )
        outputs = []
        for file, tree, start, stop in partitions:
            meta = {
                **events.metadata,
                "filename": file,
                "treename": tree,
                "entrystart": start,
                "entrystop": stop,
            }
            meta.pop(PARTITIONS_KEY)
            outputs.append(dask.delayed(self._read_and_process)(meta))
        return dask.delayed(processor.accumulate)(outputs)

    def postprocess(self, accumulator: Any) -> Any:
        return accumulator


class StandardizationProcessor(ChunkProcessor):
    """Collects the raw values of ``auto`` variables on the training split (``data_fraction`` of it)."""

    def __init__(self, config: DataConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        self.names = auto_variables(config)

    def columns(self) -> list[str]:
        return self.config.required_branches()

    def process_chunk(self, events: Any, chunk: ChunkInfo) -> dict[str, Any]:
        if chunk.metadata.get("split", "train") != "train":
            return {}
        return self.chunk_values(events, chunk)

    def chunk_values(self, rows: Any, chunk: ChunkInfo) -> dict[str, Any]:
        """The raw values of the training ``rows`` of one chunk, sampled with a seed of the chunk."""
        seed = [self.seed, chunk.start, int(hashlib.sha1(chunk.file.encode()).hexdigest()[:8], 16)]
        cfg = self.config
        values = raw_values(
            rows, cfg, self.names, cfg.data_fraction, seed, chunk.where, cfg.auto_length_groups
        )
        return {"values": {k: [v] for k, v in values.items()}}


class ShardWriterProcessor(ChunkProcessor):
    """Computes the data config's features for each chunk and writes one shard per chunk.

    Parameters
    ----------
    config
        Data config with every standardization value filled in.
    out_dir
        Shards go to ``out_dir/<split>/<sample>/<file>-<hash>-<start>-<stop>.arrow``.
    """

    def __init__(self, config: DataConfig, out_dir: str) -> None:
        if config.needs_auto_standardization:
            raise ValueError("ShardWriterProcessor needs a config whose 'auto' values were computed")
        self.config = config
        self.out_dir = str(out_dir)

    def columns(self) -> list[str]:
        return self.config.required_branches()

    def process_chunk(self, events: Any, chunk: ChunkInfo) -> dict[str, Any]:
        batch = compute_features(events, self.config, where=chunk.where, entry_start=chunk.start, ragged=True)
        split, sample = chunk.metadata["split"], chunk.metadata["sample"]
        name = f"{split}/{shard_name(sample, chunk.file, chunk.start, chunk.stop)}"
        write_shard(self.out_dir, name, batch, self.config.storage_dtypes())
        labels = batch.labels if batch.labels is not None and batch.labels.ndim == 1 else None
        record = {
            **chunk.provenance(sample, split),
            "shard": name,
            **batch.counts,
            "label_counts": np.bincount(labels, minlength=len(self.config.label_names)).tolist()
            if labels is not None
            else None,
            "expert_counts": np.bincount(batch.expert, minlength=self.config.experts.n_experts).tolist()
            if batch.expert is not None
            else None,
        }
        return {"chunks": [record]}
