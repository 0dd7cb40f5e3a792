"""Read the preprocessing that weaver-core ships with its ``--export-onnx`` models.

weaver-core's ONNX files carry no metadata; the features and their standardization
live next to them, in one of

* the data-config YAML, usually the ``<config>.<md5>.auto.yaml`` weaver writes during
  training, whose ``preprocess.params`` hold the computed ``center``/``scale`` of every
  ``auto`` variable (weaver then ignores the ``inputs`` entries' own values);
* the ``preprocess.json`` that ``--export-onnx`` writes (for CMSSW): input groups, variable
  names, lengths and standardization, but neither the ``new_variables`` expressions nor
  the pad mode.

:func:`load_weaver_config` turns either into the package's
:class:`~hepnn_coffea.config.data_config.DataConfig`, so the same feature code
(:func:`hepnn_coffea.features.compute_features`) serves both kinds of model.
"""

from __future__ import annotations

import copy
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import yaml

from hepnn_coffea.config.data_config import ConfigError, DataConfig, InputGroup, VarSpec

#: weaver options that only steer training and are dropped when reading a config for inference
_TRAINING_ONLY = ("bucketing",)
#: weaver's preprocess.json writes +-1e32 bounds for variables it does not transform
_NO_BOUND = 1e31


def load_weaver_config(
    path: str | pathlib.Path,
    *,
    new_variables: Mapping[str, str] | None = None,
    pad_mode: str | Mapping[str, str] = "constant",
) -> DataConfig:
    """A :class:`DataConfig` from a weaver data-config YAML or a weaver ``preprocess.json``.

    Parameters
    ----------
    path
        ``*.yaml`` (a plain weaver data config or its ``*.auto.yaml``) or ``preprocess.json``.
    new_variables
        Only for ``preprocess.json``: expressions defining variables that are not event
        fields (e.g. the ``new_variables`` of the training YAML).
    pad_mode
        Only for ``preprocess.json`` (it does not record it): ``"constant"``/``"wrap"`` for
        every group, or ``{group: mode}``.

    Returns
    -------
    DataConfig
        With every standardization value filled in (``preprocess.method: manual``).

    Raises
    ------
    ConfigError
        Unreadable file, ``auto`` variables without computed values, or a malformed json.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read weaver config: {err}") from err
    if path.suffix == ".json":
        return _from_preprocess_json(raw, str(path), dict(new_variables or {}), pad_mode)
    if new_variables:
        raise ConfigError(f"{path}: new_variables=... is only for preprocess.json; the YAML defines its own")
    return config_from_weaver_dict(raw, str(path))


def config_from_weaver_dict(raw: Any, source: str = "<dict>") -> DataConfig:
    """A parsed weaver data config (YAML) as a :class:`DataConfig`, applying ``preprocess.params``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a data config must be a mapping, got {type(raw).__name__}")
    raw = {k: v for k, v in raw.items() if k not in _TRAINING_ONLY}
    params = (raw.get("preprocess") or {}).get("params")
    config = DataConfig.from_dict(raw, source=source)
    if not params:
        if config.needs_auto_standardization:
            raise ConfigError(
                f"{source}: has 'auto' standardization but no computed values; use the "
                "'*.auto.yaml' weaver wrote next to it during training"
            )
        return config
    return _apply_params(config, params, source)


def _apply_params(config: DataConfig, params: Mapping[str, Any], source: str) -> DataConfig:
    """weaver semantics: with ``preprocess.params`` present, they alone define every variable."""
    new = copy.deepcopy(config)
    groups = {}
    for gname, group in config.inputs.items():
        specs, lengths, modes = [], set(), set()
        for v in group.vars:
            p = params.get(v.name)
            if not isinstance(p, Mapping):
                raise ConfigError(f"{source}: preprocess.params has no entry for '{v.name}' (inputs.{gname})")
            center = p.get("center")
            if center == "auto":
                raise ConfigError(f"{source}: preprocess.params.{v.name}.center is still 'auto'")
            specs.append(
                VarSpec(
                    v.name,
                    None if center is None else float(center),
                    float(p.get("scale", 1)),
                    float(p.get("min", -5)),
                    float(p.get("max", 5)),
                    float(p.get("pad_value", 0)),
                )
            )
            lengths.add(p.get("length", group.length))
            modes.add(str(p.get("pad_mode", group.pad_mode)).lower())
        if len(lengths) > 1 or len(modes) > 1:
            raise ConfigError(
                f"{source}: inputs.{gname}: variables disagree on length/pad_mode {lengths} {modes}"
            )
        groups[gname] = InputGroup(gname, lengths.pop(), modes.pop(), tuple(specs))
    new.inputs = groups
    new.preprocess_method = "manual"
    return new


def _from_preprocess_json(
    raw: Any, source: str, new_variables: dict[str, str], pad_mode: str | Mapping[str, str]
) -> DataConfig:
    if not isinstance(raw, dict) or not raw.get("input_names") or not raw.get("output_names"):
        raise ConfigError(f"{source}: not a weaver preprocess.json (needs 'input_names' and 'output_names')")
    inputs: dict[str, Any] = {}
    for gname in raw["input_names"]:
        group = raw.get(gname)
        if not isinstance(group, dict) or "var_names" not in group or "var_infos" not in group:
            raise ConfigError(f"{source}: input '{gname}' has no 'var_names'/'var_infos'")
        mode = pad_mode if isinstance(pad_mode, str) else pad_mode.get(gname, "constant")
        vars_ = []
        for name in group["var_names"]:
            info = group["var_infos"].get(name)
            if info is None:
                raise ConfigError(f"{source}: {gname}.var_infos has no entry for '{name}'")
            lo, hi, pad = float(info["lower_bound"]), float(info["upper_bound"]), float(info.get("pad", 0))
            if lo <= -_NO_BOUND and hi >= _NO_BOUND:  # weaver's marker for "not transformed"
                vars_.append([name, None, 1.0, -5.0, 5.0, pad])
            else:
                vars_.append([name, float(info["median"]), float(info["norm_factor"]), lo, hi, pad])
        inputs[gname] = {"length": int(group["var_length"]), "pad_mode": mode, "vars": vars_}
    labels = list(raw["output_names"]) if isinstance(raw["output_names"], list) else raw["output_names"]
    kind = "simple" if isinstance(labels, list) else "custom"
    config = {
        "new_variables": new_variables,
        "preprocess": {"method": "manual"},
        "inputs": inputs,
        "labels": {"type": kind, "value": labels},
    }
    return DataConfig.from_dict(config, source=source)


def restrict_inputs(config: DataConfig, names: list[str]) -> DataConfig:
    """``config`` with only the input groups ``names`` (in that order).

    weaver's ONNX export drops the inputs a network does not use (e.g. a PFN keeps
    ``pf_features`` and ``pf_mask``), so the unused groups need not be computed.
    """
    if list(config.inputs) == list(names):
        return config
    new = copy.deepcopy(config)
    new.inputs = {n: config.inputs[n] for n in names}
    return new
