"""One training epoch and one evaluation pass (device moves, trimming, mixed precision)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from hepnn_coffea._optional import missing_extra
from hepnn_coffea.training.metrics import classification_metrics

try:
    import torch
    from torch import nn
except ModuleNotFoundError as err:  # without the [train] extra: say what to install
    raise missing_extra(err, "train") from None


@dataclass
class StepSettings:
    """How batches are turned into steps.

    Attributes
    ----------
    device
        Where the model runs.
    amp
        ``None``, ``"bf16"`` or ``"fp16"``: autocast dtype on CUDA (ignored on CPU).
    trim_groups
        Input groups whose particle axis is cut to the longest jet of the batch.
    mask_group
        The group whose per-particle values say which particles are real.
    min_length
        Never trim below this many particles (ParticleNet needs more than k).
    grad_clip
        Max gradient norm, or ``None``.
    penalty
        A batch-level loss term ``penalty(logits, batch) -> (term, value) | None`` added to the
        loss (e.g. :class:`~hepnn_coffea.training.disco.DiscoPenalty`), or ``None``.
    """

    device: torch.device
    amp: str | None = None
    trim_groups: tuple[str, ...] = ()
    mask_group: str | None = None
    min_length: int = 32
    grad_clip: float | None = None
    penalty: Any = None

    @property
    def amp_dtype(self) -> torch.dtype | None:
        if self.device.type != "cuda" or not self.amp:
            return None
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[self.amp]

    def autocast(self) -> Any:
        dtype = self.amp_dtype
        return torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()


def trim(batch: dict[str, torch.Tensor], settings: StepSettings) -> dict[str, torch.Tensor]:
    """Cut the particle axis of ``trim_groups`` to the batch's longest jet (multiple of 8)."""
    if not settings.trim_groups or settings.mask_group is None:
        return batch
    mask = batch[settings.mask_group]
    longest = int((mask != 0).sum(dim=-1).max()) if mask.numel() else 0
    length = min(mask.shape[-1], max(settings.min_length, -(-longest // 8) * 8))
    if length >= mask.shape[-1]:
        return batch
    return {k: (v[..., :length].contiguous() if k in settings.trim_groups else v) for k, v in batch.items()}


def _forward(
    net: nn.Module, groups: list[str], batch: dict[str, torch.Tensor], s: StepSettings
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The model's outputs and its auxiliary outputs (``Network.forward_with_aux``; ``{}`` for plain
    modules)."""
    batch = trim(batch, s)
    inputs = [batch[g].to(s.device, non_blocking=True) for g in groups]
    with s.autocast():
        if hasattr(net, "forward_with_aux"):
            return net.forward_with_aux(*inputs)
        return net(*inputs), {}


def _loss(
    loss_fn: nn.Module, out: torch.Tensor, target: torch.Tensor, aux: dict[str, torch.Tensor]
) -> torch.Tensor:
    """``loss_fn(out, target)``, with the auxiliary outputs for a loss that takes them (a model's own
    loss)."""
    if getattr(loss_fn, "takes_aux", False):
        return loss_fn(out.float(), target, aux)
    return loss_fn(out.float(), target)


def _weighted(per_entry: torch.Tensor, weight: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    per_entry = per_entry.float()
    per_entry = per_entry.mean(dim=-1) if per_entry.ndim > 1 else per_entry
    if weight is None:
        return per_entry.mean()
    weight = weight.to(device)
    return (per_entry * weight).sum() / weight.sum()


def step_loss(
    out: torch.Tensor,
    batch: dict[str, torch.Tensor],
    target: torch.Tensor,
    loss_fn: nn.Module,
    s: StepSettings,
    aux: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, float | None]:
    """Weighted mean loss of a batch plus ``s.penalty``'s term; the penalty's value (``None``: none)."""
    loss = _weighted(_loss(loss_fn, out, target, aux or {}), batch.get("weight"), s.device)
    extra = s.penalty(out.float(), batch) if s.penalty is not None else None
    return (loss, None) if extra is None else (loss + extra[0], extra[1])


def train_epoch(
    net: nn.Module,
    groups: list[str],
    batches: Any,
    loss_fn: nn.Module,
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    s: StepSettings,
    on_step: Any = None,
) -> dict[str, float]:
    """One pass over ``batches``; returns loss, throughput and the data-wait fraction."""
    net.train()
    t0 = time.perf_counter()
    total, seen, wait, penalties = 0.0, 0, 0.0, []
    t_data = time.perf_counter()
    for batch in batches:
        wait += time.perf_counter() - t_data
        target = batch["target"].to(s.device, non_blocking=True)
        out, aux = _forward(net, groups, batch, s)
        loss, penalty = step_loss(out, batch, target, loss_fn, s, aux)
        if penalty is not None:
            penalties.append(penalty)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if s.grad_clip:
            nn.utils.clip_grad_norm_(net.parameters(), float(s.grad_clip))
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        total += loss.item() * len(target)
        seen += len(target)
        if on_step is not None:
            on_step(loss.item(), seen / (time.perf_counter() - t0))
        t_data = time.perf_counter()
    elapsed = time.perf_counter() - t0
    extra = (
        {f"train_{s.penalty.name}": float(np.mean(penalties)) if penalties else float("nan")}
        if s.penalty
        else {}
    )
    return {
        "train_loss": total / max(seen, 1),
        "train_jets_per_s": seen / elapsed,
        "train_data_wait_frac": wait / elapsed,
        **extra,
    }


@torch.no_grad()
def evaluate(
    net: nn.Module,
    groups: list[str],
    dataset: Any,
    loss_fn: nn.Module,
    task: str,
    batch_size: int,
    s: StepSettings,
) -> dict[str, float]:
    """Loss (and accuracy/AUC for classification) of ``net`` on a whole split."""
    net.eval()
    outputs, targets, losses, weights, penalties = [], [], [], [], []
    for batch in dataset.batches(max(batch_size, 256)):
        out, aux = _forward(net, groups, batch, s)
        out = out.float()
        per_entry = _loss(loss_fn, out, batch["target"].to(s.device), aux)  # the same terms as in training
        losses.append((per_entry.mean(dim=-1) if per_entry.ndim > 1 else per_entry).cpu())
        if s.penalty is not None and (extra := s.penalty(out, batch)) is not None:
            penalties.append((float(extra[0]), extra[1]))
        outputs.append((torch.softmax(out, dim=1) if task == "classification" else out).cpu())
        targets.append(batch["target"])
        if "weight" in batch:
            weights.append(batch["weight"])
    w = torch.cat(weights).numpy() if weights else None
    result = {"loss": float(np.average(torch.cat(losses).numpy(), weights=w))}
    if s.penalty is not None:  # the batch-level term (mean over batches), also alone without its factor
        result["loss"] += float(np.mean([t for t, _ in penalties])) if penalties else 0.0
        result[s.penalty.name] = float(np.mean([v for _, v in penalties])) if penalties else float("nan")
    if task == "classification":
        result.update(classification_metrics(torch.cat(outputs).numpy(), torch.cat(targets).numpy(), w))
    return result
