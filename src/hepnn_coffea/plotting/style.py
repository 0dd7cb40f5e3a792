"""Experiment styles and labels of the evaluation plots (mplhep).

``PlotStyle(experiment="CMS", text="Simulation Preliminary", com=13.6, lumi=None)`` selects
mplhep's style sheet of the experiment and writes its label (experiment name, ``text``,
``sqrt(s)`` in TeV and the integrated luminosity in fb^-1, when given) on every figure;
``experiment="none"`` keeps the package's default look (mplhep's CMS sheet) and writes only
``text`` and the energy/luminosity, with no experiment name: the right choice for samples that
are not an experiment's (the bundled top/QCD and nanosim samples are not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: ``--style`` choices: mplhep style sheet and label function per experiment.
EXPERIMENTS = ("CMS", "ATLAS", "LHCb", "ALICE", "none")


@dataclass(frozen=True)
class PlotStyle:
    """Look and label of the plots.

    Attributes
    ----------
    experiment
        One of :data:`EXPERIMENTS`.
    text
        Label text after the experiment name (e.g. ``Simulation``, ``Simulation Preliminary``).
    com
        Centre-of-mass energy in TeV (None: not written).
    lumi
        Integrated luminosity in fb^-1 (None: not written).
    """

    experiment: str = "none"
    text: str = "Simulation"
    com: float | None = None
    lumi: float | None = None

    def __post_init__(self) -> None:
        if self.experiment not in EXPERIMENTS:
            raise ValueError(f"plot style {self.experiment!r}: choose one of {list(EXPERIMENTS)}")

    @property
    def sheet(self) -> str:
        """The mplhep style sheet."""
        return "CMS" if self.experiment == "none" else self.experiment


DEFAULT = PlotStyle()


def use(style: PlotStyle | None = None) -> Any:
    """``matplotlib.pyplot`` on the Agg backend with the style's mplhep sheet applied."""
    from hepnn_coffea._optional import require

    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.style.use("default")  # sheets do not reset what a previous one set
    require("mplhep").style.use((style or DEFAULT).sheet)
    return plt


def _rlabel(style: PlotStyle) -> str:
    parts = []
    if style.lumi is not None:
        parts.append(f"{style.lumi:g} fb$^{{-1}}$")
    if style.com is not None:
        parts.append(f"({style.com:g} TeV)" if parts else f"{style.com:g} TeV")
    return " ".join(parts)


def label(ax: Any, style: PlotStyle | None = None, *, right: str = "", loc: int = 0) -> None:
    """Write the label above ``ax``: experiment and text on the left, energy/luminosity on the right.

    ``right`` (e.g. the selection) is added on the right with ``experiment="none"`` only: beside
    an experiment's label it would overlap it, so plots also say it in a legend or axis title.
    """
    import mplhep

    style = style or DEFAULT
    if style.experiment == "none":
        ax.set_title(style.text, loc="left", style="italic", fontsize="medium")
        ax.set_title(", ".join(x for x in (right, _rlabel(style)) if x), loc="right", fontsize="small")
        return
    getattr(mplhep, style.experiment.lower()).label(
        style.text, ax=ax, loc=loc, data=True, rlabel=_rlabel(style)
    )
