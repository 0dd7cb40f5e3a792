"""PointNet segmentation for per-point regression (e.g. the energy a particle left in each cell).

References: C. R. Qi et al., "PointNet: Deep Learning on Point Sets for 3D
Classification and Segmentation", CVPR 2017, arXiv:1612.00593; the JetPointNet
workflow (per-cell energy fractions of a focused track, ATLAS-style point clouds).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["PointNetSegmentation", "per_track_loss", "soft_sqrt"]

#: global poolings: masked max (PointNet), or max and mean side by side
GLOBAL_POOLS = ("max", "max+mean")
#: per-point terms of :func:`per_track_loss`
CELL_LOSSES = ("mse", "mae", "none")


def soft_sqrt(x: torch.Tensor) -> torch.Tensor:
    """Linear for ``|x| <= 1``, ``sign(x) (2 sqrt|x| - 1)`` beyond (continuous value and slope at 1)."""
    ax = x.abs()
    return torch.where(ax <= 1, x, torch.sign(x) * (2 * torch.sqrt(ax.clamp(min=1)) - 1))


def _shared_mlp(
    sizes: Sequence[int], in_dims: int, last_activation: bool = True
) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for i, size in enumerate(sizes):
        layers += [nn.Conv1d(in_dims, int(size), 1), nn.BatchNorm1d(int(size))]
        if last_activation or i < len(sizes) - 1:
            layers.append(nn.ReLU())
        in_dims = int(size)
    return nn.Sequential(*layers), in_dims


def _masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over real points: ``x`` (N, F, P), ``mask`` (N, 1, P) -> (N, F); 0 for entries without points."""
    filled = x.masked_fill(mask == 0, float("-inf"))
    out = filled.max(dim=2).values
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real points: ``x`` (N, F, P), ``mask`` (N, 1, P) -> (N, F); 0 for entries without points."""
    return (x * mask).sum(dim=2) / mask.sum(dim=2).clamp(min=1)


def per_track_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    cell: str = "mse",
    total_weight: float = 1.0,
    normalize: bool = True,
    min_total: float = 0.5,
    pad_value: float = -1.0,
) -> torch.Tensor:
    """Masked per-point loss plus a per-track total term; ``(N, 1, P)`` -> ``(N,)``.

    ``cell`` is the per-point term over the real points (``target != pad_value``): ``mse`` or
    ``mae`` of ``pred - target``, averaged over the entry's real points, divided (``normalize``)
    by ``T`` resp. ``T**2`` with ``T = max(sum target, min_total)`` so that every track weighs
    the same whatever its energy (``none`` drops it). The total term is
    ``|sum pred - sum target| / T`` (the per-track relative error the evaluation's MAPE
    averages), weighted by ``total_weight``. Sums run over the real points only.
    """
    if cell not in CELL_LOSSES:
        raise ValueError(f"cell loss must be one of {CELL_LOSSES}, got {cell!r}")
    valid = target != pad_value
    zero = torch.zeros_like(target)
    target = torch.where(valid, target, zero)
    pred = torch.where(valid, pred, zero)
    total_true = target.flatten(1).sum(1)
    scale = total_true.clamp(min=float(min_total))
    loss = torch.zeros_like(total_true)
    if cell != "none":
        diff = pred - target
        per_point = (diff * diff if cell == "mse" else diff.abs()) * valid
        term = per_point.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)
        if normalize:
            term = term / (scale * scale if cell == "mse" else scale)
        loss = loss + term
    if total_weight:
        loss = loss + float(total_weight) * (pred.flatten(1).sum(1) - total_true).abs() / scale
    return loss


class TNet(nn.Module):
    """Predicts a ``C x C`` transform of the input features (initialised to the identity)."""

    def __init__(self, dims: int, sizes: Sequence[int] = (64, 128)) -> None:
        super().__init__()
        self.dims = dims
        self.mlp, width = _shared_mlp(sizes, dims)
        self.fc = nn.Linear(width, dims * dims)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        matrix = self.fc(_masked_max(self.mlp(x) * mask, mask)).view(-1, self.dims, self.dims)
        return torch.bmm(matrix + torch.eye(self.dims, device=x.device, dtype=x.dtype), x)


class _AttentionBlock(nn.Module):
    """Pre-norm self-attention + feed-forward over the points (padding masked out)."""

    def __init__(self, dims: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dims), nn.LayerNorm(dims)
        self.attn = nn.MultiheadAttention(dims, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(dims, 2 * dims), nn.GELU(), nn.Linear(2 * dims, dims))

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        # a float bias (-inf on padding) instead of a boolean key_padding_mask: same result, exports to ONNX
        bias = torch.zeros_like(pad, dtype=x.dtype).masked_fill(pad, float("-inf"))[:, None, :]
        bias = bias.expand(-1, x.shape[1], -1).repeat_interleave(self.attn.num_heads, dim=0)
        x = x + self.attn(h, h, h, attn_mask=bias, need_weights=False)[0]
        return x + self.ff(self.norm2(x))


class PointNetSegmentation(nn.Module):
    """Per-point outputs from a shared point MLP, a masked global max-pool and a per-point head.

    Parameters
    ----------
    input_dims
        Features per point ``C``.
    num_outputs
        Outputs per point.
    shared_sizes
        Widths of the shared per-point MLP (the local features).
    global_size
        Width of the global feature (max-pooled over the real points).
    head_sizes
        Widths of the per-point head on ``[local, global]``.
    tnet
        Learn an input transform (T-Net) first.
    attention_layers, attention_heads
        Transformer-encoder blocks between the local features and the pooling (the
        attention variant); 0 gives plain PointNet.
    energy_bypass
        Multiply the output, passed through :func:`soft_sqrt`, by the point's input
        energy (the ``energy`` input): the network predicts a fraction of it.
    dropout
        Dropout in the head.
    nonnegative
        Pass the output through a softplus before :func:`soft_sqrt` (with the energy bypass:
        the predicted fraction of a cell's energy is never negative, so neither is a
        per-track total).
    global_pool
        ``max`` (PointNet) or ``max+mean`` (both, concatenated) over the real points.
    focus_context
        Also give the head the local feature of the entry's *first* point (the focused track:
        samples are sorted by distance to it, so it comes first), e.g. its momentum.
    loss_cell, loss_total_weight, loss_normalize, loss_min_total
        The model's own loss (``task: model_loss``), see :func:`per_track_loss`; with ``task:
        per_point_regression`` the trainer's masked MSE/MAE is used instead and these are unused.

    Notes
    -----
    Inputs: ``features`` ``(N, C, P)``, ``energy`` ``(N, 1, P)`` (raw, not standardized),
    ``mask`` ``(N, 1, P)`` (1 real, 0 padding). Output ``(N, num_outputs, P)``, 0 on padding.
    """

    def __init__(
        self,
        input_dims: int,
        num_outputs: int = 1,
        shared_sizes: Sequence[int] = (64, 128, 128),
        global_size: int = 512,
        head_sizes: Sequence[int] = (256, 128),
        tnet: bool = False,
        attention_layers: int = 0,
        attention_heads: int = 4,
        energy_bypass: bool = True,
        dropout: float = 0.0,
        nonnegative: bool = False,
        global_pool: str = "max",
        focus_context: bool = False,
        loss_cell: str = "mse",
        loss_total_weight: float = 1.0,
        loss_normalize: bool = True,
        loss_min_total: float = 0.5,
    ) -> None:
        super().__init__()
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool must be one of {GLOBAL_POOLS}, got {global_pool!r}")
        if loss_cell not in CELL_LOSSES:
            raise ValueError(f"loss_cell must be one of {CELL_LOSSES}, got {loss_cell!r}")
        self.global_pool, self.focus_context = global_pool, bool(focus_context)
        self.nonnegative = bool(nonnegative)
        self.loss_settings = {
            "cell": loss_cell,
            "total_weight": float(loss_total_weight),
            "normalize": bool(loss_normalize),
            "min_total": float(loss_min_total),
        }
        #: padding of the per-point targets; the trainer sets the data config's (ModelLoss)
        self.label_pad_value = -1.0
        self.tnet = TNet(input_dims) if tnet else None
        self.local, width = _shared_mlp(shared_sizes, input_dims)
        self.attention = nn.ModuleList(
            _AttentionBlock(width, attention_heads) for _ in range(attention_layers)
        )
        self.to_global, global_width = _shared_mlp([global_size], width)
        head: list[nn.Module] = []
        pooled_width = global_width * (2 if global_pool == "max+mean" else 1) + (
            width if focus_context else 0
        )
        in_dims = width + pooled_width
        for size in head_sizes:
            head += [nn.Conv1d(in_dims, int(size), 1), nn.BatchNorm1d(int(size)), nn.ReLU()]
            if dropout:
                head.append(nn.Dropout(dropout))
            in_dims = int(size)
        head.append(nn.Conv1d(in_dims, int(num_outputs), 1))
        self.head = nn.Sequential(*head)
        self.energy_bypass = bool(energy_bypass)

    def forward(self, features: torch.Tensor, energy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = (mask != 0).to(features.dtype)
        x = features * mask
        if self.tnet is not None:
            x = self.tnet(x, mask) * mask
        local = self.local(x) * mask
        if len(self.attention):
            pad = mask[:, 0, :] == 0
            first = torch.arange(pad.shape[1], device=pad.device)[None, :] == 0
            pad = pad & ~(pad.all(dim=1, keepdim=True) & first)  # an empty entry attends to its first slot
            h = local.transpose(1, 2)
            for block in self.attention:
                h = block(h, pad)
            local = h.transpose(1, 2) * mask
        g = self.to_global(local)
        pooled = [_masked_max(g, mask)] + ([_masked_mean(g, mask)] if self.global_pool == "max+mean" else [])
        if self.focus_context:
            pooled.append(local[:, :, 0])
        glob = torch.cat(pooled, dim=1)
        out = self.head(torch.cat([local, glob[:, :, None].expand(-1, -1, local.shape[2])], dim=1))
        if self.nonnegative:
            out = nn.functional.softplus(out)
        if self.energy_bypass:
            out = soft_sqrt(out) * energy
        return out * mask

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-entry loss for ``task: model_loss``: :func:`per_track_loss` with the ``loss_*`` settings."""
        return per_track_loss(pred, target, pad_value=self.label_pad_value, **self.loss_settings)
