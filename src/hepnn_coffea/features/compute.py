"""Columnar feature computation: selection, new variables, transform, pad.

Pure functions over awkward arrays (eager or coffea virtual arrays). The same
:func:`compute_features` builds the training shards and the inference inputs,
so training and inference cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import awkward as ak
import numpy as np

from hepnn_coffea.features.expressions import ExpressionError, VariableTable
from hepnn_coffea.features.filters import apply_filters as run_filters
from hepnn_coffea.features.ragged import RaggedGroup, offsets_of, pad_rows, positions_in_rows

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
        ``group -> float32`` array ``(n, n_vars, length)`` (or ``(n, n_vars)`` for length-less groups);
        with ``compute_features(..., ragged=True)`` the groups with a length are :class:`RaggedGroup`.
    labels
        ``int64 (n,)`` class index for classification, ``float32 (n, n_targets)`` for regression
        (per-point: ``(n, n_targets, length)`` or a :class:`RaggedGroup`), or ``None`` when labels
        were not requested (inference).
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

    inputs: dict[str, np.ndarray | RaggedGroup]
    labels: np.ndarray | RaggedGroup | None
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


def _kept_values(counts: np.ndarray, length: int) -> np.ndarray | None:
    """Boolean mask over the flat values of the first ``length`` of every row (``None``: all are kept)."""
    if not len(counts) or counts.max() <= length:
        return None
    return positions_in_rows(counts) < length


def pad_jagged(array: ak.Array, length: int, pad_value: float = 0.0, mode: str = "constant") -> np.ndarray:
    """Pad/truncate a jagged ``(n, var)`` array to a float32 ``(n, length)`` block.

    ``mode="constant"`` fills with ``pad_value``; ``mode="wrap"`` repeats each
    entry's own values cyclically (entries with no values get ``pad_value``).
    Unlike weaver-core, whose ``wrap`` tiles values from the whole chunk, the
    result never depends on how the data were chunked.
    """
    counts, flat = _flatten(array)
    return _pad_column(flat, counts, length, pad_value, mode)


def _pad_column(flat: np.ndarray, counts: np.ndarray, length: int, pad_value: float, mode: str) -> np.ndarray:
    """One jagged column (flat values and per-row counts) as a float32 ``(n, length)`` block."""
    return pad_rows([flat], offsets_of(counts), None, length=length, pad_values=[pad_value], pad_mode=mode)[
        :, 0
    ]


def _jagged_group(
    names: Sequence[str],
    columns: Sequence[tuple[np.ndarray, np.ndarray]],
    length: int,
    pad_mode: str,
    pad_values: Sequence[float],
) -> RaggedGroup | np.ndarray:
    """Jagged variables ``(counts, flat values)`` cut to ``length``, as one group.

    A :class:`RaggedGroup` when every variable has the same multiplicities; otherwise
    the float32 ``(n, n_vars, length)`` block, padded variable by variable.
    """
    layouts: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []
    flats, kept = [], []
    for counts, flat in columns:
        if not layouts or not np.array_equal(layouts[-1][0], counts):
            layouts.append((counts, _kept_values(counts, length), np.minimum(counts, length)))
        _, keep, cut = layouts[-1]
        flats.append(flat if keep is None else flat[keep])
        kept.append(cut)
    pads = tuple(float(p) for p in pad_values)
    if len(layouts) == 1:
        return RaggedGroup(tuple(names), tuple(flats), kept[0], length, pad_mode, pads)
    block = np.empty((len(kept[0]), len(flats), length), dtype=np.float32)
    for i, (flat, cut, pad) in enumerate(zip(flats, kept, pads)):
        block[:, i] = _pad_column(flat, cut, length, pad, pad_mode)
    return block


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


def _input_block(
    table: VariableTable,
    group: Any,
    n: int,
    counts: dict[str, int],
    where: str,
    lengths: dict[str, np.ndarray],
) -> np.ndarray | RaggedGroup:
    """One input group: ``(n, n_vars)`` float32 for a group without length, else a :class:`RaggedGroup`.

    Jagged variables are flattened, transformed on the flat numpy content and cut to
    the group's length; they are padded only when the caller asks for padded blocks.
    A group whose variables have different multiplicities is padded variable by variable.
    """
    if group.length is None:
        block = np.empty((n, len(group.vars)), dtype=np.float32)
        for i, spec in enumerate(group.vars):
            value = table[spec.name]
            if isinstance(value, ak.Array) and value.ndim > 1:
                raise FeatureError(
                    f"'{spec.name}'{where} is jagged; input group '{group.name}' needs 'length'"
                )
            column = _finite(
                transform(_to_numpy_1d(value, spec.name, where).astype(np.float32), spec), spec.name, counts
            )
            _check_entries(column, n, spec.name, where)
            block[:, i] = column
        return block
    columns = []
    for spec in group.vars:
        value = table[spec.name]
        if not (isinstance(value, ak.Array) and value.ndim > 1):
            raise FeatureError(
                f"input group '{group.name}' has length {group.length} but '{spec.name}'{where} "
                "has one value per entry (use a group without 'length' for per-entry inputs)"
            )
        entry_counts, flat = _flatten(value)
        _check_entries(entry_counts, n, spec.name, where)
        columns.append((entry_counts, _finite(transform(flat, spec), spec.name, counts)))
    lengths[group.name] = np.minimum(columns[0][0], group.length)
    pads = [spec.pad_value for spec in group.vars]
    return _jagged_group(group.var_names, columns, group.length, group.pad_mode, pads)


def _check_entries(values: np.ndarray, n: int, name: str, where: str) -> None:
    if len(values) != n:
        raise FeatureError(f"'{name}'{where} has {len(values)} entries, expected {n}")


def _finite(values: np.ndarray, name: str, counts: dict[str, int]) -> np.ndarray:
    """NaN/inf -> 0 (weaver's ``nan_to_num``), counted in ``counts['nonfinite_<name>']``."""
    bad = ~np.isfinite(values)
    if bad.any():
        counts[f"nonfinite_{name}"] = counts.get(f"nonfinite_{name}", 0) + int(bad.sum())
        values = np.where(bad, np.float32(0), values)
    return values


def selection_mask(
    table: VariableTable, expression: str | None, n: int, key: str = "selection"
) -> np.ndarray:
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
    ragged: bool = False,
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
    ragged
        Keep the groups with a length (and per-point targets) as :class:`RaggedGroup`
        (the shard writer stores only the real values) instead of padded blocks.
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
                [_to_numpy_1d(table[name], name, where_text).astype(np.int64) for name in config.label_names],
                axis=1,
            )
            good = onehot.sum(axis=1) == 1
            counts["rejected_labels"] = int((keep & ~good).sum())
            keep &= good
            labels = np.argmax(onehot, axis=1)[keep]
        rows = np.flatnonzero(keep)
        selected = VariableTable(_take(table, config, rows, with_labels, selection), definitions, where)
        n = len(rows)
        lengths: dict[str, np.ndarray] = {}
        inputs = {
            g.name: _input_block(selected, g, n, counts, where_text, lengths) for g in config.inputs.values()
        }
        if with_labels and not config.is_classification:
            labels = _targets(selected, config, where_text)
        if not ragged:
            inputs = {k: v.padded() if isinstance(v, RaggedGroup) else v for k, v in inputs.items()}
            labels = labels.padded() if isinstance(labels, RaggedGroup) else labels
        expert = config.experts.index(selected, n, counts) if config.experts is not None else None
        observers = (
            {o: _to_numpy_1d(selected[o], o, where_text) for o in config.observers} if with_labels else {}
        )
        weights = None
        if with_labels and config.weight_branches:
            weights = np.prod(
                [_to_numpy_1d(selected[w], w, where_text).astype(np.float64) for w in config.weight_branches],
                axis=0,
            ).astype(np.float32)
    except KeyError as err:
        raise FeatureError(err.args[0]) from None
    except ExpressionError as err:
        raise FeatureError(str(err)) from err
    counts["entries_out"] = n
    return FeatureBatch(inputs, labels, observers, weights, counts, keep, expert, lengths)


def _targets(selected: VariableTable, config: DataConfig, where: str) -> np.ndarray | RaggedGroup:
    """Regression targets: ``(n, n_targets)``; per-point targets (``labels.pad_to``) a :class:`RaggedGroup`.

    Per-point targets are jagged expressions padded like the ``pad_to`` input group
    (``constant`` padding with ``labels.pad_value``, -1 by default, which the per-point
    losses ignore); targets with different multiplicities come back as the padded
    ``(n, n_targets, length)`` block.
    """
    if config.label_pad_to is None:
        columns = [_to_numpy_1d(selected[name], name, where) for name in config.label_names]
        return np.stack(columns, axis=1).astype(np.float32)
    length = config.inputs[config.label_pad_to].length
    columns = []
    for name in config.label_names:
        value = selected[name]
        if not (isinstance(value, ak.Array) and value.ndim > 1):
            raise FeatureError(f"per-point target '{name}'{where} must be jagged (one value per point)")
        columns.append(_flatten(value))
    pads = [config.label_pad_value] * len(columns)
    return _jagged_group(config.label_names, columns, length, "constant", pads)


def _take(
    table: VariableTable, config: DataConfig, rows: np.ndarray, with_labels: bool, selection: str
) -> dict[str, Any]:
    """The selected rows of every branch the outputs need (already-loaded ones are reused)."""
    return {
        name: table[name][rows] for name in config.required_branches(selection, inputs_only=not with_labels)
    }
