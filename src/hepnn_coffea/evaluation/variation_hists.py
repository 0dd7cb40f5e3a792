"""Hists with a ``variation`` axis: stack per-variation hists, take the nominal back out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hist
import numpy as np

from hepnn_coffea.config.variations_config import NOMINAL

AXIS = "variation"


def variation_axis(names: list[str]) -> hist.axis.StrCategory:
    """The ``variation`` category axis (``nominal`` first)."""
    return hist.axis.StrCategory(list(names), name=AXIS, label="Variation")


def _positions(source: Any, target: Any) -> np.ndarray:
    """Where every flow-view slot of axis ``source`` lies in the flow view of ``target``."""
    if isinstance(source, hist.axis.StrCategory):
        index = [target.index(v) for v in source]
        if source.traits.overflow:
            index.append(target.size)  # the overflow slot of a non-growing category axis
        return np.asarray(index, dtype=np.int64)
    if source != target:
        raise ValueError(f"axis '{source.name}' differs between the variations' hists")
    return np.arange(source.extent, dtype=np.int64)


def stack_variations(parts: Mapping[str, Mapping[str, hist.Hist]]) -> dict[str, hist.Hist]:
    """One hist per name with a leading ``variation`` axis, from ``{variation: {name: hist}}``.

    Every variation's hists must have the same axes, except the values of string-category
    axes (the union is taken, in order of appearance). Flow bins are copied too.
    """
    names = list(parts)
    out = {}
    for key, first in parts[names[0]].items():
        hs = [parts[v][key] for v in names]
        axes = []
        for i, ax in enumerate(first.axes):
            if isinstance(ax, hist.axis.StrCategory):
                values = list(dict.fromkeys(c for h in hs for c in h.axes[i]))
                new = hist.axis.StrCategory(values, growth=ax.traits.growth)
                new.__dict__.update(ax.__dict__)  # name, label and any metadata, as set
                ax = new
            axes.append(ax)
        stacked = hist.Hist(variation_axis(names), *axes, storage=first.storage_type())
        view = stacked.view(flow=True)
        for j, h in enumerate(hs):
            index = [np.array([j])] + [_positions(a, b) for a, b in zip(h.axes, axes)]
            view[np.ix_(*index)] = h.view(flow=True)[np.newaxis]
        out[key] = stacked
    return out


def nominal_hists(hists: Mapping[str, hist.Hist]) -> dict[str, hist.Hist]:
    """The hists without their ``variation`` axis, at ``nominal`` (hists without one unchanged)."""
    return {k: h[{AXIS: NOMINAL}] if AXIS in h.axes.name else h for k, h in hists.items()}
