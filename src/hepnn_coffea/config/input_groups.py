"""Input groups of a data config: ``inputs: {group: {length, pad_mode, vars}}`` (weaver-core format)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hepnn_coffea.features.ragged import STORAGE_DTYPES

AUTO = "auto"
#: keys of one input group (weaver-core's three, plus the shard storage precision)
_GROUP_KEYS = {"length", "pad_mode", "vars", "dtype"}


class ConfigError(ValueError):
    """A data or model configuration is invalid; the message names the key."""


@dataclass(frozen=True)
class VarSpec:
    """One input variable: ``clip((x - center) * scale, min, max)``, then pad.

    ``center=None`` means no transformation; ``center="auto"`` means the value
    is computed from the training sample (see :mod:`hepnn_coffea.features.standardize`).
    """

    name: str
    center: float | str | None = None
    scale: float = 1.0
    min: float = -5.0
    max: float = 5.0
    pad_value: float = 0.0

    def as_list(self) -> list[Any]:
        """The weaver ``[name, center, scale, min, max, pad_value]`` form."""
        return [self.name, self.center, self.scale, self.min, self.max, self.pad_value]


@dataclass(frozen=True)
class InputGroup:
    """A named model input of shape ``(n_vars, length)`` per jet."""

    name: str
    length: int | str | None  # "auto": the preprocess.length_quantile of the training entries' lengths
    pad_mode: str
    vars: tuple[VarSpec, ...]
    #: precision of the group's values in the training shards (``float16``/``bfloat16``: half the bytes)
    dtype: str = "float32"

    @property
    def var_names(self) -> list[str]:
        return [v.name for v in self.vars]


def _parse_inputs(raw: Any, auto: bool, source: str) -> dict[str, InputGroup]:
    if not raw or not isinstance(raw, dict):
        raise ConfigError(f"{source}: 'inputs' must be a non-empty mapping of input groups")
    groups: dict[str, InputGroup] = {}
    seen: dict[str, tuple[str, VarSpec]] = {}
    for gname, g in raw.items():
        where = f"{source}: inputs.{gname}"
        if not isinstance(g, dict) or not g.get("vars"):
            raise ConfigError(f"{where}: needs a non-empty 'vars' list")
        unknown = sorted(set(g) - _GROUP_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown} (allowed: {sorted(_GROUP_KEYS)})")
        dtype = g.get("dtype", "float32")
        if dtype not in STORAGE_DTYPES:
            raise ConfigError(f"{where}.dtype must be one of {list(STORAGE_DTYPES)}, got {dtype!r}")
        length = g.get("length")
        if (
            length is not None
            and length != AUTO
            and (not isinstance(length, int) or isinstance(length, bool) or length <= 0)
        ):
            raise ConfigError(f"{where}.length must be a positive integer or 'auto', got {length!r}")
        pad_mode = str(g.get("pad_mode", "constant")).lower()
        if pad_mode not in ("constant", "wrap"):
            raise ConfigError(f"{where}.pad_mode must be 'constant' or 'wrap', got {pad_mode!r}")
        specs = []
        for i, v in enumerate(g["vars"]):
            spec = _parse_var(v, auto, f"{where}.vars[{i}]")
            if spec.name in seen and seen[spec.name][1] != spec:
                raise ConfigError(
                    f"{where}: variable '{spec.name}' is also in inputs.{seen[spec.name][0]} "
                    "with different parameters"
                )
            seen[spec.name] = (gname, spec)
            specs.append(spec)
        groups[gname] = InputGroup(str(gname), length, pad_mode, tuple(specs), dtype)
    return groups


def _parse_var(v: Any, auto: bool, where: str) -> VarSpec:
    v = [v] if isinstance(v, str) else list(v) if isinstance(v, (list, tuple)) else None
    if not v or not isinstance(v[0], str) or len(v) > 6:
        raise ConfigError(f"{where}: expected [name, center, scale, min, max, pad_value], got {v!r}")
    name = v[0]
    defaults = [AUTO if auto else None, 1.0, -5.0, 5.0, 0.0]
    values = v[1:] + defaults[len(v) - 1 :]
    center = values[0]
    if center is not None and center != AUTO:
        center = _number(center, f"{where} ({name}) center")
    if center == AUTO and not auto:
        raise ConfigError(f"{where} ({name}): center 'auto' needs preprocess.method: auto")
    scale, vmin, vmax, pad = (_number(x, f"{where} ({name})") for x in values[1:])
    if vmin > vmax:
        raise ConfigError(f"{where} ({name}): min {vmin} > max {vmax}")
    return VarSpec(name, center, scale, vmin, vmax, pad)


def _number(x: Any, where: str) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, got {x!r}") from None
    if math.isnan(value):
        raise ConfigError(f"{where}: NaN is not allowed")
    return value
