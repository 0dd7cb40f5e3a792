"""Shifts of the working points under systematic variations: a table (JSON, Markdown) and a plot.

The working points are those of :mod:`hepnn_coffea.evaluation.working_points` (fixed background
efficiency), with thresholds set once on the *nominal* per-jet table for all jets; every
variation is cut at the same thresholds. For every discriminant, working point and pT bin
(and all jets) the table gives the nominal signal efficiency and background rejection with
their 68% statistical intervals (Clopper-Pearson with the Kish effective entries) and, per
variation, the varied values and their shifts (absolute and relative to the nominal).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepnn_coffea.evaluation.intervals import (
    efficiency_interval,
    format_interval,
    kish_n_eff,
    rejection_interval,
)
from hepnn_coffea.evaluation.working_points import (
    Discriminant,
    default_pt_edges,
    discriminants,
    pt_column_of,
    threshold_at_background_efficiency,
    wp_name,
)


def _rates(d: Discriminant, threshold: float, rows: np.ndarray) -> dict[str, Any]:
    """Signal efficiency and background rejection (intervals) of ``score >= threshold`` on ``rows``."""
    passed = d.score >= threshold
    out: dict[str, Any] = {}
    for key, sel in (("eff_signal", d.is_signal & rows), ("eff_background", d.is_background & rows)):
        w = d.weight[sel]
        out[key] = efficiency_interval(float(w[passed[sel]].sum()), float(w.sum()), kish_n_eff(w))
        out[f"n_{key[4:]}"] = int(sel.sum())
    out["rejection"] = rejection_interval(out.pop("eff_background"))
    return out


def _relative(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return float(value / reference - 1.0)


def _bins(pt: np.ndarray, edges: Sequence[float]) -> list[tuple[str, float | None, float | None, np.ndarray]]:
    out = [("all", None, None, np.ones(len(pt), dtype=bool))]
    out += [(f"{lo:g}-{hi:g}", lo, hi, (pt >= lo) & (pt < hi)) for lo, hi in zip(edges[:-1], edges[1:])]
    return out


def variation_shifts(
    nominal: Mapping[str, np.ndarray],
    varied: Mapping[str, np.ndarray],
    classes: Sequence[str],
    *,
    background_efficiencies: Sequence[float] = (0.01, 0.05),
    pt_edges: Sequence[float] | None = None,
    pt_column: str | None = None,
) -> dict[str, Any]:
    """The shift table of every variation in ``varied`` (a table with a ``variation`` column).

    Returns
    -------
    dict
        ``pt_column``, ``pt_edges``, ``variations`` and per discriminant and working point the
        ``threshold`` and ``bins``: ``{"bin", "low", "high", "nominal": {"eff_signal", "rejection",
        "n_signal", "n_background"}, "shifts": {variation: {"eff_signal", "rejection",
        "delta_eff_signal", "rel_eff_signal", "rel_rejection"}}}`` (intervals for the nominal).
    """
    nom = discriminants(nominal, classes, pt_column)
    first = next(iter(nom.values()))
    edges = (
        [float(e) for e in pt_edges]
        if pt_edges is not None
        else default_pt_edges(first.pt[first.is_background])
    )
    labels = (
        np.asarray(varied["variation"]).astype(str) if len(varied.get("variation", [])) else np.zeros(0, str)
    )
    names = list(dict.fromkeys(labels.tolist()))
    per_var = {
        v: discriminants({k: np.asarray(c)[labels == v] for k, c in varied.items()}, classes, pt_column)
        for v in names
    }
    report: dict[str, Any] = {
        "pt_column": pt_column_of(nominal, pt_column),
        "pt_edges": edges,
        "variations": names,
        "discriminants": {},
    }
    for name, d in nom.items():
        wps: dict[str, Any] = {}
        var_rows = {v: [b[3] for b in _bins(per_var[v][name].pt, edges)] for v in names}
        for target in background_efficiencies:
            threshold = threshold_at_background_efficiency(
                d.score[d.is_background], d.weight[d.is_background], target
            )
            bins = []
            for i, (label, lo, hi, rows) in enumerate(_bins(d.pt, edges)):
                ref = _rates(d, threshold, rows)
                shifts = {}
                for v in names:
                    got = _rates(per_var[v][name], threshold, var_rows[v][i])
                    s, s0 = got["eff_signal"]["value"], ref["eff_signal"]["value"]
                    r, r0 = got["rejection"]["value"], ref["rejection"]["value"]
                    shifts[v] = {
                        "eff_signal": s,
                        "rejection": r,
                        "rel_eff_signal": _relative(s, s0),
                        "delta_eff_signal": None if s is None or s0 is None else float(s - s0),
                        "rel_rejection": _relative(r, r0),
                    }
                bins.append({"bin": label, "low": lo, "high": hi, "nominal": ref, "shifts": shifts})
            wps[wp_name(target)] = {"threshold": threshold, "bins": bins}
        report["discriminants"][name] = {"description": d.description, "working_points": wps}
    return report


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.2f}%"


def _stat(iv: Mapping[str, Any]) -> str:
    """Relative half-width of an interval, e.g. ``±0.8%``."""
    if iv["value"] in (None, 0) or iv["low"] is None or iv["high"] is None:
        return "n/a"
    return f"±{50 * (iv['high'] - iv['low']) / iv['value']:.1f}%"


def variations_markdown(report: Mapping[str, Any]) -> str:
    """One Markdown table per discriminant and working point: rows are (pT bin, variation)."""
    lines = [
        f"Variations: {', '.join(report['variations'])}. Thresholds set on the nominal; shifts are "
        "varied - nominal (relative: varied / nominal - 1); stat = the nominal's 68% interval.",
        "",
    ]
    for name, entry in report["discriminants"].items():
        for wp, point in entry["working_points"].items():
            lines += [
                f"### {name} at {wp} (threshold {point['threshold']:.5f}): {entry['description']}",
                "",
                f"| {report['pt_column']} [GeV] | variation | eps_S nominal | stat | eps_S shift | rel. | "
                "1/eps_B nominal | stat | 1/eps_B rel. shift |",
                "|---" * 9 + "|",
            ]
            for b in point["bins"]:
                ref = b["nominal"]
                for i, (v, s) in enumerate(b["shifts"].items()):
                    nominal = [
                        format_interval(ref["eff_signal"]),
                        _stat(ref["eff_signal"]),
                        None,
                        None,
                        format_interval(ref["rejection"]),
                        _stat(ref["rejection"]),
                    ]
                    if i:
                        nominal = ["", "", None, None, "", ""]
                    delta = "n/a" if s["delta_eff_signal"] is None else f"{s['delta_eff_signal']:+.4f}"
                    lines.append(
                        f"| {b['bin'] if i == 0 else ''} | {v} | {nominal[0]} | {nominal[1]} | {delta} | "
                        f"{_pct(s['rel_eff_signal'])} | {nominal[4]} | {nominal[5]} | "
                        f"{_pct(s['rel_rejection']) if s['rejection'] is not None else 'inf'} |"
                    )
            lines.append("")
    return "\n".join(lines)


def _columns(path: pathlib.Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def write_variation_report(
    out_dir: str | pathlib.Path, settings: Any = None, *, plots: bool = True, pt_column: str | None = None
) -> dict[str, Any]:
    """Read ``scores.parquet`` and ``variations.parquet`` of an infer folder; write
    ``variations.json``/``.md`` and ``plots/variations_<discriminant>.png`` (+ PDF).

    ``settings``: a :class:`~hepnn_coffea.config.variations_config.ReportSettings` (working points, pT
    edges); default: eps_B = 1% and 5%, background-pT quantile bins.
    """
    from hepnn_coffea.config.variations_config import ReportSettings

    out = pathlib.Path(out_dir)
    settings = settings or ReportSettings()
    classes = json.loads((out / "counts.json").read_text())["classes"]
    report = variation_shifts(
        _columns(out / "scores.parquet"),
        _columns(out / "variations.parquet"),
        classes,
        background_efficiencies=settings.background_efficiencies,
        pt_edges=settings.pt_edges,
        pt_column=pt_column,
    )
    (out / "variations.json").write_text(json.dumps(report, indent=1))
    (out / "variations.md").write_text(variations_markdown(report))
    files = {"json": str(out / "variations.json"), "md": str(out / "variations.md"), "plots": []}
    if plots and report["variations"]:
        from hepnn_coffea.plotting.variation_plots import plot_variation_shifts

        files["plots"] = [str(p) for p in plot_variation_shifts(report, out / "plots")]
    return files
