"""The ``weights:`` section of a data config, with weaver-core's semantics.

Two modes, as in weaver-core's ``DataConfig``:

* ``use_precomputed_weights: true`` with ``weight_branches``: the per-entry weight is the
  product of the branches; it is stored in the shards and weights the loss.
* ``use_precomputed_weights: false`` (the default here) with ``reweight_method``: histogram
  reweighting in two variables. Preprocessing computes per-class 2D factor histograms
  (``reweight_hists``, see :mod:`hepnn_coffea.training.reweight`) and training draws the
  train rows with probability proportional to their factor (val/test are not reweighted).

Keys of the reweighting mode::

    reweight_method: flat | ref       # flat: every class flat in (var1, var2); ref: every class
                                      # shaped like the first of reweight_classes
    reweight_vars: {var1: [edges], var2: [edges]}   # exactly two, ordered
    reweight_classes: [label names]   # rows of other classes get factor 0
    class_weights: [floats]           # relative class fractions after sampling (default 1 each)
    reweight_threshold: 10            # percentile that caps the factors (see training.reweight)
    reweight_discard_under_overflow: true   # false: values clipped into the bin range
    reweight_basewgt: null            # branch, new variable or expression multiplying the factors
    reweight_hists: null              # {class: 2D factors}, filled in by preprocessing

In the precomputed mode the ``reweight_*`` keys are accepted and ignored (as weaver does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hepnn_coffea.features.expressions import Expression, ExpressionError

METHODS = ("flat", "ref")
#: name of the new variable holding a ``reweight_basewgt`` expression (weaver's ``_basewgt_``)
BASEWGT_NAME = "_basewgt_"
_KEYS = {
    "use_precomputed_weights",
    "weight_branches",
    "reweight_method",
    "reweight_vars",
    "reweight_classes",
    "class_weights",
    "reweight_threshold",
    "reweight_discard_under_overflow",
    "reweight_basewgt",
    "reweight_hists",
}


class WeightsConfigError(ValueError):
    """The ``weights`` section is invalid; the message names the config source and the key."""


@dataclass(frozen=True)
class WeightsConfig:
    """Typed, validated ``weights`` section (see the module docstring for the keys).

    Attributes
    ----------
    use_precomputed_weights
        Per-entry weights from ``weight_branches`` instead of histogram reweighting.
    weight_branches
        Branches whose product is the precomputed weight.
    reweight_method
        ``"flat"`` or ``"ref"`` (``None`` in the precomputed mode).
    reweight_vars
        ``((var1, edges1), (var2, edges2))``.
    reweight_classes
        Label names that are reweighted; the other classes are never drawn.
    class_weights
        One positive number per reweighted class.
    reweight_threshold
        Percentile in [0, 100] (see :func:`hepnn_coffea.training.reweight.compute_reweight_hists`).
    reweight_discard_under_overflow
        Rows outside the bin ranges get factor 0 (``True``) or the edge bin's factor (``False``).
    reweight_basewgt
        Expression or name of a per-entry base weight, or ``None``.
    reweight_hists
        ``{class: 2D factors}`` (nested tuples), computed by preprocessing, or ``None``.
    """

    use_precomputed_weights: bool = False
    weight_branches: tuple[str, ...] = ()
    reweight_method: str | None = None
    reweight_vars: tuple[tuple[str, tuple[float, ...]], ...] = ()
    reweight_classes: tuple[str, ...] = ()
    class_weights: tuple[float, ...] = ()
    reweight_threshold: float = 10.0
    reweight_discard_under_overflow: bool = True
    reweight_basewgt: str | None = None
    reweight_hists: dict[str, tuple[tuple[float, ...], ...]] | None = None

    @classmethod
    def from_dict(
        cls, raw: Any, source: str = "<dict>", label_names: list[str] | None = None
    ) -> WeightsConfig | None:
        """Validate a ``weights`` mapping; ``None`` for an empty section.

        Parameters
        ----------
        raw
            The parsed ``weights`` value of a data config.
        source
            Name of the config (file path) used in error messages.
        label_names
            The simple labels' names (``None``: the config has no class labels, which
            histogram reweighting needs).

        Raises
        ------
        WeightsConfigError
            Unknown key, wrong type or inconsistent value; the message names ``source``
            and the key.
        """
        if raw is None or raw == {}:
            return None
        where = f"{source}: weights"
        if not isinstance(raw, dict):
            raise WeightsConfigError(f"{where}: must be a mapping, got {type(raw).__name__}")
        unknown = set(raw) - _KEYS
        if unknown:
            raise WeightsConfigError(
                f"{where}: unknown key(s) {sorted(map(str, unknown))}; allowed {sorted(_KEYS)}"
            )
        precomputed = _bool(raw, "use_precomputed_weights", False, where)
        branches = _str_list(raw, "weight_branches", where)
        if precomputed:
            if not branches:
                raise WeightsConfigError(
                    f"{where}.weight_branches: needs at least one branch with use_precomputed_weights: true"
                )
            return cls(use_precomputed_weights=True, weight_branches=tuple(branches))
        method = raw.get("reweight_method")
        if method not in METHODS:
            raise WeightsConfigError(
                f"{where}.reweight_method: must be one of {list(METHODS)} when "
                f"use_precomputed_weights is false, got {method!r}"
            )
        if label_names is None:
            raise WeightsConfigError(
                f"{where}.reweight_method: histogram reweighting needs class labels (labels.type simple)"
            )
        variables = _reweight_vars(raw.get("reweight_vars"), f"{where}.reweight_vars")
        classes = _str_list(raw, "reweight_classes", where)
        if not classes:
            raise WeightsConfigError(f"{where}.reweight_classes: needs a non-empty list of label names")
        for name in classes:
            if name not in label_names:
                raise WeightsConfigError(
                    f"{where}.reweight_classes: '{name}' is not one of the labels {label_names}"
                )
        if len(set(classes)) != len(classes):
            raise WeightsConfigError(f"{where}.reweight_classes: repeated class in {classes}")
        class_weights = _class_weights(raw.get("class_weights"), len(classes), f"{where}.class_weights")
        threshold = _number(raw.get("reweight_threshold", 10), f"{where}.reweight_threshold")
        if not 0 <= threshold <= 100:
            raise WeightsConfigError(
                f"{where}.reweight_threshold: must be a percentile in [0, 100], got {threshold}"
            )
        discard = _bool(raw, "reweight_discard_under_overflow", True, where)
        basewgt = raw.get("reweight_basewgt") or None
        if basewgt is not None:
            if not isinstance(basewgt, str):
                raise WeightsConfigError(
                    f"{where}.reweight_basewgt: expected an expression string, got {basewgt!r}"
                )
            try:
                Expression(basewgt)
            except ExpressionError as err:
                raise WeightsConfigError(f"{where}.reweight_basewgt: {err}") from err
        shape = tuple(len(edges) - 1 for _, edges in variables)
        hists = _hists(raw.get("reweight_hists"), classes, shape, f"{where}.reweight_hists")
        return cls(
            False,
            tuple(branches),
            str(method),
            variables,
            tuple(classes),
            class_weights,
            threshold,
            discard,
            basewgt,
            hists,
        )

    # ---------------------------------------------------------------- properties
    @property
    def is_reweighting(self) -> bool:
        """Histogram reweighting (not precomputed weights)."""
        return not self.use_precomputed_weights and self.reweight_method is not None

    @property
    def var_names(self) -> tuple[str, str]:
        """The two reweighting variables ``(x, y)``."""
        return self.reweight_vars[0][0], self.reweight_vars[1][0]

    @property
    def bins(self) -> tuple[np.ndarray, np.ndarray]:
        """Bin edges of the two variables."""
        return np.asarray(self.reweight_vars[0][1], float), np.asarray(self.reweight_vars[1][1], float)

    @property
    def basewgt_name(self) -> str | None:
        """Shard observer holding the base weight: the name itself, or ``_basewgt_`` for an expression."""
        if self.reweight_basewgt is None:
            return None
        return self.reweight_basewgt if self.reweight_basewgt.isidentifier() else BASEWGT_NAME

    @property
    def observer_names(self) -> list[str]:
        """Variables reweighting needs in the train shards (reweight variables, base weight)."""
        if not self.is_reweighting:
            return []
        return [*self.var_names, *([self.basewgt_name] if self.basewgt_name else [])]

    @property
    def new_variables(self) -> dict[str, str]:
        """``{"_basewgt_": expression}`` when ``reweight_basewgt`` is an expression, else empty."""
        if self.is_reweighting and self.basewgt_name == BASEWGT_NAME:
            return {BASEWGT_NAME: str(self.reweight_basewgt)}
        return {}

    def hist_arrays(self) -> dict[str, np.ndarray] | None:
        """``reweight_hists`` as float arrays, or ``None`` before preprocessing filled them in."""
        if self.reweight_hists is None:
            return None
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.reweight_hists.items()}


# ----------------------------------------------------------------------- parsing
def _bool(raw: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = raw.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise WeightsConfigError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise WeightsConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _str_list(raw: dict[str, Any], key: str, where: str) -> list[str]:
    value = raw.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise WeightsConfigError(f"{where}.{key}: expected a list of names, got {value!r}")
    return list(value)


def _reweight_vars(raw: Any, where: str) -> tuple[tuple[str, tuple[float, ...]], ...]:
    if not isinstance(raw, dict) or len(raw) != 2:
        raise WeightsConfigError(f"{where}: must map exactly two variables to their bin edges, got {raw!r}")
    out = []
    for name, edges in raw.items():
        if not isinstance(name, str) or not name:
            raise WeightsConfigError(f"{where}: variable names must be strings, got {name!r}")
        if not isinstance(edges, (list, tuple)) or len(edges) < 2:
            raise WeightsConfigError(f"{where}.{name}: needs a list of at least two bin edges, got {edges!r}")
        values = tuple(_number(e, f"{where}.{name}") for e in edges)
        if not all(math.isfinite(v) for v in values) or any(b <= a for a, b in zip(values, values[1:])):
            raise WeightsConfigError(
                f"{where}.{name}: bin edges must be finite and strictly increasing, got {list(edges)}"
            )
        out.append((name, values))
    return tuple(out)


def _class_weights(raw: Any, n: int, where: str) -> tuple[float, ...]:
    if raw is None:
        return (1.0,) * n
    if not isinstance(raw, (list, tuple)) or len(raw) != n:
        raise WeightsConfigError(f"{where}: needs one number per reweight class ({n}), got {raw!r}")
    values = tuple(_number(v, where) for v in raw)
    if not all(v > 0 and math.isfinite(v) for v in values):
        raise WeightsConfigError(f"{where}: class weights must be positive and finite, got {list(raw)}")
    return values


def _hists(
    raw: Any, classes: list[str], shape: tuple[int, ...], where: str
) -> dict[str, tuple[tuple[float, ...], ...]] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != set(classes):
        keys = sorted(map(str, raw)) if isinstance(raw, dict) else raw
        raise WeightsConfigError(
            f"{where}: must map every reweight class {classes} to a 2D histogram, got {keys}"
        )
    out = {}
    for name in classes:
        try:
            array = np.asarray(raw[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise WeightsConfigError(f"{where}.{name}: expected a 2D list of numbers") from None
        if array.shape != shape or not np.all(np.isfinite(array)) or np.any(array < 0):
            raise WeightsConfigError(
                f"{where}.{name}: expected {shape[0]}x{shape[1]} finite non-negative "
                f"factors (the reweight_vars bins), got shape {array.shape}"
            )
        out[name] = tuple(tuple(float(x) for x in row) for row in array)
    return out
