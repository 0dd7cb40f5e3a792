"""Reading shards for training: memory-mapped, shuffled per epoch, no feature work.

Ragged shards (format ``/2``) are padded when a batch is gathered, and with
:meth:`ShardDataset.trim_at_gather` only up to the batch's longest jet; padded
``.npy`` shards (format ``/1``) load as they are.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from hepnn_coffea._optional import missing_extra
from hepnn_coffea.processing.shards import INPUT_PREFIX, MANIFEST, open_shard

try:
    import torch
except ModuleNotFoundError as err:  # without the [train] extra: say what to install
    raise missing_extra(err, "train") from None


class ShardDataset:
    """All shards of one split, memory-mapped; batches gather rows shard by shard.

    Parameters
    ----------
    shard_dir
        A preprocessing output folder (holding ``manifest.json``).
    split
        ``train``, ``val`` or ``test``.
    groups
        Input groups to return (default: all in the manifest).
    expert
        Only the rows routed to this expert (shards of a data config with ``experts``).
    """

    def __init__(
        self,
        shard_dir: str | pathlib.Path,
        split: str,
        groups: list[str] | None = None,
        expert: int | None = None,
    ) -> None:
        self.root = pathlib.Path(shard_dir)
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path} not found: run 'hepnn preprocess' first")
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        samples = self.manifest["splits"].get(split)
        if not samples:
            raise ValueError(
                f"{self.root}: no '{split}' split in the manifest (have {sorted(self.manifest['splits'])})"
            )
        self.split = split
        self.groups = list(groups or self.manifest["inputs"])
        self.shards = [open_shard(self.root / s["path"]) for e in samples.values() for s in e["shards"]]
        self.shards = [s for s in self.shards if len(s)]
        if not self.shards:
            raise ValueError(f"{self.root}: split '{split}' has no selected entries")
        for shard in self.shards:
            for g in self.groups:
                if INPUT_PREFIX + g not in shard.fields:
                    raise ValueError(f"{shard.path}: shard has no input group '{g}'")
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])
        self.fields = self.shards[0].fields
        self.target_field = "label" if "label" in self.fields else "target"
        self.has_weight = "weight" in self.fields
        self.has_expert = "expert" in self.fields
        self.extra_fields: list[str] = []
        self._trim: tuple[tuple[str, ...], int] | None = None
        self._lengths: np.ndarray | None = None
        #: global row numbers this dataset covers (all rows, or one expert's)
        self.rows = np.arange(int(self.offsets[-1]))
        if expert is not None:
            if not self.has_expert:
                raise ValueError(
                    f"{self.root}: expert {expert} requested but the data config declares no 'experts'"
                )
            self.rows = np.flatnonzero(
                np.concatenate([s.column("expert") for s in self.shards]) == int(expert)
            )
            if not len(self.rows):
                raise ValueError(f"{self.root}: split '{split}' has no rows for expert {expert}")

    def __len__(self) -> int:
        return len(self.rows)

    def keep_subset(self, n: int, seed: int) -> None:
        """Keep a seeded random subset of ``n`` rows (in shard order), like weaver's
        ``--samples-per-epoch-val``."""
        if n < 1:
            raise ValueError(f"{self.root}: val_samples must be >= 1, got {n}")
        if n < len(self.rows):
            self.rows = np.sort(np.random.default_rng([seed, 7]).choice(self.rows, n, replace=False))

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-entry shape of each input group."""
        return {g: self.shards[0].shape(INPUT_PREFIX + g) for g in self.manifest["inputs"]}

    def trim_at_gather(self, groups: tuple[str, ...], mask_group: str, min_length: int) -> None:
        """Pad ``groups`` of ragged shards only to the batch's longest ``mask_group`` jet (multiple of 8).

        The result is what the training step's trimming (:func:`hepnn_coffea.training.loop.trim`)
        keeps anyway, without writing the padding first. Only for a ragged, zero-padded
        ``constant`` mask group; otherwise batches keep the full length.
        """
        if not groups or mask_group is None:
            return
        mask = INPUT_PREFIX + mask_group
        fields = tuple(
            f for f in (INPUT_PREFIX + g for g in groups) if all(s.is_ragged(f) for s in self.shards)
        )
        if mask in fields and all(s.zero_padded(mask) for s in self.shards):
            self._trim = (fields, int(min_length))

    def _batch_lengths(self, parts: list[tuple[int, np.ndarray]]) -> dict[str, int]:
        """Slots to gather per trimmed group: the longest of the batch's rows, rounded up to 8."""
        if self._trim is None:
            return {}
        fields, min_length = self._trim
        longest = max(
            int(self.shards[s].lengths(f, rows).max(initial=0)) for s, rows in parts for f in fields
        )
        full = {f: self.shards[0].shape(f)[-1] for f in fields}
        return {f: min(full[f], max(min_length, -(-longest // 8) * 8)) for f in fields}

    def gather(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Rows ``index`` (global positions) as contiguous arrays per field, in that order.

        Each shard is read in row order (sequential access to its memory-mapped values)
        and the rows are put back in the order of ``index``.
        """
        order = np.argsort(index, kind="stable")
        sorted_index = index[order]
        shard_of = np.searchsorted(self.offsets, sorted_index, side="right") - 1
        bounds = np.searchsorted(shard_of, np.arange(len(self.shards) + 1))
        parts = [
            (s, sorted_index[a:b] - self.offsets[s], order[a:b])
            for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))
            if b > a
        ]
        names = {INPUT_PREFIX + g: g for g in self.groups}
        names[self.target_field] = "target"
        names.update({f: f for f in ("weight", "expert") if getattr(self, f"has_{f}")})
        names.update({f: f for f in self.extra_fields})
        lengths = self._batch_lengths([(s, rows) for s, rows, _ in parts])
        out: dict[str, np.ndarray] = {}
        for s, rows, at in parts:
            for field, values in self.shards[s].take(rows, list(names), lengths).items():
                if names[field] not in out:
                    out[names[field]] = np.empty((len(index), *values.shape[1:]), dtype=values.dtype)
                out[names[field]][at] = values
        return out

    def carry(self, fields: list[str]) -> None:
        """Also put these shard fields (e.g. ``observers/jet_sdmass``) into every batch."""
        missing = [f for f in fields if f not in self.fields]
        if missing:
            raise ValueError(f"{self.root}: the '{self.split}' shards have no field(s) {missing}")
        self.extra_fields = list(dict.fromkeys([*self.extra_fields, *fields]))

    def epoch_index(self, shuffle: bool, seed: int | list[int], limit: int | None = None) -> np.ndarray:
        """Global rows of one epoch: a seeded permutation (or in order), cut to ``limit`` rows.

        A ``limit`` above the split size cycles through further permutations, like
        weaver-core's ``--samples-per-epoch``.
        """
        n = len(self)
        if not shuffle:
            index = np.arange(n)
        else:
            rng = np.random.default_rng(seed)
            rounds = 1 if limit is None else -(-limit // n)
            index = np.concatenate([rng.permutation(n) for _ in range(rounds)])
        return self.rows[index if limit is None else index[:limit]]

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        seed: int | list[int] = 0,
        drop_last: bool = False,
        limit: int | None = None,
        index: np.ndarray | None = None,
        prefetch: int = 0,
        pin_memory: bool = False,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Yield batches of torch tensors; the order depends only on ``seed`` (or is ``index``).

        ``prefetch > 0`` gathers up to that many batches ahead in a background thread (the
        copies out of the memory-mapped shards overlap the model step; the order is
        unchanged); ``pin_memory`` pins them for asynchronous host-to-GPU copies.
        """
        if index is None:
            index = self.epoch_index(shuffle, seed, limit)
        stop = len(index) - (len(index) % batch_size if drop_last else 0)

        def make(start: int) -> dict[str, torch.Tensor]:
            batch = {
                k: torch.from_numpy(v) for k, v in self.gather(index[start : start + batch_size]).items()
            }
            return {k: v.pin_memory() for k, v in batch.items()} if pin_memory else batch

        starts = range(0, stop, batch_size)
        if prefetch <= 0:
            yield from (make(start) for start in starts)
        else:
            yield from _prefetched(make, starts, prefetch)

    def lengths(self, mask_group: str) -> np.ndarray:
        """Number of non-zero ``mask_group`` values of every row (its real particles), cached."""
        if self._lengths is None:
            self._lengths = np.concatenate(
                [_nonzero_per_row(s, INPUT_PREFIX + mask_group) for s in self.shards]
            )
        return self._lengths

    def arrays(self, fields: list[str]) -> dict[str, np.ndarray]:
        """Whole columns (e.g. ``observers/jet_pt``, ``label``) of this dataset's rows."""
        return {f: np.concatenate([s.column(f) for s in self.shards])[self.rows] for f in fields}


def _nonzero_per_row(shard: Any, field: str, chunk: int = 4096) -> np.ndarray:
    """Non-zero values per row of ``field``, gathered ``chunk`` rows at a time."""
    counts = [
        (shard.take(np.arange(start, min(start + chunk, len(shard))), [field])[field] != 0)
        .reshape(-1, int(np.prod(shard.shape(field))))
        .sum(axis=1)
        for start in range(0, len(shard), chunk)
    ]
    return np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)


def _prefetched(make: Any, starts: range, depth: int) -> Iterator[Any]:
    """``make(start)`` for every start, computed ``depth`` ahead in one background thread (order kept)."""
    import queue
    import threading

    done = object()
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for start in starts:
                if stop.is_set():
                    return
                slots.put(make(start))
            slots.put(done)
        except BaseException as err:  # re-raised in the consumer
            slots.put(err)

    worker = threading.Thread(target=produce, name="hepnn-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)
