"""The training loop: shards -> run directory with checkpoints, metrics and provenance.

Run directory layout::

    RUN/config.yaml            resolved model/training config (after ``extends`` and overrides)
    RUN/data_config.yaml       the data config the shards were made with (standardization filled in)
    RUN/standardization.json   per-variable transformation parameters
    RUN/provenance.json        package/torch versions, shard folder, config hash, parameter count
    RUN/metrics.csv            one row per epoch; RUN/tensorboard/ the same as event files
    RUN/checkpoints/last.pt    everything needed to resume; RUN/checkpoints/best.pt the best weights
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
from dataclasses import dataclass
from typing import Any

import yaml

from hepnn_coffea._optional import missing_extra
from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.config.model_config import deep_merge
from hepnn_coffea.config.training_config import TASKS, ModelConfig
from hepnn_coffea.nn import build_network
from hepnn_coffea.training.dataset import ShardDataset
from hepnn_coffea.training.disco import disco_penalty
from hepnn_coffea.training.distributed import (
    DistInfo,
    barrier,
    init_distributed,
    select_device,
    shard_index,
    shutdown,
)
from hepnn_coffea.training.epoch_setup import _bucketed, _loss, _progress, _step_settings
from hepnn_coffea.training.finetune import FineTuner
from hepnn_coffea.training.loop import evaluate, train_epoch
from hepnn_coffea.training.metrics import RunLogger
from hepnn_coffea.training.optim import build_optimizer, build_scheduler
from hepnn_coffea.training.run_config import _resolve_config, expert_of, load_checked_config
from hepnn_coffea.training.run_files import _prepare_run_dir, _save, load_network
from hepnn_coffea.training.sampling import histogram_sampler, sampler_from_config, weight_sampler
from hepnn_coffea.training.targets import target_scaling

try:
    import torch
    from torch import nn
except ModuleNotFoundError as err:  # without the [train] extra: say what to install
    raise missing_extra(err, "train") from None

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    run_dir: pathlib.Path
    best_epoch: int
    best_metric: float
    history: list[dict[str, Any]]


def train(
    model_config: str | pathlib.Path | dict[str, Any] | None,
    shards: str | pathlib.Path | None,
    run_dir: str | pathlib.Path,
    *,
    overrides: dict[str, Any] | None = None,
    expert: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train a zoo model on preprocessed shards.

    Parameters
    ----------
    model_config
        Path of a model config in ``models/`` (``extends`` resolved) or a resolved dict.
    shards
        Output folder of ``hepnn preprocess``.
    run_dir
        Where checkpoints, logs and provenance go.
    overrides
        Deep-merged over the config, e.g. ``{"training": {"epochs": 3}}``.
    expert
        Apply the config's ``expert_<name>`` overrides (see :func:`resolve_expert`). When the
        shards route entries to experts (data config ``experts``), train on that expert's
        rows only (its name or index); its overrides are then optional.
    resume
        Continue from ``run_dir/checkpoints/last.pt`` with the saved config.

    Notes
    -----
    Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
    DistributedDataParallel, each rank trains on its share of every epoch, and only
    rank 0 writes the run directory.
    """
    run_dir = pathlib.Path(run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f"{last} not found: nothing to resume")
        cfg = deep_merge(yaml.safe_load((run_dir / "config.yaml").read_text()), overrides or {})
        typed = ModelConfig.from_dict(cfg, str(run_dir / "config.yaml"))
        prov = json.loads((run_dir / "provenance.json").read_text())
        shards, expert_index = pathlib.Path(prov["shards"]), prov.get("expert_index")
    else:
        if model_config is None or shards is None:
            raise ConfigError("train needs a model config and a shard folder (or resume=True)")
        shards = pathlib.Path(shards)
        if last.exists():
            raise FileExistsError(
                f"{run_dir} already holds a run; use resume=True (--resume) or a new folder"
            )
        cfg, typed, expert_index = _resolve_config(model_config, overrides, expert, shards)
    tcfg, seed = typed.training, typed.training.seed
    torch.manual_seed(seed)
    if tcfg.num_threads:
        torch.set_num_threads(tcfg.num_threads)
    device = select_device(tcfg.device)
    dist_info = init_distributed(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    try:
        return _train(cfg, typed, device, dist_info, shards, run_dir, last, resume, progress, expert_index)
    finally:
        shutdown(dist_info)


def _train(
    cfg: dict[str, Any],
    typed: ModelConfig,
    device: torch.device,
    dist_info: DistInfo,
    shards: pathlib.Path,
    run_dir: pathlib.Path,
    last: pathlib.Path,
    resume: bool,
    progress: bool,
    expert_index: int | None = None,
) -> TrainResult:
    """One training run: ``cfg`` is saved in the run directory, ``typed`` (its checked form) drives it."""
    tcfg, task, seed = typed.training, typed.task, typed.training.seed
    probe = ShardDataset(shards, "train")
    labels = probe.manifest["labels"]
    net = build_network(cfg["model"], probe.input_shapes(), len(labels))
    groups = net.input_groups
    train_set = ShardDataset(shards, "train", groups, expert=expert_index)
    val_set = ShardDataset(shards, "val", groups, expert=expert_index)
    if tcfg.val_samples:
        val_set.keep_subset(tcfg.val_samples, seed)
    if (task == "classification") != (train_set.target_field == "label"):
        raise ConfigError(
            f"task {task!r} does not fit the shards in {shards}: they hold "
            f"{'class labels' if train_set.target_field == 'label' else 'regression targets'}"
        )
    extra: dict[str, Any] = {"expert_index": expert_index}
    sampler = None
    if task == "regression":
        targets = train_set.arrays(["target"])["target"]
        extra["target_scaling"] = target_scaling(targets, labels)
        net.set_target_scaling(**extra["target_scaling"])
        if tcfg.reweight:
            sampler = sampler_from_config(tcfg.reweight, train_set.rows, targets, labels)
    if sampler is not None:
        extra["reweight"] = {
            "edges": sampler.edges.tolist(),
            "probabilities": sampler.probabilities.tolist(),
            "empty_buckets": sampler.empty_buckets,
            "rows_outside": sampler.outside,
        }
    elif (
        sampler := histogram_sampler(train_set)
    ) is not None:  # data config weights.reweight_hists (train only)
        extra["histogram_reweight"] = sampler.summary()
    elif tcfg.sample_by_weight:  # rows drawn by their precomputed weight; unweighted loss
        sampler = weight_sampler(train_set, tcfg.sample_by_weight)
        train_set.has_weight = False
        extra["weight_sampling"] = {"mode": tcfg.sample_by_weight, **sampler.summary()}
    tuner = FineTuner(
        typed.finetune, net, typed.model.name, load=not resume
    )  # 'finetune': init_from, freeze, ...
    if not resume and dist_info.is_main:
        _prepare_run_dir(run_dir, cfg, shards, net, train_set, len(labels), extra)
    barrier(dist_info)
    net.to(device)

    batch_size, epochs = tcfg.batch_size, tcfg.epochs
    samples_per_epoch = tcfg.samples_per_epoch or None
    per_rank = (samples_per_epoch or len(train_set)) // dist_info.world_size
    steps_per_epoch = max(1, per_rank // batch_size)
    optimizer = build_optimizer(tuner.param_groups(tcfg.lr), tcfg.optimizer, tcfg.lr, tcfg.weight_decay)
    if not resume and dist_info.is_main:
        tuner.write_report(run_dir, epochs)
    scheduler = build_scheduler(optimizer, tcfg.scheduler, epochs, steps_per_epoch, tcfg.warmup_steps)
    loss_fn = _loss(typed, net, shards)
    settings = _step_settings(net, train_set, tcfg, device, task)
    for dataset in (train_set, val_set):  # ragged shards: pad only up to each batch's longest jet
        dataset.trim_at_gather(settings.trim_groups, settings.mask_group, settings.min_length)
    settings.penalty = disco_penalty(tcfg.disco, labels, task, [train_set, val_set])  # training.disco
    scaler = torch.amp.GradScaler("cuda") if settings.amp_dtype == torch.float16 else None

    state = {
        "epoch": 0,
        "best": -math.inf if task == "classification" else math.inf,
        "best_epoch": -1,
        "bad_epochs": 0,
        "history": [],
        "step": 0,
    }
    if resume:
        ckpt = torch.load(last, map_location=device, weights_only=False)
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["torch_rng"])
        state = ckpt["state"]
    model: nn.Module = net
    if dist_info.enabled:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    if tcfg.compile:
        model = torch.compile(model)
    logger = RunLogger(run_dir, use_tensorboard=tcfg.tensorboard) if dist_info.is_main else None
    patience = tcfg.early_stopping_patience
    try:
        for epoch in range(state["epoch"], epochs):
            index = (
                train_set.epoch_index(True, [seed, epoch], samples_per_epoch)
                if sampler is None
                else sampler.epoch_index([seed, epoch], samples_per_epoch or len(train_set))
            )
            index = shard_index(index, dist_info)
            bar = _progress(progress and dist_info.is_main, steps_per_epoch, f"epoch {epoch + 1}/{epochs}")

            def on_step(loss: float, jets_per_s: float, bar: Any = bar) -> None:
                state["step"] += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", jets_per_s=f"{jets_per_s * dist_info.world_size:.0f}")
                if logger is not None and state["step"] % 10 == 0:
                    logger.log_step(
                        state["step"],
                        **{
                            "train/step_loss": loss,
                            "train/lr": optimizer.param_groups[0]["lr"],
                            "train/jets_per_s": jets_per_s * dist_info.world_size,
                        },
                    )

            tuner.start_epoch(epoch)  # the finetune stage's trainable parameters
            order = _bucketed(index, train_set, tcfg, batch_size, [seed, epoch], net.roles.get("mask"))
            batches = train_set.batches(
                batch_size,
                drop_last=True,
                index=order,
                prefetch=tcfg.prefetch,
                pin_memory=device.type == "cuda",
            )
            row = {
                "epoch": epoch + 1,
                **train_epoch(
                    model, groups, batches, loss_fn, optimizer, scheduler, scaler, settings, on_step
                ),
            }
            bar.close()
            row["train_jets_per_s"] *= dist_info.world_size
            row["world_size"] = dist_info.world_size
            row["lr"] = optimizer.param_groups[0]["lr"]
            row.update(
                {
                    f"val_{k}": v
                    for k, v in evaluate(net, groups, val_set, loss_fn, task, batch_size, settings).items()
                }
            )
            metric = row["val_auc"] if task == "classification" else row["val_loss"]
            improved = metric > state["best"] if task == "classification" else metric < state["best"]
            if improved:
                state.update(best=metric, best_epoch=epoch + 1, bad_epochs=0)
            else:
                state["bad_epochs"] += 1
            state["history"].append(row)
            state["epoch"] = epoch + 1
            if dist_info.is_main:
                if improved:
                    _save(
                        run_dir / "checkpoints" / "best.pt", {"model": net.state_dict(), "epoch": epoch + 1}
                    )
                logger.log_epoch(row)
                _save(
                    last,
                    {
                        "model": net.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "torch_rng": torch.get_rng_state(),
                        "state": state,
                    },
                )
            barrier(dist_info)
            log.info("epoch %d: %s", epoch + 1, {k: round(v, 5) for k, v in row.items()})
            if patience is not None and state["bad_epochs"] >= patience:
                log.info("early stopping after %d epochs without improvement", state["bad_epochs"])
                break
    finally:
        if logger is not None:
            logger.close()
    return TrainResult(run_dir, state["best_epoch"], state["best"], state["history"])


__all__ = [
    "TASKS",
    "TrainResult",
    "expert_of",
    "load_checked_config",
    "load_network",
    "select_device",
    "train",
]
