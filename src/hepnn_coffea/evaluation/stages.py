"""The ``infer`` and ``evaluate`` stages.

``infer`` writes ``OUT/hists.pkl`` (dict of ``hist.Hist``), ``OUT/hists.root``
(the same hists via uproot, samples and classes flattened into names),
``OUT/scores.parquet`` (per-jet table) and ``OUT/counts.json``.
``evaluate`` reads them back and writes ``OUT/summary.json``, ``OUT/summary.md``
(every metric with its 68% interval) and ``OUT/plots/*.png`` (+ PDF), through the evaluation
protocol (:mod:`hepnn_coffea.evaluation.protocol`) that every flow shares.
"""

from __future__ import annotations

import json
import pathlib
import pickle
from typing import Any

import numpy as np

from hepnn_coffea.evaluation.processor import RegressionEvaluationProcessor, TaggerEvaluationProcessor
from hepnn_coffea.evaluation.protocol import EvaluationSummary
from hepnn_coffea.inference.tagger import OnnxTagger
from hepnn_coffea.processing import bad_files
from hepnn_coffea.processing.fileset import load_fileset, select_split
from hepnn_coffea.processing.runner import run_processor
from hepnn_coffea.processing.shards import atomic_write_bytes, write_json


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
    variations: Any = None,
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

    ``variations`` (a :class:`~hepnn_coffea.config.variations_config.VariationsConfig`, a YAML
    file with a ``variations:`` section, or the section as a mapping) are evaluated in the same
    pass: ``hists.pkl``, ``hists.root`` and ``scores.parquet`` stay the nominal (identical to a run
    without variations), ``hists_variations.pkl`` has the hists with a ``variation`` axis,
    ``variations.parquet`` the per-jet table of every other variation, and ``variations.json``,
    ``variations.md`` and ``plots/variations_*.png`` the shifts of the working points per pT bin
    (:mod:`hepnn_coffea.evaluation.variation_report`).
    """
    import pyarrow.parquet as pq

    from hepnn_coffea.config.variations_config import VariationsConfig, load_variations

    tagger = OnnxTagger(model, batch_size=batch_size)
    events = tagger.config.rows is not None
    regression = not tagger.config.is_classification
    if variations is not None and not isinstance(variations, VariationsConfig):
        variations = load_variations(variations)
    if variations is not None and not variations.define:
        variations = None
    if variations is not None and regression:
        raise ValueError("variations are evaluated for classifiers; the model has regression targets")
    policy = bad_files.BadFilePolicy(skip=skip_bad_files, retries=retries)
    if events:  # event-level NanoAOD: rows per jet, split per event (evaluation/events_processor.py)
        checked, proc = _event_processor(tagger, fileset, split, policy, variations)
    else:
        files = select_split(load_fileset(fileset, tagger.config.treename), split)
        if not files:
            raise ValueError(f"no dataset with split {split!r} in the fileset")
        if variations is not None:
            processor_options["variations"] = variations
        proc = (RegressionEvaluationProcessor if regression else TaggerEvaluationProcessor)(
            tagger, **processor_options
        )
        checked = _validate(files, proc.columns(), policy, f"they are read by the model {model}")
    proc.bad_files = policy
    result = run_processor(
        checked.fileset,
        proc,
        mode=mode,
        executor=executor,
        workers=workers,
        scheduler=scheduler,
        chunksize=chunksize,
    )
    skipped = checked.skipped + bad_files.settle(result.get(bad_files.SKIPPED_KEY, []), policy, "infer")
    if "table" not in result:
        raise bad_files.BadInputError("no chunk could be read: " + "; ".join(map(bad_files.where, skipped)))
    read = sum(c.get("entries_in", c.get("events", 0)) for c in result["counts"].values())
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hists = result["hists"]
    if variations is not None:
        from hepnn_coffea.evaluation.variation_hists import nominal_hists

        atomic_write_bytes(out / "hists_variations.pkl", lambda f: pickle.dump(hists, f))
        hists = nominal_hists(hists)
    atomic_write_bytes(out / "hists.pkl", lambda f: pickle.dump(hists, f))
    _write_root(out / "hists.root", hists)
    table = _arrow_table(result["table"])
    atomic_write_bytes(out / "scores.parquet", lambda f: pq.write_table(table, f))
    if variations is not None:
        varied = _arrow_table(result.get("variation_table") or {"variation": [np.zeros(0, dtype=object)]})
        atomic_write_bytes(out / "variations.parquet", lambda f: pq.write_table(varied, f))
    info = {
        "model": str(pathlib.Path(model).resolve()),
        "task": "regression" if regression else "classification",
        "classes": tagger.classes,
        "counts": result["counts"],
        "n_jets": table.num_rows,
        "skipped": skipped,
        "entries": bad_files.summary(skipped, sum(checked.entries.values()), read),
    }
    if events:
        info.update(workflow="events", split=split, with_truth=proc.with_truth)
    if variations is not None:
        info["variations"] = variations.to_dict()
    write_json(out / "counts.json", info)
    if variations is not None:
        from hepnn_coffea.evaluation.variation_report import write_variation_report

        info["variation_report"] = write_variation_report(out, variations.report)
    return info


def _arrow_table(parts: dict[str, list[np.ndarray]]) -> Any:
    """A pyarrow table of accumulated columns (object columns as strings)."""
    import pyarrow as pa

    columns = {k: np.concatenate(v) for k, v in parts.items()}
    for key, values in columns.items():
        if values.dtype == object:
            columns[key] = values.astype(str)
    return pa.table(columns)


def _validate(
    files: dict[str, Any], needed: list[str], policy: bad_files.BadFilePolicy, why: str
) -> bad_files.CheckedFileset:
    """Open every file and check ``needed`` (:func:`~hepnn_coffea.processing.bad_files.validate_files`)."""
    checked = bad_files.validate_files(files, needed, skip=policy.skip, retries=policy.retries, needed_by=why)
    if not checked.fileset:
        raise bad_files.BadInputError(
            "no readable file left: " + "; ".join(map(bad_files.where, checked.skipped))
        )
    return checked


def _event_processor(
    tagger: OnnxTagger,
    fileset: Any,
    split: str | None,
    policy: bad_files.BadFilePolicy,
    variations: Any = None,
) -> tuple[bad_files.CheckedFileset, Any]:
    """The checked event-level fileset (weights filled in, bad files dropped or reported) and its
    processor."""
    from hepnn_coffea.evaluation.events_processor import EventTaggerProcessor
    from hepnn_coffea.processing.events_stage import add_event_weights

    config = tagger.config
    files = load_fileset(fileset, config.treename, event_level=True)
    # the truth branches are optional
    needed = EventTaggerProcessor(tagger, split=split, with_truth=False, variations=variations).columns()
    checked = _validate(
        files,
        needed,
        policy,
        f"they are read for the rows of collection '{config.rows.collection}' by the model {tagger.path}",
    )
    files = checked.fileset
    add_event_weights(files, config)
    truth_branches = (
        set(config.rows.file_branches(list(config.label_names))) if config.rows.gen_match else set()
    )
    with_truth = bool(truth_branches) and all(
        truth_branches <= checked.branches[f] for d in files.values() for f in d["files"]
    )
    return checked, EventTaggerProcessor(tagger, split=split, with_truth=with_truth, variations=variations)


def _write_root(path: pathlib.Path, hists: dict[str, Any]) -> None:
    """Every hist split along its category axes: ``<name>/<category value>/.../`` (ROOT TH1/TH2)."""
    import itertools

    import hist
    import uproot

    tmp = path.with_suffix(".root.tmp")
    with uproot.recreate(tmp) as f:
        for name, h in hists.items():
            cats = [
                ax.name for ax in h.axes if isinstance(ax, (hist.axis.StrCategory, hist.axis.IntCategory))
            ]
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
    reference: str | None = None,
    style: Any = None,
    n_bootstrap: int = 100,
    seed: int = 0,
    name: str | None = None,
) -> EvaluationSummary:
    """Physics metrics with 68% intervals from an ``infer`` output folder; writes summary JSON/Markdown and
    plots.

    Classifiers: :func:`hepnn_coffea.evaluation.classifier_eval.evaluate_classifier` (flat jets)
    or :func:`hepnn_coffea.evaluation.events_eval.evaluate_events` (event-level NanoAOD);
    regression: :func:`hepnn_coffea.evaluation.regression_stage.evaluate_regression`.

    Parameters
    ----------
    compare
        Other ``infer`` folders (other models on the same fileset; ``path`` or ``name=path``)
        whose ROC curves and metrics are added to the plot and the table.
    baselines
        Classical baselines (``logistic``, ``gbt``) on jet observables, trained on the
        train split of ``shards`` and scored on the same jets as the model (or on
        ``baseline_split`` of the shards when the table lacks the observables; see
        :mod:`hepnn_coffea.evaluation.baselines`).
    reference
        Name of the row the others are compared to (paired AUC difference, rejection ratios,
        the ROC's ratio panel); default: the model.
    style
        :class:`~hepnn_coffea.plotting.style.PlotStyle` (experiment, label text, sqrt(s), luminosity)
        of the classifier plots (flat-jet and event-level).
    n_bootstrap, seed
        Bootstrap replicas of the AUC intervals and comparisons (and of every regression
        metric), and their seed.
    name
        Row name of the model (flat-jet classifiers; default: the ONNX file stem).

    Returns
    -------
    EvaluationSummary
        The flow's summary (kind ``classifier``, ``events`` or ``regression``), as written to
        ``summary.json`` and ``summary.md`` by :func:`~hepnn_coffea.evaluation.protocol.write_summary`.
    """
    out = pathlib.Path(out_dir)
    with (out / "hists.pkl").open("rb") as f:
        hists = pickle.load(f)
    info = json.loads((out / "counts.json").read_text())
    if info.get("workflow") == "events":
        from hepnn_coffea.evaluation.events_eval import evaluate_events

        return evaluate_events(
            out,
            plots=plots,
            shards=shards,
            compare=compare,
            reference=reference,
            seed=seed,
            n_bootstrap=n_bootstrap,
            style=style,
        )
    if info.get("task") == "regression":
        from hepnn_coffea.evaluation.regression_stage import evaluate_regression

        return evaluate_regression(out, hists, info, plots=plots, n_bootstrap=n_bootstrap, seed=seed)
    from hepnn_coffea.evaluation.classifier_eval import evaluate_classifier

    return evaluate_classifier(
        out,
        hists,
        info,
        plots=plots,
        compare=compare,
        baselines=baselines,
        shards=shards,
        baseline_split=baseline_split,
        reference=reference,
        style=style,
        n_bootstrap=n_bootstrap,
        seed=seed,
        name=name,
    )


def summary_markdown(summary: dict[str, Any]) -> str:
    """The ``summary.md`` text of an evaluation summary (any flow; a plain dict is read as a classifier's).

    :meth:`EvaluationSummary.markdown <hepnn_coffea.evaluation.protocol.EvaluationSummary.markdown>`:
    the flow's report rendered by :func:`~hepnn_coffea.evaluation.protocol.render_markdown`.
    """
    from hepnn_coffea.evaluation.protocol import EvaluationSummary

    if not isinstance(summary, EvaluationSummary):
        from hepnn_coffea.evaluation.classifier_eval import classifier_report

        summary = EvaluationSummary(summary, kind="classifier", report=classifier_report)
    return summary.markdown()
