"""Histogram reweighting with weaver-core's ``weights:`` semantics (pure numpy).

The algorithm of weaver-core's ``WeightMaker.make_weights`` and ``_build_weights``:

1. Per class of ``reweight_classes``, the 2D histogram of ``(var1, var2)`` on the train split
   (weighted by the base weight when ``reweight_basewgt`` is set). With
   ``reweight_discard_under_overflow: false`` the values are clipped into the bin range
   first; otherwise entries outside are not counted.
2. ``flat``: ``ref = percentile(h[h > 0.01 * median(h[h > 0])], reweight_threshold)`` and
   ``w = clip(ref / h, 0, 1)`` (empty bins 0): every bin with more than ``ref`` entries is
   cut down to ``ref``, so the class becomes flat except in its sparsest bins.
   ``ref``: the first class of ``reweight_classes`` is the reference;
   ``r = h_ref / h`` (0 where either is empty), ``w = clip(r / percentile(r[r > 0],
   100 - reweight_threshold), 0, 1)``: every class takes the reference's shape.
3. Classes are equalised: with ``n_c = sum(h_raw * w) / class_weight_c``, every class's
   factors are multiplied by ``0.9 * min(n) / n_c``, so after sampling the classes' sizes
   are proportional to ``class_weights``.
4. With a base weight, the per-row factors times the base weights are computed on the
   whole train split and all histograms are divided by their
   ``100 - reweight_threshold`` percentile.

A row's factor is its class's histogram value at its bin (edge bins for clipped values);
rows of classes outside ``reweight_classes`` and, with the default
``reweight_discard_under_overflow: true``, rows outside the bin ranges get 0 (NaN values also
get 0). Weaver keeps each train row with probability ``min(factor, 1)``; training here draws
rows with probability proportional to that (:class:`~hepnn_coffea.training.sampling.HistogramSampler`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.config.weights_config import WeightsConfig

log = logging.getLogger(__name__)
#: weaver's ``max_weight``: the largest class is sampled with factors <= 0.9 (some randomness kept)
MAX_WEIGHT = 0.9


@dataclass
class ReweightResult:
    """Everything :func:`reweight_details` computes.

    Attributes
    ----------
    hists
        ``{class: 2D factors}`` (the data config's ``reweight_hists``).
    raw_counts
        ``{class: 2D entry counts}`` (unweighted, after clipping when not discarding).
    weighted_counts
        ``{class: 2D sums of base weights}`` (equal to ``raw_counts`` without a base weight).
    entries_used
        Entries of the reweighted classes inside the bin ranges.
    entries_total
        All entries given.
    """

    hists: dict[str, np.ndarray]
    raw_counts: dict[str, np.ndarray]
    weighted_counts: dict[str, np.ndarray]
    entries_used: int
    entries_total: int


def _xy(values: dict[str, np.ndarray], cfg: WeightsConfig) -> tuple[np.ndarray, np.ndarray]:
    missing = [v for v in cfg.var_names if v not in values]
    if missing:
        raise ConfigError(f"weights.reweight_vars: no values for {missing} (have {sorted(values)})")
    x, y = (np.asarray(values[v], dtype=np.float64) for v in cfg.var_names)
    if not cfg.reweight_discard_under_overflow:
        (xb, yb) = cfg.bins
        x, y = np.clip(x, xb[0], xb[-1]), np.clip(y, yb[0], yb[-1])
    return x, y


def reweight_details(
    values: dict[str, np.ndarray],
    labels: np.ndarray,
    label_names: list[str],
    weights_config: WeightsConfig,
    base_weights: np.ndarray | None = None,
) -> ReweightResult:
    """Per-class factor histograms and the counts they come from (see the module docstring).

    Parameters
    ----------
    values
        ``{variable: per-row values}`` for both ``reweight_vars``.
    labels
        Per-row class index into ``label_names``.
    label_names
        The data config's label names.
    weights_config
        The parsed ``weights`` section (histogram reweighting mode).
    base_weights
        Per-row base weights (``reweight_basewgt``), or ``None``.

    Returns
    -------
    ReweightResult
    """
    cfg = weights_config
    if not cfg.is_reweighting:
        raise ConfigError(
            "weights: histogram reweighting needs reweight_method with use_precomputed_weights: false"
        )
    labels = np.asarray(labels)
    x, y = _xy(values, cfg)
    bins = cfg.bins
    raw, weighted = {}, {}
    used = 0
    for name in cfg.reweight_classes:
        pos = labels == label_names.index(name)
        raw[name] = np.histogram2d(x[pos], y[pos], bins=bins)[0]
        used += int(raw[name].sum())
        w = None if base_weights is None else np.asarray(base_weights, dtype=np.float64)[pos]
        weighted[name] = raw[name] if w is None else np.histogram2d(x[pos], y[pos], bins=bins, weights=w)[0]
        log.info("reweighting %s: %d entries in the %s x %s bins", name, raw[name].sum(), *cfg.var_names)
    if used != len(labels):
        log.warning(
            "only %d of %d entries are used in the reweighting (classes outside reweight_classes, or "
            "outside the reweight_vars bins with reweight_discard_under_overflow: true)",
            used,
            len(labels),
        )

    hists, class_events = {}, {}
    for name, class_weight in zip(cfg.reweight_classes, cfg.class_weights):
        hist = weighted[name]
        if cfg.reweight_method == "flat":
            filled = hist[hist > 0]
            if not len(filled):
                raise ConfigError(
                    f"weights.reweight_classes: class '{name}' has no entries inside the reweight_vars bins"
                )
            nonzero = hist[hist > np.median(filled) * 0.01]
            ref_val = np.percentile(nonzero, cfg.reweight_threshold)
            with np.errstate(divide="ignore"):
                wgt = np.clip(np.nan_to_num(ref_val / hist, posinf=0), 0, 1)
        else:
            reference = weighted[cfg.reweight_classes[0]]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.nan_to_num(reference / hist, nan=0, posinf=0)
            if not (ratio > 0).any():
                raise ConfigError(
                    f"weights.reweight_classes: class '{name}' shares no filled bin with the reference "
                    f"class '{cfg.reweight_classes[0]}'"
                )
            upper = np.percentile(ratio[ratio > 0], 100 - cfg.reweight_threshold)
            wgt = np.clip(ratio / upper, 0, 1)
        hists[name] = wgt
        class_events[name] = np.sum(weighted[name] * wgt) / class_weight
    min_events = min(class_events.values()) * MAX_WEIGHT
    for name in cfg.reweight_classes:
        hists[name] = hists[name] * (min_events / class_events[name])
    if base_weights is not None:
        factors = reweight_factors(values, labels, label_names, cfg, hists, base_weights=base_weights)
        scale = np.percentile(factors, 100 - cfg.reweight_threshold)
        if not scale > 0:
            raise ConfigError(
                "weights.reweight_basewgt: the reweighted base weights have a non-positive "
                f"{100 - cfg.reweight_threshold} percentile; cannot normalise the factors"
            )
        hists = {k: v / scale for k, v in hists.items()}
    return ReweightResult(hists, raw, weighted, used, len(labels))


def compute_reweight_hists(
    values: dict[str, np.ndarray],
    labels: np.ndarray,
    label_names: list[str],
    weights_config: WeightsConfig,
    base_weights: np.ndarray | None = None,
) -> dict[str, list[list[float]]]:
    """The ``reweight_hists`` of a data config: ``{class: 2D factors as nested lists}``.

    See :func:`reweight_details` for the parameters and the module docstring for the algorithm.
    """
    result = reweight_details(values, labels, label_names, weights_config, base_weights)
    return {k: v.tolist() for k, v in result.hists.items()}


def reweight_factors(
    values: dict[str, np.ndarray],
    labels: np.ndarray,
    label_names: list[str],
    weights_config: WeightsConfig,
    hists: dict[str, np.ndarray | list[list[float]]],
    *,
    base_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Per-row reweighting factor (weaver's ``_build_weights``).

    Parameters
    ----------
    values, labels, label_names, weights_config
        As for :func:`reweight_details`.
    hists
        ``{class: 2D factors}`` (``reweight_hists``).
    base_weights
        Multiply the factors by these per-row base weights (``reweight_basewgt``).

    Returns
    -------
    numpy.ndarray
        float64 factors; 0 for rows of classes not in ``reweight_classes``, for rows outside
        the bin ranges with ``reweight_discard_under_overflow: true``, and for NaN values.
    """
    cfg = weights_config
    labels = np.asarray(labels)
    x, y = _xy(values, cfg)
    xb, yb = cfg.bins
    keep = ~np.isnan(x) & ~np.isnan(y)
    if cfg.reweight_discard_under_overflow:
        keep &= (x >= xb[0]) & (x <= xb[-1]) & (y >= yb[0]) & (y <= yb[-1])
    ix = np.clip(np.digitize(x, xb) - 1, 0, len(xb) - 2)
    iy = np.clip(np.digitize(y, yb) - 1, 0, len(yb) - 2)
    factors = np.zeros(len(labels), dtype=np.float64)
    for name in cfg.reweight_classes:
        pos = (labels == label_names.index(name)) & keep
        factors[pos] = np.asarray(hists[name], dtype=np.float64)[ix[pos], iy[pos]]
    if base_weights is not None:
        factors *= np.asarray(base_weights, dtype=np.float64)
    return factors
