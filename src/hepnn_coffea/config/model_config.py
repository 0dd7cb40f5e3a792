"""Model/training configs: YAML with ``extends:`` inheritance and deep-merged overrides."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import yaml

from hepnn_coffea.config.data_config import ConfigError


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, the rest replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_model_config(path: str | pathlib.Path, _chain: tuple[pathlib.Path, ...] = ()) -> dict[str, Any]:
    """Load a model config, resolving ``extends`` (a path relative to the file) recursively.

    Relative paths in ``data_config`` are made absolute against the file that declares them.
    """
    path = pathlib.Path(path).resolve()
    if path in _chain:
        raise ConfigError(f"{path}: circular 'extends' chain: {' -> '.join(str(p) for p in _chain + (path,))}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read model config: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a model config must be a mapping")
    if isinstance(raw.get("data_config"), str):
        raw["data_config"] = str((path.parent / raw["data_config"]).resolve())
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    parent_path = path.parent / (parent if str(parent).endswith((".yaml", ".yml")) else f"{parent}.yaml")
    if not parent_path.exists():
        raise ConfigError(f"{path}: extends '{parent}' but {parent_path} does not exist")
    return deep_merge(load_model_config(parent_path, _chain + (path,)), raw)


EXPERT_PREFIX = "expert_"
TOP_LEVEL_SECTIONS = ("task", "loss", "model", "training", "data_config")


def resolve_expert(cfg: dict[str, Any], expert: str | None, fallback: int | None = None) -> dict[str, Any]:
    """The config one expert trains with: ``cfg[expert]`` merged over the rest.

    Per-expert overrides live under keys ``expert_<name>``. Their keys may be top-level
    sections (``model``, ``training``, ...) or, as a shorthand, training keys::

        training: {batch_size: 512, epochs: 10}
        expert_3: {batch_size: 128, epochs: 2000}     # == expert_3: {training: {...}}

    All ``expert_*`` keys are dropped from the result. ``fallback`` is the expert's index
    when the data routes entries to experts: ``expert_<index>`` is then looked up too, and
    an expert without overrides trains with the base config.
    """
    base = {k: v for k, v in cfg.items() if not str(k).startswith(EXPERT_PREFIX)}
    if expert is None:
        return base
    key = expert if str(expert).startswith(EXPERT_PREFIX) else f"{EXPERT_PREFIX}{expert}"
    if key not in cfg and fallback is not None:
        key = f"{EXPERT_PREFIX}{fallback}"
        if key not in cfg:
            return base
    if key not in cfg:
        known = sorted(k for k in cfg if str(k).startswith(EXPERT_PREFIX))
        raise ConfigError(f"no overrides for expert '{expert}' (config has {known or 'none'})")
    override = cfg[key] or {}
    if not isinstance(override, dict):
        raise ConfigError(f"{key} must be a mapping of overrides")
    sections = {k: v for k, v in override.items() if k in TOP_LEVEL_SECTIONS}
    training = {k: v for k, v in override.items() if k not in TOP_LEVEL_SECTIONS}
    return deep_merge(base, {**sections, "training": {**sections.get("training", {}), **training}})
