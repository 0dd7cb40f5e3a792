"""Variations in the event-level (NanoAOD) evaluation: PFCand fields varied, nominal unchanged, direct
check."""

from __future__ import annotations

import pathlib
import pickle
import warnings

import awkward as ak
import numpy as np
import pytest

from hepnn_coffea.evaluation.stages import infer
from tests.test_events_workflow import CONFIG, FILESET, HERE, SAMPLES
from tests.test_variations import _columns

VARIATIONS = {
    "seed": 2,
    "report": {"background_efficiencies": [0.1]},
    "define": {
        "unity": {"type": "scale", "factor": 1.0, "particles": "neutral"},
        "up": {"type": "scale", "factor": 1.03},
        "drop": {"type": "drop", "fraction": 0.1, "particles": "charged"},
        "w": {"type": "weight", "expression": "2.0", "samples": ["ttbar_400toInf"]},
    },
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.processing.preprocess import preprocess
    from hepnn_coffea.training.trainer import train

    work = tmp_path_factory.mktemp("events_variations")
    preprocess(FILESET, CONFIG, work / "shards", executor="iterative", chunksize=150)
    overrides = {
        "training": {
            "epochs": 1,
            "batch_size": 128,
            "samples_per_epoch": 1024,
            "val_samples": 256,
            "tensorboard": False,
        }
    }
    train(
        HERE.parent / "models" / "nanoaod" / "pfn.yaml",
        work / "shards",
        work / "run",
        overrides=overrides,
        progress=False,
    )
    export_onnx(work / "run", work / "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        infer(work / "model.onnx", FILESET, work / "plain", executor="iterative", chunksize=150)
        infer(
            work / "model.onnx",
            FILESET,
            work / "varied",
            executor="iterative",
            chunksize=150,
            variations=VARIATIONS,
        )
    return work


def test_nominal_unchanged_and_hists_stacked(runs: pathlib.Path) -> None:
    assert (runs / "plain" / "scores.parquet").read_bytes() == (
        runs / "varied" / "scores.parquet"
    ).read_bytes()
    with (
        (runs / "plain" / "hists.pkl").open("rb") as f,
        (runs / "varied" / "hists_variations.pkl").open("rb") as g,
    ):
        plain, full = pickle.load(f), pickle.load(g)
    for name, h in plain.items():
        assert list(full[name].axes["variation"]) == ["nominal", "unity", "up", "drop", "w"]
        assert full[name][{"variation": "nominal"}] == h
        np.testing.assert_array_equal(
            full[name][{"variation": "unity"}].values(flow=True), h.values(flow=True)
        )
    # a weight variation on one sample: its yields double there, elsewhere they stay
    y = full["yields"]
    for process in y.axes["process"]:
        ratio = (
            y[{"variation": "w", "process": process}].values().sum()
            / y[{"variation": "nominal", "process": process}].values().sum()
        )
        assert ratio == pytest.approx(1.0) or process == "ttbar"


def test_varied_pfcands_equal_direct_recomputation(runs: pathlib.Path) -> None:
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from hepnn_coffea import OnnxTagger

    table = _columns(runs / "varied" / "variations.parquet")
    rows = {
        k: v[(table["variation"] == "up") & (table["sample"] == "ttbar_400toInf")] for k, v in table.items()
    }
    path = str(SAMPLES / "nanosim_ttbar_400toInf.root")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        events = NanoEventsFactory.from_root(
            {path: "Events"}, schemaclass=NanoAODSchema, mode="eager"
        ).events()
        for field in ("pt", "mass"):
            value = events.PFCand[field]
            dtype = ak.to_numpy(ak.flatten(value)).dtype
            events["PFCand", field] = ak.values_astype(ak.values_astype(value, np.float64) * 1.03, dtype)
        scores = OnnxTagger(runs / "model.onnx").fatjets(events)
    position = {int(e): i for i, e in enumerate(ak.to_numpy(events.event))}
    direct = np.array(
        [scores.score_top[position[int(e)]][int(j)] for e, j in zip(rows["event"], rows["fatjet_index"])]
    )
    assert len(direct) > 50
    np.testing.assert_allclose(rows["score_top"], direct, rtol=1e-5, atol=1e-6)
    nominal = _columns(runs / "varied" / "scores.parquet")
    assert len(nominal["score_top"]) == (table["variation"] == "up").sum()
    assert not np.array_equal(table["score_top"][table["variation"] == "up"], nominal["score_top"])


def test_events_report(runs: pathlib.Path) -> None:
    import json

    report = json.loads((runs / "varied" / "variations.json").read_text())
    assert set(report["discriminants"]) == {"top", "W"} and report["pt_column"] == "FatJet_pt"
    everything = report["discriminants"]["top"]["working_points"]["eff_b_10%"]["bins"][0]
    assert everything["shifts"]["unity"]["delta_eff_signal"] == 0.0
    assert everything["nominal"]["n_background"] > 100
    assert (runs / "varied" / "plots" / "variations_W.png").is_file()
