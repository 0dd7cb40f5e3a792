"""Figures of the flat-jet classifier evaluation (``hepnn evaluate``), PNG + PDF each.

ROC with 68% bands and a ratio panel to a reference model; background rejection vs a jet
variable at a fixed signal efficiency (global and per-bin working points); efficiencies vs a
variable (:func:`hepnn_coffea.plotting.events_plots.plot_efficiency`); score shapes per
sample (normalised) and the weighted stack; the background mass after working-point cuts
(:func:`hepnn_coffea.plotting.events_plots.plot_mass_after_cuts`). Inputs are the plain dicts
of :mod:`hepnn_coffea.evaluation.tagger_curves` and :mod:`hepnn_coffea.evaluation.sculpting`.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from hepnn_coffea.plotting.common import auc_label, errorbar_or_limit, log_ticks, step_with_errors
from hepnn_coffea.plotting.plots import _pyplot, _save
from hepnn_coffea.plotting.style import PlotStyle, label

#: Axis labels of the usual jet branches (others are written as they are).
VARIABLE_LABELS = {
    "jet_pt": "Jet $p_T$ [GeV]",
    "jet_sdmass": "Soft-drop mass $m_{SD}$ [GeV]",
    "jet_mass": "Jet mass [GeV]",
    "jet_eta": "Jet $\\eta$",
}


def display_name(name: str) -> str:
    """``jet_isTop`` -> ``Top``, ``label_QCD`` -> ``QCD``; other class names unchanged."""
    for prefix in ("jet_is", "label_", "is_"):
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix) :]
    return name


def plot_roc_ratio(
    curves: Mapping[str, Mapping[str, Any]],
    path: pathlib.Path,
    *,
    reference: str | None = None,
    signal: str = "signal",
    background: str = "background",
    style: PlotStyle | None = None,
) -> pathlib.Path:
    """Background rejection (log) vs signal efficiency with 68% bands; below, the ratio to ``reference``.

    ``curves``: name -> :func:`~hepnn_coffea.evaluation.sculpting.rejection_curve` output on a
    common grid of signal efficiencies (``eff_signal``), optionally with ``auc`` (an
    interval) for the legend. ``reference`` (default: the first curve) is drawn at 1 in the
    ratio panel with its own band; the other curves' bands are their own intervals over the
    reference's central value (the uncertainty of each curve, as in ATLAS's puma).
    """
    reference = reference or next(iter(curves))
    if reference not in curves:
        raise ValueError(f"ROC reference {reference!r} is not one of the curves {list(curves)}")
    plt = _pyplot(style)
    fig, (ax, ratio) = plt.subplots(
        2, 1, sharex=True, figsize=(10, 10), gridspec_kw={"height_ratios": [3, 1], "hspace": 0.06}
    )
    ax.set_yscale("log")
    finite = [r[np.isfinite(r)] for r in (np.asarray(c["rejection"], dtype=float) for c in curves.values())]
    top = max([1.0] + [float(r.max()) for r in finite if len(r)])
    ref = np.asarray(curves[reference]["rejection"], dtype=float)
    ratio_range = [1.0, 1.0]
    for name, c in curves.items():
        eff, rej = np.asarray(c["eff_signal"], dtype=float), np.asarray(c["rejection"], dtype=float)
        low, high = np.asarray(c["low"], dtype=float), np.asarray(c["high"], dtype=float)
        ok = np.isfinite(rej)
        text = auc_label(name, c.get("auc")) + (" (reference)" if name == reference else "")
        (line,) = ax.plot(eff[ok], rej[ok], label=text, linewidth=2)
        band_high = np.minimum(np.where(np.isfinite(high), high, np.nan), 100 * top)
        ax.fill_between(eff[ok], low[ok], band_high[ok], color=line.get_color(), alpha=0.25, linewidth=0)
        both = ok & np.isfinite(ref) & (ref > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            r, r_low, r_high = rej / ref, low / ref, np.where(np.isfinite(high), high / ref, np.nan)
        ratio.plot(eff[both], r[both], color=line.get_color(), linewidth=2)
        ratio.fill_between(
            eff[both], r_low[both], r_high[both], color=line.get_color(), alpha=0.25, linewidth=0
        )
        if both.any():
            ratio_range = [
                min(ratio_range[0], float(r[both].min())),
                max(ratio_range[1], float(r[both].max())),
            ]
    starts = [
        float(np.asarray(c["eff_signal"])[np.isfinite(np.asarray(c["rejection"], dtype=float))].min())
        for c in curves.values()
        if np.isfinite(np.asarray(c["rejection"], dtype=float)).any()
    ]
    ax.set_xlim(max(0.0, np.floor(10 * min(starts, default=0.0)) / 10 - 0.05), 1)
    ax.set_ylim(1, top * 10)
    log_ticks(ax)
    ax.set_ylabel(f"{background} rejection $1/\\epsilon_B$")
    ax.legend(
        fontsize="x-small",
        loc="lower left",
        title=f"{signal} vs {background}; 68% bands: Clopper-Pearson, Kish $n_{{eff}}$",
        title_fontsize="xx-small",
    )
    ratio.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    ratio.set_ylim(max(0.0, 0.8 * ratio_range[0]), min(1.2 * ratio_range[1], 10.0))
    ratio.set_ylabel("Ratio to ref.", fontsize="small")
    ratio.set_xlabel(f"{signal} efficiency $\\epsilon_S$")
    label(ax, style, right=f"{signal} vs {background}")
    return _save(fig, path)


def plot_rejection_vs(
    perf: Mapping[str, Any],
    path: pathlib.Path,
    *,
    xlabel: str,
    signal: str = "signal",
    background: str = "background",
    style: PlotStyle | None = None,
) -> pathlib.Path:
    """Background rejection (top, log) and signal efficiency (bottom) per bin at one signal efficiency.

    ``perf``: :func:`~hepnn_coffea.evaluation.tagger_curves.performance_vs` output; both
    the global working point (one threshold) and the per-bin one (a threshold per bin giving
    the target efficiency in every bin) are drawn. A bin where no background passes is a
    lower-limit arrow at the 68% lower bound.
    """
    plt = _pyplot(style)
    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(10, 10), gridspec_kw={"height_ratios": [2, 1], "hspace": 0.06}
    )
    edges = np.asarray(perf["edges"], dtype=float)
    centres, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
    eff = perf["eff_signal"]
    kinds = (
        ("global", f"global WP ($\\epsilon_S$ = {eff:.0%} inclusive)", "o", "tab:blue", -0.15),
        ("per_bin", f"per-bin WP ($\\epsilon_S$ = {eff:.0%} in every bin)", "s", "tab:orange", 0.15),
    )
    shown = []
    for kind, text, marker, colour, shift in kinds:
        rej = perf[kind]["rejection"]
        x = centres + shift * half  # side by side, so the two sets of bars do not hide each other
        errorbar_or_limit(
            top,
            x,
            half * 0.0,
            rej["value"],
            rej["low"],
            rej["high"],
            fmt=marker,
            color=colour,
            markersize=6,
            label=text,
            limit_label=None,
        )
        shown += [v for v in np.asarray(rej["value"], dtype=float) if np.isfinite(v)]
        shown += [v for v in np.asarray(rej["low"], dtype=float) if np.isfinite(v) and v > 0]
        sig = perf[kind]["signal"]
        value = np.asarray(sig["value"], dtype=float)
        ok = np.isfinite(value)
        bottom.errorbar(
            x[ok],
            value[ok],
            yerr=[value[ok] - np.asarray(sig["low"])[ok], np.asarray(sig["high"])[ok] - value[ok]],
            fmt=marker,
            color=colour,
            markersize=6,
        )
    for ax in (top, bottom):
        for edge in edges[1:-1]:
            ax.axvline(edge, color="grey", linewidth=0.5, alpha=0.4)
    top.set_yscale("log")
    if shown:
        top.set_ylim(0.5 * min(shown), 50 * max(shown))  # room above for the legend
    log_ticks(top)
    top.set_ylabel(f"{background} rejection $1/\\epsilon_B$")
    title = (
        f"{signal} vs {background}; 68% CL: Clopper-Pearson, Kish $n_{{eff}}$\n"
        f"arrows: no {background} jet passes (lower limit)"
    )
    top.legend(fontsize="x-small", loc="upper left", title=title, title_fontsize="xx-small")
    bottom.axhline(eff, color="black", linewidth=0.8, linestyle=":")
    bottom.set_ylim(0.0, 1.05)
    bottom.set_ylabel(f"{signal} eff.")
    bottom.set_xlabel(xlabel)
    bottom.set_xlim(edges[0], edges[-1])
    label(top, style, right=f"{signal} vs {background}")
    return _save(fig, path)


Parts = dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]


def _score_view(h: Any, signal: str, rebin: int) -> tuple[np.ndarray, Parts]:
    """Edges and ``(process, truth) -> (sum w, sum w^2)`` of the signal score, flow folded into the end
    bins."""
    view = h[{"output": signal}]
    edges = view.axes["score"].edges
    n = view.axes["score"].size
    rebin = max(1, min(rebin, n))
    while n % rebin:
        rebin -= 1
    out = {}
    for process in sorted(view.axes["process"]):  # fixed order (and colours), whatever the fill order was
        for truth in view.axes["truth"]:
            sub = view[{"process": process, "truth": truth}]
            vals = []
            for raw in (sub.values(flow=True), sub.variances(flow=True)):
                folded = raw[1:-1].copy()
                folded[0] += raw[0]
                folded[-1] += raw[-1]
                vals.append(folded.reshape(-1, rebin).sum(axis=1))
            out[(str(process), str(truth))] = (vals[0], vals[1])
    return edges[::rebin], out


def plot_score_shapes(
    h: Any, signal: str, path: pathlib.Path, *, rebin: int = 20, style: PlotStyle | None = None
) -> pathlib.Path:
    """Normalised ``signal`` score per sample and true class (log), error bars on non-empty bins only."""
    plt = _pyplot(style)
    fig, ax = plt.subplots()
    edges, parts = _score_view(h, signal, rebin)
    for (process, truth), (values, variances) in parts.items():
        if values.sum() <= 0:
            continue
        norm = values.sum() * np.diff(edges)
        step_with_errors(
            ax,
            edges,
            values / norm,
            np.sqrt(variances) / norm,
            linewidth=2,
            linestyle="-" if truth == signal else "--",
            label=f"{process} (true {display_name(truth)})",
        )
    ax.set_yscale("log")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(f"{display_name(signal)} score")
    ax.set_ylabel("Density (unit area)")
    ax.legend(fontsize="small", loc="upper center")
    label(ax, style, right="normalised")
    return _save(fig, path)


def plot_score_stacked(
    h: Any, signal: str, path: pathlib.Path, *, rebin: int = 20, style: PlotStyle | None = None
) -> pathlib.Path:
    """Weighted ``signal`` score stacked per sample (log), with the stack's statistical uncertainty
    hatched."""
    plt = _pyplot(style)
    fig, ax = plt.subplots()
    edges, parts = _score_view(h, signal, rebin)
    per_sample: dict[str, list[np.ndarray]] = {}
    for (process, _), (values, variances) in parts.items():
        acc = per_sample.setdefault(process, [np.zeros_like(values), np.zeros_like(values)])
        acc[0] += values
        acc[1] += variances
    order = sorted(per_sample, key=lambda p: (-per_sample[p][0].sum(), p))  # the largest sample at the bottom
    bottom = np.zeros(len(edges) - 1)
    total_var = np.zeros_like(bottom)
    for process in order:
        values, variances = per_sample[process]
        ax.stairs(
            bottom + values,
            edges,
            baseline=bottom,
            fill=True,
            alpha=0.8,
            label=f"{process} ({values.sum():.4g})",
        )
        bottom, total_var = bottom + values, total_var + variances
    error = np.sqrt(total_var)
    ax.stairs(
        bottom + error,
        edges,
        baseline=np.maximum(bottom - error, 0),
        fill=False,
        hatch="////",
        color="black",
        linewidth=0,
        label="Stat. unc.",
    )
    ax.stairs(bottom, edges, color="black", linewidth=1)
    ax.set_yscale("log")
    positive = bottom[bottom > 0]
    if len(positive):
        ax.set_ylim(0.5 * positive.min(), 20 * positive.max())
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(f"{display_name(signal)} score")
    ax.set_ylabel(f"Weighted jets / {edges[1] - edges[0]:.2g}")
    ax.legend(fontsize="small", loc="upper center", title="Sample (weighted sum)", title_fontsize="x-small")
    label(ax, style, right="weighted")
    return _save(fig, path)


def plot_tagger(
    out: pathlib.Path,
    *,
    hists: Mapping[str, Any],
    signal: str,
    background: list[str],
    curves: Mapping[str, Mapping[str, Any]],
    reference: str | None,
    performance: Mapping[str, Mapping[str, Any]],
    mass_cuts: list[dict[str, Any]] | None,
    mass_variable: str | None,
    style: PlotStyle | None = None,
) -> list[pathlib.Path]:
    """Every figure of the flat-jet evaluation into ``out`` (PNG paths returned; a PDF beside each).

    ``roc``, ``score_shapes``, ``score_stacked``, per variable V of ``performance``
    ``efficiency_vs_V`` and ``rejection_vs_V``, and ``mass_after_cuts`` (with ``mass_cuts``).
    """
    from hepnn_coffea.plotting.events_plots import plot_efficiency, plot_mass_after_cuts

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sig, bkg = display_name(signal), " + ".join(display_name(b) for b in background)
    paths = [
        plot_roc_ratio(curves, out / "roc.png", reference=reference, signal=sig, background=bkg, style=style),
        plot_score_shapes(hists["score"], signal, out / "score_shapes.png", style=style),
        plot_score_stacked(hists["score"], signal, out / "score_stacked.png", style=style),
    ]
    for variable, perf in performance.items():
        xlabel = VARIABLE_LABELS.get(variable, variable)
        short = variable[len("jet_") :] if variable.startswith("jet_") else variable
        paths.append(
            plot_efficiency(
                {"eff_signal": perf["eff_signal"], variable: perf["global"]},
                variable,
                sig,
                out / f"efficiency_vs_{short}.png",
                background=bkg,
                xlabel=xlabel,
                plot_style=style,
            )
        )
        paths.append(
            plot_rejection_vs(
                perf,
                out / f"rejection_vs_{short}.png",
                xlabel=xlabel,
                signal=sig,
                background=bkg,
                style=style,
            )
        )
    if mass_cuts:
        xlabel = VARIABLE_LABELS.get(mass_variable or "", mass_variable or "mass")
        paths.append(
            plot_mass_after_cuts(
                mass_cuts,
                sig,
                out / "mass_after_cuts.png",
                background=bkg,
                xlabel=xlabel,
                cut_on=f"the {sig} score",
                plot_style=style,
            )
        )
    return paths
