"""Preprocessing processors for event-level inputs (a data config with ``rows:``).

Each chunk of events becomes NanoEvents (:func:`hepnn_coffea.events.nanoevents.to_nanoevents`),
then one row per jet (:mod:`hepnn_coffea.events.table`), then the usual
:func:`~hepnn_coffea.features.compute_features`; rows are written to the shard of
their event's split. The chunk records carry the cutflow: events read, jets,
jets selected, matched per class, unmatched per reason, written per split.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from hepnn_coffea.config.data_config import DataConfig
from hepnn_coffea.config.rows_config import SPLIT_NAMES
from hepnn_coffea.features.compute import compute_features, selection_mask
from hepnn_coffea.features.expressions import VariableTable
from hepnn_coffea.processing.processor import ChunkInfo, ChunkProcessor, StandardizationProcessor
from hepnn_coffea.processing.shards import shard_name, write_shard


def row_names(config: DataConfig, selection: str = "selection", inputs_only: bool = False) -> list[str]:
    """Row fields the config reads (inputs, labels, observers, weights, selection)."""
    return config.required_branches(selection, inputs_only=inputs_only)


def event_rows(events: Any, config: DataConfig, chunk: ChunkInfo, names: list[str]) -> tuple[ak.Array, int]:
    """One row per jet of an eager chunk, with the generated fields; and the number of events."""
    from hepnn_coffea.events.nanoevents import to_nanoevents
    from hepnn_coffea.events.table import add_truth, jet_rows

    rows = config.rows
    branches = {b: events[b] for b in rows.file_branches(names)}
    nano = to_nanoevents(branches, len(events))
    table = jet_rows(
        nano, rows, [n for n in names if n not in rows.generated_fields() or n == rows.index_field]
    )
    meta = chunk.metadata
    flat = add_truth(
        table,
        nano,
        rows,
        process=str(meta.get("process", meta.get("sample", chunk.dataset))),
        xsec_scale=float(meta.get("xsec_scale", 1.0)),
    )
    return flat, len(events)


class EventColumnsMixin:
    """``columns()`` of an event-level processor: the NanoAOD branches behind the row fields."""

    config: DataConfig

    def columns(self) -> list[str]:
        return self.config.rows.file_branches(row_names(self.config))


class EventStandardizationProcessor(EventColumnsMixin, StandardizationProcessor):
    """Raw values of the ``auto`` variables over the train-split rows (``data_fraction`` of them)."""

    def process_chunk(self, events: Any, chunk: ChunkInfo) -> dict[str, Any]:
        rows, _ = event_rows(events, self.config, chunk, row_names(self.config))
        return self.chunk_values(rows[np.asarray(rows["split"]) == SPLIT_NAMES.index("train")], chunk)


class EventShardWriterProcessor(EventColumnsMixin, ChunkProcessor):
    """Rows of every chunk -> features -> one shard per (split, chunk); records with the cutflow."""

    def __init__(self, config: DataConfig, out_dir: str) -> None:
        if config.needs_auto_standardization:
            raise ValueError("EventShardWriterProcessor needs a config whose 'auto' values were computed")
        self.config = config
        self.out_dir = str(out_dir)

    def process_chunk(self, events: Any, chunk: ChunkInfo) -> dict[str, Any]:
        config = self.config
        rows, n_events = event_rows(events, config, chunk, row_names(config))
        n_rows = len(rows)
        table = VariableTable(rows, {**config.new_variables, **config.label_expressions}, chunk.where)
        passed = selection_mask(table, config.selection, n_rows)
        cutflow: dict[str, Any] = {"events": n_events, "jets": n_rows, "jets_selected": int(passed.sum())}
        if config.rows.gen_match is not None and config.is_classification:
            # selected jets that match no class are dropped here, counted per reason
            from hepnn_coffea.events.genmatch import REASONS

            good = np.sum([np.asarray(table[c]) for c in config.label_names], axis=0) == 1
            reasons = np.asarray(rows["match_reason"])[passed & ~good]
            # reason 0 (matched) of a class the config does not train on
            names = {**REASONS, 0: "class_not_in_labels"}
            cutflow["unmatched"] = {names[int(r)]: int((reasons == r).sum()) for r in np.unique(reasons)}
            rows = rows[passed & good]
        batch = compute_features(rows, config, where=chunk.where, entry_start=chunk.start, ragged=True)
        if config.rows.gen_match is not None:
            cutflow["matched"] = {
                c: int(np.asarray(rows[c])[batch.selected].sum()) for c in config.label_names
            }
        cutflow["filtered"] = {
            k[len("filtered_") :]: v for k, v in batch.counts.items() if k.startswith("filtered_")
        }
        cutflow["jets_written"] = len(batch)
        split = np.asarray(rows["split"])
        sample = chunk.metadata.get("sample", chunk.dataset)
        records = []
        kept_split = split[batch.selected]
        for index, name in enumerate(SPLIT_NAMES):
            part = kept_split == index
            shard = f"{name}/{shard_name(sample, chunk.file, chunk.start, chunk.stop)}"
            write_shard(self.out_dir, shard, _subset(batch, part), config.storage_dtypes())
            labels = batch.labels[part] if batch.labels is not None and batch.labels.ndim == 1 else None
            records.append(
                {
                    **chunk.provenance(sample, name),
                    "shard": shard,
                    "entries_out": int(part.sum()),
                    "events": len(_event_ids(rows, batch.selected, part)),
                    "label_counts": np.bincount(labels, minlength=len(config.label_names)).tolist()
                    if labels is not None
                    else None,
                }
            )
        return {
            "chunks": records,
            "cutflow": [{**chunk.provenance(sample), **batch_counts(batch), **cutflow}],
        }


def batch_counts(batch: Any) -> dict[str, int]:
    """The NaN/inf replacement counts of a feature batch."""
    return {k: v for k, v in batch.counts.items() if k.startswith("nonfinite_")}


def _event_ids(rows: ak.Array, selected: np.ndarray, part: np.ndarray) -> np.ndarray:
    """(run, lumi, event) of the written rows of one split, packed for counting distinct events."""
    ids = np.stack(
        [np.asarray(rows[k])[selected][part].astype(np.int64) for k in ("run", "luminosityBlock", "event")], 1
    )
    return np.unique(ids, axis=0) if len(ids) else ids


def _subset(batch: Any, keep: np.ndarray) -> Any:
    """A :class:`FeatureBatch` restricted to the rows ``keep`` (boolean over its rows)."""
    from hepnn_coffea.features.compute import FeatureBatch

    return FeatureBatch(
        inputs={k: v[keep] for k, v in batch.inputs.items()},
        labels=None if batch.labels is None else batch.labels[keep],
        observers={k: v[keep] for k, v in batch.observers.items()},
        weights=None if batch.weights is None else batch.weights[keep],
        counts={"entries_out": int(keep.sum())},
        expert=None if batch.expert is None else batch.expert[keep],
    )
