"""Hit-to-particle clustering with a transformer and bounded slots (the ILC clustering workflow).

Formulation (documented choice): **bounded slots**. A jet has at most ``K`` clusters: ``K - 1``
matchable slots and one fixed ``other`` slot that collects the hits of every smaller cluster
(the data config numbers the true clusters by descending energy and caps them at ``K``). Per
hit the network predicts soft assignment logits over the ``K`` slots; the slot numbering is
arbitrary, so :meth:`HitClusteringTransformer.loss` matches the ``K - 1`` predicted slots to
the ``K - 1`` true clusters per jet with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`) on the energy-weighted overlap
``sum_hits w_h p(h in slot a) [h in cluster b]`` and computes the assignment cross entropy with
the matched targets: the loss is invariant to any permutation of the matchable slots.

Architecture: hits (cells and tracks) are embedded and passed through pre-norm transformer
encoder blocks (padding masked); ``K`` learnt slot queries attend to the hits (one
cross-attention block) and give slot embeddings; the assignment logit of hit ``h`` to slot
``a`` is the scaled dot product of their embeddings. The per-cluster heads (particle type and
cluster energy / direction) run per hit on ``[hit embedding, soft-assigned slot embedding]``,
so every hit carries the prediction of its cluster.

Output: ONE per-point tensor ``(N, K + 9, P)`` so the generic per-point ONNX/inference path
serves it unchanged (channels = the data config's labels, in order):

========================  =====================================================================
``0 .. K-1``              slot assignment logits (``K - 1`` = other)
``K .. K+4``              particle-type logits of the hit's cluster (photon, electron, muon,
                          charged hadron, neutral hadron)
``K+5``                   ``log(1 + E_cluster / GeV)`` of the hit's cluster
``K+6, K+7``              cluster direction (deta, dphi to the jet axis)
``K+8``                   the hit's input energy (pass-through: hits -> clusters need it)
========================  =====================================================================

Cluster-level quantities are derived from the hits (:mod:`hepnn_coffea.evaluation.clustering`):
cluster = argmax slot, energy = sum of its hits' energies, type = energy-weighted vote.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["N_CLASSES", "PID_CLASSES", "HitClusteringTransformer", "hungarian_match"]

PID_CLASSES = ("photon", "electron", "muon", "charged_hadron", "neutral_hadron")
N_CLASSES = len(PID_CLASSES)
#: channels after the slots: PID logits, log energy, deta, dphi, hit energy
N_EXTRA = N_CLASSES + 4
#: the direction targets (radians / eta units) are learnt in units of this
DIRECTION_SCALE = 0.1


class _Attention(nn.Module):
    """Multi-head attention with a broadcast padding bias ``(N, 1, 1, P)`` (no ``(N*H, Q, P)`` mask
    tensor; plain matmul/softmax ops, so it exports to ONNX with dynamic axes)."""

    def __init__(self, dims: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dims % heads:
            raise TypeError(f"embed_dim {dims} is not divisible by num_heads {heads}")
        self.heads, self.head_dims = heads, dims // heads
        self.q, self.kv, self.out = nn.Linear(dims, dims), nn.Linear(dims, 2 * dims), nn.Linear(dims, dims)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, kv: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, q_len, dims = x.shape
        q = self.q(x).view(n, q_len, self.heads, self.head_dims).transpose(1, 2)
        k, v = self.kv(kv).view(n, -1, 2, self.heads, self.head_dims).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dims) + bias
        out = self.dropout(torch.softmax(scores, dim=-1)) @ v  # (N, H, Q, d)
        return self.out(out.transpose(1, 2).reshape(n, q_len, dims))


class _Block(nn.Module):
    """Pre-norm attention (self or cross) + feed-forward."""

    def __init__(self, dims: int, heads: int, ff_dims: int, dropout: float) -> None:
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_ff = nn.LayerNorm(dims), nn.LayerNorm(dims), nn.LayerNorm(dims)
        self.attn = _Attention(dims, heads, dropout)
        self.ff = nn.Sequential(nn.Linear(dims, ff_dims), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dims, dims))

    def forward(self, x: torch.Tensor, kv: torch.Tensor | None, bias: torch.Tensor) -> torch.Tensor:
        q = self.norm_q(x)
        x = x + self.attn(q, q if kv is None else self.norm_kv(kv), bias)
        return x + self.ff(self.norm_ff(x))


def hungarian_match(overlap: np.ndarray) -> np.ndarray:
    """Per jet, the slot matched to each true cluster, maximising the total overlap.

    ``overlap`` ``(N, S, T)`` (slot x true cluster, S >= T) -> ``(N, T)`` slot index per true cluster.
    """
    from scipy.optimize import linear_sum_assignment

    out = np.empty(overlap.shape[::2], dtype=np.int64)
    for n, matrix in enumerate(overlap):
        rows, cols = linear_sum_assignment(matrix, maximize=True)
        out[n, cols] = rows
    return out


class HitClusteringTransformer(nn.Module):
    """Transformer assigning the hits of a jet to ``K`` bounded slots, with per-cluster heads.

    Parameters
    ----------
    input_dims
        Features per hit.
    num_outputs
        Output channels ``K + 9`` (the number of labels); ``K = num_outputs - 9``.
    embed_dim, num_layers, num_heads, ff_dim, dropout
        Transformer encoder size (hits), also used by the slot cross-attention.
    slot_layers
        Cross-attention blocks of the slot queries over the hits.
    assign_weight, pid_weight, energy_weight, direction_weight
        Weights of the loss terms (assignment CE, particle-type CE, log-energy MSE, direction MSE).
    energy_weighting
        Hit weight in every term: ``f * E_hit / E_jet + (1 - f) / n_hits`` (tracks have E = 0 and
        count through the uniform part).

    Notes
    -----
    Inputs ``features`` ``(N, C, P)``, ``energy`` ``(N, 1, P)`` (raw hit energy), ``mask``
    ``(N, 1, P)``. Output ``(N, K + 9, P)``, 0 on padding. Targets for :meth:`loss`: the data
    config's labels ``(N, K + 9, P)`` (one-hot slot, one-hot type, log energy, deta, dphi,
    hit energy; -1 on padding).
    """

    def __init__(self, input_dims: int, num_outputs: int, embed_dim: int = 64, num_layers: int = 2,
                 num_heads: int = 4, ff_dim: int = 128, slot_layers: int = 1, dropout: float = 0.0,
                 assign_weight: float = 1.0, pid_weight: float = 0.5, energy_weight: float = 0.5,
                 direction_weight: float = 0.5, energy_weighting: float = 0.5) -> None:  # fmt: skip
        super().__init__()
        self.n_slots = int(num_outputs) - N_EXTRA
        if self.n_slots < 2:
            raise TypeError(f"num_outputs must be K + {N_EXTRA} with K >= 2 slots, got {num_outputs}")
        self.weights = {"assign": float(assign_weight), "pid": float(pid_weight), "energy": float(energy_weight),
                        "direction": float(direction_weight)}  # fmt: skip
        self.energy_weighting = float(energy_weighting)
        self.embed = nn.Sequential(nn.Linear(input_dims, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
        self.encoder = nn.ModuleList(_Block(embed_dim, num_heads, ff_dim, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(embed_dim)
        self.slot_queries = nn.Parameter(torch.randn(self.n_slots, embed_dim) / math.sqrt(embed_dim))
        self.slot_blocks = nn.ModuleList(_Block(embed_dim, num_heads, ff_dim, dropout) for _ in range(slot_layers))
        self.hit_proj, self.slot_proj = nn.Linear(embed_dim, embed_dim), nn.Linear(embed_dim, embed_dim)
        self.head = nn.Sequential(nn.Linear(2 * embed_dim, ff_dim), nn.GELU(), nn.Linear(ff_dim, N_CLASSES + 3))

    def forward(self, features: torch.Tensor, energy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        real = (mask != 0).to(features.dtype)  # (N, 1, P)
        pad = real[:, 0, :] == 0
        first = torch.arange(pad.shape[1], device=pad.device)[None, :] == 0
        pad = pad & ~(pad.all(dim=1, keepdim=True) & first)  # an empty jet attends to its first slot
        bias = torch.zeros_like(pad, dtype=features.dtype).masked_fill(pad, float("-inf"))[:, None, None, :]
        h = self.embed((features * real).transpose(1, 2))  # (N, P, D)
        for block in self.encoder:
            h = block(h, None, bias)
        h = self.norm(h)
        slots = self.slot_queries[None].expand(h.shape[0], -1, -1)
        for block in self.slot_blocks:
            slots = block(slots, h, bias)
        logits = torch.einsum("npd,nkd->nkp", self.hit_proj(h), self.slot_proj(slots)) / math.sqrt(h.shape[-1])
        assigned = torch.einsum("nkp,nkd->npd", torch.softmax(logits, dim=1), slots)
        heads = self.head(torch.cat([h, assigned], dim=-1)).transpose(1, 2)  # (N, 8, P)
        return torch.cat([logits, heads, energy], dim=1) * real

    # ------------------------------------------------------------------ loss
    def split(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named channel blocks of an output or target tensor."""
        k = self.n_slots
        return {"slots": tensor[:, :k], "pid": tensor[:, k : k + N_CLASSES], "log_energy": tensor[:, k + N_CLASSES],
                "direction": tensor[:, k + N_CLASSES + 1 : k + N_CLASSES + 3], "energy": tensor[:, -1]}  # fmt: skip

    def hit_weights(self, target: torch.Tensor) -> torch.Tensor:
        """Per-hit weight ``(N, P)``, each jet's weights summing to 1 (0 on padding)."""
        energy = target[:, -1]
        valid = (energy >= 0).to(target.dtype)
        e = energy.clamp(min=0) * valid
        n = valid.sum(1, keepdim=True).clamp(min=1)
        total = e.sum(1, keepdim=True)
        frac = torch.where(total > 0, e / total.clamp(min=1e-12), valid / n)
        return self.energy_weighting * frac + (1 - self.energy_weighting) * valid / n

    def match(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Slot targets permuted to the Hungarian matching (``(N, K, P)``, the other slot fixed)."""
        w = self.hit_weights(target)
        true = self.split(target)["slots"].clamp(min=0)
        prob = torch.softmax(self.split(pred)["slots"].detach().float(), dim=1)
        m = self.n_slots - 1
        overlap = torch.einsum("nap,nbp,np->nab", prob[:, :m], true[:, :m].float(), w.float())
        slot_of = torch.from_numpy(hungarian_match(overlap.cpu().numpy())).to(pred.device)  # (N, m)
        matched = torch.zeros_like(true)
        matched.scatter_(1, slot_of[:, :, None].expand(-1, -1, true.shape[2]), true[:, :m])
        matched[:, m] = true[:, m]
        return matched

    def loss_terms(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-jet loss terms ``(N,)``: assignment, pid, energy, direction."""
        w = self.hit_weights(target)
        p, t = self.split(pred), self.split(target)
        assign = -(self.match(pred, target) * F.log_softmax(p["slots"], dim=1)).sum(1)
        pid_t = t["pid"].clamp(min=0)
        has_pid = (pid_t.sum(1) > 0).to(w.dtype)
        pid = -(pid_t * F.log_softmax(p["pid"], dim=1)).sum(1)
        wp = w * has_pid
        energy = (p["log_energy"] - t["log_energy"].clamp(min=0)) ** 2
        direction = ((p["direction"] - t["direction"]) / DIRECTION_SCALE).pow(2).sum(1)
        direction = torch.where(w > 0, direction, torch.zeros_like(direction))  # padding targets are -1
        return {
            "assign": (w * assign).sum(1),
            "pid": (wp * pid).sum(1) / wp.sum(1).clamp(min=1e-12),
            "energy": (w * energy).sum(1),
            "direction": (w * direction).sum(1),
        }

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted sum of :meth:`loss_terms`, per jet ``(N,)``."""
        terms = self.loss_terms(pred, target)
        return sum(self.weights[k] * v for k, v in terms.items())
