"""Coffea processors of the preprocessing stage, for the three coffea modes.

:class:`ChunkProcessor` runs :meth:`ChunkProcessor.process_chunk` on eager
chunks: directly under ``processor.Runner`` (virtual arrays, any executor), and
under the dask-awkward path (``apply_to_fileset``) once per partition, after
projecting the events onto the branches it declares (``columns``), so only those
are read.
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
from hepnn_coffea.processing.shards import batch_to_records, shard_name, write_shard

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

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ChunkInfo:
        return cls(
            dataset=metadata["dataset"], file=metadata["filename"], tree=metadata.get("treename", ""),
            start=int(metadata["entrystart"]), stop=int(metadata["entrystop"]), metadata=dict(metadata),
        )  # fmt: skip


def _is_dask(events: Any) -> bool:
    return type(events).__module__.startswith("dask_awkward")


class ChunkProcessor(processor.ProcessorABC):
    """Base class: subclasses implement ``columns`` and ``process_chunk``."""

    @abc.abstractmethod
    def columns(self) -> list[str]:
        """Branches ``process_chunk`` reads."""

    @abc.abstractmethod
    def process_chunk(self, events: Any, chunk: ChunkInfo) -> dict[str, Any]:
        """Process one eager chunk; return an accumulatable dict."""

    def process(self, events: Any) -> Any:
        if _is_dask(events):
            return self._process_dask(events)
        return self.process_chunk(events, ChunkInfo.from_metadata(events.metadata))

    def _process_dask(self, events: Any) -> Any:
        import dask
        import dask_awkward as dak

        partitions = events.metadata.get(PARTITIONS_KEY)
        if partitions is None:
            raise RuntimeError(
                f"dataset metadata lacks '{PARTITIONS_KEY}': run through hepnn_coffea.processing.run_dask"
            )
        projected = dak.zip({b: events[b] for b in self.columns()}, depth_limit=1)
        delayed = projected.to_delayed()
        if len(delayed) != len(partitions):
            raise RuntimeError(f"{len(delayed)} dask partitions but {len(partitions)} steps in the metadata")
        outputs = []
        for part, (file, tree, start, stop) in zip(delayed, partitions):
            meta = {**events.metadata, "filename": file, "treename": tree, "entrystart": start, "entrystop": stop}
            meta.pop(PARTITIONS_KEY)
            outputs.append(dask.delayed(self.process_chunk)(part, ChunkInfo.from_metadata(meta)))
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
        seed = [self.seed, chunk.start, int(hashlib.sha1(chunk.file.encode()).hexdigest()[:8], 16)]
        values = raw_values(events, self.config, self.names, self.config.data_fraction, seed, chunk.where,
                            self.config.auto_length_groups)  # fmt: skip
        return {"values": {k: [v] for k, v in values.items()}}


class ShardWriterProcessor(ChunkProcessor):
    """Computes the data config's features for each chunk and writes one shard per chunk.

    Parameters
    ----------
    config
        Data config with every standardization value filled in.
    out_dir
        Shards go to ``out_dir/<split>/<sample>/<file>-<hash>-<start>-<stop>.npy``.
    """

    def __init__(self, config: DataConfig, out_dir: str) -> None:
        if config.needs_auto_standardization:
            raise ValueError("ShardWriterProcessor needs a config whose 'auto' values were computed")
        self.config = config
        self.out_dir = str(out_dir)

    def columns(self) -> list[str]:
        return self.config.required_branches()

    def process_chunk(self, events: Any, chunk: ChunkInfo) -> dict[str, Any]:
        batch = compute_features(events, self.config, where=chunk.where, entry_start=chunk.start)
        split, sample = chunk.metadata["split"], chunk.metadata["sample"]
        name = f"{split}/{shard_name(sample, chunk.file, chunk.start, chunk.stop)}"
        records = batch_to_records(batch)
        write_shard(self.out_dir, name, records)
        labels = batch.labels if batch.labels is not None and batch.labels.ndim == 1 else None
        record = {
            "dataset": chunk.dataset, "sample": sample, "split": split, "file": chunk.file,
            "entry_start": chunk.start, "entry_stop": chunk.stop, "shard": name, **batch.counts,
            "label_counts": np.bincount(labels, minlength=len(self.config.label_names)).tolist()
            if labels is not None else None,
            "expert_counts": np.bincount(batch.expert, minlength=self.config.experts.n_experts).tolist()
            if batch.expert is not None else None,
        }  # fmt: skip
        return {"chunks": [record]}

