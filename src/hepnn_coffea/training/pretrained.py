"""A run directory for a published checkpoint, without training: so it exports like any run.

:func:`pretrained_run` builds the network a model config describes, loads *every* tensor
from its ``finetune.init_from`` (a weaver-core / particle_transformer ``state_dict`` or a
hepnn_coffea checkpoint; an output layer that would need fresh initialisation is an
error) and writes the run-directory layout of :mod:`hepnn_coffea.training.trainer`
(``config.yaml``, ``data_config.yaml``, ``provenance.json``, ``checkpoints/best.pt``,
``finetune.json``). ``hepnn export RUN -o model.onnx`` then embeds the data config (the
checkpoint's classes as labels) in a self-describing ONNX file for
:class:`~hepnn_coffea.inference.tagger.OnnxTagger`::

    run = pretrained_run("models/particlenet_jetclass.yaml", "shards_jetclass/", "runs/jetclass_zero_shot")
    export_onnx(run, "particlenet_jetclass.onnx")
"""

from __future__ import annotations

import pathlib
from typing import Any

from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.nn import build_network
from hepnn_coffea.training.dataset import ShardDataset
from hepnn_coffea.training.finetune import FineTuner  # needs the [train] extra (torch)

__all__ = ["pretrained_run"]


def _any_split(shards: pathlib.Path) -> ShardDataset:
    for split in ("train", "val", "test"):
        try:
            return ShardDataset(shards, split)
        except ValueError:
            continue
    raise ConfigError(f"{shards}: no train, val or test split with entries in the manifest")


def pretrained_run(
    model_config: str | pathlib.Path | dict[str, Any],
    shards: str | pathlib.Path,
    run_dir: str | pathlib.Path,
    *,
    overrides: dict[str, Any] | None = None,
) -> pathlib.Path:
    """Write a run directory holding ``finetune.init_from``'s weights in ``model_config``'s network.

    Parameters
    ----------
    model_config
        A model config with ``finetune.init_from`` (e.g. ``models/particlenet_jetclass.yaml``).
    shards
        Shards made with the data config the checkpoint expects (its classes as labels); any
        split serves (the input shapes, the labels and, in export, the parity check).
    run_dir
        The folder to create (must not hold a run).
    overrides
        Deep-merged over the config.

    Returns
    -------
    pathlib.Path
        ``run_dir``.

    Raises
    ------
    ConfigError
        No ``init_from``, or a model tensor the checkpoint does not provide (nothing may
        stay freshly initialised), or a shape mismatch.
    """
    from hepnn_coffea.training.run_config import _resolve_config
    from hepnn_coffea.training.run_files import _prepare_run_dir, _save  # the trainer's layout

    shards, run_dir = pathlib.Path(shards), pathlib.Path(run_dir)
    if (run_dir / "checkpoints" / "best.pt").exists():
        raise FileExistsError(f"{run_dir} already holds a run; choose a new folder")
    cfg, typed, _ = _resolve_config(model_config, overrides, None, shards)
    if typed.finetune is None or typed.finetune.init_from is None:
        raise ConfigError(
            "pretrained_run needs finetune.init_from in the model config (the checkpoint to wrap)"
        )
    dataset = _any_split(shards)
    labels = dataset.manifest["labels"]
    net = build_network(cfg["model"], dataset.input_shapes(), len(labels))
    tuner = FineTuner(typed.finetune, net, typed.model.name)
    fresh = tuner.report.get("new") or {}
    if fresh:
        listed = ", ".join(f"{n} ({why})" for n, why in fresh.items())
        raise ConfigError(
            f"finetune.init_from: {typed.finetune.init_from} does not provide every tensor of the "
            f"model; freshly initialised: {listed} (a pretrained run must not train)"
        )
    _prepare_run_dir(
        run_dir, cfg, shards, net, dataset, len(labels), {"pretrained": tuner.report["init_from"]}
    )
    tuner.write_report(run_dir, 0)
    _save(run_dir / "checkpoints" / "best.pt", {"model": net.state_dict(), "epoch": 0})
    return run_dir
