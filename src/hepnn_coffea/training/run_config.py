"""The model config of a run: read, every key checked, the expert's overrides applied.

:func:`load_checked_config` reads and checks a model config, :func:`expert_of` finds an
expert in the shards' expert split and :func:`_resolve_config` gives the config a run
directory saves, with its checked typed form.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.config.model_config import deep_merge, load_model_config, resolve_expert
from hepnn_coffea.config.training_config import ModelConfig
from hepnn_coffea.nn import check_params

__all__ = ["expert_of", "load_checked_config"]


def load_checked_config(
    model_config: str | pathlib.Path | dict[str, Any], overrides: dict[str, Any] | None = None
) -> tuple[dict[str, Any], str]:
    """A model config (``extends`` resolved, overrides not yet merged) whose every key is checked.

    Returns the config and the name errors use for it. The check
    (:meth:`~hepnn_coffea.config.training_config.ModelConfig.from_dict`) covers the
    overrides and the ``expert_<name>`` blocks; the ``model``/``training`` sections need
    not be complete yet (an expert block or the overrides may complete them).
    """
    source = "<dict>" if isinstance(model_config, dict) else str(model_config)
    cfg = load_model_config(model_config) if not isinstance(model_config, dict) else dict(model_config)
    source = f"{source} (with overrides)" if overrides else source
    ModelConfig.from_dict(deep_merge(cfg, overrides or {}), source, complete=False)
    return cfg, source


def _resolve_config(
    model_config: str | pathlib.Path | dict[str, Any],
    overrides: dict[str, Any] | None,
    expert: str | None,
    shards: pathlib.Path,
) -> tuple[dict[str, Any], ModelConfig, int | None]:
    """The resolved config (as saved in the run directory), its checked typed form and the expert index.

    Every key (``expert_<name>`` blocks and overrides included) is checked before the shards are read.
    """
    cfg, source = load_checked_config(model_config, overrides)
    expert_index = expert_of(shards, expert)
    cfg = deep_merge(resolve_expert(cfg, expert, fallback=expert_index), overrides or {})
    typed = ModelConfig.from_dict(cfg, source)
    try:
        check_params(typed.model.name, typed.model.params)  # the network's constructor arguments
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg, typed, expert_index


def expert_of(shards: str | pathlib.Path, expert: str | None) -> int | None:
    """Index of ``expert`` (name or index) in the shards' expert split; ``None`` without one."""
    manifest = json.loads((pathlib.Path(shards) / "manifest.json").read_text())
    split = manifest.get("experts")
    if expert is None or not split:
        return None
    names = [str(n) for n in split["names"]]
    name = str(expert).removeprefix("expert_")
    if name in names:
        return names.index(name)
    if name.isdigit() and int(name) < len(names):
        return int(name)
    raise ConfigError(f"expert {expert!r} is not one of the shards' experts {names} (data config 'experts')")
