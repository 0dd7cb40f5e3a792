"""Evaluation of per-point energy regression on focused-track samples (JetPointNet workflow).

Per focused track the quantity compared is the *total* energy the focused particle left in the
cone's cells: true is ``label_sum``, the sum of the per-cell labels over all cone cells (before
truncation); the learned models and the ``cone``, ``subtraction`` and ``response`` baselines
estimate it (:mod:`~hepnn_coffea.calo.per_point_baselines`). The metrics (MAPE, resolution, bias
in bins of track pT, with bootstrap intervals) are those of
:mod:`~hepnn_coffea.calo.per_point_metrics`; both modules' names are importable from here too.
Hists (``hist``) per sample and estimator: relative residual vs track pT and predicted vs true.

Inference uses :class:`~hepnn_coffea.inference.tagger.OnnxTagger` (the component the
classifiers use) inside :class:`PerPointEvaluationProcessor`, an
:class:`~hepnn_coffea.evaluation.protocol.EvaluationProcessor` (a coffea processor); the
summary is an :class:`~hepnn_coffea.evaluation.protocol.EvaluationSummary` of kind ``per_point``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import hist
import numpy as np

from hepnn_coffea.calo.per_point_baselines import (
    PT_EDGES,
    cone_baseline,
    response_baseline,
    response_calibration,
    subtraction_baseline,
    sum_cell_predictions,
)
from hepnn_coffea.calo.per_point_metrics import (
    metrics,
    per_point_report,
    per_point_summary,
    per_point_table,
    relative_metrics,
    summary_markdown,
)
from hepnn_coffea.calo.samples import calo_fileset
from hepnn_coffea.evaluation.protocol import (
    EvaluationProcessor,
    EvaluationSummary,
    method_axis,
    sample_axis,
    write_summary,
)
from hepnn_coffea.processing.processor import ChunkInfo

__all__ = [
    "BASELINES",
    "PT_EDGES",
    "SAMPLE_BRANCHES",
    "PerPointEvaluationProcessor",
    "calibrate_from_files",
    "concat_table",
    "cone_baseline",
    "evaluate_per_point",
    "make_per_point_hists",
    "metrics",
    "per_point_report",
    "per_point_summary",
    "per_point_table",
    "relative_metrics",
    "response_baseline",
    "response_calibration",
    "subtraction_baseline",
    "sum_cell_predictions",
    "summarize_per_point",
    "summary_markdown",
]

#: baselines, in table order
BASELINES = ("cone", "subtraction", "response")
#: per-sample branches the evaluation reads besides the models' inputs
SAMPLE_BRANCHES = (
    "focus_pt",
    "focus_eta",
    "focus_p",
    "focus_type",
    "label_sum",
    "cone_energy",
    "event_no",
    "point_type",
    "point_label",
    "point_e",
)


# ---------------------------------------------------------------------------------------------- hists
def make_per_point_hists(pt_edges: Sequence[float] = PT_EDGES) -> dict[str, hist.Hist]:
    """Empty hists: relative residual vs track pT, and predicted vs true energy, per sample and estimator."""
    process, estimator = sample_axis(), method_axis()
    return {
        "relative_residual": hist.Hist(
            process,
            estimator,
            hist.axis.Variable(list(pt_edges), name="pt", label="Track $p_T$ [GeV]"),
            hist.axis.Regular(160, -2.0, 6.0, name="rel", label="(pred - true) / true"),
            storage=hist.storage.Weight(),
        ),
        "pred_vs_true": hist.Hist(
            process,
            estimator,
            hist.axis.Regular(60, 0.0, 120.0, name="true", label="True deposited energy [GeV]"),
            hist.axis.Regular(60, 0.0, 120.0, name="pred", label="Predicted energy [GeV]"),
            storage=hist.storage.Weight(),
        ),
    }


class PerPointEvaluationProcessor(EvaluationProcessor):
    """Runs per-point ONNX models on focused-track sample files; per-track totals, hists, table.

    Output (accumulated over chunks): ``hists`` (:func:`make_per_point_hists`, estimators =
    model names + :data:`BASELINES`), ``table`` (per sample: ``sample``, ``split``,
    ``event_no``, ``focus_pt``, ``focus_eta``, ``focus_p``, ``focus_type`` (particle type code),
    ``true``, ``pred_<estimator>``) and ``counts``
    per sample.

    Parameters
    ----------
    taggers
        ``{name: OnnxTagger}`` of per-point models (output ``pred_<target>``).
    calibration
        :func:`response_calibration` of the training split (the ``response`` baseline).
    pt_edges, min_true
        Track-pT bins of the residual hist; samples with ``label_sum < min_true`` are not filled.
    """

    kind = "per_point"

    def __init__(
        self,
        taggers: Mapping[str, Any],
        calibration: Mapping[str, Any],
        *,
        pt_edges: Sequence[float] = PT_EDGES,
        min_true: float = 0.5,
    ) -> None:
        self.taggers = dict(taggers)
        for name, tagger in self.taggers.items():
            if not tagger.per_point:
                raise ValueError(f"model '{name}' ({tagger.path}) has no per-point output")
        self.calibration = dict(calibration)
        self.pt_edges, self.min_true = list(pt_edges), float(min_true)

    @property
    def estimators(self) -> list[str]:
        return [*self.taggers, *BASELINES]

    def columns(self) -> list[str]:
        cols = set(SAMPLE_BRANCHES)
        for tagger in self.taggers.values():
            cols |= set(tagger.columns())
        return sorted(cols)

    def process_chunk(self, events: Any, chunk: ChunkInfo) -> dict[str, Any]:
        sample = self.sample(chunk)
        split = chunk.metadata.get("split", "test")
        n = len(events)
        col = {
            b: np.asarray(ak.to_numpy(events[b]), dtype=np.float64)
            for b in ("focus_pt", "focus_eta", "focus_p", "label_sum", "cone_energy")
        }
        preds = {
            "cone": cone_baseline(col["cone_energy"]),
            "subtraction": subtraction_baseline(
                col["cone_energy"], events["point_e"], events["point_type"], self.calibration["overall"]
            ),
            "response": response_baseline(col["focus_pt"], col["focus_p"], self.calibration),
        }
        for name, tagger in self.taggers.items():
            out = tagger(events)
            field = tagger.output_fields[0]
            preds[name] = sum_cell_predictions(out[field], events["point_type"])
        true = col["label_sum"]
        fill = true >= self.min_true
        hists = make_per_point_hists(self.pt_edges)
        for est in self.estimators:
            pred = preds[est]
            hists["relative_residual"].fill(
                process=sample, estimator=est, pt=col["focus_pt"][fill], rel=((pred - true) / true)[fill]
            )
            hists["pred_vs_true"].fill(process=sample, estimator=est, true=true, pred=pred)
        table: dict[str, list[np.ndarray]] = {
            "sample": [np.full(n, sample, dtype=object)],
            "split": [np.full(n, split, dtype=object)],
            "event_no": [np.asarray(ak.to_numpy(events["event_no"]), dtype=np.int64)],
            "focus_pt": [col["focus_pt"]],
            "focus_eta": [col["focus_eta"]],
            "focus_p": [col["focus_p"]],
            "focus_type": [np.asarray(ak.to_numpy(events["focus_type"]), dtype=np.int64)],
            "true": [true],
            **{f"pred_{e}": [preds[e]] for e in self.estimators},
        }
        return {"hists": hists, "table": table, "counts": {sample: {"samples": n, "filled": int(fill.sum())}}}


def concat_table(table: Mapping[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """Join the per-chunk lists of an accumulated table."""
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in table.items()}


# ---------------------------------------------------------------------------------------------- stage
def calibrate_from_files(
    samples: Any, split: str = "train", pt_edges: Sequence[float] = PT_EDGES
) -> dict[str, Any]:
    """:func:`response_calibration` on the ``split`` sample files of a samples folder or fileset."""
    import uproot

    files = [f for entry in calo_fileset(samples, split).values() for f in entry["files"]]
    if not files:
        raise ValueError(f"no '{split}' sample files to calibrate the response baseline on")
    arrays = uproot.concatenate(
        [f"{f}:tree" for f in files], ["focus_pt", "focus_p", "label_sum"], library="np"
    )
    return response_calibration(arrays["focus_pt"], arrays["focus_p"], arrays["label_sum"], pt_edges)


def summarize_per_point(
    result: Mapping[str, Any],
    estimators: Sequence[str],
    calibration: Mapping[str, Any],
    *,
    split: str = "test",
    pt_edges: Sequence[float] = PT_EDGES,
    min_true: float = 0.5,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> EvaluationSummary:
    """The summary of a :class:`PerPointEvaluationProcessor` output: calibration, rows, counts.

    ``rows``: :func:`per_point_summary` of the accumulated table (every metric with its 68%
    bootstrap interval).
    """
    table = concat_table(result["table"])
    rows = per_point_summary(table, estimators, pt_edges, min_true, n_bootstrap=n_bootstrap, seed=seed)
    return EvaluationSummary(
        {
            "split": split,
            "min_true": min_true,
            "estimators": list(estimators),
            "calibration": dict(calibration),
            "intervals": (
                f"68.27%: value +- std of {n_bootstrap} bootstrap replicas over the tracks (seed {seed})"
            ),
            "rows": rows,
            "counts": result["counts"],
        },
        kind="per_point",
        report=per_point_report,
    )


def evaluate_per_point(
    models: Mapping[str, str | pathlib.Path],
    samples: Any,
    out_dir: str | pathlib.Path,
    *,
    split: str = "test",
    calibration_split: str = "train",
    pt_edges: Sequence[float] = PT_EDGES,
    min_true: float = 0.5,
    executor: str = "iterative",
    workers: int = 2,
    chunksize: int = 20_000,
    n_displays: int = 4,
    plots: bool = True,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> EvaluationSummary:
    """Infer with every model on the ``split`` samples, compare with the baselines, write the results.

    Writes ``hists.pkl`` (the ``hist`` objects), ``table.npz``, ``summary.json`` (calibration,
    rows, counts, plots) and ``summary.md`` (:func:`summarize_per_point`, written by
    :func:`~hepnn_coffea.evaluation.protocol.write_summary`) and, with ``plots``, the residual /
    metric-vs-pT plots and ``n_displays`` event displays (first model).

    Parameters
    ----------
    models
        ``{name: ONNX path}`` (per-point exports of :func:`hepnn_coffea.export.export_onnx`).
    samples
        A :func:`~hepnn_coffea.calo.samples.focused_track_samples` folder (its manifest's fileset)
        or a fileset (dict or JSON path) of sample files.
    n_bootstrap, seed
        Bootstrap replicas of the metrics' 68% intervals (:func:`per_point_summary`) and their seed.

    Returns
    -------
    EvaluationSummary
        What ``summary.json`` holds.
    """
    import pickle

    from hepnn_coffea.inference.tagger import OnnxTagger
    from hepnn_coffea.processing.runner import run_processor
    from hepnn_coffea.processing.shards import atomic_write_bytes

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    calibration = calibrate_from_files(samples, calibration_split, pt_edges)
    taggers = {name: OnnxTagger(path) for name, path in models.items()}
    proc = PerPointEvaluationProcessor(taggers, calibration, pt_edges=pt_edges, min_true=min_true)
    files = calo_fileset(samples, split)
    result = run_processor(files, proc, executor=executor, workers=workers, chunksize=chunksize)
    summary = summarize_per_point(
        result,
        proc.estimators,
        calibration,
        split=split,
        pt_edges=pt_edges,
        min_true=min_true,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    atomic_write_bytes(out / "hists.pkl", lambda f: pickle.dump(result["hists"], f))
    table = concat_table(result["table"])
    np.savez(out / "table.npz", **{k: (v.astype(str) if v.dtype == object else v) for k, v in table.items()})

    def figures() -> list[pathlib.Path]:
        from hepnn_coffea.calo.plots import plot_event_displays, plot_per_point

        paths = plot_per_point(result["hists"], summary["rows"], proc.estimators, out)
        if n_displays and taggers:
            first = next(iter(files.values()))
            name, tagger = next(iter(taggers.items()))
            paths += plot_event_displays(tagger, next(iter(first["files"])), out, n=n_displays, model=name)
        return paths

    return write_summary(summary, out, plots=figures if plots else None)
