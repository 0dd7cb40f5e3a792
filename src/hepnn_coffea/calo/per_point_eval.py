"""Evaluation of per-point energy regression on focused-track samples (JetPointNet workflow).

Per focused track (one sample of :mod:`hepnn_coffea.calo.samples`) the quantity compared is the
*total* energy the focused particle left in the cone's cells:

* true: ``label_sum``, the sum of the per-cell labels over all cone cells (before truncation);
* a learned model: the sum of its per-point predictions over the sample's cells (track points
  are excluded; the points dropped by truncation, the farthest ones, count as 0);
* ``cone`` baseline: all cell energy in the cone (``cone_energy``), i.e. no attribution at all;
* ``response`` baseline (an expected-response template, the strongest of the baselines): the
  track momentum times the mean calorimeter response of tracks of that pT, i.e.
  ``focus_p * R(pT)`` with ``R`` the *median* of ``label_sum / focus_p`` of the training
  samples in bins of track pT (:func:`response_calibration`). It uses only the track (the
  E/p template of energy-flow algorithms), no cell information.
* ``subtraction`` baseline (the literal expected-response subtraction): the cone energy minus
  the expected response of the *other* tracks in the cone, ``max(cone_energy - R * sum p_other,
  0)`` with ``R`` the overall median response (:func:`subtraction_baseline`); neutral
  particles in the cone are not removed.

Metrics in bins of track pT (and overall), on samples with ``true >= min_true`` (the relative
error is undefined at 0): MAPE = mean |pred - true| / true, resolution = half the 16-84%
interquantile range of (pred - true) / true, bias = its median; each with the 68% interval of
seeded bootstrap replicas over the tracks. Hists (``hist``) per sample and estimator: relative
residual vs track pT and predicted vs true.

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

from hepnn_coffea.calo.samples import calo_fileset
from hepnn_coffea.evaluation.intervals import format_interval
from hepnn_coffea.evaluation.protocol import (
    Block,
    EvaluationProcessor,
    EvaluationSummary,
    Table,
    method_axis,
    render_markdown,
    sample_axis,
    write_summary,
)
from hepnn_coffea.processing.processor import ChunkInfo

#: default track-pT bin edges [GeV]
PT_EDGES = (1.0, 5.0, 10.0, 20.0, 50.0, 1000.0)
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


# ------------------------------------------------------------------------------------------- baselines
def response_calibration(
    focus_pt: np.ndarray,
    focus_p: np.ndarray,
    true: np.ndarray,
    pt_edges: Sequence[float] = PT_EDGES,
    min_entries: int = 5,
) -> dict[str, Any]:
    """Median calorimeter response ``true / p`` in bins of track pT (training samples).

    Bins with fewer than ``min_entries`` samples take the overall median. Returns
    ``{"pt_edges": [...], "response": [...], "overall": float, "entries": [...]}``.
    """
    focus_pt, focus_p, true = (np.asarray(a, dtype=np.float64) for a in (focus_pt, focus_p, true))
    ok = focus_p > 0
    ratio = true[ok] / focus_p[ok]
    overall = float(np.median(ratio)) if len(ratio) else 1.0
    edges = np.asarray(pt_edges, dtype=np.float64)
    which = np.clip(np.digitize(focus_pt[ok], edges) - 1, 0, len(edges) - 2)
    response, entries = [], []
    for i in range(len(edges) - 1):
        r = ratio[which == i]
        entries.append(int(len(r)))
        response.append(float(np.median(r)) if len(r) >= min_entries else overall)
    return {"pt_edges": edges.tolist(), "response": response, "overall": overall, "entries": entries}


def response_baseline(
    focus_pt: np.ndarray, focus_p: np.ndarray, calibration: Mapping[str, Any]
) -> np.ndarray:
    """``focus_p * R(pT)`` with the binned response of :func:`response_calibration` (edge bins extend)."""
    edges = np.asarray(calibration["pt_edges"], dtype=np.float64)
    which = np.clip(np.digitize(np.asarray(focus_pt, dtype=np.float64), edges) - 1, 0, len(edges) - 2)
    return np.asarray(focus_p, dtype=np.float64) * np.asarray(calibration["response"])[which]


def cone_baseline(cone_energy: np.ndarray) -> np.ndarray:
    """All cell energy in the cone."""
    return np.asarray(cone_energy, dtype=np.float64)


def subtraction_baseline(
    cone_energy: np.ndarray, point_e: Any, point_type: Any, response: float
) -> np.ndarray:
    """``max(cone_energy - response * sum |p|`` of the other tracks in the cone (``point_type == 2``)``, 0)``."""
    other_p = np.asarray(
        ak.to_numpy(ak.sum(ak.where(point_type == 2, point_e, 0.0), axis=1)), dtype=np.float64
    )
    return np.maximum(np.asarray(cone_energy, dtype=np.float64) - float(response) * other_p, 0.0)


def sum_cell_predictions(pred: Any, point_type: Any) -> np.ndarray:
    """Per sample, the sum of per-point predictions over cell points (``point_type == 0``).

    ``pred`` has one value per *kept* point (the first ``len`` points after truncation);
    ``point_type`` all points of the sample, in the same order.
    """
    n_kept = ak.num(pred, axis=1)
    kept_type = point_type[ak.local_index(point_type, axis=1) < n_kept]
    return np.asarray(ak.to_numpy(ak.sum(ak.where(kept_type == 0, pred, 0.0), axis=1)), dtype=np.float64)


# ---------------------------------------------------------------------------------------------- metrics
def relative_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAPE, resolution (half the 16-84% interquantile range of (pred - true)/true), bias (median); NaN if empty."""
    if not len(true):
        return {"mape": float("nan"), "resolution": float("nan"), "bias": float("nan")}
    rel = (pred - true) / true
    q16, q50, q84 = np.quantile(rel, [0.16, 0.5, 0.84])
    return {"mape": float(np.mean(np.abs(rel))), "resolution": float((q84 - q16) / 2), "bias": float(q50)}


def metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """:func:`relative_metrics` and the number of tracks ``n``."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    return {"n": int(len(true)), **relative_metrics(pred, true)}


def per_point_summary(
    table: Mapping[str, np.ndarray],
    estimators: Sequence[str],
    pt_edges: Sequence[float] = PT_EDGES,
    min_true: float = 0.5,
    *,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Rows ``{"pt_bin", "pt_low", "pt_high", "n", "<estimator>_mape", ..._resolution, ..._bias}``,
    one per track-pT bin and a last one for all tracks (``pt_bin: "all"``), on ``true >= min_true``.

    Every metric is an interval ``{"value", "low", "high"}``: value +- the standard deviation of
    ``n_bootstrap`` seeded bootstrap replicas over the bin's tracks
    (:func:`~hepnn_coffea.evaluation.intervals.bootstrap_interval`).
    """
    from hepnn_coffea.evaluation.intervals import bootstrap_interval

    true = np.asarray(table["true"], dtype=np.float64)
    pt = np.asarray(table["focus_pt"], dtype=np.float64)
    ok = true >= min_true
    edges = list(pt_edges)
    rows = []
    bins = [(f"{lo:g}-{hi:g}", lo, hi) for lo, hi in zip(edges[:-1], edges[1:])] + [
        ("all", edges[0], edges[-1])
    ]
    for name, lo, hi in bins:
        sel = ok & (pt >= lo) & (pt < hi) if name != "all" else ok
        row: dict[str, Any] = {"pt_bin": name, "pt_low": lo, "pt_high": hi, "n": int(sel.sum())}
        for est in estimators:
            pred = np.asarray(table[f"pred_{est}"], dtype=np.float64)[sel]
            m = bootstrap_interval(
                relative_metrics,
                (pred, true[sel]),
                n=n_bootstrap,
                seed=seed,
                floor={"mape": 0.0, "resolution": 0.0},
            )
            row.update({f"{est}_{k}": m[k] for k in ("mape", "resolution", "bias")})
        rows.append(row)
    return rows


def per_point_table(rows: Sequence[Mapping[str, Any]], estimators: Sequence[str]) -> Table:
    """One row per pT bin: tracks, then MAPE / resolution per estimator (``value +high -low``)."""
    return Table(
        ["track pT [GeV]", "tracks", *(f"{e} MAPE / res." for e in estimators)],
        [
            [
                r["pt_bin"],
                r["n"],
                *(
                    f"{format_interval(r[f'{e}_mape'])} / {format_interval(r[f'{e}_resolution'])}"
                    for e in estimators
                ),
            ]
            for r in rows
        ],
    )


def per_point_report(summary: Mapping[str, Any]) -> list[Block]:
    """The report of ``summary.md``: :func:`per_point_table` of the summary's rows."""
    return [per_point_table(summary["rows"], summary["estimators"])]


def summary_markdown(rows: Sequence[Mapping[str, Any]], estimators: Sequence[str]) -> str:
    """The Markdown of :func:`per_point_table` (no newline at the end)."""
    return render_markdown([per_point_table(rows, estimators)]).rstrip("\n")


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
            "intervals": f"68.27%: value +- std of {n_bootstrap} bootstrap replicas over the tracks (seed {seed})",
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
