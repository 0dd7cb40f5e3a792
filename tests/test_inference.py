"""ONNX export and OnnxTagger: parity, metadata, eager/virtual/dask agreement, columns, edge cases."""

from __future__ import annotations

import json

import awkward as ak
import dask_awkward as dak
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from coffea.nanoevents import BaseSchema, NanoEventsFactory

from hepnn_coffea import OnnxTagger
from hepnn_coffea.export import ExportError, export_onnx, read_metadata
from hepnn_coffea.inference.tagger import TaggerError
from hepnn_coffea.training.dataset import ShardDataset
from hepnn_coffea.training.trainer import load_network
from tests.conftest import SAMPLES

TEST_FILE = SAMPLES / "topqcd_test_qcd.root"


def _events(mode: str):
    return NanoEventsFactory.from_root({str(TEST_FILE): "tree"}, schemaclass=BaseSchema, mode=mode).events()


def test_onnx_signature_and_metadata(onnx_model, trained_run) -> None:
    model = onnx.load(str(onnx_model))
    assert model.opset_import[0].version >= 15
    inputs = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    assert inputs == {"pf_features": ["N", 7, "n_pf_features"], "pf_mask": ["N", 1, "n_pf_mask"]}
    meta = read_metadata(onnx_model)
    assert meta["classes"] == ["jet_isTop", "jet_isQCD"]
    assert meta["data_config"]["inputs"]["pf_features"]["vars"][0] == [
        "part_pt_log",
        1.7,
        0.7,
        -5.0,
        5.0,
        0.0,
    ]
    assert meta["provenance"]["parity_max_abs_diff"] <= 1e-4
    assert (
        json.loads((trained_run / "provenance.json").read_text())["config_hash"]
        == meta["provenance"]["config_hash"]
    )


def test_onnx_matches_torch_on_real_jets_any_batch(onnx_model, trained_run, shards) -> None:
    net, _ = load_network(trained_run)
    data = ShardDataset(shards, "test", net.input_groups).gather(np.arange(333))
    session = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    for n, length in ((1, 128), (333, 128), (7, 64)):
        feed = {g: np.ascontiguousarray(data[g][:n, :, :length]) for g in net.input_groups}
        with torch.no_grad():
            expected = torch.softmax(
                net(*(torch.from_numpy(feed[g]) for g in net.input_groups)), dim=1
            ).numpy()
        got = session.run(None, feed)[0]
        assert got.shape == (n, 2)
        np.testing.assert_allclose(got, expected, atol=1e-4)
        np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-5)


def test_export_fails_loudly_when_parity_breaks(trained_run, tmp_path) -> None:
    out = tmp_path / "never.onnx"
    with pytest.raises(ExportError, match="differs from torch"):
        export_onnx(trained_run, out, tolerance=-1.0)
    assert not out.exists()


def test_eager_virtual_and_dask_scores_agree_with_shard_inference(onnx_model, shards) -> None:
    from coffea import processor

    tagger = OnnxTagger(onnx_model)
    eager = tagger(_events("eager"))
    assert ak.fields(eager) == ["score_jet_isTop", "score_jet_isQCD"] and len(eager) == 500
    lazy = tagger(_events("dask"))
    assert isinstance(lazy, dak.Array)
    (columns,) = dak.necessary_columns(lazy).values()
    assert (
        set(columns)
        == set(tagger.columns())
        == {
            "jet_energy",
            "jet_eta",
            "jet_nparticles",
            "jet_phi",
            "jet_pt",
            "part_energy",
            "part_px",
            "part_py",
            "part_pz",
        }
    )
    np.testing.assert_array_equal(
        ak.to_numpy(lazy.compute().score_jet_isTop), ak.to_numpy(eager.score_jet_isTop)
    )

    class Scores(processor.ProcessorABC):
        def process(self, events):
            return {"scores": [ak.to_numpy(tagger(events).score_jet_isTop)]}

        def postprocess(self, acc):
            return acc

    runner = processor.Runner(executor=processor.IterativeExecutor(), schema=BaseSchema, chunksize=200)
    out = runner({"qcd": {"files": {str(TEST_FILE): "tree"}}}, Scores())
    np.testing.assert_array_equal(np.concatenate(out["scores"]), ak.to_numpy(eager.score_jet_isTop))
    # the same jets scored from the preprocessed shards (training-time features)
    fields = ["observers/event_no", "observers/jet_pt", "inputs/pf_features", "inputs/pf_mask", "label"]
    rows = ShardDataset(shards, "test").arrays(fields)
    events = _events("eager")
    keys = list(zip(ak.to_numpy(events.event_no), ak.to_numpy(events.jet_pt)))
    pos = {k: i for i, k in enumerate(keys)}
    assert len(pos) == len(events)  # (event, jet pt) identifies a jet
    take = [j for j, label in enumerate(rows["label"]) if label == 1]
    assert len(take) == len(events)
    from_shards = tagger.predict(
        {"pf_features": rows["inputs/pf_features"][take], "pf_mask": rows["inputs/pf_mask"][take]}
    )
    order = [pos[k] for k in zip(rows["observers/event_no"][take], rows["observers/jet_pt"][take])]
    np.testing.assert_allclose(from_shards[:, 0], ak.to_numpy(eager.score_jet_isTop)[order], atol=1e-6)


def test_empty_chunks_and_failed_selection(onnx_model) -> None:
    tagger = OnnxTagger(onnx_model)
    events = _events("eager")
    empty = tagger(events[:0])
    assert len(empty) == 0 and ak.fields(empty) == tagger.output_fields
    # a jet with no particles fails test_time_selection: NaN score, output still aligned
    arrays = ak.Array({f: events[f][:3] for f in tagger.columns()})
    no_parts = ak.with_field(arrays, ak.Array([0, 5, 5]), "jet_nparticles")
    scores = tagger(no_parts)
    assert len(scores) == 3 and np.isnan(scores.score_jet_isTop[0]) and np.isfinite(scores.score_jet_isTop[1])


def test_session_is_created_once_per_process(onnx_model) -> None:
    import pickle

    from hepnn_coffea.inference import tagger as tagger_module

    tagger_module.clear_session_cache()
    tagger = OnnxTagger(onnx_model)
    clone = pickle.loads(pickle.dumps(tagger))
    events = _events("eager")
    for t in (tagger, clone, tagger):
        t(events)
    assert len(tagger_module._SESSIONS) == 1
    session = next(iter(tagger_module._SESSIONS.values()))
    assert session.get_session_options().intra_op_num_threads == 1


def test_bad_inputs_are_clear_errors(onnx_model, tmp_path) -> None:
    tagger = OnnxTagger(onnx_model)
    events = _events("eager")
    with pytest.raises(TaggerError, match="part_px"):
        tagger(ak.Array({f: events[f] for f in tagger.columns() if f != "part_px"}))
    renamed = ak.Array({("pfc_px" if f == "part_px" else f): events[f] for f in tagger.columns()})
    mapped = OnnxTagger(onnx_model, branch_map={"part_px": "pfc_px"})
    np.testing.assert_array_equal(
        ak.to_numpy(mapped(renamed).score_jet_isTop), ak.to_numpy(tagger(events).score_jet_isTop)
    )
    bare = onnx.load(str(onnx_model))
    del bare.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(bare, str(path))
    with pytest.raises(TaggerError, match="no embedded"):
        OnnxTagger(path)


def test_nonfinite_inputs_are_fixed_counted_and_reported(onnx_model) -> None:
    from hepnn_coffea.inference.tagger import NonFiniteInputWarning

    tagger = OnnxTagger(onnx_model)
    events = _events("eager")[:20]
    arrays = ak.Array({f: events[f] for f in tagger.columns()})
    # a zero-energy particle: log(E) = -inf, log(E / E_jet) = -inf -> clipped by the transform;
    # a NaN momentum component -> NaN features, replaced by 0 and counted
    px = ak.to_list(arrays.part_px)
    px[3][0] = float("nan")
    broken = ak.with_field(arrays, ak.Array(px), "part_px")
    with pytest.warns(NonFiniteInputWarning, match=r"part_deta|part_dphi"):
        scores = tagger(broken)
    assert np.all(np.isfinite(ak.to_numpy(scores.score_jet_isTop)))
    clean = tagger(arrays)
    np.testing.assert_array_equal(
        ak.to_numpy(scores.score_jet_isTop)[:3], ak.to_numpy(clean.score_jet_isTop)[:3]
    )
