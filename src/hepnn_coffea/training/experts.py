"""Train one expert model per region in one call (data config ``experts``).

Output layout::

    RUN/experts.json           routing rule (variable, bins, names) and the expert run folders
    RUN/expert_<name>/         an ordinary run directory per expert (see :mod:`.trainer`)
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.processing.shards import write_json
from hepnn_coffea.training.trainer import TrainResult, load_checked_config, train

EXPERTS_FILE = "experts.json"


def read_experts(run_dir: str | pathlib.Path) -> dict[str, Any] | None:
    """The ``experts.json`` of a multi-expert run folder, or ``None`` for a single-model run."""
    path = pathlib.Path(run_dir) / EXPERTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def train_experts(
    model_config: str | pathlib.Path | dict[str, Any],
    shards: str | pathlib.Path,
    run_dir: str | pathlib.Path,
    *,
    overrides: dict[str, Any] | None = None,
    only: list[str] | None = None,
    progress: bool = True,
) -> dict[str, TrainResult]:
    """Train every expert of the shards' expert split (or those in ``only``), one after another.

    Each expert trains on its own rows with the base config merged with its
    ``expert_<name>`` (or ``expert_<index>``) overrides. ``experts.json`` is written
    first, so an interrupted call can be continued per expert with ``train(..., resume=True)``.
    """
    run_dir = pathlib.Path(run_dir)
    load_checked_config(model_config, overrides)  # a typo fails before the shards are read
    manifest = json.loads((pathlib.Path(shards) / "manifest.json").read_text())
    split = manifest.get("experts")
    if not split:
        raise ConfigError(f"{shards}: the data config declares no 'experts'; train a single model instead")
    names = [str(n) for n in split["names"]]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ConfigError(f"unknown expert(s) {unknown}; the shards have {names}")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / EXPERTS_FILE, {**split, "runs": [f"expert_{n}" for n in names]})
    results = {}
    for name in names:
        if only and name not in only:
            continue
        results[name] = train(
            model_config,
            shards,
            run_dir / f"expert_{name}",
            overrides=overrides,
            expert=name,
            progress=progress,
        )
    return results
