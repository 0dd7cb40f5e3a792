"""Columnar feature computation: selection, new variables, transform, pad.

Pure functions over awkward arrays (eager or coffea virtual arrays). The same
:func:`compute_features` builds the training shards and the inference inputs,
so training and inference cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import awkward as ak
import numpy as np

from hepnn_coffea.features.expressions import ExpressionError, VariableTable
from hepnn_coffea.features.filters import apply_filters as run_filters

if TYPE_CHECKING:
    from hepnn_coffea.config.data_config import DataConfig, VarSpec


class FeatureError(ValueError):
    """A branch or variable cannot be turned into a model input."""


@dataclass
class FeatureBatch:
    """Model-ready arrays for the selected entries of one chunk.

    Attributes
    ----------
    inputs
        ``group -> float32`` array ``(n, n_vars, length)`` (or ``(n, n_vars)`` for length-less groups).
    labels
        ``int64 (n,)`` class index for classification, ``float32 (n, n_targets)`` for regression,
        or ``None`` when labels were not requested (inference).
    observers
        ``name -> (n,)`` arrays passed through untouched.
    weights
        ``float32 (n,)`` per-entry weights, or ``None``.
    counts
        ``entries_in``, ``entries_selected`` (passed ``selection``), ``filtered_<name>``
        (removed by each data-config filter, training only), ``rejected_labels``
        (labels not one-hot) and ``entries_out``; plus ``nonfinite_<var>`` for every
        variable where NaN/inf were replaced by 0 (weaver's ``nan_to_num``).
    selected
        Boolean mask over the input entries of the rows kept.
    expert
        ``int64 (n,)`` expert index of every row when the config declares ``experts``.
    lengths
        Per input group with a length: the number of real (unpadded, untruncated) values per row.
    """

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    observers: dict[str, np.ndarray]
    weights: np.ndarray | None
    counts: dict[str, int] = field(default_factory=dict)
    selected: np.ndarray | None = None
    expert: np.ndarray | None = None
    lengths: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.counts.get("entries_out", 0)


def _flatten(array: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """Counts per entry and the flat float32 content of a jagged ``(n, var)`` array."""
    counts = ak.to_numpy(ak.num(array, axis=1)).astype(np.int64)
    flat = ak.to_numpy(ak.flatten(array, axis=1)).astype(np.float32, copy=False)
    return counts, flat


def _pad_index(counts: np.ndarray, length: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions in the flat content of each padded slot, and which slots hold real values."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    position = np.arange(length, dtype=np.int64)[None, :]
    if mode == "wrap":
        local = position % np.maximum(counts, 1)[:, None]
        real = np.broadcast_to(counts[:, None] > 0, (len(counts), length))
    elif mode == "constant":
        local = position
        real = position < counts[:, None]
    else:
        raise ValueError(f"unknown pad mode {mode!r}")
    return np.where(real, offsets[:-1, None] + local, 0), real


def _pad_flat(flat: np.ndarray, index: np.ndarray, real: np.ndarray, pad_value: float) -> np.ndarray:
    if len(flat) == 0:
        return np.full(index.shape, pad_value, dtype=np.float32)
    return np.where(real, flat[index], np.float32(pad_value)).astype(np.float32, copy=False)


def pad_jagged(array: ak.Array, length: int, pad_value: float = 0.0, mode: str = "constant") -> np.ndarray:
    """Pad/truncate a jagged ``(n, var)`` array to a float32 ``(n, length)`` block.

    ``mode="constant"`` fills with ``pad_value``; ``mode="wrap"`` repeats each
    entry's own values cyclically (entries with no values get ``pad_value``).
    Unlike weaver-core, whose ``wrap`` tiles values from the whole chunk, the
    result never depends on how the data were chunked.
    """
    counts, flat = _flatten(array)
    return _pad_flat(flat, *_pad_index(counts, length, mode), pad_value)


def transform(array: Any, spec: VarSpec) -> Any:
    """Weaver's standardization ``clip((x - center) * scale, min, max)``; identity if center is None."""
    if spec.center is None:
        return array
    if isinstance(spec.center, str):
        raise FeatureError(f"variable '{spec.name}': center {spec.center!r} was never computed")
    return np.minimum(np.maximum((array - spec.center) * spec.scale, spec.min), spec.max)


def _to_numpy_1d(value: Any, name: str, where: str) -> np.ndarray:
    try:
        out = ak.to_numpy(value) if isinstance(value, ak.Array) else np.asarray(value)
    except ValueError as err:
        raise FeatureError(f"'{name}'{where} must have one value per entry: {err}") from err
    if out.ndim != 1:
        raise FeatureError(f"'{name}'{where} must have one value per entry, got shape {out.shape}")
    return out


def _input_block(table: VariableTable, group: Any, n: int, counts: dict[str, int], where: str,
                 lengths: dict[str, np.ndarray]) -> np.ndarray:  # fmt: skip
    """The ``(n, n_vars[, length])`` float32 block of one input group.

    Jagged variables are flattened first, transformed on the flat numpy content
    and gathered into the padded layout with one index per distinct jagged structure.
    """
    shape = (n, len(group.vars)) + ((group.length,) if group.length is not None else ())
    block = np.empty(shape, dtype=np.float32)
    layout: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # counts, index, real
    for i, spec in enumerate(group.vars):
        value = table[spec.name]
        jagged = isinstance(value, ak.Array) and value.ndim > 1
        if group.length is not None:
            if not jagged:
                raise FeatureError(
                    f"input group '{group.name}' has length {group.length} but '{spec.name}'{where} "
                    "has one value per entry (use a group without 'length' for per-entry inputs)"
                )
            entry_counts, flat = _flatten(value)
            if layout is None or not np.array_equal(layout[0], entry_counts):
                layout = (entry_counts, *_pad_index(entry_counts, group.length, group.pad_mode))
                lengths[group.name] = np.minimum(entry_counts, group.length)
            flat = _finite(transform(flat, spec), spec.name, counts)
            column = _pad_flat(flat, layout[1], layout[2], spec.pad_value)
        else:
            if jagged:
                raise FeatureError(f"'{spec.name}'{where} is jagged; input group '{group.name}' needs 'length'")
            column = _finite(transform(_to_numpy_1d(value, spec.name, where).astype(np.float32), spec), spec.name, counts)
        if len(column) != n:
            raise FeatureError(f"'{spec.name}'{where} has {len(column)} entries, expected {n}")
        block[:, i] = column
    return block


def _finite(values: np.ndarray, name: str, counts: dict[str, int]) -> np.ndarray:
    """NaN/inf -> 0 (weaver's ``nan_to_num``), counted in ``counts['nonfinite_<name>']``."""
    bad = ~np.isfinite(values)
    if bad.any():
        counts[f"nonfinite_{name}"] = counts.get(f"nonfinite_{name}", 0) + int(bad.sum())
        values = np.where(bad, np.float32(0), values)
    return values


def selection_mask(table: VariableTable, expression: str | None, n: int, key: str = "selection") -> np.ndarray:
    """Boolean mask of the entries passing ``expression`` (all ``n`` entries when it is empty)."""
    if not expression:
        return np.ones(n, dtype=bool)
    where = f" in {table.where}" if table.where else ""
    return _to_numpy_1d(table.evaluate(expression, key=key), key, where).astype(bool)


def compute_features(
    source: Any,
    config: DataConfig,
    *,
    where: str = "",
    selection: str = "selection",
    with_labels: bool = True,
    entry_start: int = 0,
    apply_filters: bool | None = None,
) -> FeatureBatch:
    """Compute the model inputs (and labels, observers, weights) of one chunk.

    Parameters
    ----------
    source
        Entries with the branches as fields (awkward record array, NanoEvents, dict of arrays).
    config
        The data config, with standardization values filled in.
    where
        Name of the input (file and entry range) used in error messages.
    selection
        ``"selection"`` (training) or ``"test_time_selection"`` (inference, falling back
        to ``selection`` as weaver does).
    with_labels
        Compute labels, observers and weights (training), and drop entries whose simple
        labels are not one-hot, and apply the config's ``filters``. ``False`` (inference)
        reads only what the inputs need.
    entry_start
        Entry number of the first entry in its file (for ``first: N`` filters).
    apply_filters
        Apply the config's ``filters`` (default: when ``with_labels``, i.e. in preprocessing).
    """
    where_text = f" in {where}" if where else ""
    definitions = {**config.new_variables, **config.label_expressions}
    table = VariableTable(source, definitions, where)
    n_in = len(next(iter(source.values()))) if isinstance(source, Mapping) else len(source)
    sel_expr = getattr(config, selection, None) or config.selection
    try:
        keep = selection_mask(table, sel_expr, n_in, selection)
        counts = {"entries_in": n_in, "entries_selected": int(keep.sum()), "rejected_labels": 0}
        if config.filters and (with_labels if apply_filters is None else apply_filters):
            keep = run_filters(config.filters, table, keep, entry_start, counts)
        labels = None
        if with_labels and config.is_classification:
            onehot = np.stack(
                [_to_numpy_1d(table[name], name, where_text).astype(np.int64) for name in config.label_names], axis=1
            )
            good = onehot.sum(axis=1) == 1
            counts["rejected_labels"] = int((keep & ~good).sum())
            keep &= good
            labels = np.argmax(onehot, axis=1)[keep]
        rows = np.flatnonzero(keep)
        selected = VariableTable(_take(table, config, rows, with_labels, selection), definitions, where)
        n = len(rows)
        lengths: dict[str, np.ndarray] = {}
        inputs = {g.name: _input_block(selected, g, n, counts, where_text, lengths) for g in config.inputs.values()}
        if with_labels and not config.is_classification:
            labels = _targets(selected, config, where_text)
        expert = config.experts.index(selected, n, counts) if config.experts is not None else None
        observers = {o: _to_numpy_1d(selected[o], o, where_text) for o in config.observers} if with_labels else {}
        weights = None
        if with_labels and config.weight_branches:
            weights = np.prod(
                [_to_numpy_1d(selected[w], w, where_text).astype(np.float64) for w in config.weight_branches], axis=0
            ).astype(np.float32)
    except KeyError as err:
        raise FeatureError(err.args[0]) from None
    except ExpressionError as err:
        raise FeatureError(str(err)) from err
    counts["entries_out"] = n
    return FeatureBatch(inputs, labels, observers, weights, counts, keep, expert, lengths)


def _targets(selected: VariableTable, config: DataConfig, where: str) -> np.ndarray:
    """Regression targets: ``(n, n_targets)``; per-point targets (``labels.pad_to``) ``(n, n_targets, length)``.

    Per-point targets are jagged expressions padded like the ``pad_to`` input group
    (``constant`` padding with ``labels.pad_value``, -1 by default, which the per-point
    losses ignore).
    """
    if config.label_pad_to is None:
        columns = [_to_numpy_1d(selected[name], name, where) for name in config.label_names]
        return np.stack(columns, axis=1).astype(np.float32)
    length = config.inputs[config.label_pad_to].length
    blocks = []
    for name in config.label_names:
        value = selected[name]
        if not (isinstance(value, ak.Array) and value.ndim > 1):
            raise FeatureError(f"per-point target '{name}'{where} must be jagged (one value per point)")
        blocks.append(pad_jagged(value, length, config.label_pad_value, "constant"))
    return np.stack(blocks, axis=1)


def _take(table: VariableTable, config: DataConfig, rows: np.ndarray, with_labels: bool, selection: str) -> dict[str, Any]:
    """The selected rows of every branch the outputs need (already-loaded ones are reused)."""
    return {name: table[name][rows] for name in config.required_branches(selection, inputs_only=not with_labels)}
