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
import platform
import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from hepnn_coffea import __version__
from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.config.model_config import deep_merge, load_model_config, resolve_expert
from hepnn_coffea.nn import Network, build_network, count_parameters
from hepnn_coffea.processing.shards import atomic_write_bytes, write_json
from hepnn_coffea.training.dataset import ShardDataset
from hepnn_coffea.training.distributed import DistInfo, barrier, init_distributed, shard_index, shutdown
from hepnn_coffea.training.loop import StepSettings, evaluate, train_epoch
from hepnn_coffea.training.metrics import RunLogger
from hepnn_coffea.training.optim import build_optimizer, build_scheduler
from hepnn_coffea.training.sampling import sampler_from_config
from hepnn_coffea.training.targets import (MaskedPointLoss, ModelLoss, StandardizedLoss, regression_loss,
                                           target_scaling)  # fmt: skip

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    run_dir: pathlib.Path
    best_epoch: int
    best_metric: float
    history: list[dict[str, Any]]


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda > mps > cpu."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_network(run_dir: str | pathlib.Path, checkpoint: str = "best.pt") -> tuple[Network, dict[str, Any]]:
    """Rebuild a run's network with its ``checkpoint`` weights (eval mode, CPU)."""
    run_dir = pathlib.Path(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    prov = json.loads((run_dir / "provenance.json").read_text())
    net = build_network(cfg["model"], {k: tuple(v) for k, v in prov["input_shapes"].items()}, prov["n_outputs"])
    if prov.get("target_scaling"):
        net.set_target_scaling(**prov["target_scaling"])
    state = torch.load(run_dir / "checkpoints" / checkpoint, map_location="cpu", weights_only=True)
    net.load_state_dict(state["model"])
    return net.eval(), cfg


def _resolve_config(model_config: str | pathlib.Path | dict[str, Any], overrides: dict[str, Any] | None,
                    expert: str | None = None, expert_index: int | None = None) -> dict[str, Any]:  # fmt: skip
    cfg = load_model_config(model_config) if not isinstance(model_config, dict) else dict(model_config)
    cfg = deep_merge(resolve_expert(cfg, expert, fallback=expert_index), overrides or {})
    if "model" not in cfg or "training" not in cfg:
        raise ConfigError("a model config needs 'model' and 'training' sections (extend models/base.yaml)")
    return cfg


def _prepare_run_dir(run_dir: pathlib.Path, cfg: dict[str, Any], shards: pathlib.Path, net: nn.Module,
                     train_set: ShardDataset, n_outputs: int, extra: dict[str, Any]) -> None:  # fmt: skip
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copyfile(shards / "data_config.yaml", run_dir / "data_config.yaml")
    shutil.copyfile(shards / "standardization.json", run_dir / "standardization.json")
    write_json(run_dir / "provenance.json", {
        "hepnn_coffea_version": __version__, "torch_version": torch.__version__,
        "python": platform.python_version(), "shards": str(shards.resolve()),
        "config_hash": train_set.manifest["config_hash"], "labels": train_set.manifest["labels"],
        "label_type": train_set.manifest["label_type"], "input_shapes": train_set.input_shapes(),
        "input_groups": net.input_groups, "n_outputs": n_outputs, "parameters": count_parameters(net), **extra,
    })  # fmt: skip
    for stale in ("metrics.csv",):
        (run_dir / stale).unlink(missing_ok=True)


def _save(path: pathlib.Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda f: torch.save(payload, f))


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
        prov = json.loads((run_dir / "provenance.json").read_text())
        shards, expert_index = pathlib.Path(prov["shards"]), prov.get("expert_index")
    else:
        if model_config is None or shards is None:
            raise ConfigError("train needs a model config and a shard folder (or resume=True)")
        shards = pathlib.Path(shards)
        if last.exists():
            raise FileExistsError(f"{run_dir} already holds a run; use resume=True (--resume) or a new folder")
        expert_index = expert_of(shards, expert)
        cfg = _resolve_config(model_config, overrides, expert, expert_index)
    tcfg = cfg["training"]
    task = cfg.get("task", "classification")
    seed = int(tcfg.get("seed", 42))
    torch.manual_seed(seed)
    if tcfg.get("num_threads"):
        torch.set_num_threads(int(tcfg["num_threads"]))
    device = select_device(str(tcfg.get("device", "auto")))
    dist_info = init_distributed(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    try:
        return _train(cfg, tcfg, task, seed, device, dist_info, shards, run_dir, last, resume, progress, expert_index)
    finally:
        shutdown(dist_info)


def _train(cfg: dict[str, Any], tcfg: dict[str, Any], task: str, seed: int, device: torch.device, dist_info: DistInfo,
           shards: pathlib.Path, run_dir: pathlib.Path, last: pathlib.Path, resume: bool, progress: bool,
           expert_index: int | None = None) -> TrainResult:  # fmt: skip
    probe = ShardDataset(shards, "train")
    labels = probe.manifest["labels"]
    net = build_network(cfg["model"], probe.input_shapes(), len(labels))
    groups = net.input_groups
    train_set = ShardDataset(shards, "train", groups, expert=expert_index)
    val_set = ShardDataset(shards, "val", groups, expert=expert_index)
    if tcfg.get("val_samples"):
        val_set.keep_subset(int(tcfg["val_samples"]), seed)
    if (task == "classification") != (train_set.target_field == "label"):
        raise ConfigError(f"task {task!r} does not fit the shards in {shards}: they hold "
                          f"{'class labels' if train_set.target_field == 'label' else 'regression targets'}")  # fmt: skip
    extra: dict[str, Any] = {"expert_index": expert_index}
    sampler = None
    if task == "regression":
        targets = train_set.arrays(["target"])["target"]
        extra["target_scaling"] = target_scaling(targets, labels)
        net.set_target_scaling(**extra["target_scaling"])
        if tcfg.get("reweight"):
            sampler = sampler_from_config(tcfg["reweight"], train_set.rows, targets, labels)
    if sampler is not None:
        extra["reweight"] = {"edges": sampler.edges.tolist(), "probabilities": sampler.probabilities.tolist(),
                             "empty_buckets": sampler.empty_buckets, "rows_outside": sampler.outside}  # fmt: skip
    if not resume and dist_info.is_main:
        _prepare_run_dir(run_dir, cfg, shards, net, train_set, len(labels), extra)
    barrier(dist_info)
    net.to(device)

    batch_size = int(tcfg["batch_size"])
    epochs = int(tcfg["epochs"])
    samples_per_epoch = int(tcfg["samples_per_epoch"]) if tcfg.get("samples_per_epoch") else None
    per_rank = (samples_per_epoch or len(train_set)) // dist_info.world_size
    steps_per_epoch = max(1, per_rank // batch_size)
    optimizer = build_optimizer(net.parameters(), tcfg["optimizer"], float(tcfg["lr"]), float(tcfg.get("weight_decay", 0)))
    scheduler = build_scheduler(optimizer, tcfg.get("scheduler", "none"), epochs, steps_per_epoch,
                                int(tcfg.get("warmup_steps", 0)))  # fmt: skip
    loss_fn = _loss(cfg, tcfg, task, net, shards)
    settings = _step_settings(net, train_set, tcfg, device, task)
    scaler = torch.amp.GradScaler("cuda") if settings.amp_dtype == torch.float16 else None

    state = {"epoch": 0, "best": -math.inf if task == "classification" else math.inf, "best_epoch": -1,
             "bad_epochs": 0, "history": [], "step": 0}  # fmt: skip
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
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if tcfg.get("compile"):
        model = torch.compile(model)
    logger = RunLogger(run_dir, use_tensorboard=bool(tcfg.get("tensorboard", True))) if dist_info.is_main else None
    patience = tcfg.get("early_stopping_patience")
    try:
        for epoch in range(state["epoch"], epochs):
            index = train_set.epoch_index(True, [seed, epoch], samples_per_epoch) if sampler is None else \
                sampler.epoch_index([seed, epoch], samples_per_epoch or len(train_set))
            index = shard_index(index, dist_info)
            bar = _progress(progress and dist_info.is_main, steps_per_epoch, f"epoch {epoch + 1}/{epochs}")

            def on_step(loss: float, jets_per_s: float) -> None:
                state["step"] += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", jets_per_s=f"{jets_per_s * dist_info.world_size:.0f}")
                if logger is not None and state["step"] % 10 == 0:
                    logger.log_step(state["step"], **{"train/step_loss": loss, "train/lr": optimizer.param_groups[0]["lr"],
                                                      "train/jets_per_s": jets_per_s * dist_info.world_size})  # fmt: skip

            order = _bucketed(index, train_set, tcfg, batch_size, [seed, epoch], net.roles.get("mask"))
            batches = train_set.batches(batch_size, drop_last=True, index=order, prefetch=int(tcfg.get("prefetch", 2)),
                                        pin_memory=device.type == "cuda")  # fmt: skip
            row = {"epoch": epoch + 1, **train_epoch(model, groups, batches, loss_fn, optimizer, scheduler, scaler, settings, on_step)}
            bar.close()
            row["train_jets_per_s"] *= dist_info.world_size
            row["world_size"] = dist_info.world_size
            row["lr"] = optimizer.param_groups[0]["lr"]
            row.update({f"val_{k}": v for k, v in evaluate(net, groups, val_set, loss_fn, task, batch_size, settings).items()})
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
                    _save(run_dir / "checkpoints" / "best.pt", {"model": net.state_dict(), "epoch": epoch + 1})
                logger.log_epoch(row)
                _save(last, {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                             "scaler": scaler.state_dict() if scaler is not None else None,
                             "torch_rng": torch.get_rng_state(), "state": state})  # fmt: skip
            barrier(dist_info)
            log.info("epoch %d: %s", epoch + 1, {k: round(v, 5) for k, v in row.items()})
            if patience is not None and state["bad_epochs"] >= int(patience):
                log.info("early stopping after %d epochs without improvement", state["bad_epochs"])
                break
    finally:
        if logger is not None:
            logger.close()
    return TrainResult(run_dir, state["best_epoch"], state["best"], state["history"])


TASKS = ("classification", "regression", "per_point_regression", "model_loss")


def _loss(cfg: dict[str, Any], tcfg: dict[str, Any], task: str, net: Network, shards: pathlib.Path) -> nn.Module:
    """Per-entry loss of a task: ``classification`` (cross entropy), ``regression`` (standardized
    targets), ``per_point_regression`` (masked per-point loss), ``model_loss`` (the model's own)."""
    if task == "classification":
        return nn.CrossEntropyLoss(reduction="none", label_smoothing=float(tcfg.get("label_smoothing", 0)))
    if task == "regression":
        offset, scale = (t.tolist() for t in net.target_scaling)
        return StandardizedLoss(regression_loss(cfg), offset, scale)
    if task in ("per_point_regression", "model_loss"):
        from hepnn_coffea.config.data_config import DataConfig

        pad_value = DataConfig.from_yaml(shards / "data_config.yaml").label_pad_value
        if task == "model_loss":
            return ModelLoss(net.core, pad_value)
        return MaskedPointLoss(regression_loss(cfg), pad_value)
    raise ConfigError(f"task must be one of {TASKS}, got {task!r}")


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


def _step_settings(net: Network, dataset: ShardDataset, tcfg: dict[str, Any], device: torch.device,
                   task: str = "classification") -> StepSettings:  # fmt: skip
    amp = tcfg.get("amp") or None
    if amp not in (None, "bf16", "fp16"):
        raise ConfigError(f"training.amp must be null, bf16 or fp16, got {amp!r}")
    if amp and device.type != "cuda":
        log.info("training.amp=%s ignored on %s (autocast only on CUDA)", amp, device.type)
    mask = net.roles.get("mask")
    shapes = dataset.input_shapes()
    trim_groups: tuple[str, ...] = ()
    per_point = task in ("per_point_regression", "model_loss")  # per-point targets keep the full point axis
    if tcfg.get("trim", True) and not per_point and mask is not None and len(shapes[mask]) == 2:
        trim_groups = tuple(g for g in net.input_groups if len(shapes[g]) == 2 and shapes[g][1] == shapes[mask][1])
    return StepSettings(device=device, amp=amp, trim_groups=trim_groups, mask_group=mask,
                        min_length=int(tcfg.get("trim_min_length", 32)), grad_clip=tcfg.get("grad_clip"))  # fmt: skip


def _bucketed(index: Any, dataset: ShardDataset, tcfg: dict[str, Any], batch_size: int, seed: list[int],
              mask_group: str | None) -> Any:  # fmt: skip
    """With ``training.bucket_by_length``, group rows of similar multiplicity into batches.

    Rows are sorted by particle count inside windows of 32 batches, cut into batches,
    and the batches are shuffled (seeded), so trimming removes most of the padding.
    """
    if not tcfg.get("bucket_by_length") or mask_group is None:
        return index
    lengths = dataset.lengths(mask_group)
    window = 32 * batch_size
    parts = [w[np.argsort(lengths[w], kind="stable")] for w in np.split(index, range(window, len(index), window))]
    ordered = np.concatenate(parts) if parts else index
    n_batches = len(ordered) // batch_size
    order = np.random.default_rng(seed + [1]).permutation(n_batches)
    return np.concatenate([ordered[: n_batches * batch_size].reshape(n_batches, batch_size)[order].ravel(),
                           ordered[n_batches * batch_size:]])  # fmt: skip


def _progress(enabled: bool, total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", disable=not enabled, leave=False, dynamic_ncols=True)
