"""infer/evaluate stages and the CLI: hists vs table, weights, plots, the example analysis."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from hepnn_coffea.evaluation.roc import roc_from_hist, roc_from_scores
from hepnn_coffea.evaluation.stages import evaluate, infer
from tests.conftest import ROOT, SAMPLES


@pytest.fixture(scope="module")
def inferred(tmp_path_factory, onnx_model):
    fileset = json.loads((SAMPLES / "fileset.json").read_text())
    fileset = {k: v for k, v in fileset.items() if v["metadata"]["split"] == "test"}
    for v in fileset.values():
        v["files"] = {str(SAMPLES / f): t for f, t in v["files"].items()}
    fileset["qcd_test"]["metadata"].update(xsec=2.0, lumi=3.0, sumw=4.0)  # weight 1.5
    out = tmp_path_factory.mktemp("infer")
    infer(onnx_model, fileset, out, executor="iterative", chunksize=300)
    return out


def test_table_and_hists_are_consistent(inferred) -> None:
    table = pq.read_table(inferred / "scores.parquet").to_pydict()
    assert set(table) >= {
        "sample",
        "weight",
        "score_jet_isTop",
        "score_jet_isQCD",
        "jet_isTop",
        "jet_isQCD",
        "jet_pt",
        "jet_sdmass",
        "event_no",
    }
    sample = np.asarray(table["sample"])
    assert (sample == "top").sum() == 500 and (sample == "qcd").sum() == 500
    np.testing.assert_array_equal(np.asarray(table["weight"])[sample == "qcd"], 1.5)
    np.testing.assert_array_equal(np.asarray(table["jet_isTop"]), (sample == "top").astype(int))
    with (inferred / "hists.pkl").open("rb") as f:
        hists = pickle.load(f)
    h = hists["score"]
    assert set(h.axes["process"]) == {"top", "qcd"}
    assert h[{"process": "qcd", "truth": "jet_isQCD", "output": "jet_isTop"}].sum().value == pytest.approx(
        750.0
    )
    assert h[{"process": "top", "truth": "jet_isTop", "output": "jet_isTop"}].sum().value == pytest.approx(
        500.0
    )
    mass = (
        hists["score_vs_mass"][{"process": "top", "truth": "jet_isTop"}]
        .project("mass")
        .values(flow=True)
        .sum()
    )
    assert mass == pytest.approx(500.0)
    # ROC from the hists equals the exact ROC from the table within the 1/1000 score binning
    score, is_top, w = (np.asarray(table[k]) for k in ("score_jet_isTop", "jet_isTop", "weight"))
    assert roc_from_hist(h, "jet_isTop").auc == pytest.approx(roc_from_scores(score, is_top, w).auc, abs=2e-3)
    import uproot

    with uproot.open(inferred / "hists.root") as f:
        np.testing.assert_allclose(
            f["score/qcd/jet_isQCD/jet_isTop"].values(),
            h[{"process": "qcd", "truth": "jet_isQCD", "output": "jet_isTop"}].values(),
        )


def test_evaluate_summary_and_plots(inferred) -> None:
    summary = evaluate(inferred)
    t, h = summary["from_table"], summary["from_hists"]
    for key in (
        "auc",
        "accuracy",
        "rejection_at_30",
        "rejection_at_50",
    ):  # every number with its 68% interval
        assert set(t[key]) == set(h[key]) == {"value", "low", "high"}
        assert t[key]["low"] < t[key]["value"] < t[key]["high"], key
        # hists and table: the same jets, binned or not, agree within the table's interval
        assert abs(t[key]["value"] - h[key]["value"]) < 0.5 * (t[key]["high"] - t[key]["low"]), key
    assert 0.75 < t["auc"]["value"] <= 1 and abs(t["auc"]["value"] - h["auc"]["value"]) < 2e-3
    assert 0.001 < t["auc"]["high"] - t["auc"]["value"] < 0.05  # bootstrap spread of 1000 jets
    assert t["rejection_at_30"]["value"] >= t["rejection_at_50"]["value"] > 1
    assert json.loads((inferred / "summary.json").read_text())["from_table"]["auc"] == t["auc"]
    markdown = (inferred / "summary.md").read_text()
    auc = t["auc"]
    assert (
        "| from table |" in markdown and f"{auc['value']:.4f} +{auc['high'] - auc['value']:.4f}" in markdown
    )
    for plot in (
        "roc",
        "score_shapes",
        "score_stacked",
        "efficiency_vs_pt",
        "efficiency_vs_sdmass",
        "rejection_vs_pt",
        "rejection_vs_sdmass",
        "mass_after_cuts",
    ):
        assert (inferred / "plots" / f"{plot}.png").stat().st_size > 10_000
        assert (inferred / "plots" / f"{plot}.pdf").read_bytes()[:5] == b"%PDF-"
    perf = summary["performance_vs"]["jet_pt"]
    per_bin = [v for v in perf["per_bin"]["eff_signal"]["value"] if v is not None]
    assert per_bin and min(per_bin) >= 0.5  # the per-bin working point keeps 50% of the signal in every bin


def test_roc_helpers_on_known_scores() -> None:
    score = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    truth = np.array([1, 1, 0, 1, 0, 0])
    roc = roc_from_scores(score, truth)
    assert roc.auc == pytest.approx(8 / 9)
    assert roc.rejection_at(2 / 3) == pytest.approx(3.0)


def test_example_analysis_adds_scores_in_all_modes(onnx_model) -> None:
    import dask
    from coffea.dataset_tools import apply_to_fileset, preprocess
    from coffea.nanoevents import BaseSchema

    from hepnn_coffea.processing.runner import run_runner
    from processors.toptag_analysis import TopTagAnalysis

    fileset = {
        "qcd": {"files": {str(SAMPLES / "topqcd_test_qcd.root"): "tree"}, "metadata": {"sample": "qcd"}}
    }
    proc = TopTagAnalysis(str(onnx_model), cut=0.5)
    virtual = run_runner(fileset, proc, executor="iterative", chunksize=200)["qcd"]
    available, _ = preprocess(fileset, step_size=200, save_form=False)
    (lazy,) = dask.compute(apply_to_fileset(proc, available, schemaclass=BaseSchema))
    lazy = lazy["qcd"]["qcd"]
    assert virtual["n_jets"] == lazy["n_jets"] == 500
    assert 0 < virtual["n_tagged"] == lazy["n_tagged"] < 500
    np.testing.assert_array_equal(virtual["tagged_mass"].values(), lazy["tagged_mass"].values())


def test_cli_chain_and_errors(tmp_path, onnx_model) -> None:
    hepnn = [sys.executable, "-m", "hepnn_coffea.cli"]
    out = tmp_path / "cli"
    run = subprocess.run(
        [
            *hepnn,
            "infer",
            str(onnx_model),
            "--fileset",
            str(SAMPLES / "fileset.json"),
            "-o",
            str(out),
            "--split",
            "val",
            "--executor",
            "iterative",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    run = subprocess.run([*hepnn, "evaluate", str(out), "--no-plots"], capture_output=True, text=True)
    assert run.returncode == 0 and "| from hists |" in run.stdout, run.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (ROOT / "models" / "data" / "top_kin.yaml").read_text().replace("length: 128", "length: 0", 1)
    )
    run = subprocess.run(
        [*hepnn, "preprocess", str(SAMPLES / "fileset.json"), "-c", str(bad), "-o", str(tmp_path / "s")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "inputs.pf_points.length" in run.stderr


def test_evaluate_overlays_other_models_and_baselines(inferred, shards) -> None:
    summary = evaluate(
        inferred,
        compare=[inferred],
        baselines=["logistic", "gbt"],
        shards=shards,
        reference="gbt",
        plots=False,
    )
    others = summary["others"]
    assert set(others) == {"pfn'", "logistic", "gbt"}  # the model itself is row "pfn"
    assert others["pfn'"]["auc"] == pytest.approx(summary["from_table"]["auc"])
    assert others["gbt"]["auc"]["value"] > 0.9 and others["logistic"]["auc"]["value"] > 0.9
    relative = summary["relative_to_reference"]
    assert set(relative) == {"pfn", "pfn'", "logistic"} and all(r["paired"] for r in relative.values())
    assert relative["pfn"]["auc_difference"] == pytest.approx(relative["pfn'"]["auc_difference"])
    difference = summary["from_table"]["auc"]["value"] - others["gbt"]["auc"]["value"]
    assert relative["pfn"]["auc_difference"]["value"] == pytest.approx(difference)
    table = (inferred / "summary.md").read_text()
    assert "| gbt |" in table and "| logistic |" in table and "Relative to gbt" in table


def test_cli_evaluate_style_and_reference_make_the_figures(inferred, shards, tmp_path) -> None:
    import shutil

    out = tmp_path / "eval"
    shutil.copytree(inferred, out, ignore=shutil.ignore_patterns("plots"))
    cmd = [
        sys.executable,
        "-m",
        "hepnn_coffea.cli",
        "evaluate",
        str(out),
        "--baselines",
        "logistic",
        "--shards",
        str(shards),
        "--reference",
        "logistic",
        "--style",
        "ATLAS",
        "--label",
        "Simulation Internal",
        "--com",
        "13",
        "--lumi",
        "140",
        "--bootstrap",
        "20",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "Relative to logistic" in run.stdout and "| pfn |" in run.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"] == "logistic" and "20 Poisson-bootstrap" in summary["intervals"]
    for name in ("roc", "rejection_vs_pt", "mass_after_cuts"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 10_000 and (
            out / "plots" / f"{name}.pdf"
        ).is_file()
    run = subprocess.run([*cmd[:-2], "--reference", "nope"], capture_output=True, text=True)
    assert run.returncode != 0 and "reference 'nope'" in run.stderr


def test_working_points_from_hists_hold_on_the_table(inferred) -> None:
    from hepnn_coffea.evaluation.roc import apply_working_points, working_points

    with (inferred / "hists.pkl").open("rb") as f:
        hists = pickle.load(f)
    points = working_points(hists["score"], "jet_isTop", (0.02, 0.05, 0.2))
    table = pq.read_table(inferred / "scores.parquet").to_pydict()
    score, is_top, w = (np.asarray(table[k]) for k in ("score_jet_isTop", "jet_isTop", "weight"))
    passed = apply_working_points(score, points)
    assert passed.fields == ["pass_eff_b_2pct", "pass_eff_b_5pct", "pass_eff_b_20pct"]
    for name, wp in points.items():
        column = np.asarray(passed[f"pass_{name.replace('%', 'pct')}"])
        eff_b = np.average(column[is_top == 0], weights=w[is_top == 0])
        assert eff_b == pytest.approx(wp["eff_background"], abs=1e-9)
        assert eff_b <= float(name[len("eff_b_") : -1]) / 100 + 1e-9
        assert np.mean(column[is_top == 1]) == pytest.approx(wp["eff_signal"], abs=1e-9)
    assert (
        points["eff_b_2%"]["threshold"] >= points["eff_b_5%"]["threshold"] >= points["eff_b_20%"]["threshold"]
    )


def test_infer_on_a_separate_dask_scheduler_and_two_workers(onnx_model, tmp_path) -> None:
    """`dask scheduler` + 2 `dask worker` processes on 127.0.0.1, as on a real cluster."""
    import os
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [
                os.path.join(bin_dir, "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                ":0",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        time.sleep(3)
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [os.path.join(bin_dir, "dask"), "worker", address, "--nthreads", "1", "--no-dashboard"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            workers = list(client.scheduler_info()["workers"])
        assert len(workers) == 2
        info = infer(
            onnx_model,
            SAMPLES / "fileset.json",
            tmp_path / "out",
            split="test",
            executor="dask",
            scheduler=address,
            chunksize=250,
        )
        assert info["n_jets"] == 1000
        reference = infer(
            onnx_model,
            SAMPLES / "fileset.json",
            tmp_path / "ref",
            split="test",
            executor="iterative",
            chunksize=250,
        )
        got = (
            pq.read_table(tmp_path / "out" / "scores.parquet")
            .to_pandas()
            .sort_values(["sample", "event_no", "jet_pt"])
        )
        ref = (
            pq.read_table(tmp_path / "ref" / "scores.parquet")
            .to_pandas()
            .sort_values(["sample", "event_no", "jet_pt"])
        )
        np.testing.assert_array_equal(got["score_jet_isTop"].to_numpy(), ref["score_jet_isTop"].to_numpy())
        assert reference["counts"] == info["counts"]
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
