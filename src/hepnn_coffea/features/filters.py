"""Declarative dataset filters and expert regions (hepnn_coffea extensions of the data config).

Filters are applied in preprocessing only (never at inference), after the
config's ``selection``, in the order given; each one's removals are counted
(``filtered_<name>`` in the chunk counts and the manifest)::

    filters:
      - {range: jet_pt, min: 550, max: 650}          # min <= x < max (either bound optional)
      - {expression: "jet_nparticles >= 10"}
      - {first: 5000}                                 # entries 0..4999 of every file
      - {any_of: [{range: jet_eta, max: -1}, {range: jet_eta, min: 1}], name: forward}
      - {all_of: [...]}

Expert regions route every entry to one expert by binning an expression::

    experts:
      variable: np.abs(jet_eta)
      bins: [0.5, 1.0]                # interior edges: 3 experts  (<0.5, [0.5, 1.0), >=1.0)
      names: [central, mid, forward]  # optional
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hepnn_coffea.features.expressions import Expression, ExpressionError


class FilterError(ValueError):
    """A filter or expert specification is invalid; the message names it."""


def _values(table: Any, expression: str, n: int, key: str) -> np.ndarray:
    import awkward as ak

    value = table.evaluate(expression, key=key)
    out = ak.to_numpy(value) if isinstance(value, ak.Array) else np.asarray(value)
    if out.ndim != 1 or len(out) != n:
        raise FilterError(f"{key}: {expression!r} must give one value per entry, got shape {out.shape}")
    return out


@dataclass(frozen=True)
class Filter:
    """Base class: ``mask`` returns the entries that pass."""

    name: str

    def mask(self, table: Any, n: int, entry_start: int) -> np.ndarray:
        raise NotImplementedError

    def expressions(self) -> list[str]:
        """Expressions the filter evaluates (to find the branches it reads)."""
        return []

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class RangeFilter(Filter):
    """``min <= variable < max``; a missing bound is open. NaN never passes."""

    variable: str = ""
    min: float | None = None
    max: float | None = None

    def mask(self, table: Any, n: int, entry_start: int) -> np.ndarray:
        x = _values(table, self.variable, n, f"filter '{self.name}'")
        keep = np.isfinite(x) if np.issubdtype(x.dtype, np.floating) else np.ones(n, dtype=bool)
        if self.min is not None:
            keep &= x >= self.min
        if self.max is not None:
            keep &= x < self.max
        return keep

    def expressions(self) -> list[str]:
        return [self.variable]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"range": self.variable, "name": self.name}
        out.update({k: getattr(self, k) for k in ("min", "max") if getattr(self, k) is not None})
        return out


@dataclass(frozen=True)
class ExpressionFilter(Filter):
    """Entries where a boolean expression is true."""

    expression: str = ""

    def mask(self, table: Any, n: int, entry_start: int) -> np.ndarray:
        return _values(table, self.expression, n, f"filter '{self.name}'").astype(bool)

    def expressions(self) -> list[str]:
        return [self.expression]

    def to_dict(self) -> dict[str, Any]:
        return {"expression": self.expression, "name": self.name}


@dataclass(frozen=True)
class FirstN(Filter):
    """The first ``n`` entries of every file (by entry number, so independent of chunking)."""

    n: int = 0

    def mask(self, table: Any, n: int, entry_start: int) -> np.ndarray:
        return (entry_start + np.arange(n)) < self.n

    def to_dict(self) -> dict[str, Any]:
        return {"first": self.n, "name": self.name}


@dataclass(frozen=True)
class Combined(Filter):
    """``all_of`` (logical and) or ``any_of`` (logical or) of other filters."""

    mode: str = "all_of"
    filters: tuple[Filter, ...] = ()

    def mask(self, table: Any, n: int, entry_start: int) -> np.ndarray:
        masks = [f.mask(table, n, entry_start) for f in self.filters]
        reduce = np.logical_and.reduce if self.mode == "all_of" else np.logical_or.reduce
        return reduce(masks) if masks else np.ones(n, dtype=bool)

    def expressions(self) -> list[str]:
        return [e for f in self.filters for e in f.expressions()]

    def to_dict(self) -> dict[str, Any]:
        return {self.mode: [f.to_dict() for f in self.filters], "name": self.name}


_KINDS = ("range", "expression", "first", "all_of", "any_of")


def parse_filter(spec: Any, where: str, index: int = 0) -> Filter:
    """Build a :class:`Filter` from its YAML mapping (see the module docstring)."""
    if not isinstance(spec, dict):
        raise FilterError(f"{where}: a filter must be a mapping with one of {list(_KINDS)}, got {spec!r}")
    kinds = [k for k in _KINDS if k in spec]
    unknown = set(spec) - set(_KINDS) - {"name", "min", "max"}
    if len(kinds) != 1 or unknown:
        raise FilterError(f"{where}: a filter needs exactly one of {list(_KINDS)} (got keys {sorted(spec)})")
    kind = kinds[0]
    value = spec[kind]
    name = str(spec.get("name") or f"{kind}_{index}")
    try:
        if kind == "range":
            if spec.get("min") is None and spec.get("max") is None:
                raise FilterError(f"{where}: range filter on {value!r} needs 'min' and/or 'max'")
            Expression(str(value))
            bounds = {k: float(spec[k]) for k in ("min", "max") if spec.get(k) is not None}
            return RangeFilter(name, str(value), **bounds)
        if kind == "expression":
            Expression(str(value))
            return ExpressionFilter(name, str(value))
        if kind == "first":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise FilterError(f"{where}: 'first' needs a non-negative integer, got {value!r}")
            return FirstN(name, value)
        if not isinstance(value, list) or not value:
            raise FilterError(f"{where}: '{kind}' needs a non-empty list of filters")
        parts = tuple(parse_filter(s, f"{where}.{kind}[{i}]", i) for i, s in enumerate(value))
        return Combined(name, kind, parts)
    except ExpressionError as err:
        raise FilterError(f"{where}: {err}") from err
    except (TypeError, ValueError) as err:
        if isinstance(err, FilterError):
            raise
        raise FilterError(f"{where}: {err}") from err


def parse_filters(raw: Any, source: str) -> tuple[Filter, ...]:
    """The ``filters`` list of a data config; names must be unique."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise FilterError(f"{source}: 'filters' must be a list of filters")
    filters = tuple(parse_filter(spec, f"{source}: filters[{i}]", i) for i, spec in enumerate(raw))
    names = [f.name for f in filters]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise FilterError(f"{source}: filter names must be unique, repeated: {duplicated}")
    return filters


def apply_filters(
    filters: tuple[Filter, ...], table: Any, keep: np.ndarray, entry_start: int, counts: dict[str, int]
) -> np.ndarray:
    """``keep`` and-ed with every filter in turn; ``counts['filtered_<name>']`` = entries it removed."""
    for f in filters:
        passed = f.mask(table, len(keep), entry_start)
        counts[f"filtered_{f.name}"] = int((keep & ~passed).sum())
        keep = keep & passed
    return keep


@dataclass(frozen=True)
class ExpertSplit:
    """Routing of entries to experts: ``np.digitize(variable, bins)``."""

    variable: str
    bins: tuple[float, ...]
    names: tuple[str, ...]

    @property
    def n_experts(self) -> int:
        return len(self.bins) + 1

    @classmethod
    def from_dict(cls, raw: Any, source: str) -> ExpertSplit:
        where = f"{source}: experts"
        if not isinstance(raw, dict) or "variable" not in raw or "bins" not in raw:
            raise FilterError(f"{where} needs 'variable' (an expression) and 'bins' (interior bin edges)")
        unknown = set(raw) - {"variable", "bins", "names"}
        if unknown:
            raise FilterError(f"{where}: unknown key(s) {sorted(unknown)}")
        try:
            Expression(str(raw["variable"]))
            bins = tuple(float(b) for b in raw["bins"])
        except (ExpressionError, TypeError, ValueError) as err:
            raise FilterError(f"{where}: {err}") from err
        if not bins or any(not math.isfinite(b) for b in bins) or list(bins) != sorted(set(bins)):
            raise FilterError(
                f"{where}.bins must be finite, strictly increasing and non-empty, got {list(bins)}"
            )
        names = tuple(str(n) for n in raw.get("names") or range(len(bins) + 1))
        if len(names) != len(bins) + 1 or len(set(names)) != len(names):
            raise FilterError(f"{where}.names needs {len(bins) + 1} distinct names, got {list(names)}")
        return cls(str(raw["variable"]), bins, names)

    def to_dict(self) -> dict[str, Any]:
        return {"variable": self.variable, "bins": list(self.bins), "names": list(self.names)}

    def index(self, table: Any, n: int, counts: dict[str, int]) -> np.ndarray:
        """Expert of every entry (int64); non-finite values go to expert 0 and are counted."""
        x = _values(table, self.variable, n, "experts.variable").astype(np.float64)
        bad = ~np.isfinite(x)
        if bad.any():
            counts["nonfinite_expert_variable"] = counts.get("nonfinite_expert_variable", 0) + int(bad.sum())
        return np.where(bad, 0, np.digitize(x, self.bins)).astype(np.int64)
