"""Base of the mplhep-styled evaluation plots: the styled ``pyplot`` and PNG + PDF saving.

The flat-jet classifier figures are in :mod:`hepnn_coffea.plotting.tagger_plots`, the
event-level ones in :mod:`hepnn_coffea.plotting.events_plots`; experiment styles and labels in
:mod:`hepnn_coffea.plotting.style`.
"""

from __future__ import annotations

import pathlib
from typing import Any

from hepnn_coffea.plotting.style import PlotStyle


def _pyplot(style: PlotStyle | None = None) -> Any:
    """``matplotlib.pyplot`` (Agg) with the style's mplhep sheet (default: CMS sheet, no experiment label)."""
    from hepnn_coffea.plotting.style import use

    return use(style)


def _save(fig: Any, path: pathlib.Path) -> pathlib.Path:
    """Write ``path`` (PNG) and the same figure as PDF beside it; returns the PNG path."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    plt.close(fig)
    return path
