"""Automatic standardization as weaver-core computes it.

For every input variable with ``center: auto``: center = median and
scale = 1 / max(p84 - p50, p50 - p16) over the (selected) training entries,
using the real particles only (no padding), NaN/inf ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import awkward as ak
import numpy as np

from hepnn_coffea.features.compute import FeatureError, selection_mask
from hepnn_coffea.features.expressions import ExpressionError, VariableTable

if TYPE_CHECKING:
    from hepnn_coffea.config.data_config import DataConfig


def auto_variables(config: DataConfig) -> list[str]:
    """Names of the input variables whose center/scale must be computed."""
    return list(dict.fromkeys(v.name for g in config.inputs.values() for v in g.vars if v.center == "auto"))


def raw_values(
    source: Any,
    config: DataConfig,
    names: list[str],
    fraction: float = 1.0,
    seed: int = 0,
    where: str = "",
    length_groups: list[str] = (),
) -> dict[str, np.ndarray]:
    """Flattened untransformed values of ``names`` for a random ``fraction`` of the selected entries.

    For every group in ``length_groups`` the result also holds ``length:<group>``: the
    number of values per entry of the group's first variable (for ``length: auto``).
    """
    table = VariableTable(source, config.new_variables, where)
    n = len(source)
    try:
        keep = selection_mask(table, config.selection, n)
        if fraction < 1:
            keep &= np.random.default_rng(seed).random(n) < fraction
        out = {}
        for name in names:
            value = table[name][keep]
            value = ak.flatten(value, axis=None) if isinstance(value, ak.Array) else value
            arr = np.asarray(ak.to_numpy(value) if isinstance(value, ak.Array) else value, dtype=np.float64)
            out[name] = arr[np.isfinite(arr)].astype(np.float32)
        for group in length_groups:
            first = config.inputs[group].vars[0].name
            value = table[first][keep]
            if not (isinstance(value, ak.Array) and value.ndim > 1):
                raise FeatureError(
                    f"input group '{group}' has length auto but '{first}' is not jagged"
                    f"{where and ' in ' + where}"
                )
            out[f"length:{group}"] = ak.to_numpy(ak.num(value, axis=1)).astype(np.int64)
    except KeyError as err:
        raise FeatureError(err.args[0]) from None
    except ExpressionError as err:
        raise FeatureError(str(err)) from err
    return out


def lengths_from_values(values: dict[str, np.ndarray], quantile: float) -> dict[str, dict[str, Any]]:
    """``length: auto``: the ``quantile`` of every group's entry lengths (and their maximum)."""
    out = {}
    for key, counts in values.items():
        if key.startswith("length:"):
            if counts.size == 0:
                raise FeatureError(f"length auto of '{key[7:]}': no training entries")
            length = int(np.ceil(np.quantile(counts, quantile)))
            out[key[7:]] = {
                "length": length,
                "quantile": quantile,
                "max": int(counts.max()),
                "truncated_fraction": float(np.mean(counts > length)),
            }
    return out


def standardization_from_values(values: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Weaver's ``center, scale`` from collected values (scale 1 where the spread is 0)."""
    params = {}
    for name, arr in values.items():
        if arr.size == 0:
            raise FeatureError(f"auto standardization of '{name}': no finite values in the training sample")
        low, center, high = np.percentile(arr.astype(np.float64), [16, 50, 84])
        spread = max(high - center, center - low)
        params[name] = {
            "center": float(np.round(center, 3)),
            "scale": float(np.round(1.0 / spread, 3)) if spread > 0 else 1.0,
        }
    return params
