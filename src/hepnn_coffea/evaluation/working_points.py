"""Working points at fixed background efficiency, global and per pT bin, as a correctionlib JSON.

From a per-jet table (``scores.parquet`` of ``hepnn infer``) the score threshold of every
discriminant is found at each target background efficiency, once for all jets (``global``)
and once per pT bin, and written as a ``correctionlib.schemav2`` CorrectionSet with two
corrections per discriminant ``D``:

``D_global(wp, pt)`` and ``D_pt(wp, pt)`` -> threshold
    ``wp`` is a category (``eff_b_1%``, ``eff_b_5%``, ...), ``pt`` a binning (``flow: clamp``:
    jets outside the table's pT range take the first/last bin; ``D_global`` has one bin).
    A jet passes when ``discriminant >= threshold``.

Discriminants follow the evaluation: with a ``QCD`` class (the event workflow), one per other
class S, ``score_S / (score_S + score_QCD)`` on jets labelled S vs QCD; otherwise the first
class's score, its jets vs all others. The threshold is the lowest score value whose
weighted background efficiency (``score >= t``) does not exceed the target.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hepnn_coffea._optional import require
from hepnn_coffea.evaluation.intervals import efficiency_interval, kish_n_eff

BACKGROUND = "QCD"
PT_COLUMNS = ("FatJet_pt", "jet_pt")


@dataclass
class Discriminant:
    """One signal-vs-background discriminant of a per-jet table (numpy arrays over all rows)."""

    name: str
    description: str
    score: np.ndarray
    is_signal: np.ndarray
    is_background: np.ndarray
    weight: np.ndarray
    pt: np.ndarray


def wp_name(background_efficiency: float) -> str:
    """``eff_b_1%`` for 0.01 (the names of :func:`hepnn_coffea.evaluation.roc.working_points`)."""
    return f"eff_b_{background_efficiency * 100:g}%"


def signals(classes: Sequence[str]) -> list[str]:
    """The classes that get a discriminant: all but ``QCD`` if there is one, else the first."""
    return [c for c in classes if c != BACKGROUND] if BACKGROUND in classes else [classes[0]]


def discriminant_values(scores: Mapping[str, Any], signal: str, classes: Sequence[str]) -> Any:
    """The discriminant of ``signal`` from ``score_<class>`` columns (numpy or awkward arrays)."""
    s = scores[f"score_{signal}"]
    if BACKGROUND not in classes:
        return s
    total = s + scores[f"score_{BACKGROUND}"]
    return (s / (total + (total == 0))) * (total != 0)  # 0 where both scores are 0, no division warning


def pt_column_of(columns: Mapping[str, Any], pt_column: str | None = None) -> str:
    """``pt_column``, else the first of :data:`PT_COLUMNS` in the table."""
    candidates = [pt_column] if pt_column else list(PT_COLUMNS)
    for name in candidates:
        if name in columns:
            return name
    raise ValueError(
        f"no pT column {candidates} in the table (columns: {sorted(columns)}); pass pt_column=..."
    )


def discriminants(
    columns: Mapping[str, np.ndarray], classes: Sequence[str], pt_column: str | None = None
) -> dict[str, Discriminant]:
    """Every discriminant of a ``scores.parquet`` table (flat workflow: class one-hot columns; events:
    ``label``)."""
    pt = np.asarray(columns[pt_column_of(columns, pt_column)], dtype=np.float64)
    weight = np.asarray(columns["weight"], dtype=np.float64)

    def truth(cls: str) -> np.ndarray:
        if "label" in columns:
            return np.asarray(columns["label"]).astype(str) == cls
        return np.asarray(columns[cls]).astype(bool)

    out = {}
    for signal in signals(classes):
        is_signal = truth(signal)
        is_background = truth(BACKGROUND) if BACKGROUND in classes else ~is_signal
        if BACKGROUND in classes:
            text = (
                f"score_{signal} / (score_{signal} + score_{BACKGROUND}); "
                f"background: jets labelled {BACKGROUND}"
            )
        else:
            text = f"score_{signal}; background: jets of the other classes"
        score = np.asarray(discriminant_values(columns, signal, classes), dtype=np.float64)
        out[signal] = Discriminant(signal, text, score, is_signal, is_background, weight, pt)
    return out


def threshold_at_background_efficiency(score: np.ndarray, weight: np.ndarray, target: float) -> float:
    """A cut ``score >= t`` passing the most background with weighted efficiency ``<= target``.

    ``t`` lies halfway between the lowest passing score and the next lower one (above the highest
    score when even that one alone exceeds the target), so a threshold read back with a last-digit
    rounding (correctionlib's JSON parser) selects the same entries.
    """
    score = np.asarray(score, dtype=np.float64)
    if len(score) == 0:
        raise ValueError("no background entries to set a threshold on")
    order = np.argsort(-score, kind="mergesort")
    s = score[order]
    fraction = np.cumsum(np.asarray(weight, dtype=np.float64)[order])
    fraction /= fraction[-1]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last entry of every group of equal scores
    values = s[ends]
    gap = 1e-6 * max(abs(values[0]), abs(values[-1]), 1e-300)
    below = np.r_[values[1:], values[-1] - gap]  # the next lower score of every group
    above = fraction[ends] > target * (1 + 1e-12)
    if above[0]:
        return float(values[0] + 0.5 * (min(gap, values[0] - values[1]) if len(values) > 1 else gap))
    k = int(np.argmax(above)) - 1 if above.any() else len(ends) - 1
    return float(0.5 * (values[k] + below[k]))


def _efficiencies(d: Discriminant, threshold: float, rows: np.ndarray) -> dict[str, Any]:
    passed = d.score >= threshold
    out: dict[str, Any] = {}
    for key, sel in (("eff_signal", d.is_signal & rows), ("eff_background", d.is_background & rows)):
        w = d.weight[sel]
        out[key] = efficiency_interval(float(w[passed[sel]].sum()), float(w.sum()), kish_n_eff(w))
    out["n_background"] = int((d.is_background & rows).sum())
    return out


def default_pt_edges(pt: np.ndarray, n_bins: int = 5) -> list[float]:
    """Equal-population edges of ``pt`` (rounded to 10 GeV inside; whole GeV around all values at the
    ends)."""
    pt = np.asarray(pt, dtype=np.float64)
    inner = np.round(np.quantile(pt, np.linspace(0, 1, n_bins + 1)[1:-1]) / 10.0) * 10.0
    low, high = np.floor(pt.min()), np.floor(pt.max()) + 1.0
    return [float(e) for e in np.unique(np.r_[low, inner[(inner > low) & (inner < high)], high])]


def find_working_points(
    columns: Mapping[str, np.ndarray],
    classes: Sequence[str],
    background_efficiencies: Sequence[float],
    pt_edges: Sequence[float] | None = None,
    pt_column: str | None = None,
) -> dict[str, Any]:
    """Thresholds (global and per pT bin) with the signal/background efficiencies they give on the table.

    A pT bin without background jets takes the global threshold (``fallback: true``).
    """
    ds = discriminants(columns, classes, pt_column)
    first = next(iter(ds.values()))
    edges = list(pt_edges) if pt_edges is not None else default_pt_edges(first.pt[first.is_background])
    out: dict[str, Any] = {
        "pt_column": pt_column_of(columns, pt_column),
        "pt_edges": edges,
        "background_efficiencies": list(background_efficiencies),
        "discriminants": {},
    }
    every = np.ones(len(first.pt), dtype=bool)
    for name, d in ds.items():
        entry: dict[str, Any] = {"description": d.description, "global": {}, "pt_bins": {}}
        for target in background_efficiencies:
            key = wp_name(target)
            bkg = d.is_background
            threshold = threshold_at_background_efficiency(d.score[bkg], d.weight[bkg], target)
            entry["global"][key] = {"threshold": threshold, **_efficiencies(d, threshold, every)}
            bins = []
            for low, high in zip(edges[:-1], edges[1:]):
                rows = (d.pt >= low) & (d.pt < high)
                sel = bkg & rows
                fallback = not sel.any()
                t = (
                    threshold
                    if fallback
                    else threshold_at_background_efficiency(d.score[sel], d.weight[sel], target)
                )
                bins.append(
                    {
                        "low": low,
                        "high": high,
                        "threshold": t,
                        "fallback": fallback,
                        **_efficiencies(d, t, rows),
                    }
                )
            entry["pt_bins"][key] = bins
        out["discriminants"][name] = entry
    return out


def correction_set(points: Mapping[str, Any], description: str = "") -> Any:
    """The ``correctionlib.schemav2.CorrectionSet`` of :func:`find_working_points` output."""
    cs = require("correctionlib.schemav2")
    edges = [float(e) for e in points["pt_edges"]]
    pt_in = cs.Variable(name="pt", type="real", description=f"jet pT ({points['pt_column']}) [GeV]")
    corrections = []
    for name, entry in points["discriminants"].items():
        wps = list(entry["global"])
        wp_in = cs.Variable(name="wp", type="string", description=f"working point, one of {wps}")
        for kind in ("global", "pt"):
            items = []
            for wp in wps:
                if kind == "global":
                    content, bin_edges = [entry["global"][wp]["threshold"]], [edges[0], edges[-1]]
                else:
                    content, bin_edges = [b["threshold"] for b in entry["pt_bins"][wp]], edges
                node = cs.Binning(
                    nodetype="binning", input="pt", edges=bin_edges, content=content, flow="clamp"
                )
                items.append(cs.CategoryItem(key=wp, value=node))
            what = "one threshold for all jets" if kind == "global" else "one threshold per pT bin"
            corrections.append(
                cs.Correction(
                    name=f"{name}_{kind}",
                    version=1,
                    inputs=[wp_in, pt_in],
                    output=cs.Variable(
                        name="threshold",
                        type="real",
                        description="a jet passes when its discriminant >= threshold",
                    ),
                    description=f"{entry['description']}; {what} at fixed background efficiency "
                    "(clamped pT binning)",
                    data=cs.Category(nodetype="category", input="wp", content=items),
                )
            )
    return cs.CorrectionSet(schema_version=2, description=description, corrections=corrections)


def write_working_points(
    source: str | pathlib.Path,
    output: str | pathlib.Path,
    background_efficiencies: Sequence[float],
    *,
    pt_edges: Sequence[float] | None = None,
    pt_column: str | None = None,
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Working points of an infer table (``scores.parquet`` or its folder) -> correctionlib JSON ``output``.

    The file is loaded back with ``correctionlib.CorrectionSet.from_file`` and every jet's threshold
    evaluated through it; the returned summary (also written next to ``output`` as ``.summary.json``)
    holds the thresholds and the efficiencies the file gives on the table.
    """
    import pyarrow.parquet as pq

    path = pathlib.Path(source)
    table_path = path / "scores.parquet" if path.is_dir() else path
    columns = {k: np.asarray(v) for k, v in pq.read_table(table_path).to_pydict().items()}
    if classes is None:
        counts = table_path.parent / "counts.json"
        classes = (
            json.loads(counts.read_text())["classes"]
            if counts.is_file()
            else [k[len("score_") :] for k in columns if k.startswith("score_")]
        )
    points = find_working_points(columns, classes, background_efficiencies, pt_edges, pt_column)
    cset = correction_set(points, description=f"hepnn working points from {table_path.resolve()}")
    out = pathlib.Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(cset.model_dump_json(exclude_unset=True, indent=1))
    points["achieved"] = reproduce(out, columns, classes, points)
    check_reproduced(points, points["achieved"])
    points["correctionlib"] = str(out)
    pathlib.Path(f"{out}.summary.json").write_text(json.dumps(points, indent=1))
    return points


def reproduce(
    path: str | pathlib.Path,
    columns: Mapping[str, np.ndarray],
    classes: Sequence[str],
    points: Mapping[str, Any],
) -> dict[str, Any]:
    """Efficiencies on the table with the thresholds read back through correctionlib (validates the file)."""
    correctionlib = require("correctionlib")
    cset = correctionlib.CorrectionSet.from_file(str(path))
    ds = discriminants(columns, classes, points["pt_column"])
    edges = points["pt_edges"]
    out: dict[str, Any] = {}
    for name, d in ds.items():
        for kind in ("global", "pt"):
            corr = cset[f"{name}_{kind}"]
            for wp in points["discriminants"][name]["global"]:
                threshold = np.asarray(corr.evaluate(wp, d.pt))
                passed = d.score >= threshold
                bkg, sig = d.is_background, d.is_signal
                res = {
                    "eff_background": float(d.weight[bkg & passed].sum() / d.weight[bkg].sum()),
                    "eff_signal": float(d.weight[sig & passed].sum() / d.weight[sig].sum()),
                }
                if kind == "pt":  # jets inside the bins only (outside, the clamped edge bins apply)
                    index = np.searchsorted(edges, d.pt, side="right") - 1
                    per_bin = [bkg & (index == i) for i in range(len(edges) - 1)]
                    res["eff_background_per_bin"] = [
                        float(d.weight[b & passed].sum() / max(d.weight[b].sum(), 1e-300)) for b in per_bin
                    ]
                out.setdefault(name, {}).setdefault(kind, {})[wp] = res
    return out


def check_reproduced(points: Mapping[str, Any], achieved: Mapping[str, Any], tolerance: float = 1e-9) -> None:
    """The efficiencies read back through correctionlib equal those the thresholds were chosen with."""
    for name, entry in points["discriminants"].items():
        for wp, g in entry["global"].items():
            pairs = [
                (achieved[name]["global"][wp]["eff_background"], g["eff_background"]["value"], "all jets")
            ]
            pairs += [
                (got, b["eff_background"]["value"], f"pT bin {b['low']:g}-{b['high']:g}")
                for got, b in zip(achieved[name]["pt"][wp]["eff_background_per_bin"], entry["pt_bins"][wp])
            ]
            for got, want, where in pairs:
                if want is not None and abs(got - want) > tolerance:
                    raise RuntimeError(
                        f"correctionlib thresholds of {name} {wp} give eps_B = {got} on {where}, not {want}"
                    )


def working_points_markdown(points: Mapping[str, Any]) -> str:
    """Thresholds and efficiencies per discriminant, working point and pT bin (Markdown)."""
    from hepnn_coffea.evaluation.intervals import format_interval

    lines = []
    for name, entry in points["discriminants"].items():
        lines += [
            f"### {name}: {entry['description']}",
            "",
            f"| working point | {points['pt_column']} [GeV] | threshold | eps_B | eps_S | background jets |",
            "|---|---|---|---|---|---|",
        ]
        for wp, g in entry["global"].items():
            rows = [("all", g)] + [
                (f"{b['low']:g}-{b['high']:g}" + (" (global)" if b["fallback"] else ""), b)
                for b in entry["pt_bins"][wp]
            ]
            for label, r in rows:
                lines.append(
                    f"| {wp} | {label} | {r['threshold']:.5f} | {format_interval(r['eff_background'])} | "
                    f"{format_interval(r['eff_signal'])} | {r['n_background']} |"
                )
        lines.append("")
    return "\n".join(lines)
