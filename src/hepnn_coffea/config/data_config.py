"""Weaver-core compatible data configuration.

The YAML format and semantics follow weaver-core's ``DataConfig`` so existing
configs port unchanged: ``treename``, ``selection``, ``test_time_selection``,
``new_variables``, ``preprocess`` (``method: auto|manual``, ``data_fraction``),
``inputs`` (groups with ``length``, ``pad_mode`` and ``vars`` given as
``[name, center, scale, min, max, pad_value]``), ``labels``, ``observers`` and
``weights``. Two hepnn_coffea extensions (see :mod:`hepnn_coffea.features.filters`):
``filters`` (declarative preprocessing filters, counted in the manifest) and
``experts`` (routing of entries to per-region expert models).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import pathlib
from dataclasses import dataclass, field
from typing import Any

import yaml

from hepnn_coffea.config.input_groups import AUTO, ConfigError, InputGroup, VarSpec, _parse_inputs
from hepnn_coffea.config.rows_config import RowsConfig, RowsConfigError
from hepnn_coffea.config.weights_config import WeightsConfig, WeightsConfigError
from hepnn_coffea.features.expressions import Expression, ExpressionError
from hepnn_coffea.features.filters import ExpertSplit, Filter, FilterError, parse_filters

__all__ = ["AUTO", "ConfigError", "DataConfig", "InputGroup", "VarSpec"]

_TOP_LEVEL_KEYS = {
    "treename",
    "branch_magic",
    "file_magic",
    "selection",
    "test_time_selection",
    "new_variables",
    "preprocess",
    "inputs",
    "labels",
    "observers",
    "monitor_variables",
    "weights",
    "filters",
    "experts",
    "rows",
}


@dataclass
class DataConfig:
    """Typed view of a weaver-style data config (see module docstring)."""

    inputs: dict[str, InputGroup]
    label_type: str
    label_names: list[str]
    label_expressions: dict[str, str] = field(default_factory=dict)
    treename: str | None = None
    selection: str | None = None
    test_time_selection: str | None = None
    new_variables: dict[str, str] = field(default_factory=dict)
    preprocess_method: str = "manual"
    data_fraction: float = 1.0
    length_quantile: float = 0.99
    label_pad_to: str | None = None
    label_pad_value: float = -1.0
    observers: list[str] = field(default_factory=list)
    weights: dict[str, Any] | None = None
    filters: tuple[Filter, ...] = ()
    experts: ExpertSplit | None = None
    rows: RowsConfig | None = None  # rows from event-level NanoAOD (see config/rows_config.py)
    source: str = "<dict>"

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_yaml(cls, path: str | pathlib.Path) -> DataConfig:
        """Read and validate a data config file."""
        from hepnn_coffea.config.yaml_extends import load_with_extends

        raw = load_with_extends(path, "data config", ConfigError)  # hepnn extension: ``extends: base.yaml``
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> DataConfig:
        """Validate a parsed data config; every error names ``source`` and the key."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: a data config must be a mapping, got {type(raw).__name__}")
        unknown = set(raw) - _TOP_LEVEL_KEYS
        if unknown:
            raise ConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
        preprocess = raw.get("preprocess") or {}
        method = str(preprocess.get("method", "manual")).lower()
        if method not in ("auto", "manual"):
            raise ConfigError(f"{source}: preprocess.method must be 'auto' or 'manual', got {method!r}")
        data_fraction = float(preprocess.get("data_fraction", 1.0) or 1.0)
        if not 0 < data_fraction <= 1:
            raise ConfigError(f"{source}: preprocess.data_fraction must be in (0, 1], got {data_fraction}")
        length_quantile = float(preprocess.get("length_quantile", 0.99))
        if not 0 < length_quantile <= 1:
            raise ConfigError(
                f"{source}: preprocess.length_quantile must be in (0, 1], got {length_quantile}"
            )
        cfg = cls(
            inputs=_parse_inputs(raw.get("inputs"), method == "auto", source),
            label_type="simple",
            label_names=[],
            treename=raw.get("treename"),
            selection=raw.get("selection") or None,
            test_time_selection=raw.get("test_time_selection") or None,
            new_variables={str(k): str(v) for k, v in (raw.get("new_variables") or {}).items()},
            preprocess_method=method,
            data_fraction=data_fraction,
            length_quantile=length_quantile,
            observers=[str(o) for o in (raw.get("observers") or [])],
            weights=raw.get("weights") or None,
            source=source,
        )
        cfg.label_type, cfg.label_names, cfg.label_expressions = _parse_labels(raw.get("labels"), source)
        labels = raw.get("labels") or {}
        cfg.label_pad_to = labels.get("pad_to")
        cfg.label_pad_value = float(labels.get("pad_value", -1.0))
        if cfg.label_pad_to is not None and cfg.label_pad_to not in cfg.inputs:
            raise ConfigError(
                f"{source}: labels.pad_to names '{cfg.label_pad_to}', not an input group {list(cfg.inputs)}"
            )
        if cfg.label_pad_to is not None and cfg.inputs[cfg.label_pad_to].length is None:
            raise ConfigError(f"{source}: labels.pad_to '{cfg.label_pad_to}' must be a group with a length")
        try:
            cfg.filters = parse_filters(raw.get("filters"), source)
            cfg.experts = ExpertSplit.from_dict(raw["experts"], source) if raw.get("experts") else None
            cfg.rows = RowsConfig.from_dict(raw["rows"], source) if raw.get("rows") is not None else None
        except (FilterError, RowsConfigError) as err:
            raise ConfigError(str(err)) from err
        cfg._check_expressions()
        if cfg.rows is not None:  # every name the expressions read must be a row field
            try:
                cfg.rows.row_fields(cfg.required_branches())
            except RowsConfigError as err:
                raise ConfigError(f"{source}: {err}") from err
        cfg._check_weights()
        return cfg

    def _check_expressions(self) -> None:
        for name, expr in self.new_variables.items():
            _compile(expr, f"new_variables.{name}", self.source)
        for key in ("selection", "test_time_selection"):
            if getattr(self, key):
                _compile(getattr(self, key), key, self.source)
        for name, expr in self.label_expressions.items():
            _compile(expr, f"labels.value.{name}", self.source)

    def _check_weights(self) -> None:
        """Parse ``weights`` into ``self.weights_config``; reweighting variables become observers."""
        labels = self.label_names if self.is_classification else None
        try:
            self.weights_config = WeightsConfig.from_dict(self.weights, self.source, labels)
        except WeightsConfigError as err:
            raise ConfigError(str(err)) from err
        if self.weights_config is not None and self.weights_config.is_reweighting:
            self.new_variables.update(self.weights_config.new_variables)
            self.observers = list(dict.fromkeys(self.observers + self.weights_config.observer_names))

    # -------------------------------------------------------------- properties
    @property
    def input_names(self) -> list[str]:
        return list(self.inputs)

    @property
    def is_classification(self) -> bool:
        return self.label_type == "simple"

    @property
    def weight_branches(self) -> list[str]:
        use = bool(self.weights) and bool(self.weights.get("use_precomputed_weights"))  # not when reweighting
        return list(self.weights.get("weight_branches") or []) if use else []

    @property
    def needs_auto_standardization(self) -> bool:
        """Some center/scale or group length must be computed from the training split."""
        return any(v.center == AUTO for g in self.inputs.values() for v in g.vars) or bool(
            self.auto_length_groups
        )

    @property
    def auto_length_groups(self) -> list[str]:
        """Input groups with ``length: auto``."""
        return [g.name for g in self.inputs.values() if g.length == AUTO]

    def variables(self) -> list[str]:
        """Every variable the outputs need: inputs, labels, observers, weights."""
        names = [v.name for g in self.inputs.values() for v in g.vars]
        names += self.label_names + self.observers + self.weight_branches
        return list(dict.fromkeys(names))

    def expression_for(self, name: str) -> str | None:
        """The expression defining ``name`` (new variable or custom label), if any."""
        return self.label_expressions.get(name, self.new_variables.get(name))

    def required_branches(self, selection_key: str = "selection", inputs_only: bool = False) -> list[str]:
        """The file branches needed (resolving new_variables).

        Parameters
        ----------
        selection_key
            ``selection`` (training) or ``test_time_selection`` (inference; falls back to ``selection``).
        inputs_only
            Only what the model inputs and the selection need (inference), not labels/observers/weights.
        """
        roots = [v.name for g in self.inputs.values() for v in g.vars] if inputs_only else self.variables()
        selection = getattr(self, selection_key) or self.selection
        extra = [selection] if selection else []
        if not inputs_only:
            extra += [e for f in self.filters for e in f.expressions()]
        if self.experts is not None:
            extra.append(self.experts.variable)
        for expression in extra:
            roots += Expression(expression).names
        branches: list[str] = []
        seen: set[str] = set()
        stack = list(reversed(roots))
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            expr = self.expression_for(name)
            if expr is None:
                branches.append(name)
            else:
                stack.extend(reversed(Expression(expr).names))
        return sorted(branches)

    # ------------------------------------------------------------ round trips
    def with_standardization(self, params: dict[str, dict[str, float]]) -> DataConfig:
        """A copy where every ``auto`` center/scale is replaced by ``params[var]``."""
        new = copy.deepcopy(self)
        groups = {}
        for gname, group in new.inputs.items():
            specs = []
            for v in group.vars:
                if v.center == AUTO:
                    if v.name not in params:
                        raise ConfigError(f"{self.source}: no standardization value for '{v.name}'")
                    p = params[v.name]
                    v = VarSpec(v.name, float(p["center"]), float(p["scale"]), v.min, v.max, v.pad_value)
                specs.append(v)
            groups[gname] = dataclasses.replace(group, vars=tuple(specs))
        new.inputs = groups
        new.preprocess_method = "manual"
        return new

    def with_lengths(self, lengths: dict[str, int]) -> DataConfig:
        """A copy where every ``length: auto`` group gets ``lengths[group]``."""
        new = copy.deepcopy(self)
        for name in self.auto_length_groups:
            if name not in lengths:
                raise ConfigError(f"{self.source}: no length computed for input group '{name}'")
            g = new.inputs[name]
            new.inputs[name] = dataclasses.replace(g, length=max(1, int(lengths[name])))
        return new

    def storage_dtypes(self) -> dict[str, str]:
        """``input group -> dtype`` of the groups stored in the shards in reduced precision."""
        return {g.name: g.dtype for g in self.inputs.values() if g.dtype != "float32"}

    def standardization(self) -> dict[str, dict[str, Any]]:
        """Per-variable transformation parameters (as weaver's ``*.auto.yaml`` holds)."""
        return {
            v.name: {
                "center": v.center,
                "scale": v.scale,
                "min": v.min,
                "max": v.max,
                "pad_value": v.pad_value,
                "length": g.length,
                "pad_mode": g.pad_mode,
            }
            for g in self.inputs.values()
            for v in g.vars
        }

    def to_dict(self) -> dict[str, Any]:
        """The weaver-format mapping (inverse of :meth:`from_dict`)."""
        out: dict[str, Any] = {
            "treename": self.treename,
            "selection": self.selection,
            "test_time_selection": self.test_time_selection,
            "new_variables": dict(self.new_variables),
            "preprocess": {
                "method": self.preprocess_method,
                "data_fraction": self.data_fraction,
                **({"length_quantile": self.length_quantile} if self.length_quantile != 0.99 else {}),
            },
            "inputs": {
                g.name: {
                    "length": g.length,
                    "pad_mode": g.pad_mode,
                    "vars": [v.as_list() for v in g.vars],
                    **({"dtype": g.dtype} if g.dtype != "float32" else {}),
                }
                for g in self.inputs.values()
            },
            "labels": (
                {"type": "simple", "value": list(self.label_names)}
                if self.label_type == "simple"
                else {
                    "type": "custom",
                    "value": dict(self.label_expressions),
                    **(
                        {"pad_to": self.label_pad_to, "pad_value": self.label_pad_value}
                        if self.label_pad_to
                        else {}
                    ),
                }
            ),
            "observers": list(self.observers),
        }
        if self.weights:
            out["weights"] = copy.deepcopy(self.weights)
        if self.filters:
            out["filters"] = [f.to_dict() for f in self.filters]
        if self.experts is not None:
            out["experts"] = self.experts.to_dict()
        if self.rows is not None:
            out["rows"] = self.rows.to_dict()
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def config_hash(self) -> str:
        """A stable short hash of the semantic content (for manifests and provenance)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------- parsing
def _compile(expr: str, key: str, source: str) -> Expression:
    try:
        return Expression(expr)
    except ExpressionError as err:
        raise ConfigError(f"{source}: {key}: {err}") from err


def _parse_labels(raw: Any, source: str) -> tuple[str, list[str], dict[str, str]]:
    if not raw or not isinstance(raw, dict) or not raw.get("value"):
        raise ConfigError(f"{source}: 'labels' with a non-empty 'value' is required")
    ltype = str(raw.get("type", "simple")).lower()
    value = raw["value"]
    if ltype == "simple":
        if not isinstance(value, list) or len(value) < 2:
            raise ConfigError(f"{source}: labels.value (type simple) must list >= 2 one-hot branches")
        return ltype, [str(x) for x in value], {}
    if ltype == "custom":
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: labels.value (type custom) must map target names to expressions")
        return ltype, [str(k) for k in value], {str(k): str(e) for k, e in value.items()}
    raise ConfigError(f"{source}: labels.type must be 'simple' or 'custom', got {ltype!r}")
