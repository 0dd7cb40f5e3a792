"""The ``infer`` and ``evaluate`` stages.

``infer`` writes ``OUT/hists.pkl`` (dict of ``hist.Hist``), ``OUT/hists.root``
(the same hists via uproot, samples and classes flattened into names),
``OUT/scores.parquet`` (per-jet table) and ``OUT/counts.json``.
``evaluate`` reads them back and writes ``OUT/summary.json``, ``OUT/summary.md``
and ``OUT/plots/*.png``.
"""

from __future__ import annotations

import json
import pathlib
import pickle
from typing import Any

import numpy as np

from hepnn_coffea.evaluation.processor import RegressionEvaluationProcessor, TaggerEvaluationProcessor
from hepnn_coffea.evaluation.roc import accuracy_from_hist, roc_from_hist, roc_from_scores, working_points
from hepnn_coffea.inference.tagger import OnnxTagger
from hepnn_coffea.processing import bad_files
from hepnn_coffea.processing.fileset import load_fileset, select_split
from hepnn_coffea.processing.runner import run_processor
from hepnn_coffea.processing.shards import atomic_write_bytes, write_json

WORKING_POINTS = (0.3, 0.5)


def infer(
    model: str | pathlib.Path,
    fileset: str | pathlib.Path | dict[str, Any],
    out_dir: str | pathlib.Path,
    *,
    split: str | None = None,
    mode: str = "runner",
    executor: str = "dask",
    workers: int = 2,
    scheduler: str | None = None,
    chunksize: int = 50_000,
    batch_size: int = 512,
    skip_bad_files: bool = False,
    retries: int = 0,
    **processor_options: Any,
) -> dict[str, Any]:
    """Score every dataset (of ``split``) of ``fileset`` with ``model``; write hists and table.

    ``batch_size`` is the number of jets per onnxruntime call (bounds the worker's memory).
    Every file is opened and checked for the branches the processor reads first; a file or
    chunk that cannot be read stops the stage with
    :class:`~hepnn_coffea.processing.bad_files.BadInputError`, or, with ``skip_bad_files``, is
    left out and listed in ``counts.json`` (``skipped``, with the entries lost; ``entries``:
    read + lost = entries in the files). ``retries``: extra attempts per chunk after a
    transient (``OSError``-type) read error.
    Classifiers run through :class:`TaggerEvaluationProcessor`, regression models through
    :class:`RegressionEvaluationProcessor` (``processor_options`` go to the processor, e.g.
    ``naive={"truth_pt": "jet_pt"}``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    tagger = OnnxTagger(model, batch_size=batch_size)
    events = tagger.config.rows is not None
    regression = not tagger.config.is_classification
    policy = bad_files.BadFilePolicy(skip=skip_bad_files, retries=retries)
    if events:  # event-level NanoAOD: rows per jet, split per event (evaluation/events_processor.py)
        checked, proc = _event_processor(tagger, fileset, split, policy)
    else:
        files = select_split(load_fileset(fileset, tagger.config.treename), split)
        if not files:
            raise ValueError(f"no dataset with split {split!r} in the fileset")
        proc = (RegressionEvaluationProcessor if regression else TaggerEvaluationProcessor)(tagger, **processor_options)
        checked = _validate(files, proc.columns(), policy, f"they are read by the model {model}")
    proc.bad_files = policy
    result = run_processor(checked.fileset, proc, mode=mode, executor=executor, workers=workers, scheduler=scheduler,
                           chunksize=chunksize)  # fmt: skip
    skipped = checked.skipped + bad_files.settle(result.get(bad_files.SKIPPED_KEY, []), policy, "infer")
    if "table" not in result:
        raise bad_files.BadInputError("no chunk could be read: " + "; ".join(map(bad_files.where, skipped)))
    read = sum(c.get("entries_in", c.get("events", 0)) for c in result["counts"].values())
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hists = result["hists"]
    atomic_write_bytes(out / "hists.pkl", lambda f: pickle.dump(hists, f))
    _write_root(out / "hists.root", hists)
    columns = {k: np.concatenate(v) for k, v in result["table"].items()}
    for key, values in columns.items():
        if values.dtype == object:
            columns[key] = values.astype(str)
    table = pa.table(columns)
    atomic_write_bytes(out / "scores.parquet", lambda f: pq.write_table(table, f))
    info = {"model": str(pathlib.Path(model).resolve()), "task": "regression" if regression else "classification",
            "classes": tagger.classes, "counts": result["counts"], "n_jets": table.num_rows, "skipped": skipped,
            "entries": bad_files.summary(skipped, sum(checked.entries.values()), read)}  # fmt: skip
    if events:
        info.update(workflow="events", split=split, with_truth=proc.with_truth)
    write_json(out / "counts.json", info)
    return info


def _validate(files: dict[str, Any], needed: list[str], policy: bad_files.BadFilePolicy,
              why: str) -> bad_files.CheckedFileset:  # fmt: skip
    """Open every file and check ``needed`` (:func:`~hepnn_coffea.processing.bad_files.validate_files`)."""
    checked = bad_files.validate_files(files, needed, skip=policy.skip, retries=policy.retries, needed_by=why)
    if not checked.fileset:
        raise bad_files.BadInputError("no readable file left: " + "; ".join(map(bad_files.where, checked.skipped)))
    return checked


def _event_processor(tagger: OnnxTagger, fileset: Any, split: str | None,
                     policy: bad_files.BadFilePolicy) -> tuple[bad_files.CheckedFileset, Any]:  # fmt: skip
    """The checked event-level fileset (weights filled in, bad files dropped or reported) and its processor."""
    from hepnn_coffea.evaluation.events_processor import EventTaggerProcessor
    from hepnn_coffea.processing.events_stage import add_event_weights

    config = tagger.config
    files = load_fileset(fileset, config.treename, event_level=True)
    needed = EventTaggerProcessor(tagger, split=split, with_truth=False).columns()  # truth branches are optional
    checked = _validate(files, needed, policy, f"they are read for the rows of collection '{config.rows.collection}' "
                                               f"by the model {tagger.path}")  # fmt: skip
    files = checked.fileset
    add_event_weights(files, config)
    truth_branches = set(config.rows.file_branches(list(config.label_names))) if config.rows.gen_match else set()
    with_truth = bool(truth_branches) and all(
        truth_branches <= checked.branches[f] for d in files.values() for f in d["files"]
    )
    return checked, EventTaggerProcessor(tagger, split=split, with_truth=with_truth)


def _write_root(path: pathlib.Path, hists: dict[str, Any]) -> None:
    """Every hist split along its category axes: ``<name>/<category value>/.../`` (ROOT TH1/TH2)."""
    import itertools

    import hist
    import uproot

    tmp = path.with_suffix(".root.tmp")
    with uproot.recreate(tmp) as f:
        for name, h in hists.items():
            cats = [ax.name for ax in h.axes if isinstance(ax, (hist.axis.StrCategory, hist.axis.IntCategory))]
            for values in itertools.product(*(list(h.axes[c]) for c in cats)):
                sub = h[dict(zip(cats, values))]
                if getattr(sub, "ndim", 0) in (1, 2):  # a hist of only category axes reduces to a number
                    f["/".join([name, *map(str, values)])] = sub
    tmp.replace(path)


def evaluate(
    out_dir: str | pathlib.Path,
    *,
    plots: bool = True,
    compare: list[str | pathlib.Path] = (),
    baselines: list[str] = (),
    shards: str | pathlib.Path | None = None,
    baseline_split: str = "test",
) -> dict[str, Any]:
    """Physics metrics from an ``infer`` output folder; writes summary JSON/Markdown and plots.

    Parameters
    ----------
    compare
        Other ``infer`` folders (other models on the same fileset) whose ROC curves and
        metrics are added to the plot and the table.
    baselines
        Classical baselines (``logistic``, ``gbt``) on jet observables, trained on the
        train split of ``shards`` and scored on ``baseline_split``
        (see :mod:`hepnn_coffea.evaluation.baselines`).
    """
    import pyarrow.parquet as pq

    out = pathlib.Path(out_dir)
    with (out / "hists.pkl").open("rb") as f:
        hists = pickle.load(f)
    info = json.loads((out / "counts.json").read_text())
    if info.get("workflow") == "events":
        from hepnn_coffea.evaluation.events_eval import evaluate_events

        return evaluate_events(out, plots=plots, shards=shards, compare=compare)
    if info.get("task") == "regression":
        from hepnn_coffea.evaluation.regression_stage import evaluate_regression

        return evaluate_regression(out, hists, info, plots=plots)
    classes = info["classes"]
    signal = classes[0]
    table = pq.read_table(out / "scores.parquet").to_pydict()
    score = np.asarray(table[f"score_{signal}"])
    is_signal = np.asarray(table[signal]).astype(bool)
    weight = np.asarray(table["weight"])
    roc_h = roc_from_hist(hists["score"], signal)
    roc_t = roc_from_scores(score, is_signal, weight)
    probs = np.stack([np.asarray(table[f"score_{c}"]) for c in classes], axis=1)
    truth = np.argmax(np.stack([np.asarray(table[c]) for c in classes], axis=1), axis=1)
    summary: dict[str, Any] = {
        "signal": signal, "n_jets": len(score), "n_signal": int(is_signal.sum()),
        "from_table": {"auc": roc_t.auc, "accuracy": float(np.average(probs.argmax(1) == truth, weights=weight)),
                       **{f"rejection_at_{int(e * 100)}": roc_t.rejection_at(e) for e in WORKING_POINTS}},
        "from_hists": {"auc": roc_h.auc, "accuracy": accuracy_from_hist(hists["score"], classes),
                       **{f"rejection_at_{int(e * 100)}": roc_h.rejection_at(e) for e in WORKING_POINTS}},
    }  # fmt: skip
    summary["working_points"] = working_points(hists["score"], signal)
    rocs = {pathlib.Path(info["model"]).stem: roc_t}
    others: dict[str, dict[str, Any]] = {}
    for other in compare:
        other = pathlib.Path(other)
        o_info = json.loads((other / "counts.json").read_text())
        o_table = pq.read_table(other / "scores.parquet").to_pydict()
        o_signal = o_info["classes"][0]
        roc = roc_from_scores(np.asarray(o_table[f"score_{o_signal}"]), np.asarray(o_table[o_signal]).astype(bool),
                              np.asarray(o_table["weight"]))  # fmt: skip
        name = pathlib.Path(o_info["model"]).stem
        rocs[name] = roc
        others[name] = _metrics(roc, None)
    if baselines:
        from hepnn_coffea.evaluation.baselines import score_baseline, train_baseline

        if shards is None:
            raise ValueError("baselines need the shard folder they are trained on (shards=...)")
        for kind in baselines:
            scored = score_baseline(train_baseline(shards, kind), shards, baseline_split)
            rocs[kind] = scored["roc"]
            others[kind] = {k: scored[k] for k in ("auc", "accuracy", "rejection_at_30", "rejection_at_50")}
    if others:
        summary["others"] = others
    write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(summary_markdown(summary))
    if plots:
        from hepnn_coffea.plotting.plots import plot_all

        summary["plots"] = [str(p) for p in plot_all(hists, rocs, classes, out / "plots", summary["working_points"])]
        write_json(out / "summary.json", summary)
    return summary


def _metrics(roc: Any, accuracy: float | None) -> dict[str, float | None]:
    return {"auc": roc.auc, "accuracy": accuracy,
            **{f"rejection_at_{int(e * 100)}": roc.rejection_at(e) for e in WORKING_POINTS}}  # fmt: skip


def summary_markdown(summary: dict[str, Any]) -> str:
    """A Markdown table of the metrics (rows: from the table / from the hists)."""
    keys = ["auc", "accuracy"] + [f"rejection_at_{int(e * 100)}" for e in WORKING_POINTS]
    header = "| source | AUC | accuracy | " + " | ".join(f"1/eps_B @ eps_S={int(e * 100)}%" for e in WORKING_POINTS)
    lines = [f"Signal: {summary['signal']} ({summary['n_signal']} of {summary['n_jets']} jets)", "",
             header + " |", "|" + "---|" * (len(keys) + 1)]  # fmt: skip
    rows = {"from table": summary["from_table"], "from hists": summary["from_hists"], **summary.get("others", {})}
    for name, row in rows.items():
        accuracy = f"{row['accuracy']:.4f}" if row.get("accuracy") is not None else "-"
        lines.append(f"| {name} | {row['auc']:.4f} | {accuracy} | "
                     + " | ".join(f"{row[k]:.1f}" for k in keys[2:]) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"
