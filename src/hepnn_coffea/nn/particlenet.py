"""ParticleNet: jet tagging on particle clouds with dynamic-graph EdgeConv blocks.

Reference: H. Qu, L. Gouskos, "ParticleNet: Jet Tagging via Particle Clouds",
Phys. Rev. D 101 (2020) 056019, arXiv:1902.08570. Architecture follows
weaver-core's ``ParticleNet``; k-NN and neighbour gathering use plain tensor
ops (``topk`` + flat index arithmetic) so the model exports to ONNX with
dynamic batch and particle axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hepnn_coffea.nn.dropout import FastDropout
from hepnn_coffea.nn.trimming import exporting as _exporting
from hepnn_coffea.nn.trimming import quantile_trim

__all__ = ["EdgeConvBlock", "ParticleNet", "knn", "gather_neighbors"]

#: Offset added to the coordinates of padded particles so they are never
#: nearest neighbours of real particles.
COORD_SHIFT = 1e9


def knn(points: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` nearest neighbours of each point (self excluded).

    Parameters
    ----------
    points : torch.Tensor
        Coordinates, shape ``(N, D, P)``; requires ``P > k``.
    k : int
        Number of neighbours.

    Returns
    -------
    torch.Tensor
        Long tensor of shape ``(N, P, k)``.
    """
    inner = torch.matmul(points.transpose(1, 2), points)  # (N, P, P)
    sq = points.pow(2).sum(dim=1, keepdim=True)  # (N, 1, P)
    neg_dist = 2 * inner - sq - sq.transpose(1, 2)  # -|x_i - x_j|^2
    return neg_dist.topk(k=k + 1, dim=-1)[1][:, :, 1:]


def gather_neighbors(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Build EdgeConv edge features ``[x_i, x_j - x_i]`` for each neighbour ``j``.

    Parameters
    ----------
    x : torch.Tensor
        Node features, shape ``(N, C, P)``.
    idx : torch.Tensor
        Neighbour indices from :func:`knn`, shape ``(N, P, k)``.

    Returns
    -------
    torch.Tensor
        Edge features as rows, shape ``(N * P * k, 2C)`` (channels last, ordered
        by jet, particle, neighbour).
    """
    n, c, p = x.shape[0], x.shape[1], x.shape[2]
    k = idx.shape[2]
    # Offset indices by batch so a single flat gather suffices.
    base = torch.arange(n, device=x.device).view(-1, 1, 1) * p
    flat_x = x.transpose(1, 2).reshape(-1, c)  # (N*P, C)
    nbrs = flat_x.index_select(0, (idx + base).reshape(-1)).view(-1, k, c)  # (N*P, k, C)
    centre = flat_x.unsqueeze(1).expand_as(nbrs)
    return torch.cat((centre, nbrs - centre), dim=-1).view(-1, 2 * c)


class EdgeConvBlock(nn.Module):
    """EdgeConv block with a residual shortcut.

    ``x_i' = ReLU(sc(x_i) + mean_{j in kNN(i)} h([x_i, x_j - x_i]))`` where ``h`` is
    a stack of ``Conv2d(1x1, no bias) + BatchNorm2d + ReLU`` layers.

    Parameters
    ----------
    k : int
        Number of nearest neighbours.
    in_feat : int
        Input feature size.
    out_feats : sequence of int
        Output sizes of the edge MLP layers.
    """

    def __init__(self, k: int, in_feat: int, out_feats: Sequence[int]) -> None:
        super().__init__()
        self.k = int(k)
        layers: list[nn.Module] = []
        in_chn = 2 * in_feat
        for out_chn in out_feats:
            layers += [
                nn.Conv2d(in_chn, out_chn, kernel_size=1, bias=False),
                nn.BatchNorm1d(out_chn),  # on (rows, channels); same state as BatchNorm2d
                nn.ReLU(),
            ]
            in_chn = out_chn
        self.edge_mlp = nn.Sequential(*layers)
        if in_feat == out_feats[-1]:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_feat, out_feats[-1], kernel_size=1, bias=False), nn.BatchNorm1d(out_feats[-1])
            )
        self.act = nn.ReLU()

    def forward(self, points: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Apply the block; ``points`` (N, D, P) define the graph, ``features`` (N, C, P)."""
        n, p = features.shape[0], features.shape[2]
        x = gather_neighbors(features, knn(points, self.k))  # (N*P*k, 2C) rows
        # the 1x1 convolutions run as matmuls on channels-last rows (no NCHW layout copies)
        for layer in self.edge_mlp:
            if isinstance(layer, nn.Conv2d):
                x = nn.functional.linear(x, layer.weight.flatten(1))
            else:
                x = layer(x)
        x = x.view(n, p, self.k, -1).mean(dim=2).transpose(1, 2)  # (N, C_out, P)
        return self.act(self.shortcut(features) + x)


class ParticleNet(nn.Module):
    """ParticleNet jet classifier (weaver-core architecture).

    Parameters
    ----------
    input_dims : int
        Number of per-particle input features ``C``.
    num_classes : int
        Number of output classes (logits, no softmax).
    conv_params : sequence of (int, sequence of int)
        ``(k, channels)`` per EdgeConv block. The first block builds the graph in
        the ``points`` space, later blocks in the previous block's feature space.
    fc_params : sequence of (int, float)
        ``(units, dropout)`` per hidden fully connected layer.
    use_fusion : bool, default False
        Concatenate all EdgeConv outputs and fuse them with a 1x1 conv block.
    use_fts_bn : bool, default True
        Apply ``BatchNorm1d`` to the input features.
    use_counts : bool, default True
        Average-pool over real particles only (divide by the particle count).
    trim_quantile : (float, float), optional
        In training mode, cut the particle axis to a random length quantile of
        the batch (see :func:`hepnn_coffea.nn.part.quantile_trim`; weaver-core
        uses ``(0.9, 1.02)``). Never applied in eval mode or while exporting.

    Notes
    -----
    With the defaults, ``input_dims=7`` and ``num_classes=2`` the model has
    366,160 parameters (same as weaver-core). Padded particles are zeroed and
    shifted by ``COORD_SHIFT`` in every k-NN space, so they never enter the
    neighbourhood of a real particle and do not affect the output (in eval mode).
    Every jet must have ``P > max(k)`` slots (padded or real).
    """

    def __init__(
        self,
        input_dims: int,
        num_classes: int,
        conv_params: Sequence[tuple[int, Sequence[int]]] = (
            (16, (64, 64, 64)),
            (16, (128, 128, 128)),
            (16, (256, 256, 256)),
        ),
        fc_params: Sequence[tuple[int, float]] = ((256, 0.1),),
        use_fusion: bool = False,
        use_fts_bn: bool = True,
        use_counts: bool = True,
        trim_quantile: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.trim_quantile = tuple(float(q) for q in trim_quantile) if trim_quantile is not None else None
        self.min_length = max(int(k) for k, _ in conv_params) + 1
        self.use_fts_bn = bool(use_fts_bn)
        self.use_counts = bool(use_counts)
        self.use_fusion = bool(use_fusion)
        self.bn_fts: nn.Module = nn.BatchNorm1d(input_dims) if use_fts_bn else nn.Identity()

        self.edge_convs = nn.ModuleList()
        in_feat = int(input_dims)
        for k, channels in conv_params:
            self.edge_convs.append(EdgeConvBlock(k=k, in_feat=in_feat, out_feats=channels))
            in_feat = channels[-1]

        if self.use_fusion:
            fusion_in = sum(channels[-1] for _, channels in conv_params)
            fusion_out = min(max((fusion_in // 128) * 128, 128), 1024)
            self.fusion_block: nn.Module | None = nn.Sequential(
                nn.Conv1d(fusion_in, fusion_out, kernel_size=1, bias=False),
                nn.BatchNorm1d(fusion_out),
                nn.ReLU(),
            )
            in_chn = fusion_out
        else:
            self.fusion_block = None
            in_chn = in_feat

        fcs: list[nn.Module] = []
        for units, drop_rate in fc_params:
            fcs.append(nn.Sequential(nn.Linear(in_chn, units), nn.ReLU(), FastDropout(drop_rate)))
            in_chn = units
        fcs.append(nn.Linear(in_chn, num_classes))
        self.fc = nn.Sequential(*fcs)

    def forward(self, points: torch.Tensor, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Compute class logits.

        Parameters
        ----------
        points : torch.Tensor
            Coordinates for the first k-NN graph (e.g. deta, dphi), shape ``(N, 2, P)``.
        features : torch.Tensor
            Per-particle features, shape ``(N, C, P)``.
        mask : torch.Tensor
            Particle mask, shape ``(N, 1, P)``; nonzero marks real particles.

        Returns
        -------
        torch.Tensor
            Logits, shape ``(N, num_classes)``.
        """
        if self.trim_quantile is not None and self.training and not _exporting():
            with torch.no_grad():
                keep, (points, features) = quantile_trim(
                    mask != 0, (points, features), self.trim_quantile, min_length=self.min_length
                )
            mask = keep
        mask = (mask != 0).to(features.dtype)
        points = points * mask
        features = features * mask
        coord_shift = (1.0 - mask) * COORD_SHIFT

        fts = self.bn_fts(features) * mask
        outputs: list[torch.Tensor] = []
        for i, conv in enumerate(self.edge_convs):
            pts = (points if i == 0 else fts) + coord_shift
            fts = conv(pts, fts) * mask
            if self.fusion_block is not None:
                outputs.append(fts)
        if self.fusion_block is not None:
            fts = self.fusion_block(torch.cat(outputs, dim=1)) * mask

        if self.use_counts:
            counts = mask.sum(dim=-1).clamp(min=1.0)  # (N, 1)
            x = fts.sum(dim=-1) / counts
        else:
            x = fts.mean(dim=-1)
        return self.fc(x)
