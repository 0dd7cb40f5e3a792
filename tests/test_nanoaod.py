"""The tagger inside a real CMS NanoAOD analysis: constituents through the index collection."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from coffea import processor
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from hepnn_coffea.inference.constituents import ConstituentIndexError, gather_constituents
from processors.nanoaod_toptag import NanoAODTopTagProcessor
from tests.conftest import SHARED, needs_shared

pytestmark = needs_shared
NANO = SHARED / "nanoaod"


def _events(name: str):
    return NanoEventsFactory.from_root(
        {str(NANO / name): "Events"}, schemaclass=NanoAODSchema, mode="eager"
    ).events()


@pytest.mark.parametrize(
    ("name", "index", "cands", "cand_idx"),
    [
        ("nano_tt_v15.root", "FatJetPFCand", "PFCand", "pfCandIdx"),
        ("pfnano.root", "FatJetPFCands", "PFCands", "pFCandsIdx"),
    ],
)
def test_constituents_match_a_python_loop(name, index, cands, cand_idx) -> None:
    events = _events(name)
    gathered = gather_constituents(events.FatJet, events[index], events[cands], "jetIdx", cand_idx)
    assert ak.to_list(ak.num(gathered, axis=1)) == ak.to_list(ak.num(events.FatJet, axis=1))
    n_checked = 0
    for i in range(len(events)):
        jet_idx = ak.to_list(events[index].jetIdx[i])
        cand_of = ak.to_list(events[index][cand_idx][i])
        pts = ak.to_list(events[cands].pt[i])
        for j in range(len(events.FatJet[i])):
            expected = [pts[c] for jj, c in zip(jet_idx, cand_of) if jj == j]
            assert ak.to_list(gathered.pt[i][j]) == expected
            n_checked += 1
    assert n_checked == ak.sum(ak.num(events.FatJet)) > 20
    if name == "nano_tt_v15.root":  # jets whose candidates are stored have all of them
        counts = ak.to_numpy(ak.flatten(ak.num(gathered, axis=2)))
        stored = counts > 0
        assert stored.sum() >= 60
        np.testing.assert_array_equal(
            counts[stored], ak.to_numpy(ak.flatten(events.FatJet.nConstituents))[stored]
        )


def test_bad_index_is_reported() -> None:
    events = _events("nano_tt_v15.root")
    index = events.FatJetPFCand
    broken = ak.zip({"jetIdx": index.jetIdx + 50, "pfCandIdx": index.pfCandIdx})
    with pytest.raises(ConstituentIndexError, match="jetIdx"):
        gather_constituents(events.FatJet, broken, events.PFCand)


@pytest.mark.parametrize(
    ("name", "layout", "reference"),
    [
        ("nano_tt_v15.root", "nanoaod", "particleNetWithMass_TvsQCD"),
        ("pfnano.root", "pfnano", "particleNet_TvsQCD"),
    ],
)
def test_processor_adds_scores_and_compares_with_cms(onnx_model, name, layout, reference) -> None:
    proc = NanoAODTopTagProcessor(str(onnx_model), layout=layout, reference=reference)
    events = _events(name)
    jets = proc.add_scores(events)
    assert ak.to_list(ak.num(jets.hepnn_top)) == ak.to_list(ak.num(events.FatJet))
    has_constituents = (
        ak.flatten(
            ak.num(
                gather_constituents(
                    events.FatJet,
                    *(
                        (events.FatJetPFCand, events.PFCand)
                        if layout == "nanoaod"
                        else (events.FatJetPFCands, events.PFCands)
                    ),
                    "jetIdx",
                    "pfCandIdx" if layout == "nanoaod" else "pFCandsIdx",
                ),
                axis=2,
            )
        )
        > 0
    )
    scores = ak.to_numpy(ak.flatten(jets.hepnn_top))
    assert np.all(np.isfinite(scores[ak.to_numpy(has_constituents)]))
    assert np.all(np.isnan(scores[~ak.to_numpy(has_constituents)]))
    runner = processor.Runner(
        executor=processor.IterativeExecutor(), schema=NanoAODSchema, chunksize=64, metadata_cache={}
    )
    out = runner({"tt": {"files": {str(NANO / name): "Events"}}}, proc)["tt"]
    assert out["n_fatjets"] == len(scores) and out["n_scored"] == int(np.isfinite(scores).sum())
    assert out["score_vs_cms"].sum(flow=True).value == out["n_scored"]  # a score of exactly 1 is overflow
    assert -1 <= out["correlation"] <= 1


def test_processor_scores_in_dask_mode_equal_eager(onnx_model) -> None:
    """``add_scores`` on dask NanoEvents: lazy graph, only the needed columns, eager-identical scores."""
    import dask_awkward as dak

    proc = NanoAODTopTagProcessor(str(onnx_model))
    files = {str(NANO / "nano_tt_v15.root"): "Events"}
    lazy = NanoEventsFactory.from_root(files, schemaclass=NanoAODSchema, mode="dask").events()
    jets = proc.add_scores(lazy)
    assert isinstance(jets.hepnn_top, dak.Array)
    (columns,) = dak.necessary_columns(jets.hepnn_top).values()
    assert {
        "FatJet_pt",
        "FatJet_eta",
        "FatJet_phi",
        "FatJet_mass",
        "FatJetPFCand_jetIdx",
        "FatJetPFCand_pfCandIdx",
        "PFCand_pt",
        "PFCand_eta",
        "PFCand_phi",
        "PFCand_mass",
    } <= set(columns)
    assert not any(c.startswith("FatJet_particleNet") or c.startswith("Jet_") for c in columns)
    lazy_scores = jets.hepnn_top.compute()
    eager_scores = proc.add_scores(_events("nano_tt_v15.root")).hepnn_top
    assert ak.to_list(ak.num(lazy_scores)) == ak.to_list(ak.num(eager_scores))
    flat_lazy, flat_eager = (ak.to_numpy(ak.flatten(s)) for s in (lazy_scores, eager_scores))
    assert np.isfinite(flat_eager).sum() >= 60
    np.testing.assert_array_equal(flat_lazy, flat_eager)  # NaN (no stored constituents) in the same places


def test_processor_process_in_dask_mode_equals_eager(onnx_model) -> None:
    """The whole ``process`` (hists with hist.dask, moments with dask-awkward) gives the eager result."""
    import dask

    proc = NanoAODTopTagProcessor(str(onnx_model))
    files = {str(NANO / "nano_tt_v15.root"): "Events"}
    lazy = NanoEventsFactory.from_root(
        files, schemaclass=NanoAODSchema, mode="dask", metadata={"dataset": "tt"}
    ).events()
    (lazy_out,) = dask.compute(proc.process(lazy))
    lazy_out = proc.postprocess(lazy_out)["tt"]
    eager = _events("nano_tt_v15.root")
    eager.metadata["dataset"] = "tt"
    eager_out = proc.postprocess(proc.process(eager))["tt"]
    for key in ("score_vs_cms", "score_vs_pt"):
        np.testing.assert_allclose(lazy_out[key].values(flow=True), eager_out[key].values(flow=True))
    np.testing.assert_allclose(lazy_out["moments"], eager_out["moments"])
    assert lazy_out["n_scored"] == eager_out["n_scored"] >= 60
    assert lazy_out["correlation"] == pytest.approx(eager_out["correlation"])
