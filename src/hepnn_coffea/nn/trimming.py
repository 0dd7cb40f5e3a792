"""Training-time helpers shared by the particle models: weaver-style length-quantile trimming."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["exporting", "quantile_trim"]


def exporting() -> bool:
    """True while tracing/scripting or exporting to ONNX (then the models keep every particle)."""
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()


def quantile_trim(
    mask: torch.Tensor, tensors: Sequence[torch.Tensor], q_range: Sequence[float], min_length: int = 1
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Cut the particle axis to a random length quantile of the batch (training only).

    A quantile ``q ~ U(q_range)`` (clamped to 1) of the jets' real-particle counts
    gives the new length ``L``; jets with more than ``L`` real particles keep a
    random subset of ``L`` of them, as weaver-core's ``SequenceTrimmer`` does. The
    kept slots stay in their original order. Uses the global torch RNG.

    Parameters
    ----------
    mask : torch.Tensor
        Bool ``(N, 1, P)``, True for real particles.
    tensors : sequence of torch.Tensor
        ``(N, C, P)`` tensors cut along with the mask.
    q_range : (float, float)
        Range of the quantile, e.g. ``(0.9, 1.02)``.
    min_length : int, default 1
        Never cut below this length (or ``P``).

    Returns
    -------
    (torch.Tensor, list of torch.Tensor)
        The cut mask and tensors.
    """
    p = mask.shape[-1]
    q = torch.empty((), device=mask.device).uniform_(float(q_range[0]), float(q_range[1])).clamp_(max=1.0)
    length = int(torch.quantile(mask.sum(dim=-1).flatten().float(), q))
    length = min(p, max(length, int(min_length), 1))
    if length >= p:
        return mask, list(tensors)
    keys = torch.rand(mask.shape, device=mask.device).masked_fill_(~mask, -1.0)
    order = keys.topk(length, dim=-1, sorted=False)[1].sort(dim=-1)[0]  # (N, 1, L)
    return mask.gather(-1, order), [t.gather(-1, order.expand(-1, t.shape[1], -1)) for t in tensors]
