"""Ragged input groups: only the real values of a jagged group, padded when a batch needs them.

A per-particle input group is a set of flat ``(n_values,)`` columns (one per variable)
and the per-row ``counts`` (already cut to the group's ``length``). The same
:func:`pad_rows` turns it into the ``(n, n_vars, length)`` model input when features
are computed for inference and when a training batch is gathered from a ragged
shard, so both see identical padding. NumPy only: the training side uses it
without the feature code.

Columns may be float32, float16 or bfloat16 (stored as ``uint16`` bit patterns,
see :func:`to_bfloat16`) arrays, or a Python float for a column that holds one
value for every real entry (e.g. a particle mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: a stored column: values over all real entries, or one constant for all of them
Column = np.ndarray | float

#: per-group storage precisions a data config may ask for (``inputs.<group>.dtype``)
STORAGE_DTYPES = ("float32", "float16", "bfloat16")


def offsets_of(counts: np.ndarray) -> np.ndarray:
    """``int64 (n + 1,)`` start of every row in the flat values (the last entry is the total)."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def positions_in_rows(counts: np.ndarray) -> np.ndarray:
    """``int64 (sum(counts),)``: the position of every flat value within its row (0, 1, ... per row)."""
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def to_bfloat16(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (``uint16``), rounded to nearest even."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def from_bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (``uint16``) -> float32."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def as_storage(values: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values in a storage precision (``float32``, ``float16`` or ``bfloat16`` as ``uint16``)."""
    if dtype == "float32":
        return np.ascontiguousarray(values, dtype=np.float32)
    if dtype == "float16":
        return np.ascontiguousarray(values, dtype=np.float16)
    if dtype == "bfloat16":
        return to_bfloat16(values)
    raise ValueError(f"unknown storage dtype {dtype!r} (use one of {', '.join(STORAGE_DTYPES)})")


def column_values(column: Column, index: np.ndarray) -> np.ndarray | np.float32:
    """float32 values of ``column`` at ``index`` (``uint16`` columns are bfloat16)."""
    if not isinstance(column, np.ndarray):
        return np.float32(column)
    values = column[index]
    return from_bfloat16(values) if values.dtype == np.uint16 else values


def pad_rows(
    columns: Sequence[Column],
    offsets: np.ndarray,
    rows: np.ndarray | None,
    *,
    length: int,
    pad_values: Sequence[float] | np.ndarray,
    pad_mode: str = "constant",
    out_length: int | None = None,
) -> np.ndarray:
    """Gather rows of a ragged group into a float32 ``(n, n_columns, out_length)`` block.

    Parameters
    ----------
    columns
        One flat column (or constant) per variable.
    offsets
        ``(n_rows + 1,)`` row starts in the flat columns (see :func:`offsets_of`).
    rows
        Row numbers to gather (``None``: all, in order).
    length
        The group's length: rows are cut to their first ``length`` values.
    pad_values
        Per-column value of the padded slots (``constant`` mode and empty rows).
    pad_mode
        ``constant`` fills the slots after a row's values with the pad value; ``wrap``
        repeats the row's own values cyclically (rows without values get the pad value).
    out_length
        Number of slots to return (default ``length``); cutting the block of ``length``
        slots to ``out_length`` gives the same values.
    """
    if pad_mode not in ("constant", "wrap"):
        raise ValueError(f"unknown pad mode {pad_mode!r}")
    starts = offsets[:-1] if rows is None else offsets[rows]
    counts = np.minimum((offsets[1:] if rows is None else offsets[np.asarray(rows) + 1]) - starts, length)
    n, width = len(starts), len(columns)
    slots = length if out_length is None else int(out_length)
    out = np.empty((n, width, slots), dtype=np.float32)
    if pad_mode == "wrap":
        filled = counts > 0
        every = bool(filled.all())
        if not every:  # rows without values keep the pad value
            out[...] = np.asarray(pad_values, dtype=np.float32).reshape(1, width, 1)
        if filled.any():
            source = _wrap_positions(counts[filled], length, slots) + starts[filled, None]
            for i, column in enumerate(columns):
                if every and isinstance(column, np.ndarray) and column.dtype == np.float32:
                    np.take(column, source, out=out[:, i, :])  # every slot holds a value: one gather
                elif every:
                    out[:, i, :] = column_values(column, source)
                else:
                    out[filled, i, :] = column_values(column, source)
        return out
    out[...] = np.asarray(pad_values, dtype=np.float32).reshape(1, width, 1)
    kept = np.minimum(counts, slots)
    local = positions_in_rows(kept)
    if not len(local):
        return out
    source = np.repeat(starts, kept) + local
    target = np.repeat(np.arange(n, dtype=np.int64) * (width * slots), kept) + local
    flat = out.reshape(-1)
    for i, column in enumerate(columns):
        flat[target + i * slots] = column_values(column, source)
    return out


_WRAP_TABLES: dict[tuple[int, int], np.ndarray] = {}


def _wrap_positions(counts: np.ndarray, length: int, slots: int) -> np.ndarray:
    """``(n, slots)`` position ``p % count`` of every slot (``1 <= count <= length``), from a cached table."""
    if length * slots > 2**20:
        return np.arange(slots, dtype=np.int64)[None, :] % counts[:, None]
    key = (length, slots)
    if key not in _WRAP_TABLES:
        _WRAP_TABLES[key] = np.arange(slots)[None, :] % np.arange(1, length + 1, dtype=np.int64)[:, None]
    return _WRAP_TABLES[key][counts - 1]


@dataclass(frozen=True)
class RaggedGroup:
    """One per-particle input group in ragged form (see the module docstring).

    Attributes
    ----------
    names
        The variables, in the group's order.
    columns
        Flat float32 values of every variable over the rows' kept values.
    counts
        ``int64 (n,)`` kept values per row (at most ``length``).
    length
        The group's length (padded size).
    pad_mode
        ``constant`` or ``wrap``.
    pad_values
        Per-variable pad value.
    """

    names: tuple[str, ...]
    columns: tuple[Column, ...]
    counts: np.ndarray
    length: int
    pad_mode: str
    pad_values: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the padded block."""
        return (len(self.counts), len(self.names), self.length)

    @property
    def ndim(self) -> int:
        """Dimensions of the padded block (3)."""
        return 3

    def padded(self) -> np.ndarray:
        """The float32 ``(n, n_vars, length)`` block."""
        return pad_rows(
            self.columns,
            offsets_of(self.counts),
            None,
            length=self.length,
            pad_values=self.pad_values,
            pad_mode=self.pad_mode,
        )

    def __getitem__(self, keep: np.ndarray) -> RaggedGroup:
        """The rows ``keep`` (boolean mask or row numbers), in that order."""
        rows = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, dtype=np.int64)
        offsets = offsets_of(self.counts)
        counts = self.counts[rows]
        source = np.repeat(offsets[rows], counts) + positions_in_rows(counts)
        columns = tuple(c[source] if isinstance(c, np.ndarray) else c for c in self.columns)
        return RaggedGroup(self.names, columns, counts, self.length, self.pad_mode, self.pad_values)
