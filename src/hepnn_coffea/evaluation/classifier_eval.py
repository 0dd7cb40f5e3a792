"""``hepnn evaluate`` of a flat-jet classifier: every metric with its 68% interval, comparisons, figures.

Reads an ``infer`` folder (``scores.parquet``, ``hists.pkl``, ``counts.json``); the signal is
the first class, the background every other. Metrics come twice, from the per-jet table and
from the score hist (they agree within their intervals), defined in
:mod:`hepnn_coffea.evaluation.classifier_metrics`. Other models (``compare``) and the
classical baselines are evaluated on the same jets where the rows can be matched, so their
difference to the ``reference`` row is quoted with a *paired* bootstrap interval.
The summary is an :class:`~hepnn_coffea.evaluation.protocol.EvaluationSummary` of kind
``classifier``, written by :func:`~hepnn_coffea.evaluation.protocol.write_summary`.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepnn_coffea.evaluation import classifier_metrics as cm
from hepnn_coffea.evaluation import sculpting as sc
from hepnn_coffea.evaluation import tagger_curves as tc
from hepnn_coffea.evaluation.protocol import Block, EvaluationSummary, Table, jsonable, write_summary

#: Signal efficiencies of the quoted rejections and of the per-bin curves.
WORKING_POINTS = cm.WORKING_POINTS
CURVE_EFFICIENCY = 0.5
#: Signal-efficiency grid of the ROC curves (shared, so curves can be divided).
ROC_GRID = np.round(np.arange(0.05, 1.0001, 0.01), 4)
#: Columns that identify a jet across tables (for paired comparisons), where present.
MATCH_KEYS = ("sample", "event_no", "jet_pt", "jet_eta", "jet_sdmass", "jet_mass")


def load_table(folder: pathlib.Path) -> dict[str, np.ndarray]:
    """The ``scores.parquet`` columns of an infer folder as numpy arrays."""
    import pyarrow.parquet as pq

    path = folder / "scores.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no per-jet table (run 'hepnn infer' into {folder} first)")
    return {k: np.asarray(v) for k, v in pq.read_table(path).to_pydict().items()}


def _row(table: dict[str, np.ndarray], classes: Sequence[str], where: str) -> dict[str, np.ndarray]:
    """``score`` (of the first class), ``is_signal``, ``weight``, ``correct`` (argmax = truth) of a table."""
    missing = [c for c in [*(f"score_{c}" for c in classes), *classes, "weight"] if c not in table]
    if missing:
        raise ValueError(f"{where}: scores.parquet lacks the column(s) {missing} (classes {list(classes)})")
    probs = np.stack([table[f"score_{c}"] for c in classes], axis=1)
    truth = np.argmax(np.stack([table[c] for c in classes], axis=1), axis=1)
    return {
        "score": probs[:, 0].astype(np.float64),
        "is_signal": truth == 0,
        "weight": table["weight"].astype(np.float64),
        "correct": probs.argmax(axis=1) == truth,
    }


def _taggers(
    out: pathlib.Path,
    info: dict[str, Any],
    table: dict[str, np.ndarray],
    compare: Sequence[Any],
    baselines: Sequence[str],
    shards: Any,
    baseline_split: str,
    name: str | None,
) -> dict[str, dict[str, Any]]:
    """name -> ``score``, ``is_signal``, ``weight``, ``correct``, ``paired`` (rows = the model's table
    rows)."""
    from hepnn_coffea.evaluation.events_eval import _named_folders

    rows = {
        name or pathlib.Path(info["model"]).stem: {**_row(table, info["classes"], str(out)), "paired": True}
    }
    keys = [k for k in MATCH_KEYS if k in table]
    for name, folder in _named_folders(compare):
        o_info = json.loads((folder / "counts.json").read_text())
        o_table = load_table(folder)
        row = _row(o_table, o_info["classes"], str(folder))
        index = cm.align_rows(table, o_table, [k for k in keys if k in o_table])
        if index is not None:
            row = {k: v[index] for k, v in row.items()}
        name = name or pathlib.Path(o_info["model"]).stem
        while name in rows:
            name += "'"
        rows[name] = {**row, "paired": index is not None}
    if baselines:
        from hepnn_coffea.evaluation import baselines as bl

        if shards is None:
            raise ValueError("baselines need the shard folder they are trained on (shards=...)")
        on_table = all(c in table for c in bl.required_observers())
        model = rows[next(iter(rows))]
        for kind in baselines:
            fitted = bl.train_baseline(shards, kind)
            if on_table:  # the same jets as the model: paired comparison
                probs = fitted.predict_proba(bl.baseline_features(table))
                score = probs[:, list(fitted.classes_).index(0)]
                rows[kind] = {
                    "score": score,
                    "is_signal": model["is_signal"],
                    "weight": model["weight"],
                    "correct": (score >= 0.5) == model["is_signal"],
                    "paired": True,
                }
            else:  # the table lacks the observables: the shards' split instead (not paired)
                scored = bl.score_baseline(fitted, shards, baseline_split)
                w = scored["weight"] if scored["weight"] is not None else np.ones(scored["n_jets"])
                rows[kind] = {
                    "score": scored["score"],
                    "is_signal": scored["is_signal"],
                    "weight": w,
                    "correct": (scored["score"] >= 0.5) == scored["is_signal"],
                    "paired": False,
                }
    return rows


def _relative(
    rows: dict[str, dict[str, Any]],
    metrics: dict[str, dict[str, Any]],
    reference: str,
    *,
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """Every row against ``reference``: paired bootstrap when both are on the same jets, else in
    quadrature."""
    ref = rows[reference]
    out = {}
    for name, row in rows.items():
        if name == reference:
            continue
        if row["paired"] and ref["paired"]:
            out[name] = {
                **cm.paired_comparison(
                    row["score"],
                    ref["score"],
                    row["is_signal"],
                    row["weight"],
                    n_bootstrap=n_bootstrap,
                    seed=seed,
                ),
                "paired": True,
            }
            continue
        a, b = metrics[name]["auc"], metrics[reference]["auc"]
        error = float(np.hypot(a["high"] - a["value"], b["high"] - b["value"]))
        diff = a["value"] - b["value"]
        out[name] = {
            "auc_difference": {"value": diff, "low": diff - error, "high": diff + error},
            "auc_significance": diff / error if error > 0 else None,
            "paired": False,
        }
    return out


def evaluate_classifier(
    out_dir: str | pathlib.Path,
    hists: dict[str, Any],
    info: dict[str, Any],
    *,
    plots: bool = True,
    compare: Sequence[Any] = (),
    baselines: Sequence[str] = (),
    shards: str | pathlib.Path | None = None,
    baseline_split: str = "test",
    reference: str | None = None,
    style: Any = None,
    n_bootstrap: int = 100,
    seed: int = 0,
    name: str | None = None,
) -> EvaluationSummary:
    """Metrics with intervals, comparisons and figures of a flat-jet classifier's infer folder.

    Parameters
    ----------
    compare
        Other infer folders (``path`` or ``name=path``) of models scored on the same fileset.
    baselines
        ``logistic`` / ``gbt`` on the jet observables, trained on the train split of ``shards``
        and scored on the model's table (or, if it lacks the observables, on ``baseline_split``).
    reference
        Row the others are compared to (AUC difference, rejection ratios; the ROC ratio
        panel); default: the model.
    style
        :class:`~hepnn_coffea.plotting.style.PlotStyle` of the figures.
    n_bootstrap, seed
        Bootstrap replicas of the AUC intervals and comparisons, and their seed.
    name
        The model's row name (default: its ONNX file stem).

    Returns
    -------
    EvaluationSummary
        Kind ``classifier``, written to ``summary.json`` / ``summary.md`` (metrics as
        ``{"value", "low", "high"}``; Markdown by :func:`classifier_report`).
    """
    from hepnn_coffea.evaluation.roc import working_points

    out = pathlib.Path(out_dir)
    classes = list(info["classes"])
    table = load_table(out)
    rows = _taggers(out, info, table, compare, baselines, shards, baseline_split, name)
    model = next(iter(rows))
    reference = reference or model
    if reference not in rows:
        raise ValueError(f"reference {reference!r} is not one of the evaluated models {list(rows)}")
    kw = {"n_bootstrap": n_bootstrap, "seed": seed}
    metrics = {
        name: cm.table_metrics(r["score"], r["is_signal"], r["weight"], r["correct"], **kw)
        for name, r in rows.items()
    }
    m = rows[model]
    summary: dict[str, Any] = {
        "signal": classes[0],
        "background": classes[1:],
        "n_jets": len(m["score"]),
        "n_signal": int(m["is_signal"].sum()),
        "intervals": f"68.27%: AUC value +- std of {n_bootstrap} Poisson-bootstrap replicas over jets "
        f"(seed {seed}); efficiencies, accuracy and rejections Clopper-Pearson with Kish n_eff",
        "from_table": metrics[model],
        "from_hists": cm.hist_metrics(hists["score"], classes, **kw),
        "working_points": working_points(hists["score"], classes[0]),
        "reference": reference,
        "relative_to_reference": _relative(rows, metrics, reference, **kw),
    }
    if len(rows) > 1:
        summary["others"] = {name: metrics[name] for name in rows if name != model}
    variables = {
        "pt": hists["score_vs_pt"].axes["pt"].label,
        "mass": hists["score_vs_mass"].axes["mass"].label,
    }
    variables = {k: v for k, v in variables.items() if v in table}
    perf = {
        v: tc.performance_vs(
            m["score"],
            m["is_signal"],
            m["weight"],
            table[v].astype(np.float64),
            tc.nice_edges(table[v]),
            CURVE_EFFICIENCY,
        )
        for v in variables.values()
    }
    summary["performance_vs"] = {v: _compact(p) for v, p in perf.items()}
    summary = EvaluationSummary(jsonable(summary), kind="classifier", report=classifier_report)

    def figures() -> list[pathlib.Path]:
        from hepnn_coffea.plotting.tagger_plots import plot_tagger

        curves = {
            name: {
                **sc.rejection_curve(
                    r["score"][r["is_signal"]],
                    r["weight"][r["is_signal"]],
                    r["score"][~r["is_signal"]],
                    r["weight"][~r["is_signal"]],
                    ROC_GRID,
                ),
                "eff_signal": ROC_GRID,
                "auc": metrics[name]["auc"],
            }
            for name, r in rows.items()
        }
        mass = variables.get("mass")
        with np.errstate(invalid="ignore", divide="ignore"):  # JSD replicas of nearly empty passing shapes
            cuts = (
                None
                if mass is None
                else tc.mass_after_cuts(
                    m["score"],
                    m["is_signal"],
                    m["weight"],
                    table[mass].astype(np.float64),
                    hists["score_vs_mass"].axes["mass"].edges[::2],
                    seed=seed,
                )
            )
        return plot_tagger(
            out / "plots",
            hists=hists,
            signal=classes[0],
            background=classes[1:],
            curves=curves,
            reference=reference,
            performance=perf,
            mass_cuts=cuts,
            mass_variable=mass,
            style=style,
        )

    return write_summary(summary, out, plots=figures if plots else None)


def _compact(perf: dict[str, Any]) -> dict[str, Any]:
    """The per-bin rejections and signal efficiencies of :func:`tagger_curves.performance_vs` for the
    summary."""
    keep = ("value", "low", "high")
    out: dict[str, Any] = {"edges": perf["edges"], "eff_signal": perf["eff_signal"]}
    for kind in ("global", "per_bin"):
        out[kind] = {
            "rejection": {k: perf[kind]["rejection"][k] for k in keep},
            "eff_signal": {k: perf[kind]["signal"][k] for k in keep},
        }
    return out


def classifier_report(summary: Mapping[str, Any]) -> list[Block]:
    """The report of ``summary.md``: metrics as ``value +high -low`` per source and model, then the
    comparisons."""
    effs = [f"rejection_at_{round(e * 100)}" for e in WORKING_POINTS]
    background = summary.get("background") or ["rest"]
    blocks: list[Block] = [
        f"Signal: {summary['signal']} ({summary['n_signal']} of {summary['n_jets']} jets), "
        f"background: {', '.join(background) if isinstance(background, list) else background}"
    ]
    if summary.get("intervals"):
        blocks.append(f"Intervals: {summary['intervals']}.")
    rows = {
        "from table": summary["from_table"],
        "from hists": summary["from_hists"],
        **summary.get("others", {}),
    }
    blocks.append(
        Table(
            ["source", "AUC", "accuracy", *(f"1/eps_B @ eps_S={k.rsplit('_', 1)[1]}%" for k in effs)],
            [
                [name, row.get("auc"), row.get("accuracy"), *(row.get(k) for k in effs)]
                for name, row in rows.items()
            ],
        )
    )
    relative = summary.get("relative_to_reference") or {}
    if relative:
        blocks.append(
            f"Relative to {summary['reference']} (paired: bootstrap replicas shared by both, on the same "
            "jets; else the two intervals in quadrature):"
        )
        ratios = [k.replace("rejection_", "rejection_ratio_") for k in effs]
        sigma = {
            name: None if r.get("auc_significance") is None else f"{r['auc_significance']:+.1f} sigma"
            for name, r in relative.items()
        }
        blocks.append(
            Table(
                [
                    "model",
                    "AUC difference",
                    "significance",
                    "paired",
                    *(f"rejection ratio @ {k.rsplit('_', 1)[1]}%" for k in effs),
                ],
                [
                    [
                        name,
                        r["auc_difference"],
                        sigma[name],
                        "yes" if r.get("paired") else "no",
                        *(r.get(k) for k in ratios),
                    ]
                    for name, r in relative.items()
                ],
            )
        )
    return blocks
