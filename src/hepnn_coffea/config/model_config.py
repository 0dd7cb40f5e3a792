"""Model/training configs: YAML with ``extends:`` inheritance and deep-merged overrides."""

from __future__ import annotations

import pathlib
from typing import Any

from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.config.training_config import EXPERT_PREFIX, ModelConfig
from hepnn_coffea.config.yaml_extends import deep_merge, load_with_extends

__all__ = ["deep_merge", "load_model_config", "resolve_expert"]


def load_model_config(path: str | pathlib.Path) -> dict[str, Any]:
    """Load a model config, resolving ``extends`` (a path relative to the file) recursively.

    Relative paths in ``data_config`` and ``finetune.init_from`` are made absolute against the
    file that declares them.
    The result is a plain mapping; :meth:`hepnn_coffea.config.training_config.ModelConfig.from_dict`
    checks it (the trainer does, after overrides are merged).
    """

    def absolute_data_config(file: pathlib.Path, raw: dict[str, Any]) -> None:
        if isinstance(raw.get("data_config"), str):
            raw["data_config"] = str((file.parent / raw["data_config"]).resolve())
        finetune = raw.get("finetune")
        if isinstance(finetune, dict) and isinstance(finetune.get("init_from"), str):
            finetune["init_from"] = str(
                (file.parent / pathlib.Path(finetune["init_from"]).expanduser()).resolve()
            )

    return load_with_extends(path, "model config", ConfigError, absolute_data_config)


TOP_LEVEL_SECTIONS = ModelConfig.SECTIONS


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
