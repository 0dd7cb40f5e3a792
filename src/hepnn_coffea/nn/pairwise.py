"""Pairwise four-vector features of particles (ParT's ln kT, ln z, ln Delta, ln m^2) and their embedding."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["PairEmbed", "activation_layer", "pairwise_lv_features"]


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


def activation_layer(name: str) -> nn.Module:
    """``nn.GELU()`` or ``nn.ReLU()`` by name."""
    if name == "gelu":
        return nn.GELU()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}; choose 'gelu' or 'relu'")


class PairEmbed(nn.Module):
    """Embed pairwise four-vector features into per-head attention biases.

    The pair features are symmetric in ``(i, j)``, so in eager mode (training and
    evaluation) only the lower triangle, diagonal included, of the *real* particle
    pairs is computed and embedded; the result is mirrored into the ``(N, H, P, P)``
    bias (padded pairs get 0), as weaver-core does with its sparse pair embedding.
    While tracing/exporting, the same layers run on every pair of the full grid
    (no data-dependent shapes), which gives the same biases for the real pairs.

    Parameters
    ----------
    input_dims : int
        Number of pairwise features (4 supported: ``ln kT, ln z, ln Delta, ln m^2``).
    dims : sequence of int
        Output channels of the pointwise (1x1) convolutions; the last one is the
        number of attention heads.
    activation : str, default "gelu"
    final_activation : bool, default True
        Apply the activation after the last layer too (weaver-core's
        ``use_pre_activation_pair=False``, as in ParT's reference config).
    eps : float, default 1e-8
    """

    def __init__(
        self,
        input_dims: int,
        dims: Sequence[int],
        activation: str = "gelu",
        final_activation: bool = True,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if input_dims != 4:
            raise ValueError("only the 4 ParT pairwise features are implemented (pair_input_dims=4)")
        self.eps = float(eps)
        self.out_dim = int(dims[-1])
        layers: list[nn.Module] = [nn.BatchNorm1d(input_dims)]
        in_dim = input_dims
        for i, dim in enumerate(dims):
            layers += [nn.Conv1d(in_dim, dim, kernel_size=1), nn.BatchNorm1d(dim)]
            if i < len(dims) - 1 or final_activation:
                layers.append(activation_layer(activation))
            in_dim = dim
        self.embed = nn.Sequential(*layers)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # checkpoints from the Conv2d(1x1) version hold (out, in, 1, 1) weights
        for key, value in state_dict.items():
            if key.startswith(prefix + "embed.") and key.endswith(".weight") and value.ndim == 4:
                state_dict[key] = value.squeeze(-1)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def embed_rows(self, fts: torch.Tensor) -> torch.Tensor:
        """Embed pair features given as rows ``(M, 4)`` into ``(M, heads)``."""
        for layer in self.embed:
            if isinstance(layer, nn.Conv1d):  # a 1x1 conv on rows is a linear map
                fts = nn.functional.linear(fts, layer.weight.squeeze(-1), layer.bias)
            else:
                fts = layer(fts)
        return fts

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor, full_grid: bool = False) -> torch.Tensor:
        """Map four-vectors ``(N, 4, P)`` and mask ``(N, 1, P)`` (bool) to biases ``(N, heads, P, P)``.

        ``full_grid=True`` embeds every pair (export path; padded pairs are zeroed
        after the embedding); otherwise only the real lower-triangle pairs.
        """
        n, p = vectors.shape[0], vectors.shape[2]
        if full_grid:
            fts = pairwise_lv_features(
                vectors.unsqueeze(-1), vectors.unsqueeze(-2), eps=self.eps
            )  # (N, 4, P, P)
            out = self.embed_rows(fts.permute(0, 2, 3, 1).reshape(-1, fts.shape[1]))
            out = out.reshape(n, p, p, self.out_dim).permute(0, 3, 1, 2)
            return out.masked_fill(~(mask.unsqueeze(-1) & mask.unsqueeze(-2)), 0.0)
        with torch.no_grad():
            real = mask.squeeze(1)
            b, i, j = torch.tril(real.unsqueeze(-1) & real.unsqueeze(-2)).nonzero(as_tuple=True)
            v = vectors.transpose(1, 2)  # (N, P, 4)
            fts = pairwise_lv_features(v[b, i].unsqueeze(-1), v[b, j].unsqueeze(-1), eps=self.eps).squeeze(-1)
        rows = self.embed_rows(fts)  # (E, heads)
        out = rows.new_zeros(n, p, p, self.out_dim)
        out = out.index_put((b, i, j), rows).index_put((b, j, i), rows)
        return out.permute(0, 3, 1, 2)
