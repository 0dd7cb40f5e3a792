"""Hit-to-particle clustering with a transformer and bounded, hit-seeded slots (the ILC clustering workflow).

Formulation (documented choice): **bounded slots**. A jet has at most ``K`` clusters: ``K - 1``
matchable slots and one fixed ``other`` slot that collects the hits of every smaller cluster
(the data config numbers the true clusters by descending energy and caps them at ``K``). Per
hit the network predicts assignment logits over the ``K`` slots; the slot numbering is
arbitrary, so :meth:`HitClusteringTransformer.loss` matches the ``K - 1`` predicted slots to the
``K - 1`` true clusters per jet with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`) on the energy-weighted overlap
``sum_hits w_h p(h in slot a) [h in cluster b]`` and takes the per-hit cross entropy over the
slots with the matched targets (energy-weighted hits): the loss is invariant to any permutation
of the matchable slots.

Why seeded slots: with ``K`` free learnt slot queries every matchable slot starts identical, the
matching is arbitrary, and the only consistent target is the fixed ``other`` slot, so the
network collapses onto it (every hit in ``other``). Here each matchable slot starts from a
**seed hit**: a per-hit seed score (trained with a binary cross entropy towards the most
energetic cell of each of the ``K - 1`` largest true clusters) picks the ``K - 1`` best hits
(:func:`torch.topk`, no gradient through the choice); their embeddings and positions are the
slot queries, refined by slot self-attention (duplicate seeds can split the work) and
cross-attention over the hits. Attention between hits and between slots and hits carries a
**locality bias** ``-a * dR^2`` on the hits' (deta, dphi) (learnt ``a`` per head, started at
several radii), and the assignment logits a bounded bonus ``b * exp(-dR^2 / r^2)`` towards the
slot's seed (learnt ``b``, ``r``), so a slot prefers the hits around its seed.

Architecture: hits (cells and tracks) are embedded and passed through pre-norm transformer
encoder blocks (padding masked); the assignment logit of hit ``h`` to slot ``a`` is the scaled
dot product of their embeddings minus the locality term (the ``other`` slot is a learnt query
without position). The per-cluster heads (particle type and cluster energy / direction) run per
hit on ``[hit embedding, soft-assigned slot embedding]``, so every hit carries the prediction of
its cluster. In eager mode the point axis is cut to the batch's longest jet (hits are padded at
the end) and the output padded back; traced/exported graphs keep the full axis.

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

Cluster-level quantities are derived from the hits (:mod:`hepnn_coffea.calo.clustering_eval`):
cluster = argmax slot, energy = sum of its hits' energies, type = energy-weighted vote.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hepnn_coffea.calo.geometry import PID_CLASSES
from hepnn_coffea.nn.trimming import exporting

__all__ = ["N_CLASSES", "PID_CLASSES", "HitClusteringTransformer", "hungarian_match", "seed_targets"]

N_CLASSES = len(PID_CLASSES)
#: channels after the slots: PID logits, log energy, deta, dphi, hit energy
N_EXTRA = N_CLASSES + 4
#: the direction targets (radians / eta units) are learnt in units of this
DIRECTION_SCALE = 0.1


def _inv_softplus(x: float) -> float:
    return math.log(math.expm1(x)) if x > 0 else -10.0


class _Attention(nn.Module):
    """Multi-head attention with an additive bias broadcastable to ``(N, H, Q, P)`` (padding and
    locality; plain matmul/softmax ops, so it exports to ONNX with dynamic axes)."""

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
        self.ff = nn.Sequential(
            nn.Linear(dims, ff_dims), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dims, dims)
        )

    def forward(self, x: torch.Tensor, kv: torch.Tensor | None, bias: torch.Tensor) -> torch.Tensor:
        q = self.norm_q(x)
        x = x + self.attn(q, q if kv is None else self.norm_kv(kv), bias)
        return x + self.ff(self.norm_ff(x))


class _Locality(nn.Module):
    """Per-head bias ``-a_h * |x_q - x_k|^2`` with learnt ``a_h = softplus(.) >= 0``."""

    def __init__(self, heads: int, radii: Sequence[float]) -> None:
        super().__init__()
        start = [
            1.0 / float(radii[i % len(radii)]) ** 2 if radii[i % len(radii)] > 0 else 0.0
            for i in range(heads)
        ]
        self.raw = nn.Parameter(torch.tensor([_inv_softplus(a) for a in start]))

    def forward(self, xq: torch.Tensor, xk: torch.Tensor) -> torch.Tensor:
        d2 = (xq[:, :, None, :] - xk[:, None, :, :]).pow(2).sum(-1)  # (N, Q, P)
        return -F.softplus(self.raw)[None, :, None, None] * d2[:, None]


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


def seed_targets(slots: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
    """``(N, P)`` 1 at the most energetic hit of every matchable true cluster (``slots`` ``(N, K, P)``
    one-hot targets, the last slot = other; ``energy`` ``(N, P)``, tracks 0), else 0."""
    true = slots[:, :-1].clamp(min=0)
    score = true * (energy.clamp(min=0)[:, None] + 1e-6)  # a track-only cluster seeds on its track
    best = score.argmax(-1, keepdim=True)  # (N, K-1, 1)
    present = (true.sum(-1, keepdim=True) > 0).to(slots.dtype)
    out = torch.zeros_like(energy)
    return out.scatter_add(1, best[..., 0], present[..., 0]).clamp(max=1)


class HitClusteringTransformer(nn.Module):
    """Transformer assigning the hits of a jet to ``K`` hit-seeded bounded slots, with per-cluster heads.

    Parameters
    ----------
    input_dims
        Features per hit.
    num_outputs
        Output channels ``K + 9`` (the number of labels); ``K = num_outputs - 9``.
    embed_dim, num_layers, num_heads, ff_dim, dropout
        Transformer encoder size (hits), also used by the slot blocks.
    slot_layers
        Slot refinement blocks (slot self-attention + cross-attention over the hits).
    coord_channels
        The two feature channels holding the hit position (deta, dphi, as scaled by the data config).
    radii
        Starting locality radii per head (in the scaled position units; 0 = no locality), cycled
        over the heads; the first also starts the assignment locality.
    assign_weight, pid_weight, energy_weight, direction_weight, seed_weight
        Weights of the loss terms (assignment CE, particle-type CE, log-energy MSE, direction MSE,
        seed-score BCE).
    energy_weighting
        Hit weight in every term: ``f * E_hit / E_jet + (1 - f) / n_hits`` (tracks have E = 0 and
        count through the uniform part).
    seed_pos_weight
        Weight of the positive (seed) hits in the seed BCE.
    other_weight
        Weight in the assignment cross entropy of the hits whose target is the ``other`` slot (like
        DETR's no-object weight): at 1 the always-right ``other`` slot wins over the matchable ones
        early in training.

    Notes
    -----
    Inputs ``features`` ``(N, C, P)``, ``energy`` ``(N, 1, P)`` (raw hit energy), ``mask``
    ``(N, 1, P)``. Output ``(N, K + 9, P)``, 0 on padding. Targets for :meth:`loss`: the data
    config's labels ``(N, K + 9, P)`` (one-hot slot, one-hot type, log energy, deta, dphi,
    hit energy; -1 on padding). :meth:`forward_with_aux` also returns the per-hit seed logits
    (``{"seed_logit": (N, P)}``), which :meth:`loss` takes explicitly: training and validation
    losses have the same terms, and the model keeps no state between a forward and its loss.
    """

    def __init__(
        self,
        input_dims: int,
        num_outputs: int,
        embed_dim: int = 64,
        num_layers: int = 3,
        num_heads: int = 4,
        ff_dim: int = 128,
        slot_layers: int = 2,
        dropout: float = 0.0,
        coord_channels: Sequence[int] = (0, 1),
        radii: Sequence[float] = (0.15, 0.4, 1.0, 0.0),
        assign_weight: float = 1.0,
        pid_weight: float = 0.5,
        energy_weight: float = 0.5,
        direction_weight: float = 0.5,
        seed_weight: float = 1.0,
        energy_weighting: float = 0.5,
        seed_pos_weight: float = 5.0,
        other_weight: float = 0.2,
    ) -> None:
        super().__init__()
        self.n_slots = int(num_outputs) - N_EXTRA
        if self.n_slots < 2:
            raise TypeError(f"num_outputs must be K + {N_EXTRA} with K >= 2 slots, got {num_outputs}")
        if len(coord_channels) != 2 or max(coord_channels) >= input_dims:
            raise TypeError(
                f"coord_channels must name 2 of the {input_dims} feature channels, got {coord_channels}"
            )
        self.coords = [int(c) for c in coord_channels]
        self.weights = {
            "assign": float(assign_weight),
            "pid": float(pid_weight),
            "energy": float(energy_weight),
            "direction": float(direction_weight),
            "seed": float(seed_weight),
        }
        self.energy_weighting, self.seed_pos_weight = float(energy_weighting), float(seed_pos_weight)
        self.other_weight = float(other_weight)
        self.embed = nn.Sequential(
            nn.Linear(input_dims, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim)
        )
        self.encoder = nn.ModuleList(_Block(embed_dim, num_heads, ff_dim, dropout) for _ in range(num_layers))
        self.locality = _Locality(num_heads, radii)
        self.norm = nn.LayerNorm(embed_dim)
        self.seed_head = nn.Linear(embed_dim, 1)
        self.other_query = nn.Parameter(torch.randn(1, embed_dim) / math.sqrt(embed_dim))
        self.seed_proj = nn.Linear(embed_dim, embed_dim)
        self.slot_self = nn.ModuleList(
            _Block(embed_dim, num_heads, ff_dim, dropout) for _ in range(slot_layers)
        )
        self.slot_cross = nn.ModuleList(
            _Block(embed_dim, num_heads, ff_dim, dropout) for _ in range(slot_layers)
        )
        self.hit_proj, self.slot_proj = nn.Linear(embed_dim, embed_dim), nn.Linear(embed_dim, embed_dim)
        # bounded assignment bonus b * exp(-dR^2 / r^2) towards the slot's seed (b, r learnt)
        self.assign_bonus = nn.Parameter(
            torch.tensor([_inv_softplus(2.0), _inv_softplus(float(radii[0]) or 0.15)])
        )
        self.head = nn.Sequential(
            nn.Linear(2 * embed_dim, ff_dim), nn.GELU(), nn.Linear(ff_dim, N_CLASSES + 3)
        )

    def forward(self, features: torch.Tensor, energy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-hit outputs ``(N, K + 9, P)`` (what the exported model returns)."""
        return self.forward_with_aux(features, energy, mask)[0]

    def forward_with_aux(
        self, features: torch.Tensor, energy: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Outputs and the auxiliary ``{"seed_logit": (N, P)}`` the loss needs."""
        full = features.shape[-1]
        if not exporting():  # hits are padded at the end: cut to the longest jet of the batch
            keep = max(int((mask != 0).sum(-1).max()), self.n_slots)
            if keep < full:
                features, energy, mask = features[..., :keep], energy[..., :keep], mask[..., :keep]
            elif keep > full:  # fewer points than seeds: pad
                features, energy, mask = (F.pad(t, (0, keep - full)) for t in (features, energy, mask))
        out, seed_logit = self._forward(features, energy, mask)
        if out.shape[-1] != full:
            out = F.pad(out, (0, full - out.shape[-1])) if out.shape[-1] < full else out[..., :full]
        return out, {"seed_logit": seed_logit[:, :full]}

    def _forward(
        self, features: torch.Tensor, energy: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        real = (mask != 0).to(features.dtype)  # (N, 1, P)
        pad = real[:, 0, :] == 0
        first = torch.arange(pad.shape[1], device=pad.device)[None, :] == 0
        pad = pad & ~(pad.all(dim=1, keepdim=True) & first)  # an empty jet attends to its first hit
        bias = torch.zeros_like(pad, dtype=features.dtype).masked_fill(pad, float("-inf"))[:, None, None, :]
        x = (features * real)[:, self.coords].transpose(1, 2)  # (N, P, 2) positions
        h = self.embed((features * real).transpose(1, 2))  # (N, P, D)
        hit_bias = bias + self.locality(x, x)
        for block in self.encoder:
            h = block(h, None, hit_bias)
        h = self.norm(h)
        # seeds: the K-1 best hits by seed score (padding last)
        seed_logit = self.seed_head(h)[..., 0]  # (N, P)
        rank = seed_logit.detach().masked_fill(pad, float("-inf"))
        seeds = rank.topk(self.n_slots - 1, dim=1).indices  # (N, K-1)
        seed_x = x.gather(1, seeds[..., None].expand(-1, -1, 2))
        slots = self.seed_proj(h.gather(1, seeds[..., None].expand(-1, -1, h.shape[-1])))
        slots = torch.cat([slots, self.other_query[None].expand(h.shape[0], -1, -1)], dim=1)  # (N, K, D)
        # the other slot sits far away from every hit: no locality bias (its position is masked)
        is_seed = torch.ones(self.n_slots, device=h.device, dtype=h.dtype)
        is_seed[-1] = 0.0
        slot_x = torch.cat([seed_x, seed_x[:, :1] * 0], dim=1)
        cross_bias = bias + self.locality(slot_x, x) * is_seed[None, None, :, None]
        no_bias = torch.zeros((1, 1, 1, 1), dtype=h.dtype, device=h.device)
        for self_block, cross_block in zip(self.slot_self, self.slot_cross):
            slots = self_block(slots, None, no_bias)
            slots = cross_block(slots, h, cross_bias)
        logits = torch.einsum("npd,nkd->nkp", self.hit_proj(h), self.slot_proj(slots)) / math.sqrt(
            h.shape[-1]
        )
        d2 = (slot_x[:, :, None, :] - x[:, None, :, :]).pow(2).sum(-1)  # (N, K, P)
        b, r = F.softplus(self.assign_bonus[0]), F.softplus(self.assign_bonus[1])
        logits = logits + b * torch.exp(-d2 / r.pow(2)) * is_seed[None, :, None]
        assigned = torch.einsum("nkp,nkd->npd", torch.softmax(logits, dim=1), slots)
        heads = self.head(torch.cat([h, assigned], dim=-1)).transpose(1, 2)  # (N, 8, P)
        return torch.cat([logits, heads, energy], dim=1) * real, seed_logit

    # ------------------------------------------------------------------ loss
    def split(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named channel blocks of an output or target tensor."""
        k = self.n_slots
        return {
            "slots": tensor[:, :k],
            "pid": tensor[:, k : k + N_CLASSES],
            "log_energy": tensor[:, k + N_CLASSES],
            "direction": tensor[:, k + N_CLASSES + 1 : k + N_CLASSES + 3],
            "energy": tensor[:, -1],
        }

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

    def loss_terms(
        self, pred: torch.Tensor, target: torch.Tensor, aux: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-jet loss terms ``(N,)``: assignment, pid, energy, direction, and seed (given ``aux``)."""
        w = self.hit_weights(target)
        p, t = self.split(pred), self.split(target)
        matched = self.match(pred, target)
        assign = -(matched * F.log_softmax(p["slots"].float(), dim=1)).sum(1)
        assign = assign * (
            1 - (1 - self.other_weight) * matched[:, -1]
        )  # the no-object weight (DETR eos_coef)
        pid_t = t["pid"].clamp(min=0)
        has_pid = (pid_t.sum(1) > 0).to(w.dtype)
        pid = -(pid_t * F.log_softmax(p["pid"].float(), dim=1)).sum(1)
        wp = w * has_pid
        energy = (p["log_energy"] - t["log_energy"].clamp(min=0)) ** 2
        direction = ((p["direction"] - t["direction"]) / DIRECTION_SCALE).pow(2).sum(1)
        direction = torch.where(w > 0, direction, torch.zeros_like(direction))  # padding targets are -1
        terms = {
            "assign": (w * assign).sum(1),
            "pid": (wp * pid).sum(1) / wp.sum(1).clamp(min=1e-12),
            "energy": (w * energy).sum(1),
            "direction": (w * direction).sum(1),
        }
        seed_logit = (aux or {}).get("seed_logit")
        if seed_logit is not None:
            p_len = seed_logit.shape[1]
            valid = (t["energy"][:, :p_len] >= 0).to(w.dtype)
            goal = seed_targets(t["slots"][..., :p_len], t["energy"][:, :p_len])
            bce = F.binary_cross_entropy_with_logits(seed_logit.float(), goal, reduction="none")
            bce = bce * (1 + (self.seed_pos_weight - 1) * goal) * valid
            terms["seed"] = bce.sum(1) / valid.sum(1).clamp(min=1)
        return terms

    def loss(
        self, pred: torch.Tensor, target: torch.Tensor, aux: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Weighted sum of :meth:`loss_terms`, per jet ``(N,)``."""
        terms = self.loss_terms(pred, target, aux)
        return sum(self.weights[k] * v for k, v in terms.items())
