"""Working points at fixed background efficiency as a correctionlib JSON, and the processor applying them."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hepnn_coffea.evaluation.stages import infer
from hepnn_coffea.evaluation.working_points import threshold_at_background_efficiency, write_working_points
from tests.conftest import SAMPLES
from tests.test_variations import _test_fileset

correctionlib = pytest.importorskip("correctionlib")


def test_threshold_is_the_loosest_cut_within_the_target() -> None:
    rng = np.random.default_rng(0)
    score = np.round(rng.random(2000), 2)  # many ties
    weight = rng.exponential(1.0, 2000)
    for target in (0.01, 0.05, 0.3):
        t = threshold_at_background_efficiency(score, weight, target)
        eff = weight[score >= t].sum() / weight.sum()
        looser = score[score < t].max()  # the next score value below the cut
        assert eff <= target < weight[score >= looser].sum() / weight.sum()
        assert not np.any(score == t)  # halfway between two scores: robust to rounding
    assert weight[score >= threshold_at_background_efficiency(score, weight, 1e-6)].sum() == 0


def _synthetic_events_table(path, n: int = 4000) -> None:
    """An events-workflow scores.parquet: top/W/QCD, weighted QCD slices, unmatched jets."""
    rng = np.random.default_rng(1)
    label = rng.choice(["top", "W", "QCD", "unmatched"], n, p=[0.25, 0.15, 0.5, 0.1])
    logits = rng.normal(0, 1, (n, 3))
    for i, cls in enumerate(("top", "W", "QCD")):
        logits[label == cls, i] += 1.5
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    weight = np.where(label == "QCD", rng.choice([1000.0, 100.0, 10.0], n), 0.1)
    columns = {
        "label": label,
        "weight": weight,
        "FatJet_pt": 300 + rng.exponential(200.0, n),
        **{f"score_{c}": probs[:, i] for i, c in enumerate(("top", "W", "QCD"))},
    }
    pq.write_table(pa.table(columns), path)
    (path.parent / "counts.json").write_text(json.dumps({"classes": ["top", "W", "QCD"]}))


def test_correctionlib_file_validates_and_reproduces_the_targets(tmp_path) -> None:
    _synthetic_events_table(tmp_path / "scores.parquet")
    points = write_working_points(tmp_path, tmp_path / "wp.json", [0.01, 0.1], pt_edges=[300, 400, 600, 5000])
    cset = correctionlib.CorrectionSet.from_file(str(tmp_path / "wp.json"))
    assert sorted(cset) == ["W_global", "W_pt", "top_global", "top_pt"]
    table = pq.read_table(tmp_path / "scores.parquet").to_pydict()
    label, w, pt = np.asarray(table["label"]), np.asarray(table["weight"]), np.asarray(table["FatJet_pt"])
    s_top, s_qcd = np.asarray(table["score_top"]), np.asarray(table["score_QCD"])
    disc = s_top / (s_top + s_qcd)
    qcd = label == "QCD"
    for target in (0.01, 0.1):
        wp = f"eff_b_{target * 100:g}%"
        threshold = cset["top_global"].evaluate(wp, pt)
        eff = w[qcd & (disc >= threshold)].sum() / w[qcd].sum()
        assert target - 1000.0 / w[qcd].sum() < eff <= target  # within one (heaviest) jet of the target
        binned = cset["top_pt"].evaluate(wp, pt)
        for i, (lo, hi) in enumerate([(300, 400), (400, 600), (600, 5000)]):
            sel = qcd & (pt >= lo) & (pt < hi)
            eff_bin = w[sel & (disc >= binned)].sum() / w[sel].sum()
            assert target - 1000.0 / w[sel].sum() < eff_bin <= target
            assert points["discriminants"]["top"]["pt_bins"][wp][i]["threshold"] == pytest.approx(
                binned[sel][0], abs=1e-12
            )
        # clamped below the first bin
        assert cset["top_pt"].evaluate(wp, 10.0) == cset["top_pt"].evaluate(wp, 350.0)
    with pytest.raises(IndexError):  # correctionlib: no such category
        cset["top_pt"].evaluate("eff_b_2%", 350.0)


@pytest.fixture(scope="module")
def inferred(tmp_path_factory, onnx_model):
    out = tmp_path_factory.mktemp("wp")
    infer(onnx_model, _test_fileset(), out, executor="iterative", chunksize=300)
    return out


@pytest.mark.parametrize("mode", ["runner", "dask"])
def test_processor_applies_the_working_points(inferred, onnx_model, mode) -> None:
    from processors.apply_working_points import WorkingPointAnalysis

    points = write_working_points(
        inferred / "scores.parquet", inferred / "wp.json", [0.02, 0.1], pt_edges=[550, 600, 650]
    )
    proc = WorkingPointAnalysis(str(onnx_model), inferred / "wp.json")
    assert proc.correction == "jet_isTop_pt" and proc.points == ["eff_b_2%", "eff_b_10%"]
    fileset = {
        s: {"files": {str(SAMPLES / f"topqcd_test_{s}.root"): "tree"}, "metadata": {"sample": s}}
        for s in ("qcd", "top")
    }
    if mode == "runner":
        from hepnn_coffea.processing.runner import run_runner

        out = run_runner(fileset, proc, executor="iterative", chunksize=200)
    else:
        import dask
        from coffea.dataset_tools import apply_to_fileset, preprocess
        from coffea.nanoevents import BaseSchema

        available, _ = preprocess(fileset, step_size=200, save_form=False)
        (out,) = dask.compute(apply_to_fileset(proc, available, schemaclass=BaseSchema))
        out = {s: out[s][s] for s in out}
    achieved = points["achieved"]["jet_isTop"]["pt"]
    for wp, target in (("eff_b_2%", 0.02), ("eff_b_10%", 0.1)):
        eff_b = (
            out["qcd"]["tagged"][{"wp": wp}].sum(flow=True).value / out["qcd"]["jets"].sum(flow=True).value
        )
        eff_s = (
            out["top"]["tagged"][{"wp": wp}].sum(flow=True).value / out["top"]["jets"].sum(flow=True).value
        )
        assert eff_b == pytest.approx(achieved[wp]["eff_background"], abs=1.01 / 500)  # at most one jet apart
        assert eff_s == pytest.approx(achieved[wp]["eff_signal"], abs=1.01 / 500)
        assert target - 3 / 500 < eff_b <= target + 1 / 500  # two pT bins: each within a jet of the target


def test_cli_working_points(inferred, capsys) -> None:
    from hepnn_coffea.cli import main

    out = inferred / "cli_wp.json"
    assert main(["working-points", str(inferred), "--background-efficiency", "0.05", "-o", str(out)]) == 0
    assert "| eff_b_5% | all |" in capsys.readouterr().out
    assert sorted(correctionlib.CorrectionSet.from_file(str(out))) == ["jet_isTop_global", "jet_isTop_pt"]
