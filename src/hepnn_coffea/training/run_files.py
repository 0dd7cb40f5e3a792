"""The files of a run directory (layout in :mod:`hepnn_coffea.training.trainer`).

:func:`load_network` reads a trained network back; :func:`_prepare_run_dir` writes the
config, data config, standardization and provenance of a new run; :func:`_save` writes a
checkpoint atomically.
"""

from __future__ import annotations

import json
import pathlib
import platform
import shutil
from typing import Any

import yaml

from hepnn_coffea import __version__
from hepnn_coffea._optional import missing_extra
from hepnn_coffea.nn import Network, build_network, count_parameters
from hepnn_coffea.processing.shards import atomic_write_bytes, write_json
from hepnn_coffea.training.dataset import ShardDataset

try:
    import torch
    from torch import nn
except ModuleNotFoundError as err:  # without the [train] extra: say what to install
    raise missing_extra(err, "train") from None

__all__ = ["load_network"]


def load_network(run_dir: str | pathlib.Path, checkpoint: str = "best.pt") -> tuple[Network, dict[str, Any]]:
    """Rebuild a run's network with its ``checkpoint`` weights (eval mode, CPU)."""
    run_dir = pathlib.Path(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    prov = json.loads((run_dir / "provenance.json").read_text())
    net = build_network(
        cfg["model"], {k: tuple(v) for k, v in prov["input_shapes"].items()}, prov["n_outputs"]
    )
    if prov.get("target_scaling"):
        net.set_target_scaling(**prov["target_scaling"])
    state = torch.load(run_dir / "checkpoints" / checkpoint, map_location="cpu", weights_only=True)
    net.load_state_dict(state["model"])
    return net.eval(), cfg


def _prepare_run_dir(
    run_dir: pathlib.Path,
    cfg: dict[str, Any],
    shards: pathlib.Path,
    net: nn.Module,
    train_set: ShardDataset,
    n_outputs: int,
    extra: dict[str, Any],
) -> None:
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copyfile(shards / "data_config.yaml", run_dir / "data_config.yaml")
    shutil.copyfile(shards / "standardization.json", run_dir / "standardization.json")
    write_json(
        run_dir / "provenance.json",
        {
            "hepnn_coffea_version": __version__,
            "torch_version": torch.__version__,
            "python": platform.python_version(),
            "shards": str(shards.resolve()),
            "config_hash": train_set.manifest["config_hash"],
            "labels": train_set.manifest["labels"],
            "label_type": train_set.manifest["label_type"],
            "input_shapes": train_set.input_shapes(),
            "input_groups": net.input_groups,
            "n_outputs": n_outputs,
            "parameters": count_parameters(net),
            **extra,
        },
    )
    for stale in ("metrics.csv",):
        (run_dir / stale).unlink(missing_ok=True)


def _save(path: pathlib.Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda f: torch.save(payload, f))
