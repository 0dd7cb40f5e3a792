"""What the epoch loop of :func:`~hepnn_coffea.training.trainer.train` is set up with.

The per-entry loss of a task (:func:`_loss`), the step settings (:func:`_step_settings`:
device, mixed precision, trimming of padded points), the length-bucketed order of an
epoch's rows (:func:`_bucketed`) and the progress bar (:func:`_progress`).
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from hepnn_coffea._optional import missing_extra
from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.config.training_config import TASKS, ModelConfig, TrainingConfig
from hepnn_coffea.nn import Network
from hepnn_coffea.training.dataset import ShardDataset
from hepnn_coffea.training.loop import StepSettings
from hepnn_coffea.training.targets import MaskedPointLoss, ModelLoss, StandardizedLoss, regression_loss

try:
    import torch
    from torch import nn
except ModuleNotFoundError as err:  # without the [train] extra: say what to install
    raise missing_extra(err, "train") from None

log = logging.getLogger(__name__)


def _loss(typed: ModelConfig, net: Network, shards: pathlib.Path) -> nn.Module:
    """Per-entry loss of a task: ``classification`` (cross entropy), ``regression`` (standardized
    targets), ``per_point_regression`` (masked per-point loss), ``model_loss`` (the model's own)."""
    task = typed.task
    if task == "classification":
        return nn.CrossEntropyLoss(reduction="none", label_smoothing=typed.training.label_smoothing)
    if task == "regression":
        offset, scale = (t.tolist() for t in net.target_scaling)
        return StandardizedLoss(regression_loss(typed.loss), offset, scale)
    if task in ("per_point_regression", "model_loss"):
        from hepnn_coffea.config.data_config import DataConfig

        pad_value = DataConfig.from_yaml(shards / "data_config.yaml").label_pad_value
        if task == "model_loss":
            return ModelLoss(net.core, pad_value)
        return MaskedPointLoss(regression_loss(typed.loss), pad_value)
    raise ConfigError(f"task must be one of {TASKS}, got {task!r}")


def _step_settings(
    net: Network,
    dataset: ShardDataset,
    tcfg: TrainingConfig,
    device: torch.device,
    task: str = "classification",
) -> StepSettings:
    amp = tcfg.amp  # bf16 | fp16 | None, checked by TrainingConfig
    if amp and device.type != "cuda":
        log.info("training.amp=%s ignored on %s (autocast only on CUDA)", amp, device.type)
    mask = net.roles.get("mask")
    shapes = dataset.input_shapes()
    trim_groups: tuple[str, ...] = ()
    per_point = task in ("per_point_regression", "model_loss")  # per-point targets keep the full point axis
    if tcfg.trim and not per_point and mask is not None and len(shapes[mask]) == 2:
        trim_groups = tuple(
            g for g in net.input_groups if len(shapes[g]) == 2 and shapes[g][1] == shapes[mask][1]
        )
    return StepSettings(
        device=device,
        amp=amp,
        trim_groups=trim_groups,
        mask_group=mask,
        min_length=tcfg.trim_min_length,
        grad_clip=tcfg.grad_clip,
    )


def _bucketed(
    index: Any,
    dataset: ShardDataset,
    tcfg: TrainingConfig | Mapping[str, Any],
    batch_size: int,
    seed: list[int],
    mask_group: str | None,
) -> Any:
    """With ``training.bucket_by_length``, group rows of similar multiplicity into batches.

    Rows are sorted by particle count inside windows of 32 batches, cut into batches,
    and the batches are shuffled (seeded), so trimming removes most of the padding.
    ``tcfg`` may also be a plain ``training`` mapping (checked as :class:`TrainingConfig`).
    """
    if isinstance(tcfg, Mapping):
        tcfg = TrainingConfig.from_dict(tcfg)
    if not tcfg.bucket_by_length or mask_group is None:
        return index
    lengths = dataset.lengths(mask_group)
    window = 32 * batch_size
    parts = [
        w[np.argsort(lengths[w], kind="stable")] for w in np.split(index, range(window, len(index), window))
    ]
    ordered = np.concatenate(parts) if parts else index
    n_batches = len(ordered) // batch_size
    order = np.random.default_rng(seed + [1]).permutation(n_batches)
    return np.concatenate(
        [
            ordered[: n_batches * batch_size].reshape(n_batches, batch_size)[order].ravel(),
            ordered[n_batches * batch_size :],
        ]
    )


def _progress(enabled: bool, total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", disable=not enabled, leave=False, dynamic_ncols=True)
