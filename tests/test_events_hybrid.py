"""The hybrid NanoAOD tagger (constituents + jet observables through the ``globals`` role), end to end."""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import pytest
import torch

from hepnn_coffea.cli import main as cli
from hepnn_coffea.processing.preprocess import preprocess
from hepnn_coffea.training.dataset import ShardDataset
from tests.test_events_workflow import FILESET, HERE

CONFIG = HERE.parent / "models" / "data" / "nanoaod_fatjet_hybrid.yaml"
MODEL = HERE.parent / "models" / "nanoaod" / "pfn_hybrid.yaml"


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.training.trainer import train

    work = tmp_path_factory.mktemp("hybrid")
    preprocess(FILESET, CONFIG, work / "shards", executor="iterative", chunksize=150)
    overrides = {"training": {"epochs": 1, "batch_size": 128, "tensorboard": False}}
    train(MODEL, work / "shards", work / "run", overrides=overrides, progress=False)
    export_onnx(work / "run", work / "model.onnx")
    return work


@pytest.fixture(scope="module")
def scores(hybrid: pathlib.Path) -> pd.DataFrame:
    """``hepnn infer`` on the test events: the per-jet table of the classified jets."""
    import pyarrow.parquet as pq

    out = hybrid / "infer"
    assert (
        cli(
            [
                "infer",
                str(hybrid / "model.onnx"),
                "--fileset",
                str(FILESET),
                "-o",
                str(out),
                "--split",
                "test",
                "--executor",
                "iterative",
            ]
        )
        == 0
    )
    table = pq.read_table(out / "scores.parquet").to_pandas()
    return table[table.label != "unmatched"]


def test_infer_on_events_equals_torch_on_the_shards(hybrid: pathlib.Path, scores: pd.DataFrame) -> None:
    """The jet observables computed at inference (from the events) are those the model was trained on."""
    from hepnn_coffea.training.trainer import load_network

    table = scores

    net, _ = load_network(hybrid / "run")
    assert net.roles["globals"] == "jet_features"
    data = ShardDataset(hybrid / "shards", "test")
    data.carry(["observers/event", "observers/fatjet_index", "observers/luminosityBlock"])
    rows = data.gather(data.rows)
    assert rows["jet_features"].shape == (len(data), 6) and np.isfinite(rows["jet_features"]).all()
    assert rows["jet_features"].std(axis=0).min() > 0.1  # standardized, not constant
    with torch.no_grad():
        probs = torch.softmax(
            net.eval()(*[torch.from_numpy(rows[g]) for g in net.input_groups]), dim=1
        ).numpy()
    key = [
        (int(lb), int(e), int(i))
        for lb, e, i in zip(
            rows["observers/luminosityBlock"], rows["observers/event"], rows["observers/fatjet_index"]
        )
    ]
    by_key = dict(zip(zip(table.luminosityBlock, table.event, table.fatjet_index), table.score_top))
    assert len(key) == len(table) and set(key) == set(by_key)
    np.testing.assert_allclose([by_key[k] for k in key], probs[:, 0], rtol=1e-4, atol=1e-5)


def test_one_call_tagger_equals_infer(hybrid: pathlib.Path, scores: pd.DataFrame) -> None:
    """``tagger.fatjets(events)`` builds the per-jet group from the events' FatJet fields itself."""
    import warnings

    import awkward as ak
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from hepnn_coffea import OnnxTagger
    from tests.test_events_workflow import SAMPLES

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        events = NanoEventsFactory.from_root(
            {str(SAMPLES / "nanosim_wqq.root"): "Events"}, schemaclass=NanoAODSchema, mode="eager"
        ).events()
        events["FatJet", "hepnn"] = OnnxTagger(hybrid / "model.onnx").fatjets(events)
    jets = ak.flatten(
        ak.zip(
            {
                "event": ak.broadcast_arrays(events.event, events.FatJet.pt)[0],
                "index": ak.local_index(events.FatJet.pt),
                "top": events.FatJet.hepnn.score_top,
            }
        )
    )
    mine = dict(zip(zip(ak.to_numpy(jets.event), ak.to_numpy(jets.index)), ak.to_numpy(jets.top)))
    wqq = scores[scores["sample"] == "wqq"]
    assert len(wqq) > 10
    np.testing.assert_allclose(
        [mine[(e, i)] for e, i in zip(wqq.event, wqq.fatjet_index)], wqq.score_top, rtol=1e-5, atol=1e-6
    )
