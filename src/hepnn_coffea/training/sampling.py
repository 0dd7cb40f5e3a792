"""Bucket reweighting against feed-down: sample training rows so a target follows a chosen pdf.

A regression trained on a peaked target distribution pulls predictions toward the
peak (feed-down): the bias depends on the true value. Re-sampling the training
rows so that the target follows a flatter pdf removes most of it. Configured in
the model config's ``training`` section::

    reweight:
      target: top_pt          # a regression target (name or index)
      pdf: flat               # flat (equal per bucket) | uniform (low, high) | normal (mean, std)
      n_buckets: 20
      range: [450, 750]       # bucket range (default: 0.5% and 99.5% quantiles of the target)
      infinite_bounds: true   # outer buckets extend to -inf/+inf (false: rows outside are never drawn)

Each epoch draws ``samples_per_epoch`` rows (default: the split size) with
replacement, a row's probability being its bucket's probability divided by the
bucket's row count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hepnn_coffea.config.data_config import ConfigError

PDFS = ("flat", "uniform", "normal")


def bucket_edges(values: np.ndarray, n_buckets: int, value_range: tuple[float, float] | None = None,
                 infinite_bounds: bool = True) -> np.ndarray:  # fmt: skip
    """``n_buckets + 1`` edges spanning ``value_range``; the outer ones at +-inf with ``infinite_bounds``."""
    if n_buckets < 1:
        raise ConfigError(f"training.reweight.n_buckets must be >= 1, got {n_buckets}")
    low, high = value_range if value_range is not None else np.quantile(values, [0.005, 0.995])
    if not high > low:
        raise ConfigError(f"training.reweight.range must have high > low, got [{low}, {high}]")
    edges = np.linspace(float(low), float(high), n_buckets + 1)
    if infinite_bounds:
        edges[0], edges[-1] = -np.inf, np.inf
    return edges


def bucket_probabilities(edges: np.ndarray, pdf: str, params: dict[str, float]) -> np.ndarray:
    """Probability of each bucket under the target pdf (sums to 1).

    ``flat``: equal per bucket; ``uniform``: overlap of each bucket with ``[low, high]``
    (inner edges used for infinite outer buckets); ``normal``: CDF differences with
    ``mean`` and ``std``.
    """
    n = len(edges) - 1
    if pdf == "flat":
        probs = np.ones(n)
    elif pdf == "uniform":
        low, high = float(params["low"]), float(params["high"])
        lo, hi = np.clip(edges[:-1], low, high), np.clip(edges[1:], low, high)
        probs = hi - lo
    elif pdf == "normal":
        mean, std = float(params["mean"]), float(params["std"])
        if not std > 0:
            raise ConfigError(f"training.reweight.std must be > 0, got {std}")
        cdf = np.array([0.5 * (1 + math.erf((e - mean) / (std * math.sqrt(2)))) for e in edges])
        probs = np.diff(cdf)
    else:
        raise ConfigError(f"training.reweight.pdf must be one of {PDFS}, got {pdf!r}")
    if not probs.sum() > 0:
        raise ConfigError(f"training.reweight: the {pdf} pdf gives no probability inside the buckets")
    return probs / probs.sum()


@dataclass
class BucketSampler:
    """Draws rows so that the bucket occupancy follows ``probabilities``.

    Buckets without rows cannot be drawn: their probability is given to the others
    (renormalised) and listed in :attr:`empty_buckets`.
    """

    rows: np.ndarray
    row_probability: np.ndarray
    edges: np.ndarray
    probabilities: np.ndarray
    empty_buckets: list[int]
    outside: int

    @classmethod
    def build(cls, rows: np.ndarray, values: np.ndarray, edges: np.ndarray, probabilities: np.ndarray) -> BucketSampler:
        bucket = np.searchsorted(edges, values, side="right") - 1
        inside = (bucket >= 0) & (bucket < len(edges) - 1) & np.isfinite(values)
        counts = np.bincount(bucket[inside], minlength=len(edges) - 1)
        empty = [int(i) for i in np.flatnonzero((counts == 0) & (probabilities > 0))]
        probs = np.where(counts > 0, probabilities, 0.0)
        if not probs.sum() > 0:
            raise ConfigError("training.reweight: no training row falls in a bucket with probability > 0")
        probs = probs / probs.sum()
        row_p = np.zeros(len(values))
        row_p[inside] = probs[bucket[inside]] / counts[bucket[inside]]
        return cls(rows, row_p / row_p.sum(), edges, probs, empty, int((~inside).sum()))

    def epoch_index(self, seed: Any, size: int) -> np.ndarray:
        """``size`` rows drawn with replacement (seeded)."""
        rng = np.random.default_rng(seed)
        return self.rows[rng.choice(len(self.rows), size=size, replace=True, p=self.row_probability)]


def sampler_from_config(spec: dict[str, Any], rows: np.ndarray, targets: np.ndarray, target_names: list[str]) -> BucketSampler:
    """A :class:`BucketSampler` from the ``training.reweight`` mapping (see the module docstring)."""
    known = {"target", "pdf", "n_buckets", "range", "infinite_bounds", "mean", "std", "low", "high"}
    unknown = set(spec) - known
    if unknown:
        raise ConfigError(f"training.reweight: unknown key(s) {sorted(unknown)}; allowed {sorted(known)}")
    target = spec.get("target", 0)
    if isinstance(target, str):
        if target not in target_names:
            raise ConfigError(f"training.reweight.target {target!r} is not a regression target {target_names}")
        target = target_names.index(target)
    if not 0 <= int(target) < targets.shape[1]:
        raise ConfigError(f"training.reweight.target index {target} out of range for {targets.shape[1]} targets")
    values = targets[:, int(target)].astype(np.float64)
    pdf = str(spec.get("pdf", "flat"))
    for key in {"uniform": ("low", "high"), "normal": ("mean", "std")}.get(pdf, ()):
        if key not in spec:
            raise ConfigError(f"training.reweight: pdf {pdf} needs '{key}'")
    value_range = tuple(float(x) for x in spec["range"]) if spec.get("range") is not None else None
    edges = bucket_edges(values, int(spec.get("n_buckets", 20)), value_range, bool(spec.get("infinite_bounds", True)))
    return BucketSampler.build(rows, values, edges, bucket_probabilities(edges, pdf, spec))
