"""Drawing helpers shared by the evaluation plots (flat jets and event level).

Intervals are ``{"value", "low", "high"}`` dicts (``None`` = unbounded) or arrays of the three.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def interval_values(iv: Any) -> tuple[float, float, float, bool]:
    """``(value, error down, error up, unbounded above)`` of an interval dict or a plain number."""
    if not isinstance(iv, Mapping):
        return float(iv), 0.0, 0.0, False
    value = iv["value"] if iv["value"] is not None else iv["low"]
    if value is None:
        return np.nan, 0.0, 0.0, False
    low = iv["low"] if iv["low"] is not None else value
    high = iv["high"]
    return value, value - low, (high - value) if high is not None else value, high is None


def log_ticks(ax: Any, which: str = "y") -> None:
    """Log-axis labels: plain numbers at 1, 2, 5 x 10^n when it spans under 3 decades, else 10^n."""
    from matplotlib import ticker

    axis = ax.yaxis if which == "y" else ax.xaxis
    low, high = ax.get_ylim() if which == "y" else ax.get_xlim()
    if np.log10(high / low) < 3:
        axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        axis.set_major_formatter(ticker.LogFormatterSciNotation())
    axis.set_minor_formatter(ticker.NullFormatter())


def step_with_errors(
    ax: Any, edges: np.ndarray, values: np.ndarray, errors: np.ndarray, **kwargs: Any
) -> Any:
    """Step histogram with error bars on the non-empty bins only (an empty bin has no spurious bar)."""
    line = ax.stairs(values, edges, **kwargs)
    filled = values > 0
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax.errorbar(
        centres[filled],
        values[filled],
        yerr=errors[filled],
        fmt="none",
        color=line.get_edgecolor(),
        linewidth=1,
    )
    return line


def auc_label(name: str, auc: Any) -> str:
    """``name (AUC 0.9843 +- 0.0030)`` with as many digits as the error needs (at least 4)."""
    if not isinstance(auc, Mapping) or auc.get("value") is None:
        return name
    value, error = auc["value"], (auc["high"] or auc["value"]) - auc["value"]
    digits = int(np.clip(1 - np.floor(np.log10(error)), 4, 7)) if error > 0 else 4
    return f"{name} (AUC {value:.{digits}f} $\\pm$ {error:.{digits}f})"


def errorbar_or_limit(
    ax: Any,
    x: np.ndarray,
    xerr: np.ndarray,
    value: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    *,
    limit_label: str | None = None,
    **kwargs: Any,
) -> None:
    """Points with asymmetric error bars; where ``value`` is infinite, the finite ``low`` as a lower-limit
    arrow.

    Used for rejections ``1/eps_B``: a bin where no background passes has an infinite
    rejection and only a lower bound. ``limit_label``: legend entry of the arrows (None: none).
    """
    value, low, high = (np.asarray(a, dtype=float) for a in (value, low, high))
    ok = np.isfinite(value)
    with np.errstate(invalid="ignore"):
        up = np.where(np.isfinite(high), high - value, value)  # unbounded above: draw as far up as the value
    bars = ax.errorbar(x[ok], value[ok], xerr=xerr[ok], yerr=[value[ok] - low[ok], up[ok]], **kwargs)
    limit = ~ok & np.isfinite(low) & (low > 0)
    if limit.any():
        ax.errorbar(
            x[limit],
            low[limit],
            xerr=xerr[limit],
            yerr=0.6 * low[limit],
            lolims=True,
            fmt="none",
            color=bars[0].get_color(),
            label=limit_label,
        )
