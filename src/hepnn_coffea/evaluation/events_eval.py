"""Evaluation of the event-level (NanoAOD) fat-jet tagger: top / W vs QCD, weighted, with uncertainties.

Reads an ``infer`` folder of the ``events`` workflow, whose ``scores.parquet`` has one row per
fat jet with ``sample``, ``process``, ``run``, ``event``, ``luminosityBlock``,
``fatjet_index``, ``label`` (``top``/``W``/``QCD``/``unmatched``), ``weight``,
``FatJet_{pt,eta,msoftdrop,mass,tau1,tau2,tau3,nConstituents}`` and ``score_<class>``.
For every signal class S (all classes but ``QCD``) the discriminant ``s_S / (s_S + s_QCD)``
is evaluated on the jets labelled S (signal) and QCD (background); unmatched jets are left out.
Metrics and their intervals are defined in :mod:`hepnn_coffea.evaluation.sculpting`.

The per-chunk hists of the inference processor come from :func:`make_event_hists` /
:func:`fill_event_hists`; a gradient-boosted tree on six jet observables
(:func:`train_observable_gbt`, trained on the shards' train split) is the classical baseline.
:func:`evaluate_events` returns and writes an
:class:`~hepnn_coffea.evaluation.protocol.EvaluationSummary` of kind ``events``.
"""

from __future__ import annotations

import json
import pathlib
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepnn_coffea.evaluation import sculpting as sc
from hepnn_coffea.evaluation.observable_gbt import _columns, score_observable_gbt, train_observable_gbt
from hepnn_coffea.evaluation.protocol import (
    Block,
    EvaluationSummary,
    Table,
    jsonable,
    sample_axis,
    write_summary,
)
from hepnn_coffea.evaluation.sculpting import BACKGROUND, PT_EDGES, UNMATCHED, tagger_metrics


def signal_classes(classes: Sequence[str]) -> list[str]:
    """The classes tagged against :data:`BACKGROUND` (all others, in order)."""
    if BACKGROUND not in classes:
        raise ValueError(f"the classes {list(classes)} have no background class {BACKGROUND!r}")
    return [c for c in classes if c != BACKGROUND]


# --- hists -------------------------------------------------------------------------------------------


def make_event_hists(classes: Sequence[str]) -> dict[str, Any]:
    """Empty weighted hists of the events workflow (add per-chunk results with ``+``).

    Returns
    -------
    dict of str to hist.Hist
        ``yields`` (``process`` x ``label``) and, per signal class S,
        ``disc_S_msoftdrop`` (``process`` x ``label`` x ``disc_S`` x ``FatJet_msoftdrop``) and
        ``disc_S_pt`` (``process`` x ``label`` x ``disc_S`` x ``FatJet_pt``); ``process`` and
        ``label`` are growing string categories, ``label`` starts with the classes and ``unmatched``.
    """
    import hist

    def cats() -> list[Any]:
        process = sample_axis(label="Process")
        label = hist.axis.StrCategory([*classes, UNMATCHED], growth=True, name="label", label="True class")
        return [process, label]

    def disc(s: str) -> Any:
        label = f"$D_{{{s}}} = s_{{{s}}} / (s_{{{s}}} + s_{{QCD}})$"
        return hist.axis.Regular(100, 0.0, 1.0, name=f"disc_{s}", label=label)

    def msd() -> Any:
        edges = sc.MSD_EDGES
        return hist.axis.Regular(
            len(edges) - 1,
            edges[0],
            edges[-1],
            name="FatJet_msoftdrop",
            label="Soft-drop mass $m_{SD}$ [GeV]",
        )

    weight = hist.storage.Weight()
    hists = {"yields": hist.Hist(*cats(), storage=weight)}
    for s in signal_classes(classes):
        hists[f"disc_{s}_msoftdrop"] = hist.Hist(*cats(), disc(s), msd(), storage=weight)
        pt = hist.axis.Variable(PT_EDGES, name="FatJet_pt", label="Fat jet $p_T$ [GeV]")
        hists[f"disc_{s}_pt"] = hist.Hist(*cats(), disc(s), pt, storage=weight)
    return hists


def fill_event_hists(hists: dict[str, Any], columns: Mapping[str, Any]) -> dict[str, Any]:
    """Fill :func:`make_event_hists` hists with one chunk of the per-jet table (in place; returned).

    ``columns`` needs ``process``, ``label``, ``weight``, ``FatJet_msoftdrop``, ``FatJet_pt`` and
    ``score_<class>`` for every signal class and ``QCD``. A discriminant of exactly 1 is
    filled into the last bin.
    """
    process = np.asarray(columns["process"]).astype(str)
    label = np.asarray(columns["label"]).astype(str)
    weight = np.asarray(columns["weight"], dtype=np.float64)
    hists["yields"].fill(process=process, label=label, weight=weight)
    for name, h in hists.items():
        if not name.startswith("disc_"):
            continue
        signal = h.axes[2].name[len("disc_") :]
        disc = sc.discriminant(columns[f"score_{signal}"], columns[f"score_{BACKGROUND}"])
        last = h.axes[3].name
        h.fill(
            process=process,
            label=label,
            **{f"disc_{signal}": np.minimum(disc, np.nextafter(1.0, 0.0))},
            **{last: np.asarray(columns[last], dtype=np.float64)},
            weight=weight,
        )
    return hists


# --- the observable GBT baseline --------------------------------------------------------------------


def efficiency_curves(
    columns: Mapping[str, np.ndarray], signal: str, efficiency: float = 0.5
) -> dict[str, Any]:
    """Signal and QCD efficiency vs ``FatJet_pt`` and ``FatJet_msoftdrop`` at one global working point."""
    d = sc.signal_vs_background(columns, signal)
    threshold = float(sc.thresholds_at_efficiency(d["s_disc"], d["s_w"], efficiency))
    out: dict[str, Any] = {"threshold": threshold, "eff_signal": efficiency}
    for var, edges in (("FatJet_pt", sc.PT_EDGES), ("FatJet_msoftdrop", sc.MSD_EFF_EDGES)):
        key = "pt" if var == "FatJet_pt" else "msd"
        out[var] = {
            name: sc.binned_efficiency(d[f"{k}_disc"] >= threshold, d[f"{k}_{key}"], d[f"{k}_w"], edges)
            for name, k in (("signal", "s"), ("background", "b"))
        }
    return out


def weighted_yields(columns: Mapping[str, np.ndarray]) -> dict[str, dict[str, dict[str, float]]]:
    """``{process: {label: {"n", "sum_w", "sum_w2"}}}`` of the per-jet table."""
    process = np.asarray(columns["process"]).astype(str)
    label = np.asarray(columns["label"]).astype(str)
    w = np.asarray(columns["weight"], dtype=np.float64)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for p in np.unique(process):
        for lab in np.unique(label[process == p]):
            sel = (process == p) & (label == lab)
            out.setdefault(str(p), {})[str(lab)] = {
                "n": int(sel.sum()),
                "sum_w": float(w[sel].sum()),
                "sum_w2": float((w[sel] ** 2).sum()),
            }
    return out


def roc_band(columns: Mapping[str, np.ndarray], signal: str) -> dict[str, np.ndarray]:
    """QCD rejection with its 68% band vs signal efficiency (see :func:`sculpting.rejection_curve`)."""
    d = sc.signal_vs_background(columns, signal)
    return sc.rejection_curve(d["s_disc"], d["s_w"], d["b_disc"], d["b_w"])


# --- the stage --------------------------------------------------------------------------------------


def load_infer(
    folder: str | pathlib.Path,
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any] | None]:
    """``counts.json``, ``scores.parquet`` columns and ``hists.pkl`` (None if absent) of an infer folder."""
    import pyarrow.parquet as pq

    folder = pathlib.Path(folder)
    info = json.loads((folder / "counts.json").read_text())
    columns = _columns(pq.read_table(folder / "scores.parquet"))
    hists = None
    if (folder / "hists.pkl").is_file():
        with (folder / "hists.pkl").open("rb") as f:
            hists = pickle.load(f)
    return info, columns, hists


def _named_folders(compare: Sequence[str | pathlib.Path]) -> list[tuple[str | None, pathlib.Path]]:
    """``name=path`` or ``path`` (named later by its model's file stem)."""
    out = []
    for item in compare:
        name, sep, path = str(item).partition("=")
        named = sep and name and "/" not in name and not pathlib.Path(str(item)).exists()
        out.append((name, pathlib.Path(path)) if named else (None, pathlib.Path(str(item))))
    return out


def evaluate_events(
    out_dir: str | pathlib.Path,
    *,
    plots: bool = True,
    shards: str | pathlib.Path | None = None,
    compare: Sequence[str | pathlib.Path] = (),
    reference: str | None = None,
    seed: int = 0,
    n_bootstrap: int = 100,
    style: Any = None,
) -> EvaluationSummary:
    """Metrics, sculpting and plots of an events-workflow infer folder; writes ``summary.json``/``.md``.

    Parameters
    ----------
    out_dir
        The ``infer`` output (``counts.json`` with ``workflow: events``, ``scores.parquet``,
        ``hists.pkl``; the hists are rebuilt from the table when absent).
    plots
        Write ``plots/*.png`` (+ PDF).
    shards
        Preprocessing output whose train split trains the observable GBT baseline (row ``GBT``),
        scored on the same rows as the model.
    compare
        Other infer folders (``path`` or ``name=path``), evaluated on their own tables; named by
        their model file stem by default.
    reference
        Name of a row (e.g. ``GBT``): the others' rejection and 1/JSD at 50% are also given
        relative to it (``relative_to_reference``), and the ROC plots get a panel of the
        ratios to it.
    seed, n_bootstrap
        Seed and number of the bootstrap replicas of the AUC and JSD intervals.
    style
        :class:`~hepnn_coffea.plotting.style.PlotStyle` of the plots (None: the default look).

    Returns
    -------
    EvaluationSummary
        Kind ``events``, written to ``summary.json`` / ``summary.md`` (:func:`events_report`).
    """
    out = pathlib.Path(out_dir)
    info, columns, hists = load_infer(out)
    classes = list(info["classes"])
    signals = signal_classes(classes)
    if hists is None or any(f"disc_{s}_msoftdrop" not in hists for s in signals):
        hists = fill_event_hists(make_event_hists(classes), columns)
    taggers = {pathlib.Path(info["model"]).stem: columns}
    if shards is not None:
        gbt = train_observable_gbt(shards, seed=seed)
        missing = sorted(set(signals + [BACKGROUND]) - set(gbt.hepnn_classes))
        if missing:
            raise ValueError(f"{shards}: the shards' labels {gbt.hepnn_classes} lack the classes {missing}")
        taggers["GBT"] = {**columns, **score_observable_gbt(gbt, columns)}
    for name, folder in _named_folders(compare):
        o_info, o_columns, _ = load_infer(folder)
        name = name or pathlib.Path(o_info["model"]).stem
        missing = [f"score_{c}" for c in [*signals, BACKGROUND] if f"score_{c}" not in o_columns]
        if missing:
            raise ValueError(f"{folder}: scores.parquet lacks {missing} (classes {o_info.get('classes')})")
        while name in taggers:
            name += "'"
        taggers[name] = o_columns
    efficiencies = {s: efficiency_curves(columns, s) for s in signals}
    summary: dict[str, Any] = {
        "workflow": "events",
        "model": info["model"],
        "classes": classes,
        "signals": signals,
        "background": BACKGROUND,
        "n_jets": len(columns["weight"]),
        "intervals": "68.27%: efficiencies/rejections Clopper-Pearson with Kish n_eff; AUC and JSD "
        f"value +- std of {n_bootstrap} Poisson-bootstrap replicas (seed {seed})",
        "yields": weighted_yields(columns),
        "taggers": {
            name: {s: tagger_metrics(cols, s, n_bootstrap=n_bootstrap, seed=seed) for s in signals}
            for name, cols in taggers.items()
        },
        "efficiency_at_50": efficiencies,
    }
    if reference is not None:
        summary["reference"] = reference
        summary["relative_to_reference"] = _relative(summary["taggers"], reference)
    summary = EvaluationSummary(jsonable(summary), kind="events", report=events_report)

    def figures() -> list[pathlib.Path]:
        from hepnn_coffea.plotting.events_plots import plot_events

        return plot_events(
            out / "plots",
            signals,
            hists=hists,
            rocs={
                s: {
                    name: {**roc_band(cols, s), "auc": summary["taggers"][name][s]["auc"]}
                    for name, cols in taggers.items()
                }
                for s in signals
            },
            efficiencies=efficiencies,
            mass_cuts={s: sc.mass_after_cuts(columns, s) for s in signals},
            points={
                s: {
                    name: (row[s]["rejection_at_50"], row[s]["inv_jsd_at_50"])
                    for name, row in summary["taggers"].items()
                }
                for s in signals
            },
            reference=reference,
            plot_style=style,
        )

    return write_summary(summary, out, plots=figures if plots else None)


def _relative(rows: dict[str, dict[str, Any]], reference: str) -> dict[str, Any]:
    if reference not in rows:
        raise ValueError(f"reference {reference!r} is not one of the evaluated taggers {list(rows)}")

    def ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
        return a["value"] / b["value"] if a["value"] is not None and b["value"] else None

    return {
        name: {
            s: {k: ratio(m[k], rows[reference][s][k]) for k in ("rejection_at_50", "inv_jsd_at_50")}
            for s, m in row.items()
        }
        for name, row in rows.items()
        if name != reference
    }


def _random_floor(metrics: dict[str, Any]) -> str:
    value = (metrics.get("working_points") or {}).get("eff_s_50%", {}).get("inv_jsd_random_cut")
    return f"{value:.3g}" if value is not None else "n/a"


def events_report(summary: Mapping[str, Any]) -> list[Block]:
    """The report of ``summary.md``: per signal AUC, 1/eps_B and 1/JSD at 50% per tagger; weighted yields."""
    signals = summary["signals"]
    keys = ("auc", "rejection_at_50", "inv_jsd_at_50")
    blocks: list[Block] = [
        f"# {', '.join(signals)} vs {summary['background']} ({summary['n_jets']} jets)",
        f"Intervals: {summary['intervals']}.",
        Table(
            ["tagger", *(f"{s} {k}" for s in signals for k in ("AUC", "1/eps_B @ 50%", "1/JSD @ 50%"))],
            [[name, *(row[s][k] for s in signals for k in keys)] for name, row in summary["taggers"].items()],
        ),
    ]
    for name, row in (summary.get("relative_to_reference") or {}).items():
        text = ", ".join(
            f"{s}: rejection x{r['rejection_at_50']:.3g}, 1/JSD x{r['inv_jsd_at_50']:.3g}"
            for s, r in row.items()
            if None not in r.values()
        )
        blocks.append(f"{name} relative to {summary['reference']}: {text}")
    floors = [
        f"{name} {s} {_random_floor(row[s])}" for name, row in summary["taggers"].items() for s in signals
    ]
    blocks.append(
        "1/JSD that random cuts with the same QCD pass fraction give on these jets (the statistical "
        "limit of a perfectly decorrelated tagger) at 50%: " + "; ".join(floors)
    )
    yields = [
        [process, label, y["n"], f"{y['sum_w']:.4g} +- {np.sqrt(y['sum_w2']):.2g}"]
        for process, labels in summary["yields"].items()
        for label, y in labels.items()
    ]
    blocks.append(Table(["process", "label", "jets", "weighted yield"], yields))
    return blocks
