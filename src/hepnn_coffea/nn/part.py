"""Particle Transformer (ParT): jet tagging with pairwise-biased self-attention.

Reference: H. Qu, C. Li, S. Qian, "Particle Transformer for Jet Tagging", ICML 2022,
arXiv:2202.03772. Layers, parameter count (2,141,134 for 7 features and 2 classes)
and initialization follow weaver-core's ``ParticleTransformer``: particle embedding
``BatchNorm1d`` + ``[LayerNorm, Linear, GELU]`` x 3 (128-512-128); interaction
embedding of ``ln kT, ln z, ln Delta, ln m^2`` with pointwise ``Conv + BN + GELU``
(64-64-64-heads) into one additive attention bias per head and pair; 8 NormFormer
particle-attention blocks and 2 class-attention blocks; ``LayerNorm`` + linear head.
In eager mode only the real lower-triangle pairs are embedded (symmetric features);
while exporting, every pair of the grid is, so the ONNX graph has dynamic batch and
particle axes and plain ops only.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
from torch import nn

from hepnn_coffea.nn.dropout import FastDropout
from hepnn_coffea.nn.pairwise import PairEmbed, activation_layer, pairwise_lv_features
from hepnn_coffea.nn.trimming import exporting as _exporting
from hepnn_coffea.nn.trimming import quantile_trim

__all__ = [
    "ParticleTransformer",
    "ParticleAttentionBlock",
    "PairEmbed",
    "pairwise_lv_features",
    "quantile_trim",
]


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
        self.attn_drop = FastDropout(attn_dropout)
        self.dropout = FastDropout(dropout)

        self.pre_fc_norm = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, ffn_dim)
        self.act = activation_layer(activation)
        self.act_drop = FastDropout(activation_dropout)
        self.post_fc_norm = nn.LayerNorm(ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, embed_dim)
        self.resid_scale = nn.Parameter(torch.ones(embed_dim))

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        # (N, L, m*C) -> (N, m*H, L, D)
        return t.reshape(t.shape[0], t.shape[1], -1, self.head_dim).transpose(1, 2)

    def _attention(self, q_in: torch.Tensor, kv_in: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        if q_in is kv_in:  # self-attention: one packed projection
            q, k, v = self._split(self.qkv(q_in)).chunk(3, dim=1)
        else:
            w_q, w_kv = self.qkv.weight.split((self.embed_dim, 2 * self.embed_dim))
            b_q, b_kv = self.qkv.bias.split((self.embed_dim, 2 * self.embed_dim))
            q = self._split(nn.functional.linear(q_in, w_q, b_q))
            k, v = self._split(nn.functional.linear(kv_in, w_kv, b_kv)).chunk(2, dim=1)
        n, h, lq, d = q.shape
        if attn_mask.shape[1:3] == (h, lq):  # bias + scaled q k^T in one baddbmm (no extra pass over scores)
            scores = torch.baddbmm(
                attn_mask.reshape(n * h, lq, -1),
                q.reshape(n * h, lq, d),
                k.reshape(n * h, -1, d).transpose(1, 2),
                alpha=d**-0.5,
            ).view(n, h, lq, -1)
        else:  # class attention: the mask broadcasts over heads
            scores = torch.matmul(q * d**-0.5, k.transpose(-1, -2)) + attn_mask  # (N, H, Lq, Lk)
        out = torch.matmul(self.attn_drop(torch.softmax(scores, dim=-1)), v)
        out = self.out_proj(out.transpose(1, 2).reshape(q_in.shape[0], -1, self.embed_dim))
        # per-head scaling of the projected output (weaver-core's c_attn)
        return (out.unflatten(-1, (self.num_heads, self.head_dim)) * self.head_scale.unsqueeze(-1)).flatten(
            -2
        )

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor, x_cls: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Apply the block.

        ``x``: particle embeddings ``(N, P, C)``. ``attn_mask``: additive mask, the pair
        biases ``(N, H, P, P)`` with a large negative value at padded keys, or for class
        attention ``(N, 1, 1, 1+P)``. With the class token ``x_cls`` ``(N, 1, C)`` the
        block performs class attention (the token attends to itself and all particles)
        and returns the updated token, otherwise the updated ``x``.
        """
        if x_cls is not None:
            residual = x_cls
            h = self._attention(x_cls, self.pre_attn_norm(torch.cat((x_cls, x), dim=1)), attn_mask)
        else:
            residual = x
            u = self.pre_attn_norm(x)
            h = self._attention(u, u, attn_mask)
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
    pair_final_activation : bool, default True
        Activation after the last interaction-embedding layer (weaver-core's
        ``use_pre_activation_pair=False``, ParT's reference setting).
    num_heads : int, default 8
    num_layers : int, default 8
        Particle-attention blocks (dropout 0.1).
    num_cls_layers : int, default 2
        Class-attention blocks (no dropout).
    fc_params : sequence of (int, float), default ()
        ``(units, dropout)`` per hidden layer of the classifier head.
    activation : str, default "gelu"
    trim : bool, default True
        In training mode, drop padding slots beyond the longest jet of the batch
        (or, with ``trim_quantile``, beyond a random length quantile). Never
        applied in eval mode or while tracing/exporting.
    trim_quantile : (float, float), optional
        Training-time length quantile range, see :func:`quantile_trim`;
        weaver-core uses ``(0.9, 1.02)``.
    use_amp : bool, default False
        Run under ``torch.autocast`` (float16) on CUDA; ignored on CPU.

    Notes
    -----
    With the defaults, ``input_dims=7`` and ``num_classes=2`` the model has
    2,141,134 parameters (same as weaver-core), initialized as weaver-core does
    (``moco`` scheme and ``fix_init``). Padded particles are zeroed, excluded as
    attention keys and from the pair biases, so they do not affect the output (in
    eval mode). Jets need at least one real particle.
    """

    def __init__(
        self,
        input_dims: int,
        num_classes: int,
        pair_input_dims: int = 4,
        embed_dims: Sequence[int] = (128, 512, 128),
        pair_embed_dims: Sequence[int] = (64, 64, 64),
        pair_final_activation: bool = True,
        num_heads: int = 8,
        num_layers: int = 8,
        num_cls_layers: int = 2,
        fc_params: Sequence[tuple[int, float]] = (),
        activation: str = "gelu",
        trim: bool = True,
        trim_quantile: Sequence[float] | None = None,
        use_amp: bool = False,
    ) -> None:
        super().__init__()
        self.trim = bool(trim)
        self.trim_quantile = tuple(float(q) for q in trim_quantile) if trim_quantile is not None else None
        self.use_amp = bool(use_amp)
        embed_dims = list(embed_dims)
        if not embed_dims:
            raise ValueError("embed_dims must not be empty")
        embed_dim = embed_dims[-1]

        self.input_bn = nn.BatchNorm1d(input_dims)
        layers: list[nn.Module] = []
        in_dim = input_dims
        for dim in embed_dims:
            layers += [nn.LayerNorm(in_dim), nn.Linear(in_dim, dim), activation_layer(activation)]
            in_dim = dim
        self.embed = nn.Sequential(*layers)

        self.pair_embed = PairEmbed(
            pair_input_dims,
            [*pair_embed_dims, num_heads],
            activation=activation,
            final_activation=pair_final_activation,
        )
        self.blocks = nn.ModuleList(
            ParticleAttentionBlock(embed_dim, num_heads, activation=activation) for _ in range(num_layers)
        )
        self.cls_blocks = nn.ModuleList(
            ParticleAttentionBlock(
                embed_dim,
                num_heads,
                dropout=0.0,
                attn_dropout=0.0,
                activation_dropout=0.0,
                activation=activation,
            )
            for _ in range(num_cls_layers)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        fcs: list[nn.Module] = []
        in_dim = embed_dim
        for units, drop_rate in fc_params:
            fcs.append(nn.Sequential(nn.Linear(in_dim, units), nn.ReLU(), FastDropout(drop_rate)))
            in_dim = units
        fcs.append(nn.Linear(in_dim, num_classes))
        self.fc = nn.Sequential(*fcs)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """weaver-core's ``moco`` init (xavier, Q/K/V separately, zero biases) and ``fix_init``."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                if name.endswith(".qkv"):
                    for w in module.weight.chunk(3, dim=0):
                        nn.init.xavier_uniform_(w)
                else:
                    nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for layer_id, block in enumerate(self.blocks, start=1):
            block.out_proj.weight.div_(math.sqrt(2.0 * layer_id))
            block.fc2.weight.div_(math.sqrt(2.0 * layer_id))
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay."""
        return {"cls_token"}

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
        exporting = _exporting()
        if self.trim and self.training and not exporting:
            with torch.no_grad():
                q_range = self.trim_quantile or (1.0, 1.0)  # (1, 1): cut to the longest jet
                mask, (features, vectors) = quantile_trim(mask, (features, vectors), q_range)
        features = features.masked_fill(~mask, 0.0)  # clears any junk (NaN included) in padding
        vectors = vectors.masked_fill(~mask, 0.0)
        key_pad = ~mask  # (N, 1, P)

        amp = self.use_amp and features.is_cuda and not exporting
        ctx = torch.autocast(device_type="cuda", dtype=torch.float16) if amp else contextlib.nullcontext()
        with ctx:
            x = self.embed(self.input_bn(features).transpose(1, 2))  # (N, P, C)
            x = x.masked_fill(key_pad.transpose(1, 2), 0.0)
            bias = self.pair_embed(vectors, mask, full_grid=exporting)  # (N, H, P, P), 0 at padded pairs
            neg = torch.finfo(bias.dtype).min
            attn_mask = bias.masked_fill(key_pad.unsqueeze(1), neg)  # padded keys never attended to
            for block in self.blocks:
                x = block(x, attn_mask)
            cls_pad = torch.cat((torch.zeros_like(key_pad[..., :1]), key_pad), dim=-1).unsqueeze(1)
            cls_mask = torch.zeros(cls_pad.shape, dtype=x.dtype, device=x.device).masked_fill(cls_pad, neg)
            cls = self.cls_token.expand(x.shape[0], -1, -1)
            for block in self.cls_blocks:
                cls = block(x, cls_mask, x_cls=cls)
            return self.fc(self.norm(cls.squeeze(1)))
