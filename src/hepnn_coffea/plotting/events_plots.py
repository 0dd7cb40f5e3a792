"""mplhep-styled plots of the event-level tagger evaluation (PNG + PDF each).

The inputs are the plain dicts of :mod:`hepnn_coffea.evaluation.events_eval` and
:mod:`hepnn_coffea.evaluation.sculpting`; intervals are ``{"value", "low", "high"}`` dicts
(``None`` = unbounded). Every figure takes a :class:`~hepnn_coffea.plotting.style.PlotStyle`
(``plot_style``; None: the default look); the ROC with a ``reference`` is the flat-jet ROC with
its ratio panel (:func:`hepnn_coffea.plotting.tagger_plots.plot_roc_ratio`).
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepnn_coffea.plotting.common import auc_label
from hepnn_coffea.plotting.common import interval_values as _values
from hepnn_coffea.plotting.common import log_ticks as _log_ticks
from hepnn_coffea.plotting.common import step_with_errors as _step_with_errors
from hepnn_coffea.plotting.plots import _pyplot, _save
from hepnn_coffea.plotting.style import PlotStyle

#: Colours per true class (others take the default cycle).
CLASS_COLOURS = {"top": "tab:red", "W": "tab:blue", "QCD": "tab:gray", "unmatched": "tab:olive"}
VARIABLE_LABELS = {"FatJet_pt": "Fat jet $p_T$ [GeV]", "FatJet_msoftdrop": "Soft-drop mass $m_{SD}$ [GeV]"}


def _header(ax: Any, right: str, plot_style: PlotStyle | None = None) -> None:
    """The style's label (default: italic "Simulation") top left, ``right`` (the selection) top right."""
    from hepnn_coffea.plotting.style import label

    label(ax, plot_style, right=right)


def _beside_label(text: str, plot_style: PlotStyle | None) -> str | None:
    """``text`` as a legend title where an experiment's label takes the place of the right-hand title."""
    return text if plot_style is not None and plot_style.experiment != "none" else None


def plot_roc_bands(
    curves: Mapping[str, Mapping[str, Any]],
    signal: str,
    path: pathlib.Path,
    *,
    reference: str | None = None,
    plot_style: PlotStyle | None = None,
) -> pathlib.Path:
    """QCD rejection (log) vs signal efficiency with 68% bands, one curve per tagger.

    ``curves``: name -> :func:`~hepnn_coffea.evaluation.sculpting.rejection_curve` output,
    optionally with ``auc`` (an interval) for the legend. With a ``reference`` (one of the
    curves), :func:`~hepnn_coffea.plotting.tagger_plots.plot_roc_ratio`: the same with a panel
    of the ratios to the reference below.
    """
    if reference is not None:
        from hepnn_coffea.plotting.tagger_plots import plot_roc_ratio

        return plot_roc_ratio(
            curves, path, reference=reference, signal=signal, background="QCD", style=plot_style
        )
    plt = _pyplot(plot_style)
    fig, ax = plt.subplots()
    ax.set_yscale("log")
    finite = [r[np.isfinite(r)] for r in (np.asarray(c["rejection"], dtype=float) for c in curves.values())]
    top = max([1.0] + [float(r.max()) for r in finite if len(r)])  # the curves, not the bands, set the range
    for name, c in curves.items():
        eff, rej = np.asarray(c["eff_signal"]), np.asarray(c["rejection"], dtype=float)
        ok = np.isfinite(rej)
        (line,) = ax.plot(eff[ok], rej[ok], label=auc_label(name, c.get("auc")))
        low, high = np.asarray(c["low"], dtype=float), np.asarray(c["high"], dtype=float)
        high = np.minimum(np.where(np.isfinite(high), high, np.nan), 100 * top)
        ax.fill_between(eff[ok], low[ok], high[ok], color=line.get_color(), alpha=0.25, linewidth=0)
    ax.set_xlim(0, 1)
    ax.set_ylim(1, top * 10)
    _log_ticks(ax)
    ax.set_xlabel(f"{signal} efficiency $\\epsilon_S$")
    ax.set_ylabel("QCD rejection $1/\\epsilon_B$")
    title = "68% bands: Clopper-Pearson, Kish $n_{eff}$"
    if _beside_label(f"{signal} vs QCD", plot_style):
        title = f"{signal} vs QCD; {title}"
    ax.legend(fontsize="small", loc="upper right", title=title, title_fontsize="x-small")
    _header(ax, f"{signal} vs QCD", plot_style)
    return _save(fig, path)


def plot_efficiency(
    curves: Mapping[str, Any],
    variable: str,
    signal: str,
    path: pathlib.Path,
    *,
    background: str = "QCD",
    xlabel: str | None = None,
    plot_style: PlotStyle | None = None,
) -> pathlib.Path:
    """Signal (top panel, linear) and background (bottom panel, log) efficiency per bin of ``variable``.

    ``curves``: :func:`~hepnn_coffea.evaluation.events_eval.efficiency_curves` output (or
    ``{"eff_signal": eff, variable: {"signal": ..., "background": ...}}`` of binned efficiencies).
    """
    plt = _pyplot(plot_style)
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 10), gridspec_kw={"hspace": 0.08})
    for ax, key, colour, name in (
        (top, "signal", CLASS_COLOURS.get(signal, "tab:red"), signal),
        (bottom, "background", CLASS_COLOURS["QCD"], background),
    ):
        c = curves[variable][key]
        edges = np.asarray(c["edges"], dtype=float)
        value, low, high = (np.asarray(c[k], dtype=float) for k in ("value", "low", "high"))
        centres, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
        ok = np.isfinite(value) & ((value > 0) | (ax is top))
        ax.errorbar(
            centres[ok],
            value[ok],
            xerr=half[ok],
            yerr=[value[ok] - low[ok], high[ok] - value[ok]],
            fmt="o",
            color=colour,
            markersize=5,
            label=f"{name} jets",
        )
        zero = np.isfinite(value) & ~ok  # none passing, log scale: the upper bound as an arrow
        if zero.any():
            arrow = 0.4 * high[zero]
            ax.errorbar(
                centres[zero],
                high[zero],
                xerr=half[zero],
                yerr=arrow,
                uplims=True,
                fmt="none",
                color=colour,
                label=f"{name} jets, none pass (68% upper limit)",
            )
        ax.set_ylabel(f"{name} efficiency")
        title = (
            f"$\\epsilon_{{{signal}}}$ = {curves['eff_signal']:.0%} (inclusive)"
            if (plot_style and plot_style.experiment != "none" and ax is top)
            else None
        )  # beside an experiment label
        ax.legend(fontsize="x-small", loc="best", title=title, title_fontsize="x-small")
    top.set_ylim(0, 1.05)
    bottom.set_yscale("log")
    c = curves[variable]["background"]
    value, high = np.asarray(c["value"], dtype=float), np.asarray(c["high"], dtype=float)
    shown = np.where(value > 0, value, 0.6 * high)[np.isfinite(value)]  # points and upper-limit arrows
    if (shown > 0).any():  # they, not the lower bounds of nearly empty bins, set the range
        bottom.set_ylim(bottom=0.3 * shown[shown > 0].min())
    _log_ticks(bottom)
    bottom.set_xlabel(xlabel or VARIABLE_LABELS.get(variable, variable))
    bottom.set_xlim(edges[0], edges[-1])
    _header(top, f"$\\epsilon_{{{signal}}}$ = {curves['eff_signal']:.0%} (inclusive)", plot_style)
    return _save(fig, path)


def plot_mass_after_cuts(
    cuts: Sequence[Mapping[str, Any]],
    signal: str,
    path: pathlib.Path,
    *,
    background: str = "QCD",
    xlabel: str | None = None,
    cut_on: str | None = None,
    plot_style: PlotStyle | None = None,
) -> pathlib.Path:
    """Normalised background (QCD) mass without and with cuts at several signal efficiencies.

    ``cuts``: :func:`~hepnn_coffea.evaluation.sculpting.mass_after_cuts` output (or
    :func:`~hepnn_coffea.evaluation.tagger_curves.mass_after_cuts`). Empty bins get no error bar.
    """
    plt = _pyplot(plot_style)
    fig, ax = plt.subplots()
    for cut in cuts:
        edges = np.asarray(cut["edges"], dtype=float)
        values, variances = np.asarray(cut["values"], dtype=float), np.asarray(cut["variances"], dtype=float)
        norm = values.sum() * np.diff(edges)
        if values.sum() <= 0:
            continue
        if cut["eff_signal"] is None:
            label, style = "No cut", {"color": "black", "linestyle": "--"}
        else:
            from hepnn_coffea.evaluation.intervals import format_interval

            rejection, inv_jsd = cut.get("rejection"), cut.get("inv_jsd_interval")
            label = f"$\\epsilon_{{{signal}}}$ = {cut['eff_signal']:.0%}: $1/\\epsilon_B$ = "
            label += (
                format_interval(rejection) if rejection else f"{1 / max(cut['eff_background'], 1e-300):.3g}"
            )
            if inv_jsd and inv_jsd.get("value") is not None and np.isfinite(inv_jsd["value"]):
                label += f", 1/JSD = {format_interval(inv_jsd)}"
            style = {}
        errors = np.sqrt(variances) / norm
        _step_with_errors(ax, edges, values / norm, errors, label=label, linewidth=2, **style)
    ax.set_xlabel(xlabel or VARIABLE_LABELS["FatJet_msoftdrop"])
    ax.set_ylabel(f"Normalised {background} jets / GeV")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, 1.5 * ax.get_ylim()[1])  # room for the legend
    cut_on = cut_on or f"$D_{{{signal}}}$"
    ax.legend(
        fontsize="xx-small",
        loc="upper right",
        title=f"{background} jets, cut on {cut_on}",
        title_fontsize="xx-small",
    )
    _header(ax, "weighted, normalised", plot_style)
    return _save(fig, path)


def plot_discriminant(
    h: Any, signal: str, path: pathlib.Path, rebin: int = 2, *, plot_style: PlotStyle | None = None
) -> pathlib.Path:
    """Normalised weighted distributions of ``D_signal`` per process and true class (log scale).

    ``h``: a ``disc_<signal>_msoftdrop`` or ``disc_<signal>_pt`` hist of
    :func:`~hepnn_coffea.evaluation.events_eval.make_event_hists`.
    """
    plt = _pyplot(plot_style)
    fig, ax = plt.subplots()
    axis = f"disc_{signal}"
    view = h.project("process", "label", axis)
    edges = view.axes[axis].edges[::rebin]
    for process in view.axes["process"]:
        for label in view.axes["label"]:
            sub = view[{"process": process, "label": label}]
            values = sub.values().reshape(-1, rebin).sum(axis=1)
            if values.sum() <= 0:
                continue
            errors = np.sqrt(sub.variances().reshape(-1, rebin).sum(axis=1))
            norm = values.sum() * np.diff(edges)
            style = {"linestyle": "--" if label == "unmatched" else "-"}
            if label in CLASS_COLOURS:
                style["color"] = CLASS_COLOURS[label]
            truth = label if label == "unmatched" else f"true {label}"
            label_text = f"{process}, {truth}"
            _step_with_errors(ax, edges, values / norm, errors / norm, label=label_text, linewidth=2, **style)
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"$D_{{{signal}}} = s_{{{signal}}} / (s_{{{signal}}} + s_{{QCD}})$")
    ax.set_ylabel("Density (unit area)")
    ax.legend(
        fontsize="x-small",
        ncols=2,
        title=_beside_label("weighted, normalised", plot_style),
        title_fontsize="x-small",
    )
    _header(ax, "weighted, normalised", plot_style)
    return _save(fig, path)


def plot_rejection_vs_jsd(
    points: Mapping[str, tuple[Any, Any]],
    path: pathlib.Path,
    signal: str = "top",
    efficiency: float = 0.5,
    *,
    plot_style: PlotStyle | None = None,
) -> pathlib.Path:
    """QCD rejection vs 1/JSD at one signal efficiency, one point per variant (log-log, error bars).

    Parameters
    ----------
    points
        Name (e.g. nominal / flat-reweighted / DisCo) -> ``(rejection, 1/JSD)``, each an interval
        dict or a number. An unbounded upper error is drawn as a lower-limit arrow.
    """
    plt = _pyplot(plot_style)
    fig, ax = plt.subplots()
    markers = "osD^v<>Ph*X"
    for i, (name, (rejection, inv_jsd)) in enumerate(points.items()):
        y, y_down, y_up, y_open = _values(rejection)
        x, x_down, x_up, x_open = _values(inv_jsd)
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        ax.errorbar(
            [x],
            [y],
            xerr=[[x_down], [x_up]],
            yerr=[[y_down], [y_up]],
            xlolims=x_open,
            lolims=y_open,
            fmt=markers[i % len(markers)],
            markersize=10,
            capsize=3,
            label=name,
            color=plt.get_cmap("tab10")(i % 10),
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("1/JSD (QCD $m_{SD}$, pass vs fail)")
    ax.set_ylabel("QCD rejection $1/\\epsilon_B$")
    ax.margins(0.3)
    ax.set_xlim(left=max(ax.get_xlim()[0], 0.5))
    ax.set_ylim(bottom=max(ax.get_ylim()[0], 0.5))
    _log_ticks(ax, "x")
    _log_ticks(ax, "y")
    ax.annotate(
        "better",
        xy=(0.97, 0.97),
        xytext=(0.8, 0.8),
        xycoords="axes fraction",
        fontsize="small",
        arrowprops={"arrowstyle": "->"},
        ha="center",
        va="center",
    )
    right = f"{signal} vs QCD, $\\epsilon_{{{signal}}}$ = {efficiency:.0%}"
    beside = len(points) > 4  # many variants: the legend goes right of the axes, never over a point
    ax.legend(
        fontsize="small",
        loc="upper left" if beside else "lower left",
        title=_beside_label(right, plot_style),
        title_fontsize="x-small",
        **({"bbox_to_anchor": (1.02, 1.0)} if beside else {}),
    )
    if beside:
        fig.set_size_inches(fig.get_size_inches()[0] * 1.5, fig.get_size_inches()[1])
    _header(ax, right, plot_style)
    return _save(fig, path)


def plot_events(
    out: pathlib.Path,
    signals: Sequence[str],
    *,
    hists: Mapping[str, Any],
    rocs: Mapping[str, Mapping[str, Any]],
    efficiencies: Mapping[str, Any],
    mass_cuts: Mapping[str, Sequence[Mapping[str, Any]]],
    points: Mapping[str, Mapping[str, tuple[Any, Any]]],
    reference: str | None = None,
    plot_style: PlotStyle | None = None,
) -> list[pathlib.Path]:
    """Every figure of the events evaluation into ``out``, per signal S (PNG paths returned).

    ``roc_S`` (with a ratio panel to the ``reference`` tagger when given), ``efficiency_vs_pt_S``,
    ``efficiency_vs_msoftdrop_S``, ``msoftdrop_qcd_S``, ``discriminant_S``, ``rejection_vs_jsd_S``;
    all in ``plot_style``.
    """
    kw = {"plot_style": plot_style}
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in signals:
        paths += [
            plot_roc_bands(rocs[s], s, out / f"roc_{s}.png", reference=reference, **kw),
            plot_efficiency(efficiencies[s], "FatJet_pt", s, out / f"efficiency_vs_pt_{s}.png", **kw),
            plot_efficiency(
                efficiencies[s], "FatJet_msoftdrop", s, out / f"efficiency_vs_msoftdrop_{s}.png", **kw
            ),
            plot_mass_after_cuts(mass_cuts[s], s, out / f"msoftdrop_qcd_{s}.png", **kw),
            plot_discriminant(hists[f"disc_{s}_msoftdrop"], s, out / f"discriminant_{s}.png", **kw),
            plot_rejection_vs_jsd(points[s], out / f"rejection_vs_jsd_{s}.png", signal=s, **kw),
        ]
    return paths
