"""Regression workflow with trained experts: manifests, expert training, routed ONNX export, the tagger,
inference and evaluation, a zoo model on constituents and the CLI (configuration and training
pieces: ``test_regression_config.py``)."""

from __future__ import annotations

import json
import pathlib

import awkward as ak
import numpy as np
import pytest
import torch
import yaml

from hepnn_coffea.config import ConfigError
from hepnn_coffea.features.compute import compute_features
from tests.conftest import ROOT, SAMPLES
from tests.helpers.regression import REGRESSION, _expected_cutflow, _flat, _top_arrays

MLP = ROOT / "models" / "regression" / "mlp_trigger.yaml"


@pytest.fixture(scope="module")
def reg_shards(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    from hepnn_coffea.processing.preprocess import preprocess

    out = tmp_path_factory.mktemp("reg_shards")
    preprocess(SAMPLES / "fileset.json", REGRESSION, out, executor="iterative", chunksize=400)
    return out


@pytest.fixture(scope="module")
def expert_run(tmp_path_factory: pytest.TempPathFactory, reg_shards: pathlib.Path) -> pathlib.Path:
    from hepnn_coffea.training.experts import train_experts

    run = tmp_path_factory.mktemp("reg_runs") / "mlp"
    train_experts(MLP, reg_shards, run, overrides={"training": {"epochs": 3}}, progress=False)
    return run


# ------------------------------------------------------------------ manifests
def test_manifest_counts_filters_experts_and_reconciles(reg_shards) -> None:
    manifest = json.loads((reg_shards / "manifest.json").read_text())
    top = manifest["splits"]["train"]["top"]
    keep, removed = _expected_cutflow(_top_arrays())
    assert top["filtered"] == removed
    assert top["entries_out"] == keep.sum()
    eta = np.abs(_flat(_top_arrays())["jet_eta"][keep])
    assert top["expert_counts"] == [int((eta < 1).sum()), int((eta >= 1).sum())]
    assert manifest["splits"]["train"]["qcd"]["entries_out"] == 0  # QCD jets have no truth top
    assert manifest["experts"]["names"] == ["central", "forward"]


# -------------------------------------------------------- experts and export
def test_experts_train_on_their_own_rows(expert_run, reg_shards) -> None:
    experts = json.loads((expert_run / "experts.json").read_text())
    assert experts["runs"] == ["expert_central", "expert_forward"]
    manifest = json.loads((reg_shards / "manifest.json").read_text())
    for i, name in enumerate(experts["names"]):
        prov = json.loads((expert_run / f"expert_{name}" / "provenance.json").read_text())
        assert prov["expert_index"] == i
        cfg = yaml.safe_load((expert_run / f"expert_{name}" / "config.yaml").read_text())
        assert cfg["training"]["batch_size"] == (128 if name == "forward" else 256)
        from hepnn_coffea.training.dataset import ShardDataset

        ds = ShardDataset(reg_shards, "train", expert=i)
        assert len(ds) == manifest["splits"]["train"]["top"]["expert_counts"][i]
        targets = ds.arrays(["target"])["target"]
        np.testing.assert_allclose(prov["target_scaling"]["offset"], targets.mean(axis=0), rtol=1e-5)


def test_routed_onnx_matches_each_expert_in_torch(expert_run, reg_shards, tmp_path) -> None:
    import onnxruntime as ort

    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.training.dataset import ShardDataset
    from hepnn_coffea.training.trainer import load_network

    info = export_onnx(expert_run, tmp_path / "mlp.onnx")
    assert info["inputs"] == ["jet_features", "expert_index"]
    data = ShardDataset(reg_shards, "test").gather(np.arange(len(ShardDataset(reg_shards, "test"))))
    session = ort.InferenceSession(str(tmp_path / "mlp.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"jet_features": data["jet_features"], "expert_index": data["expert"]})[0]
    assert set(np.unique(data["expert"])) == {0, 1}
    for i, name in enumerate(["central", "forward"]):
        net, _ = load_network(expert_run / f"expert_{name}")
        rows = data["expert"] == i
        with torch.no_grad():
            expected = net.physical(net(torch.from_numpy(data["jet_features"][rows]))).numpy()
        np.testing.assert_allclose(got[rows], expected, rtol=1e-5, atol=1e-4)
        # the routing matters: the other expert gives different numbers
        other = session.run(
            None,
            {
                "jet_features": data["jet_features"][rows],
                "expert_index": np.full(rows.sum(), 1 - i, dtype=np.int64),
            },
        )[0]
        assert np.abs(other - expected).max() > 1e-2
    # physical units: predicted top pT is near the true one
    assert np.median(np.abs(got[:, 0] / data["target"][:, 0] - 1)) < 0.1


# ------------------------------------------------------- inference, evaluation
@pytest.fixture(scope="module")
def routed_onnx(expert_run, tmp_path_factory) -> pathlib.Path:
    from hepnn_coffea.export import export_onnx

    path = tmp_path_factory.mktemp("reg_onnx") / "mlp.onnx"
    export_onnx(expert_run, path)
    return path


def test_tagger_routes_each_jet_to_its_expert(routed_onnx, expert_run) -> None:
    from hepnn_coffea.inference.tagger import OnnxTagger
    from hepnn_coffea.training.trainer import load_network

    tagger = OnnxTagger(routed_onnx)
    assert tagger.routes_experts and tagger.task == "regression"
    assert "jet_eta" in tagger.columns()  # the routing variable is read
    events = _top_arrays("test")
    preds = tagger(events)
    assert preds.fields == ["pred_truth_pt", "pred_truth_deta"]
    # direct torch computation: features of every jet, each through the expert of its |eta|
    batch = compute_features(events, tagger.config, selection="test_time_selection", with_labels=False)
    eta = np.abs(_flat(events)["jet_eta"])[batch.selected]
    for i, name in enumerate(["central", "forward"]):
        net, _ = load_network(expert_run / f"expert_{name}")
        rows = (eta >= 1.0) == bool(i)
        with torch.no_grad():
            expected = net.physical(net(torch.from_numpy(batch.inputs["jet_features"][rows]))).numpy()
        np.testing.assert_allclose(
            ak.to_numpy(preds.pred_truth_pt)[batch.selected][rows], expected[:, 0], rtol=1e-5
        )


def test_regression_infer_and_evaluate(routed_onnx, tmp_path) -> None:
    import pyarrow.parquet as pq

    from hepnn_coffea.evaluation.intervals import format_interval
    from hepnn_coffea.evaluation.regression import bias_vs_true, quantiles, resolution
    from hepnn_coffea.evaluation.stages import evaluate, infer

    info = infer(
        routed_onnx,
        SAMPLES / "fileset.json",
        tmp_path,
        split="test",
        executor="iterative",
        naive={"truth_pt": "jet_pt", "truth_deta": "0 * jet_eta"},
    )
    assert info["task"] == "regression"
    table = pq.read_table(tmp_path / "scores.parquet").to_pydict()
    a = _flat(_top_arrays("test"))
    keep = (a["label_Tbqq"] == 1) & (a["jet_nparticles"] > 0)  # selection only: filters are for training
    assert info["n_jets"] == keep.sum() == len(table["pred_truth_pt"])
    np.testing.assert_allclose(table["naive_truth_pt"], a["jet_pt"][keep])
    np.testing.assert_allclose(
        table["true_truth_pt"], np.hypot(a["aux_truth_px"], a["aux_truth_py"])[keep], rtol=1e-6
    )
    summary = evaluate(tmp_path)
    rows = {(r["target"], r["estimator"], r["expert"]): r for r in summary["rows"]}
    assert {k[2] for k in rows} == {"all", "central", "forward"}
    # the hist-based resolution agrees with the exact quantiles of the table
    rel = (np.asarray(table["pred_truth_pt"]) - table["true_truth_pt"]) / table["true_truth_pt"]
    q16, q84 = np.quantile(rel, [0.16, 0.84])
    assert rows[("truth_pt", "model", "all")]["rel_iqr68"]["value"] == pytest.approx(
        (q84 - q16) / 2, rel=0.05
    )
    assert rows[("truth_pt", "naive", "all")]["n"] == pytest.approx(keep.sum())
    # every metric is a 68% bootstrap interval; its value is the hist-based number
    hists = __import__("pickle").loads((tmp_path / "hists.pkl").read_bytes())
    for (target, estimator, expert), row in rows.items():
        h = hists[f"residual_{target}"][{"process": sum, "estimator": estimator, "expert": expert}]
        assert row["iqr68"]["value"] == pytest.approx(resolution(h[{"true": sum}])["iqr68"], rel=1e-9)
        slope = bias_vs_true(h)["slope"]
        assert row["bias_slope"]["value"] == (pytest.approx(slope, rel=1e-9) if np.isfinite(slope) else None)
        for key in ("median", "iqr68"):
            assert row[key]["low"] <= row[key]["value"] <= row[key]["high"], (key, row[key])
    model = rows[("truth_pt", "model", "all")]
    assert model["rel_iqr68"]["low"] < model["rel_iqr68"]["high"]
    written = json.loads((tmp_path / "summary.json").read_text())
    assert (
        written["rows"][0]["median"] == summary["rows"][0]["median"] and "bootstrap" in written["intervals"]
    )
    md = (tmp_path / "summary.md").read_text()
    assert md.count("| truth_pt |") == 6
    assert f"| {format_interval(model['rel_iqr68'])} |" in md and " +" in format_interval(model["rel_iqr68"])
    assert (tmp_path / "plots" / "pred_vs_true_truth_pt_model.png").stat().st_size > 0
    assert quantiles(np.array([0.0, 1.0, 1.0, 0.0]), np.arange(5.0), [0.5])[0] == pytest.approx(2.0)


def test_zoo_pfn_regresses_on_constituents(reg_shards, tmp_path) -> None:
    """Any zoo model serves regression: PFN on the constituents, single model, ONNX parity in GeV."""
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.training.trainer import train

    result = train(
        ROOT / "models" / "regression" / "pfn_regression.yaml",
        reg_shards,
        tmp_path / "pfn",
        overrides={"training": {"epochs": 2, "batch_size": 128}},
        progress=False,
    )
    assert np.isfinite(result.best_metric) and result.best_epoch >= 1
    info = export_onnx(tmp_path / "pfn", tmp_path / "pfn.onnx")
    assert info["inputs"] == ["pf_features", "pf_mask"] and info["max_abs_diff"] < 0.05  # GeV-scale outputs


def test_regression_task_needs_regression_targets(shards, tmp_path) -> None:
    from hepnn_coffea.training.trainer import train

    with pytest.raises(ConfigError, match="does not fit the shards"):
        train(
            ROOT / "models" / "regression" / "pfn_regression.yaml",
            shards,
            tmp_path / "x",
            overrides={"training": {"epochs": 1}},
            progress=False,
        )


def test_cli_trains_experts_exports_and_infers(reg_shards, tmp_path, capsys) -> None:
    from hepnn_coffea.cli import main

    run = tmp_path / "mlp"
    assert (
        main(
            [
                "train",
                str(MLP),
                "--shards",
                str(reg_shards),
                "-o",
                str(run),
                "--experts",
                "--set",
                "training.epochs=1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        "expert central" in capsys.readouterr().out
        and (run / "expert_forward" / "checkpoints" / "best.pt").is_file()
    )
    assert main(["export", str(run), "-o", str(tmp_path / "mlp.onnx")]) == 0
    assert (
        main(
            [
                "infer",
                str(tmp_path / "mlp.onnx"),
                "--fileset",
                str(SAMPLES / "fileset.json"),
                "-o",
                str(tmp_path / "out"),
                "--split",
                "test",
                "--executor",
                "iterative",
                "--naive",
                "truth_pt=jet_pt",
            ]
        )
        == 0
    )
    assert main(["evaluate", str(tmp_path / "out"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "| truth_pt | naive | all |" in out and "| truth_deta | model | all |" in out
