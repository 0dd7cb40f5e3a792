"""Particle Transformer (ParT): jet tagging with pairwise-biased self-attention.

Reference: H. Qu, C. Li, S. Qian, "Particle Transformer for Jet Tagging",
ICML 2022, arXiv:2202.03772. Layer sizes and the parameter count follow
weaver-core's ``ParticleTransformer`` (2,141,134 parameters for 7 input
features and 2 classes). Attention is written with plain tensor ops so the model
exports to ONNX (TorchScript exporter) with dynamic batch and particle axes.

Architecture
------------
* particle embedding: ``BatchNorm1d`` then ``[LayerNorm, Linear, GELU]`` x 3
  (128-512-128);
* interaction embedding: the pairwise features ``ln Delta, ln kT, ln z, ln m^2``
  computed from the four-vectors, ``BatchNorm`` then 1x1 convolutions
  (``Conv + BN + GELU``, 64-64-64, then ``Conv + BN`` to ``num_heads``
  channels) giving one additive attention bias per head and particle pair;
* 8 particle-attention blocks and 2 class-attention blocks (learnable class
  token), NormFormer style: post-attention and post-activation LayerNorms,
  per-head scaling of the attention outputs and a learnable residual scale;
* final ``LayerNorm`` and a linear classifier.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ParticleTransformer", "ParticleAttentionBlock", "PairEmbed", "pairwise_lv_features"]


def _activation(name: str) -> nn.Module:
    if name == "gelu":
        return nn.GELU()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}; choose 'gelu' or 'relu'")


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


class PairEmbed(nn.Module):
    """Embed pairwise four-vector features into per-head attention biases.

    Parameters
    ----------
    input_dims : int
        Number of pairwise features (4 supported: ``ln kT, ln z, ln Delta, ln m^2``).
    dims : sequence of int
        Output channels of the 1x1 convolutions; the last one is the number of
        attention heads. No activation follows the last layer.
    activation : str, default "gelu"
    eps : float, default 1e-8
    """

    def __init__(
        self, input_dims: int, dims: Sequence[int], activation: str = "gelu", eps: float = 1e-8
    ) -> None:
        super().__init__()
        if input_dims != 4:
            raise ValueError("only the 4 ParT pairwise features are implemented (pair_input_dims=4)")
        self.eps = float(eps)
        layers: list[nn.Module] = [nn.BatchNorm2d(input_dims)]
        in_dim = input_dims
        for i, dim in enumerate(dims):
            layers += [nn.Conv2d(in_dim, dim, kernel_size=1), nn.BatchNorm2d(dim)]
            if i < len(dims) - 1:
                layers.append(_activation(activation))
            in_dim = dim
        self.embed = nn.Sequential(*layers)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """Map four-vectors ``(N, 4, P)`` to biases ``(N, heads, P, P)``."""
        with torch.no_grad():
            fts = pairwise_lv_features(vectors.unsqueeze(-1), vectors.unsqueeze(-2), eps=self.eps)
        return self.embed(fts)


class ParticleAttentionBlock(nn.Module):
    """NormFormer-style transformer block used for particle and class attention.

    Parameters
    ----------
    embed_dim : int
    num_heads : int
    ffn_ratio : int, default 4
    dropout, attn_dropout, activation_dropout : float
        Dropout on the block outputs, on the attention weights and after the
        MLP activation.
    activation : str, default "gelu"
    """

    def __init__(
        self,
        embed_dim: int = 128,
        num_heads: int = 8,
        ffn_ratio: int = 4,
        dropout: float = 0.1,
        attn_dropout: float = 0.1,
        activation_dropout: float = 0.1,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        ffn_dim = embed_dim * ffn_ratio

        self.pre_attn_norm = nn.LayerNorm(embed_dim)
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.head_scale = nn.Parameter(torch.ones(num_heads))
        self.post_attn_norm = nn.LayerNorm(embed_dim)
        self.attn_drop = nn.Dropout(attn_dropout)
        self.dropout = nn.Dropout(dropout)

        self.pre_fc_norm = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, ffn_dim)
        self.act = _activation(activation)
        self.act_drop = nn.Dropout(activation_dropout)
        self.post_fc_norm = nn.LayerNorm(ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, embed_dim)
        self.resid_scale = nn.Parameter(torch.ones(embed_dim))

        nn.init.xavier_uniform_(self.qkv.weight)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.out_proj.bias)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        # (N, L, C) -> (N, H, L, D)
        return t.reshape(t.shape[0], -1, self.num_heads, self.head_dim).transpose(1, 2)

    def _attention(
        self, q_in: torch.Tensor, kv_in: torch.Tensor, key_pad: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        w_q, w_k, w_v = self.qkv.weight.chunk(3, dim=0)
        b_q, b_k, b_v = self.qkv.bias.chunk(3, dim=0)
        q = self._split(nn.functional.linear(q_in, w_q, b_q)) * self.head_dim**-0.5
        k = self._split(nn.functional.linear(kv_in, w_k, b_k))
        v = self._split(nn.functional.linear(kv_in, w_v, b_v))
        scores = torch.matmul(q, k.transpose(-1, -2))  # (N, H, Lq, Lk)
        if bias is not None:
            scores = scores + bias
        scores = scores.masked_fill(key_pad[:, None, None, :], torch.finfo(scores.dtype).min)
        attn = self.attn_drop(torch.softmax(scores, dim=-1))
        out = torch.matmul(attn, v) * self.head_scale.view(1, -1, 1, 1)  # per-head scaling
        out = out.transpose(1, 2).reshape(q_in.shape[0], -1, self.embed_dim)
        return self.out_proj(out)

    def forward(
        self,
        x: torch.Tensor,
        key_pad: torch.Tensor,
        bias: torch.Tensor | None = None,
        x_cls: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Apply the block.

        Parameters
        ----------
        x : torch.Tensor
            Particle embeddings, shape ``(N, P, C)``.
        key_pad : torch.Tensor
            Bool ``(N, P)``, True for padded particles (never attended to).
        bias : torch.Tensor, optional
            Additive attention bias ``(N, H, P, P)`` (particle attention only).
        x_cls : torch.Tensor, optional
            Class token ``(N, 1, C)``; if given, the block performs class attention
            (the token attends to itself and all particles) and returns the
            updated token.

        Returns
        -------
        torch.Tensor
            Updated ``x`` ``(N, P, C)``, or updated ``x_cls`` ``(N, 1, C)``.
        """
        if x_cls is not None:
            residual = x_cls
            u = self.pre_attn_norm(torch.cat((x_cls, x), dim=1))
            key_pad = torch.cat((torch.zeros_like(key_pad[:, :1]), key_pad), dim=1)
            h = self._attention(u[:, :1], u, key_pad, None)
        else:
            residual = x
            u = self.pre_attn_norm(x)
            h = self._attention(u, u, key_pad, bias)
        h = self.dropout(self.post_attn_norm(h)) + residual

        residual = h
        y = self.act_drop(self.act(self.fc1(self.pre_fc_norm(h))))
        y = self.dropout(self.fc2(self.post_fc_norm(y)))
        return y + self.resid_scale * residual


class ParticleTransformer(nn.Module):
    """Particle Transformer jet classifier (ParT, arXiv:2202.03772).

    Parameters
    ----------
    input_dims : int
        Number of per-particle input features ``C``.
    num_classes : int
        Number of output classes (logits, no softmax).
    pair_input_dims : int, default 4
        Number of pairwise features computed from the four-vectors (must be 4).
    embed_dims : sequence of int, default (128, 512, 128)
        Particle-embedding MLP sizes; the last one is the transformer width.
    pair_embed_dims : sequence of int, default (64, 64, 64)
        Interaction-embedding sizes (a final layer maps to ``num_heads``).
    num_heads : int, default 8
    num_layers : int, default 8
        Particle-attention blocks (dropout 0.1).
    num_cls_layers : int, default 2
        Class-attention blocks (no dropout).
    fc_params : sequence of (int, float), default ()
        ``(units, dropout)`` per hidden layer of the classifier head.
    activation : str, default "gelu"
    trim : bool, default True
        In training mode, drop padding slots beyond the longest jet of the batch.
        Never applied in eval mode or while tracing/exporting.
    use_amp : bool, default False
        Run under ``torch.autocast`` (float16) on CUDA; ignored on CPU.

    Notes
    -----
    With the defaults, ``input_dims=7`` and ``num_classes=2`` the model has
    2,141,134 parameters (same as weaver-core). Padded particles are zeroed,
    excluded as attention keys and from the pair biases, so they do not affect
    the output (in eval mode). Jets need at least one real particle.
    """

    def __init__(
        self,
        input_dims: int,
        num_classes: int,
        pair_input_dims: int = 4,
        embed_dims: Sequence[int] = (128, 512, 128),
        pair_embed_dims: Sequence[int] = (64, 64, 64),
        num_heads: int = 8,
        num_layers: int = 8,
        num_cls_layers: int = 2,
        fc_params: Sequence[tuple[int, float]] = (),
        activation: str = "gelu",
        trim: bool = True,
        use_amp: bool = False,
    ) -> None:
        super().__init__()
        self.trim = bool(trim)
        self.use_amp = bool(use_amp)
        embed_dims = list(embed_dims)
        if not embed_dims:
            raise ValueError("embed_dims must not be empty")
        embed_dim = embed_dims[-1]

        self.input_bn = nn.BatchNorm1d(input_dims)
        layers: list[nn.Module] = []
        in_dim = input_dims
        for dim in embed_dims:
            layers += [nn.LayerNorm(in_dim), nn.Linear(in_dim, dim), _activation(activation)]
            in_dim = dim
        self.embed = nn.Sequential(*layers)

        self.pair_embed = PairEmbed(pair_input_dims, [*pair_embed_dims, num_heads], activation=activation)
        self.blocks = nn.ModuleList(
            ParticleAttentionBlock(embed_dim, num_heads, activation=activation) for _ in range(num_layers)
        )
        self.cls_blocks = nn.ModuleList(
            ParticleAttentionBlock(embed_dim, num_heads, dropout=0.0, attn_dropout=0.0,
                                   activation_dropout=0.0, activation=activation)
            for _ in range(num_cls_layers)
        )  # fmt: skip
        self.norm = nn.LayerNorm(embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)

        fcs: list[nn.Module] = []
        in_dim = embed_dim
        for units, drop_rate in fc_params:
            fcs.append(nn.Sequential(nn.Linear(in_dim, units), nn.ReLU(), nn.Dropout(drop_rate)))
            in_dim = units
        fcs.append(nn.Linear(in_dim, num_classes))
        self.fc = nn.Sequential(*fcs)

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay."""
        return {"cls_token"}

    @staticmethod
    def _trim(
        features: torch.Tensor, vectors: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Move real particles to the front (stable) and cut the common padding tail."""
        maxlen = max(int(mask.sum(dim=-1).max()), 1)
        if maxlen >= mask.shape[-1]:
            return features, vectors, mask
        order = torch.sort(mask.to(torch.int8), dim=-1, descending=True, stable=True)[1][..., :maxlen]
        return (
            features.gather(-1, order.expand(-1, features.shape[1], -1)),
            vectors.gather(-1, order.expand(-1, vectors.shape[1], -1)),
            mask.gather(-1, order),
        )

    def forward(self, features: torch.Tensor, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Compute class logits.

        Parameters
        ----------
        features : torch.Tensor
            Per-particle features, shape ``(N, C, P)``.
        vectors : torch.Tensor
            Four-vectors ``(px, py, pz, E)``, shape ``(N, 4, P)``.
        mask : torch.Tensor
            Particle mask, shape ``(N, 1, P)``; nonzero marks real particles.

        Returns
        -------
        torch.Tensor
            Logits, shape ``(N, num_classes)``.
        """
        mask = mask != 0
        exporting = torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
        if self.trim and self.training and not exporting:
            with torch.no_grad():
                features, vectors, mask = self._trim(features, vectors, mask)
        features = features.masked_fill(~mask, 0.0)  # clears any junk (NaN included) in padding
        vectors = vectors.masked_fill(~mask, 0.0)
        key_pad = ~mask.squeeze(1)  # (N, P)
        pair_mask = mask.unsqueeze(-1) & mask.unsqueeze(-2)  # (N, 1, P, P)

        amp = self.use_amp and features.is_cuda and not exporting
        ctx = torch.autocast(device_type="cuda", dtype=torch.float16) if amp else contextlib.nullcontext()
        with ctx:
            x = self.embed(self.input_bn(features).transpose(1, 2))  # (N, P, C)
            x = x.masked_fill(key_pad.unsqueeze(-1), 0.0)
            bias = self.pair_embed(vectors).masked_fill(~pair_mask, 0.0)  # (N, H, P, P)

            for block in self.blocks:
                x = block(x, key_pad, bias=bias)
            cls = self.cls_token.expand(x.shape[0], -1, -1)
            for block in self.cls_blocks:
                cls = block(x, key_pad, x_cls=cls)
            return self.fc(self.norm(cls.squeeze(1)))
