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

:class:`HistogramSampler` does the same for the data config's histogram reweighting
(``weights.reweight_hists``, weaver-core semantics, see :mod:`hepnn_coffea.training.reweight`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hepnn_coffea.config.data_config import ConfigError

log = logging.getLogger(__name__)
PDFS = ("flat", "uniform", "normal")


def bucket_edges(
    values: np.ndarray,
    n_buckets: int,
    value_range: tuple[float, float] | None = None,
    infinite_bounds: bool = True,
) -> np.ndarray:
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
    def build(
        cls, rows: np.ndarray, values: np.ndarray, edges: np.ndarray, probabilities: np.ndarray
    ) -> BucketSampler:
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


def sampler_from_config(
    spec: dict[str, Any], rows: np.ndarray, targets: np.ndarray, target_names: list[str]
) -> BucketSampler:
    """A :class:`BucketSampler` from the ``training.reweight`` mapping (see the module docstring)."""
    known = {"target", "pdf", "n_buckets", "range", "infinite_bounds", "mean", "std", "low", "high"}
    unknown = set(spec) - known
    if unknown:
        raise ConfigError(f"training.reweight: unknown key(s) {sorted(unknown)}; allowed {sorted(known)}")
    target = spec.get("target", 0)
    if isinstance(target, str):
        if target not in target_names:
            raise ConfigError(
                f"training.reweight.target {target!r} is not a regression target {target_names}"
            )
        target = target_names.index(target)
    if not 0 <= int(target) < targets.shape[1]:
        raise ConfigError(
            f"training.reweight.target index {target} out of range for {targets.shape[1]} targets"
        )
    values = targets[:, int(target)].astype(np.float64)
    pdf = str(spec.get("pdf", "flat"))
    for key in {"uniform": ("low", "high"), "normal": ("mean", "std")}.get(pdf, ()):
        if key not in spec:
            raise ConfigError(f"training.reweight: pdf {pdf} needs '{key}'")
    value_range = tuple(float(x) for x in spec["range"]) if spec.get("range") is not None else None
    edges = bucket_edges(
        values, int(spec.get("n_buckets", 20)), value_range, bool(spec.get("infinite_bounds", True))
    )
    return BucketSampler.build(rows, values, edges, bucket_probabilities(edges, pdf, spec))


@dataclass
class HistogramSampler:
    """Draws train rows with probability proportional to ``min(factor, 1)`` (data config ``weights``).

    Weaver-core keeps each row when a uniform number is below its factor (up-sampling
    with repeats); drawing ``size`` rows with replacement, proportionally to the same
    keep probability, gives the same expected composition, seeded per epoch.
    """

    rows: np.ndarray
    factors: np.ndarray
    row_probability: np.ndarray
    zero_rows: int

    @classmethod
    def build(cls, rows: np.ndarray, factors: np.ndarray) -> HistogramSampler:
        keep = np.clip(np.nan_to_num(np.asarray(factors, dtype=np.float64)), 0.0, 1.0)
        if not keep.sum() > 0:
            raise ConfigError("weights.reweight_hists: every training row has reweighting factor 0")
        return cls(rows, np.asarray(factors), keep / keep.sum(), int((keep == 0).sum()))

    def epoch_index(self, seed: Any, size: int) -> np.ndarray:
        """``size`` rows drawn with replacement (seeded)."""
        rng = np.random.default_rng(seed)
        return self.rows[rng.choice(len(self.rows), size=size, replace=True, p=self.row_probability)]

    def summary(self) -> dict[str, Any]:
        """Counts for the run's provenance."""
        return {
            "rows": len(self.rows),
            "rows_factor_zero": self.zero_rows,
            "max_factor": float(self.factors.max()) if len(self.factors) else 0.0,
        }


def histogram_sampler(dataset: Any, data_config: Any = None) -> HistogramSampler | None:
    """The train sampler of a data config with ``weights.reweight_hists``; ``None`` without them.

    Parameters
    ----------
    dataset
        The train :class:`~hepnn_coffea.training.dataset.ShardDataset` (its observers hold the
        reweighting variables).
    data_config
        The shards' :class:`~hepnn_coffea.config.data_config.DataConfig` (default: read from
        ``data_config.yaml`` in the shard folder).
    """
    from hepnn_coffea.config.data_config import DataConfig
    from hepnn_coffea.config.weights_config import WeightsConfig
    from hepnn_coffea.training.reweight import reweight_factors

    if data_config is None:  # a quick look first: most shard folders have no reweighting
        import yaml

        path = dataset.root / "data_config.yaml"
        raw = yaml.safe_load(path.read_text()) if path.is_file() else None
        weights = raw.get("weights") if isinstance(raw, dict) else None
        if not (isinstance(weights, dict) and weights.get("reweight_hists")):
            return None
        data_config = DataConfig.from_dict(raw, source=str(path))
    wcfg = WeightsConfig.from_dict(data_config.weights, data_config.source, data_config.label_names)
    if wcfg is None or not wcfg.is_reweighting or wcfg.reweight_hists is None:
        return None
    names = [*wcfg.var_names, *([wcfg.basewgt_name] if wcfg.basewgt_name else [])]
    fields = [f"observers/{n}" for n in names]
    missing = [f for f in fields if f not in dataset.fields]
    if missing:
        raise ConfigError(f"{data_config.source}: weights: the shards have no {missing}; preprocess again")
    cols = dataset.arrays(fields + ["label"])
    values = {n: cols[f] for n, f in zip(names, fields)}
    base = values.pop(wcfg.basewgt_name) if wcfg.basewgt_name else None
    factors = reweight_factors(
        values, cols["label"], data_config.label_names, wcfg, wcfg.hist_arrays(), base_weights=base
    )
    sampler = HistogramSampler.build(dataset.rows, factors)
    (log.warning if sampler.zero_rows else log.info)(
        "histogram reweighting (%s): %d of %d train rows have factor 0 and are never drawn",
        wcfg.reweight_method,
        sampler.zero_rows,
        len(factors),
    )
    return sampler


#: ``training.sample_by_weight`` modes
WEIGHT_SAMPLING = ("proportional", "class_balanced")


def weight_sampler(dataset: Any, mode: str) -> HistogramSampler:
    """Draw the train rows by their shard ``weight`` (weaver's use of precomputed weights).

    weaver-core samples training rows with their precomputed weights rather than weighting
    the loss; ``class_balanced`` first normalises every class to the same total weight (so
    a process with a large cross section does not swamp the others, while within a class the
    rows follow the physical mixture, e.g. the QCD pT-hat slices by cross section). The loss
    is then unweighted (the caller stops reading the train weights).

    Raises
    ------
    ConfigError
        The shards carry no ``weight`` or ``mode`` is unknown.
    """
    if mode not in WEIGHT_SAMPLING:
        raise ConfigError(f"training.sample_by_weight must be one of {WEIGHT_SAMPLING} or null, got {mode!r}")
    if not dataset.has_weight:
        raise ConfigError(
            f"training.sample_by_weight: the shards in {dataset.root} have no per-row 'weight' "
            "(data config weights: {use_precomputed_weights: true, weight_branches: [...]})"
        )
    arrays = dataset.arrays(["weight", "label"])
    weight = np.clip(np.nan_to_num(arrays["weight"].astype(np.float64)), 0.0, None)
    if mode == "class_balanced":
        labels = arrays["label"].astype(np.int64)
        totals = np.bincount(labels, weights=weight)
        weight = weight / np.where(totals > 0, totals, 1.0)[labels]
    if not weight.max() > 0:
        raise ConfigError(f"training.sample_by_weight: every train row in {dataset.root} has weight 0")
    return HistogramSampler.build(dataset.rows, weight / weight.max())
