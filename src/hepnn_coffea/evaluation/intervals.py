"""68% intervals of weighted counts: Kish effective entries, Clopper-Pearson efficiencies, rejections.

An interval is ``{"value", "low", "high"}`` (``low <= value <= high``; ``None`` stands for an
infinite or undefined bound). Efficiencies of weighted entries use Clopper-Pearson with the
Kish effective number of entries ``n_eff = (sum w)^2 / sum w^2`` (``k = eff * n_eff`` passing
out of ``n_eff``); a rejection ``1/eps`` inverts the bounds. Any other statistic of entries
(resolution, bias, MAPE, ...) gets value +- the standard deviation of seeded bootstrap
replicas over its entries (:func:`bootstrap_interval`), as the AUC does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

#: Two-sided coverage of the quoted intervals (one Gaussian sigma).
ONE_SIGMA = 0.682689492137086

Interval = dict[str, Any]


def interval(value: float, low: float, high: float) -> Interval:
    """``{"value", "low", "high"}`` as plain floats; infinite or NaN entries become ``None``."""

    def clean(x: float) -> float | None:
        x = float(x)
        return x if np.isfinite(x) else None

    return {"value": clean(value), "low": clean(low), "high": clean(high)}


def kish_n_eff(weight: np.ndarray) -> float:
    """Kish effective number of entries ``(sum w)^2 / sum w^2`` (0 for no entries)."""
    w = np.asarray(weight, dtype=np.float64)
    sum_w2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / sum_w2 if sum_w2 > 0 else 0.0


def clopper_pearson(k: Any, n: Any, confidence: float = ONE_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson interval on a binomial efficiency ``k / n`` (real-valued ``k``, ``n`` allowed).

    Parameters
    ----------
    k, n
        Passing and total (effective) counts, scalars or arrays, ``0 <= k <= n``.
    confidence
        Two-sided coverage (default 68.27%).

    Returns
    -------
    tuple of numpy.ndarray
        ``(low, high)``; ``low = 0`` for ``k = 0``, ``high = 1`` for ``k = n``, NaN for ``n = 0``.
    """
    from scipy.stats import beta

    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    k = np.clip(k, 0.0, n)
    tail = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k > 0, beta.ppf(tail, k, n - k + 1), 0.0)
        high = np.where(k < n, beta.ppf(1.0 - tail, k + 1, n - k), 1.0)
    empty = n <= 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def efficiency_interval(weight_passed: float, weight_total: float, n_eff: float) -> Interval:
    """Weighted efficiency ``weight_passed / weight_total`` with its Clopper-Pearson/Kish interval."""
    if weight_total <= 0 or n_eff <= 0:
        return interval(np.nan, np.nan, np.nan)
    eff = weight_passed / weight_total
    low, high = clopper_pearson(eff * n_eff, n_eff)
    return interval(eff, low, high)


def rejection_interval(eff_background: Interval) -> Interval:
    """``1 / eps_B`` with the inverted bounds of the efficiency interval (``None`` = infinite)."""

    def inverse(x: float | None) -> float:
        return 1.0 / x if x else np.inf

    return interval(
        inverse(eff_background["value"]), inverse(eff_background["high"]), inverse(eff_background["low"])
    )


def format_interval(iv: dict[str, Any]) -> str:
    """``value +up -down``, decimals from the smaller error (3 digits above 10^4); ``> low`` if infinite."""
    value, low, high = iv["value"], iv["low"], iv["high"]
    if value is None:
        return f"> {low:.3g}" if low is not None else "n/a"
    if low is None and high is None:
        return f"{value:.4g} (no interval)"
    up = high - value if high is not None else np.inf
    down = value - low if low is not None else np.nan
    if abs(value) >= 1e4:
        return f"{value:.3g} +{up:.2g} -{down:.2g}"
    errors = [e for e in (up, down) if np.isfinite(e) and e > 0]
    digits = int(np.clip(1 - np.floor(np.log10(min(errors))), 0, 8)) if errors else 4
    up_text = f"+{up:.{digits}f}" if np.isfinite(up) else "+inf"
    return f"{value:.{digits}f} {up_text} -{down:.{digits}f}"


def bootstrap_interval(
    stat_fn: Callable[..., Any],
    arrays: Sequence[np.ndarray],
    weights: np.ndarray | None = None,
    n: int = 100,
    seed: int = 0,
    floor: float | Mapping[str, float] | None = None,
) -> Interval | dict[str, Interval]:
    """A statistic of entries with the 68% interval of its seeded bootstrap replicas.

    Every replica draws as many entries as there are, with replacement (the same rows of every
    array and of ``weights``), and recomputes the statistic; the interval is the value +- the
    standard deviation of the finite replicas (a normal 68.27% interval, like the AUC's: with
    ~100 replicas a spread is far steadier than the replicas' 16th and 84th percentiles).

    Parameters
    ----------
    stat_fn
        ``stat_fn(*arrays)``, or ``stat_fn(*arrays, weights)`` when ``weights`` is given: a number
        or a mapping name -> number (then every name gets its interval).
    arrays
        Per-entry arrays of the same length.
    weights
        Per-entry weights (they travel with their entries), or None.
    n, seed
        Number of replicas and the seed of their draws; ``n < 2`` gives ``low = high = value``.
    floor
        Lowest value the statistic can take (e.g. 0 for a width), per name for a mapping: the
        lower bound is clipped to it, as the AUC's is to [0, 1].

    Returns
    -------
    dict
        An interval ``{"value", "low", "high"}`` (None for NaN or fewer than two finite
        replicas), or ``{name: interval}`` when ``stat_fn`` returns a mapping.
    """
    arrays = [np.asarray(a) for a in arrays]
    extra = [] if weights is None else [np.asarray(weights, dtype=np.float64)]
    size = len(arrays[0]) if arrays else 0
    if any(len(a) != size for a in arrays + extra):
        raise ValueError(
            f"bootstrap_interval: arrays of different lengths {[len(a) for a in arrays + extra]}"
        )

    def as_dict(result: Any) -> dict[str, float]:
        items = result.items() if isinstance(result, Mapping) else [(None, result)]
        return {k: float(v) if v is not None else np.nan for k, v in items}

    value = as_dict(stat_fn(*arrays, *extra))
    replicas: dict[Any, list[float]] = {k: [] for k in value}
    rng = np.random.default_rng(seed)
    for _ in range(n if n >= 2 and size else 0):
        rows = rng.integers(0, size, size)
        for k, v in as_dict(stat_fn(*(a[rows] for a in arrays + extra))).items():
            replicas[k].append(v)
    out = {}
    for k, v in value.items():
        reps = np.asarray(replicas[k], dtype=np.float64)
        reps = reps[np.isfinite(reps)]
        if n < 2 or not size:
            out[k] = interval(v, v, v)
        elif len(reps) < 2 or not np.isfinite(v):
            out[k] = interval(v, np.nan, np.nan)
        else:
            spread = float(np.std(reps, ddof=1))
            lowest = floor.get(k) if isinstance(floor, Mapping) else floor
            out[k] = interval(v, v - spread if lowest is None else max(v - spread, lowest), v + spread)
    return out[None] if None in out else out
