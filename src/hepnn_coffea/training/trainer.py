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
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from hepnn_coffea import __version__
from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.config.model_config import deep_merge, load_model_config
from hepnn_coffea.nn import Network, build_network, count_parameters
from hepnn_coffea.processing.shards import atomic_write_bytes, write_json
from hepnn_coffea.training.dataset import ShardDataset
from hepnn_coffea.training.metrics import RunLogger, classification_metrics
from hepnn_coffea.training.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)
REGRESSION_LOSSES = {"mse": nn.MSELoss, "huber": nn.HuberLoss, "l1": nn.L1Loss}


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
    state = torch.load(run_dir / "checkpoints" / checkpoint, map_location="cpu", weights_only=True)
    net.load_state_dict(state["model"])
    return net.eval(), cfg


def _resolve_config(model_config: str | pathlib.Path | dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    cfg = load_model_config(model_config) if not isinstance(model_config, dict) else dict(model_config)
    cfg = deep_merge(cfg, overrides or {})
    if "model" not in cfg or "training" not in cfg:
        raise ConfigError("a model config needs 'model' and 'training' sections (extend models/base.yaml)")
    return cfg


def _prepare_run_dir(run_dir: pathlib.Path, cfg: dict[str, Any], shards: pathlib.Path, net: nn.Module,
                     train_set: ShardDataset, n_outputs: int) -> None:  # fmt: skip
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copyfile(shards / "data_config.yaml", run_dir / "data_config.yaml")
    shutil.copyfile(shards / "standardization.json", run_dir / "standardization.json")
    write_json(run_dir / "provenance.json", {
        "hepnn_coffea_version": __version__, "torch_version": torch.__version__,
        "python": platform.python_version(), "shards": str(shards.resolve()),
        "config_hash": train_set.manifest["config_hash"], "labels": train_set.manifest["labels"],
        "label_type": train_set.manifest["label_type"], "input_shapes": train_set.input_shapes(),
        "input_groups": net.input_groups, "n_outputs": n_outputs, "parameters": count_parameters(net),
    })  # fmt: skip
    for stale in ("metrics.csv",):
        (run_dir / stale).unlink(missing_ok=True)


def _save(path: pathlib.Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda f: torch.save(payload, f))


def train(
    model_config: str | pathlib.Path | dict[str, Any],
    shards: str | pathlib.Path,
    run_dir: str | pathlib.Path,
    *,
    overrides: dict[str, Any] | None = None,
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
    resume
        Continue from ``run_dir/checkpoints/last.pt`` with the saved config.
    """
    run_dir = pathlib.Path(run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f"{last} not found: nothing to resume")
        cfg = deep_merge(yaml.safe_load((run_dir / "config.yaml").read_text()), overrides or {})
        shards = pathlib.Path(json.loads((run_dir / "provenance.json").read_text())["shards"])
    else:
        if model_config is None or shards is None:
            raise ConfigError("train needs a model config and a shard folder (or resume=True)")
        shards = pathlib.Path(shards)
        if last.exists():
            raise FileExistsError(f"{run_dir} already holds a run; use resume=True (--resume) or a new folder")
        cfg = _resolve_config(model_config, overrides)
    tcfg = cfg["training"]
    task = cfg.get("task", "classification")
    seed = int(tcfg.get("seed", 42))
    torch.manual_seed(seed)
    if tcfg.get("num_threads"):
        torch.set_num_threads(int(tcfg["num_threads"]))
    device = select_device(str(tcfg.get("device", "auto")))

    probe = ShardDataset(shards, "train")
    n_outputs = len(probe.manifest["labels"])
    net = build_network(cfg["model"], probe.input_shapes(), n_outputs)
    train_set = ShardDataset(shards, "train", net.input_groups)
    val_set = ShardDataset(shards, "val", net.input_groups)
    if task == "classification" and train_set.target_field != "label":
        raise ConfigError(f"task classification needs 'simple' labels; the shards in {shards} hold regression targets")
    if not resume:
        _prepare_run_dir(run_dir, cfg, shards, net, train_set, n_outputs)
    net.to(device)

    batch_size = int(tcfg["batch_size"])
    epochs = int(tcfg["epochs"])
    samples_per_epoch = tcfg.get("samples_per_epoch")
    samples_per_epoch = int(samples_per_epoch) if samples_per_epoch else None
    steps_per_epoch = max(1, (samples_per_epoch or len(train_set)) // batch_size)
    optimizer = build_optimizer(net.parameters(), tcfg["optimizer"], float(tcfg["lr"]), float(tcfg.get("weight_decay", 0)))
    scheduler = build_scheduler(optimizer, tcfg.get("scheduler", "none"), epochs, steps_per_epoch,
                                int(tcfg.get("warmup_steps", 0)))  # fmt: skip
    if task == "classification":
        loss_fn = nn.CrossEntropyLoss(reduction="none", label_smoothing=float(tcfg.get("label_smoothing", 0)))
    else:
        name = str(cfg.get("loss", "mse")).lower()
        if name not in REGRESSION_LOSSES:
            raise ConfigError(f"loss {name!r} unknown; choose one of {sorted(REGRESSION_LOSSES)}")
        loss_fn = REGRESSION_LOSSES[name](reduction="none")

    state = {"epoch": 0, "best": -math.inf if task == "classification" else math.inf, "best_epoch": -1,
             "bad_epochs": 0, "history": [], "step": 0}  # fmt: skip
    if resume:
        ckpt = torch.load(last, map_location=device, weights_only=False)
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["torch_rng"])
        state = ckpt["state"]
    logger = RunLogger(run_dir, use_tensorboard=bool(tcfg.get("tensorboard", True)))
    patience = tcfg.get("early_stopping_patience")
    grad_clip = tcfg.get("grad_clip")
    try:
        for epoch in range(state["epoch"], epochs):
            net.train()
            t0 = time.perf_counter()
            total, seen, wait = 0.0, 0, 0.0
            bar = _progress(progress, steps_per_epoch, f"epoch {epoch + 1}/{epochs}")
            t_data = time.perf_counter()
            for batch in train_set.batches(batch_size, shuffle=True, seed=[seed, epoch], drop_last=True,
                                           limit=samples_per_epoch):  # fmt: skip
                wait += time.perf_counter() - t_data
                inputs = [batch[g].to(device) for g in net.input_groups]
                target = batch["target"].to(device)
                per_entry = loss_fn(net(*inputs), target)
                per_entry = per_entry.mean(dim=-1) if per_entry.ndim > 1 else per_entry
                w = batch.get("weight")
                loss = (per_entry * w.to(device)).sum() / w.sum() if w is not None else per_entry.mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip:
                    nn.utils.clip_grad_norm_(net.parameters(), float(grad_clip))
                optimizer.step()
                scheduler.step()
                state["step"] += 1
                total += loss.item() * len(target)
                seen += len(target)
                bar.update(1)
                bar.set_postfix(loss=f"{total / seen:.4f}", jets_per_s=f"{seen / (time.perf_counter() - t0):.0f}")
                t_data = time.perf_counter()
            bar.close()
            elapsed = time.perf_counter() - t0
            row = {"epoch": epoch + 1, "train_loss": total / max(seen, 1), "lr": optimizer.param_groups[0]["lr"],
                   "train_jets_per_s": seen / elapsed, "train_data_wait_frac": wait / elapsed}  # fmt: skip
            row.update({f"val_{k}": v for k, v in evaluate(net, val_set, loss_fn, task, batch_size, device).items()})
            metric = row["val_auc"] if task == "classification" else row["val_loss"]
            improved = metric > state["best"] if task == "classification" else metric < state["best"]
            if improved:
                state.update(best=metric, best_epoch=epoch + 1, bad_epochs=0)
                _save(run_dir / "checkpoints" / "best.pt", {"model": net.state_dict(), "epoch": epoch + 1})
            else:
                state["bad_epochs"] += 1
            state["history"].append(row)
            state["epoch"] = epoch + 1
            logger.log_epoch(row)
            _save(last, {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(), "state": state})  # fmt: skip
            log.info("epoch %d: %s", epoch + 1, {k: round(v, 5) for k, v in row.items()})
            if patience is not None and state["bad_epochs"] >= int(patience):
                log.info("early stopping after %d epochs without improvement", state["bad_epochs"])
                break
    finally:
        logger.close()
    return TrainResult(run_dir, state["best_epoch"], state["best"], state["history"])


@torch.no_grad()
def evaluate(net: Network, dataset: ShardDataset, loss_fn: nn.Module, task: str, batch_size: int,
             device: torch.device) -> dict[str, float]:  # fmt: skip
    """Loss (and accuracy/AUC for classification) of ``net`` on a whole split."""
    net.eval()
    outputs, targets, losses = [], [], []
    for batch in dataset.batches(max(batch_size, 256)):
        out = net(*[batch[g].to(device) for g in net.input_groups])
        per_entry = loss_fn(out, batch["target"].to(device))
        losses.append((per_entry.mean(dim=-1) if per_entry.ndim > 1 else per_entry).cpu())
        outputs.append((torch.softmax(out, dim=1) if task == "classification" else out).cpu())
        targets.append(batch["target"])
    result = {"loss": float(torch.cat(losses).mean())}
    if task == "classification":
        result.update(classification_metrics(torch.cat(outputs).numpy(), torch.cat(targets).numpy()))
    return result


def _progress(enabled: bool, total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", disable=not enabled, leave=False, dynamic_ncols=True)
