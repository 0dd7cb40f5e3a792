"""Regression targets: losses, and learning standardized targets.

Targets such as a top quark's pT (~600 GeV) and eta (~1) differ by orders of
magnitude, so the network learns ``(target - offset) / scale`` (train-split mean
and standard deviation) and :meth:`hepnn_coffea.nn.Network.physical` maps its
outputs back; the export applies that map, so ONNX outputs are in physical units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from hepnn_coffea._optional import missing_extra
from hepnn_coffea.config.data_config import ConfigError

try:
    import torch
    from torch import nn
except ModuleNotFoundError as err:  # without the [train] extra: say what to install
    raise missing_extra(err, "train") from None


class LogCoshLoss(nn.Module):
    """``log(cosh(pred - target))`` per element (quadratic near 0, linear in the tails)."""

    def __init__(self, reduction: str = "none") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = pred - target
        loss = x.abs() + nn.functional.softplus(-2 * x.abs()) - math.log(2.0)
        return loss.mean() if self.reduction == "mean" else loss


REGRESSION_LOSSES = {"mse": nn.MSELoss, "huber": nn.HuberLoss, "l1": nn.L1Loss, "logcosh": LogCoshLoss}


class StandardizedLoss(nn.Module):
    """``loss(pred, (target - offset) / scale)``: the network learns standardized targets."""

    def __init__(self, loss: nn.Module, offset: list[float], scale: list[float]) -> None:
        super().__init__()
        self.loss = loss
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        offset, scale = self.offset.to(target.device), self.scale.to(target.device)
        return self.loss(pred, (target - offset) / scale)


def regression_loss(loss: str | Mapping[str, Any] = "mse") -> nn.Module:
    """The per-element loss named by the model config's ``loss`` (mse, huber, l1, logcosh).

    ``loss`` is the name, or (as before) a whole model config mapping whose ``loss`` key is read.
    """
    name = str(loss.get("loss", "mse") if isinstance(loss, Mapping) else loss).lower()
    if name not in REGRESSION_LOSSES:
        raise ConfigError(f"loss {name!r} unknown; choose one of {sorted(REGRESSION_LOSSES)}")
    return REGRESSION_LOSSES[name](reduction="none")


def target_scaling(targets: np.ndarray, names: list[str]) -> dict[str, list[float]]:
    """Mean and standard deviation of every target column (``offset``/``scale``)."""
    targets = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    bad = [n for n, ok in zip(names, np.isfinite(targets).all(axis=0)) if not ok]
    if bad:
        raise ConfigError(f"regression target(s) {bad} have NaN/inf values in the training shards")
    scale = targets.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return {"offset": targets.mean(axis=0).tolist(), "scale": scale.tolist()}


class MaskedPointLoss(nn.Module):
    """Per-point loss averaged over the real points of each entry (``target != pad_value``).

    ``pred`` and ``target`` are ``(N, n_targets, P)``; returns ``(N,)``. Entries without
    a real point contribute 0.
    """

    def __init__(self, loss: nn.Module, pad_value: float = -1.0) -> None:
        super().__init__()
        self.loss = loss
        self.pad_value = float(pad_value)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != self.pad_value
        per_point = self.loss(pred, torch.where(valid, target, torch.zeros_like(target))) * valid
        return per_point.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)


class ModelLoss(nn.Module):
    """The model's own ``loss(pred, target) -> (N,)`` (e.g. set matching for clustering).

    A model whose loss masks padded per-point targets declares a ``label_pad_value``
    attribute; it is set here to the data config's ``labels.pad_value`` (as
    :class:`MaskedPointLoss` gets it), so the model never assumes its own.
    """

    def __init__(self, core: nn.Module, pad_value: float | None = None) -> None:
        super().__init__()
        if not callable(getattr(core, "loss", None)):
            raise ConfigError(
                f"model {type(core).__name__} defines no loss(pred, target); it cannot train this task"
            )
        self.core = core
        if pad_value is not None and hasattr(core, "label_pad_value"):
            core.label_pad_value = float(pad_value)

    #: the training loop passes the model's auxiliary outputs (``forward_with_aux``) to this loss
    takes_aux = True

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, aux: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        if aux:
            return self.core.loss(pred, target, aux)
        return self.core.loss(pred, target)
