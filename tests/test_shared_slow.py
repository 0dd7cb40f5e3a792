"""End to end on the shared top-vs-QCD RNTuples: PFN reaches test AUC >= 0.95 through infer/evaluate."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT, TOP_KIN, TOPQCD, needs_shared

pytestmark = [pytest.mark.slow, pytest.mark.shared, needs_shared]


def test_pfn_on_shared_data_full_chain(tmp_path) -> None:
    from hepnn_coffea.evaluation.stages import evaluate, infer
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.processing.preprocess import preprocess
    from hepnn_coffea.training.trainer import train

    fileset = {
        f"{sample}_{split}": {
            "files": {str(p): "tree" for p in sorted(TOPQCD.glob(f"{split}_{sample}_*.root"))},
            "metadata": {"sample": sample, "split": split},
        }
        for sample in ("top", "qcd")
        for split in ("train", "val", "test")
    }
    (tmp_path / "fileset.json").write_text(json.dumps(fileset))
    manifest = preprocess(
        tmp_path / "fileset.json",
        TOP_KIN,
        tmp_path / "shards",
        executor="futures",
        workers=2,
        chunksize=10_000,
    )
    assert sum(e["entries_out"] for e in manifest["splits"]["train"].values()) == 60_000
    assert sum(e["entries_out"] for e in manifest["splits"]["test"].values()) == 15_000
    result = train(
        ROOT / "models" / "pfn.yaml",
        tmp_path / "shards",
        tmp_path / "run",
        overrides={"training": {"epochs": 4, "batch_size": 256}},
        progress=False,
    )
    assert result.best_metric > 0.95
    export_onnx(tmp_path / "run", tmp_path / "pfn.onnx")
    info = infer(
        tmp_path / "pfn.onnx",
        tmp_path / "fileset.json",
        tmp_path / "out",
        split="test",
        executor="futures",
        workers=2,
    )
    assert info["n_jets"] == 15_000
    summary = evaluate(tmp_path / "out")
    print(json.dumps(summary, indent=1))
    auc = summary["from_table"]["auc"]
    assert auc["value"] >= 0.95 and 0 < auc["high"] - auc["value"] < 0.005  # 68% interval of 15k jets
    assert abs(summary["from_hists"]["auc"]["value"] - auc["value"]) < 2e-3
    assert summary["from_table"]["rejection_at_30"]["value"] > 50
