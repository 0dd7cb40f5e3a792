"""Pairwise interaction features of particle four-vectors (ParT's ``ln kT, ln z, ln Delta, ln m^2``)."""

from __future__ import annotations

import math

import torch

__all__ = ["pairwise_lv_features"]


def pairwise_lv_features(vi: torch.Tensor, vj: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """ParT interaction features ``(ln kT, ln z, ln Delta, ln m^2)`` of particle pairs.

    Parameters
    ----------
    vi, vj : torch.Tensor
        Four-vectors ``(px, py, pz, E)`` along dim 1, broadcastable against each
        other, e.g. ``(N, 4, P, 1)`` and ``(N, 4, 1, P)``.
    eps : float, default 1e-8
        Lower clamp applied before every logarithm.

    Returns
    -------
    torch.Tensor
        Shape ``(N, 4, ...)`` (the broadcast shape of the inputs).
    """

    def pt_rap_phi(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        px, py, pz, e = v[:, 0:1], v[:, 1:2], v[:, 2:3], v[:, 3:4]
        pt = torch.sqrt(px * px + py * py)
        rap = 0.5 * torch.log(1 + (2 * pz) / (e - pz).clamp(min=1e-20))
        return pt, rap, torch.atan2(py, px)

    pti, rapi, phii = pt_rap_phi(vi)
    ptj, rapj, phij = pt_rap_phi(vj)
    dphi = torch.remainder(phii - phij + math.pi, 2 * math.pi) - math.pi
    delta = torch.sqrt((rapi - rapj) ** 2 + dphi**2)
    ptmin = torch.minimum(pti, ptj)
    lnkt = torch.log((ptmin * delta).clamp(min=eps))
    lnz = torch.log((ptmin / (pti + ptj).clamp(min=eps)).clamp(min=eps))
    lndelta = torch.log(delta.clamp(min=eps))
    vij = vi + vj
    m2 = vij[:, 3:4] ** 2 - (vij[:, 0:3] ** 2).sum(dim=1, keepdim=True)
    lnm2 = torch.log(m2.clamp(min=eps))
    return torch.cat(torch.broadcast_tensors(lnkt, lnz, lndelta, lnm2), dim=1)
