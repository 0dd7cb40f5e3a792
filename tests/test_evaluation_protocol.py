"""Every evaluation flow has one shape: an EvaluationProcessor, an EvaluationSummary, one writer.

The flows (flat-jet classifier, regression, event-level NanoAOD, per-point energy, hit clustering)
are run here on small synthetic inputs; their numbers are tested in their own test files.
"""

from __future__ import annotations

import json
import pathlib
import pickle

import awkward as ak
import numpy as np
import pytest
from coffea import processor

from hepnn_coffea.evaluation.protocol import (
    METHOD_AXIS,
    SAMPLE_AXIS,
    EvaluationProcessor,
    EvaluationSummary,
    Table,
    cell,
    jsonable,
    render_markdown,
    write_summary,
)
from tests.conftest import SAMPLES

FLOWS = {"classifier", "regression", "events", "per_point", "clustering"}


def _processors() -> dict[str, type]:
    from hepnn_coffea.calo.clustering_eval import HitClusteringProcessor
    from hepnn_coffea.calo.per_point_eval import PerPointEvaluationProcessor
    from hepnn_coffea.evaluation.events_processor import EventTaggerProcessor
    from hepnn_coffea.evaluation.processor import RegressionEvaluationProcessor, TaggerEvaluationProcessor

    classes = (
        TaggerEvaluationProcessor,
        RegressionEvaluationProcessor,
        EventTaggerProcessor,
        PerPointEvaluationProcessor,
        HitClusteringProcessor,
    )
    return {cls.kind: cls for cls in classes}


def test_every_flow_has_an_evaluation_processor() -> None:
    procs = _processors()
    assert set(procs) == FLOWS  # one processor per flow, each with its own kind
    for cls in procs.values():
        assert issubclass(cls, EvaluationProcessor) and issubclass(cls, processor.ProcessorABC), cls
    ours = [c for c in EvaluationProcessor.__subclasses__() if c.__module__.startswith("hepnn_coffea.")]
    assert {c.kind for c in ours} == FLOWS and len(ours) == len(FLOWS)  # and no other


def _flow_hists() -> dict[str, dict]:
    from hepnn_coffea.calo.clustering_eval import _hists
    from hepnn_coffea.calo.per_point_eval import make_per_point_hists
    from hepnn_coffea.evaluation.events_eval import make_event_hists
    from hepnn_coffea.evaluation.processor import make_histograms
    from hepnn_coffea.evaluation.regression import make_regression_hists

    return {
        "classifier": make_histograms(["top", "qcd"], (10, 0, 300), (10, 500, 700), "m", "pt"),
        "classifier_variations": make_histograms(
            ["top", "qcd"], (10, 0, 300), (10, 500, 700), "m", "pt", ["nominal"]
        ),
        "regression": make_regression_hists(
            {"pt": {"true": (0.0, 100.0), "residual": 10.0, "relative": True}}
        ),
        "events": make_event_hists(["top", "W", "QCD"]),
        "per_point": make_per_point_hists(),
        "clustering": _hists(),
    }


@pytest.mark.parametrize(
    "flow", ["classifier", "classifier_variations", "regression", "events", "per_point", "clustering"]
)
def test_hist_axes_are_named_alike(flow: str) -> None:
    """The sample axis is ``process`` in every flow's hists, the compared methods' axis ``estimator``."""
    for name, h in _flow_hists()[flow].items():
        names = [ax.name for ax in h.axes]
        assert SAMPLE_AXIS in names and not {"dataset", "method", "sample"} & set(names), (flow, name, names)
        if flow in ("regression", "per_point", "clustering"):
            assert METHOD_AXIS in names, (flow, name, names)


def test_cells_and_the_markdown_renderer() -> None:
    assert cell(None) == "-" and cell("x") == "x" and cell(3) == "3" and cell(np.int64(4)) == "4"
    assert cell(0.123456) == "0.1235" and cell(np.float32(2.0), ".3f") == "2.000"
    assert cell({"value": 0.5, "low": 0.4, "high": 0.7}) == "0.50 +0.20 -0.10"
    blocks = ["# title", Table(["a", "b"], [[1, None], ["x", 0.5]], float_format=".2f"), "end"]
    assert render_markdown(blocks) == "# title\n\n| a | b |\n|---|---|\n| 1 | - |\n| x | 0.50 |\n\nend\n"
    assert jsonable({1: np.arange(2), "f": np.float32(np.nan), "t": (np.int64(2), 1.5)}) == {
        "1": [0, 1],
        "f": None,
        "t": [2, 1.5],
    }


def _report(summary: dict) -> list:
    return ["# report", Table(["metric", "value"], [[k, v] for k, v in summary.items() if k != "plots"])]


def test_write_summary_writes_json_and_markdown_then_the_plots(tmp_path: pathlib.Path) -> None:
    summary = EvaluationSummary({"auc": {"value": 0.9, "low": 0.8, "high": 0.95}}, kind="toy", report=_report)
    assert isinstance(summary, dict) and summary.plots == []
    write_summary(summary, tmp_path / "a")
    assert json.loads((tmp_path / "a" / "summary.json").read_text()) == summary
    assert (
        (tmp_path / "a" / "summary.md").read_text() == summary.markdown() == render_markdown(summary.blocks())
    )
    seen = []

    def figures() -> list[pathlib.Path]:
        seen.append(json.loads((tmp_path / "b" / "summary.json").read_text()))  # written before the figures
        return [tmp_path / "b" / "plots" / "roc.png"]

    assert write_summary(summary, tmp_path / "b", plots=figures) is summary
    assert seen == [{"auc": summary["auc"]}] and summary.plots == [str(tmp_path / "b" / "plots" / "roc.png")]
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["plots"] == summary.plots
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "summary.json",
        "summary.md",
    ]  # no temporary left
    again = pickle.loads(pickle.dumps(summary))
    assert again == summary and again.kind == "toy" and again.markdown() == summary.markdown()


def _assert_written(summary: EvaluationSummary, kind: str, out: pathlib.Path) -> None:
    """``summary`` is the flow's EvaluationSummary, and ``out`` holds exactly what write_summary writes
    of it."""
    assert isinstance(summary, EvaluationSummary) and summary.kind == kind
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert (out / "summary.md").read_text() == summary.markdown()


def test_classifier_flow(tmp_path: pathlib.Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hepnn_coffea.evaluation.processor import make_histograms
    from hepnn_coffea.evaluation.stages import evaluate, summary_markdown

    rng = np.random.default_rng(0)
    n, classes = 400, ["top", "qcd"]
    truth = rng.integers(0, 2, n)
    score = np.clip(rng.normal(0.35 + 0.3 * (truth == 0), 0.2), 0, 1)
    table = {
        "sample": np.where(truth == 0, "top", "qcd"),
        "weight": np.ones(n),
        "score_top": score,
        "score_qcd": 1 - score,
        "top": (truth == 0).astype(np.int8),
        "qcd": (truth == 1).astype(np.int8),
    }
    hists = make_histograms(classes, (10, 0, 300), (10, 500, 700), "m", "pt")
    names = np.asarray(classes, dtype=object)[truth]
    for i, c in enumerate(classes):
        hists["score"].fill(process=table["sample"], truth=names, output=c, score=[score, 1 - score][i])
    pq.write_table(pa.table(table), tmp_path / "scores.parquet")
    (tmp_path / "hists.pkl").write_bytes(pickle.dumps(hists))
    (tmp_path / "counts.json").write_text(
        json.dumps({"model": "/m/toy.onnx", "classes": classes, "n_jets": n})
    )
    summary = evaluate(tmp_path, plots=False, n_bootstrap=5)
    _assert_written(summary, "classifier", tmp_path)
    assert summary_markdown(summary) == summary_markdown(dict(summary)) == summary.markdown()
    assert "| from table |" in summary.markdown()


def test_regression_flow(tmp_path: pathlib.Path) -> None:
    from hepnn_coffea.evaluation.regression import fill_regression, make_regression_hists
    from hepnn_coffea.evaluation.regression_stage import summarize_regression

    rng = np.random.default_rng(1)
    true = rng.uniform(10, 90, 500)
    pred = true * rng.normal(1.0, 0.1, 500)
    hists = make_regression_hists({"pt": {"true": (0.0, 100.0), "residual": 30.0, "relative": True}})
    fill_regression(hists, "pt", process="s", estimator="model", true=true, pred=pred, weight=np.ones(500))
    table = {"weight": np.ones(500), "true_pt": true, "pred_pt": pred}
    summary = summarize_regression(hists, {"classes": ["pt"], "n_jets": 500}, table, n_bootstrap=5)
    write_summary(summary, tmp_path)
    _assert_written(summary, "regression", tmp_path)
    assert summary.markdown().count("| pt | model | all |") == 1


def test_events_flow(tmp_path: pathlib.Path) -> None:
    from hepnn_coffea.evaluation.events_eval import evaluate_events
    from tests.helpers.events_tables import make_table, write_infer

    out = write_infer(tmp_path / "out", make_table(n=300), "tagger")
    summary = evaluate_events(out, plots=False, n_bootstrap=3)
    _assert_written(summary, "events", out)
    assert "| tagger |" in summary.markdown()


def test_per_point_flow(tmp_path: pathlib.Path) -> None:
    from hepnn_coffea.calo.per_point_eval import summarize_per_point, summary_markdown

    rng = np.random.default_rng(2)
    true = rng.uniform(1, 20, 300)
    pt = rng.uniform(1, 50, 300)
    result = {
        "table": {
            "true": [true[:100], true[100:]],
            "focus_pt": [pt[:100], pt[100:]],
            "pred_a": [true[:100] * 1.1, true[100:] * 0.9],
        },
        "counts": {"s": {"samples": 300, "filled": 300}},
    }
    summary = summarize_per_point(result, ["a"], {"overall": 1.0}, pt_edges=[1, 10, 100], n_bootstrap=5)
    write_summary(summary, tmp_path)
    _assert_written(summary, "per_point", tmp_path)
    assert summary.markdown() == summary_markdown(summary["rows"], ["a"]) + "\n"


def _hits(n_jets: int = 3) -> ak.Array:
    rng = np.random.default_rng(3)
    jets = []
    for _ in range(n_jets):
        n = 12
        jets.append(
            {
                "deta": rng.normal(0, 0.1, n),
                "dphi": rng.normal(0, 0.1, n),
                "energy": rng.uniform(0.5, 5, n),
                "is_track": np.r_[[1, 1], np.zeros(n - 2, int)],
                "is_em": rng.integers(0, 2, n),
                "particle": rng.integers(0, 3, n),
                "type": rng.integers(0, 5, n),
            }
        )
    return ak.Array([{k: v.tolist() for k, v in j.items()} for j in jets])


def test_clustering_flow(tmp_path: pathlib.Path) -> None:
    from hepnn_coffea.calo import clustering_eval as ce

    result = ce.evaluate_jets(_hits(), None, "top", 0)
    summary = ce.summarize(result)
    assert (
        summary["all"]["baseline"]["jets"] == 3 == result["hists"]["efficiency"][{SAMPLE_AXIS: "top"}].sum()
    )
    ce.write_summary(summary, tmp_path / "a")
    _assert_written(summary, "clustering", tmp_path / "a")
    assert summary.markdown() == ce.to_markdown(summary) + "\n"
    ce.write_summary(dict(summary), tmp_path / "b")  # a plain table (e.g. read back from JSON) too
    assert (tmp_path / "b" / "summary.md").read_text() == summary.markdown()
    write_summary(summary, tmp_path / "c", plots=lambda: ["p.png"])  # the plots entry stays out of the table
    assert summary.markdown() == ce.to_markdown(summary) + "\n" and summary.plots == ["p.png"]


def test_clustering_processor_runs_in_coffea(tmp_path: pathlib.Path) -> None:
    """The clustering processor runs under ``processor.Runner`` like every other (baseline only, no model)."""
    from hepnn_coffea.calo import calorimeter_view
    from hepnn_coffea.calo.clustering_eval import run_clustering_evaluation, summarize

    fileset = {
        "top_test": {
            "files": {str(SAMPLES / "topqcd_test_top.root"): "tree"},
            "metadata": {"sample": "top", "split": "test"},
        }
    }
    calorimeter_view(fileset, tmp_path / "view", seed=1, executor="iterative", chunksize=100)
    result = run_clustering_evaluation(tmp_path / "view", None, split="test", chunksize=50)
    summary = summarize(result)
    jets = result["counts"]["top"]["jets_with_cells"]
    assert jets > 0 and summary["top"]["baseline"]["jets"] == jets
    assert result["hists"]["purity"][{SAMPLE_AXIS: "top", METHOD_AXIS: "baseline"}].sum() == jets
