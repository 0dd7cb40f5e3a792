"""Focused-track samples (JetPointNet workflow) from the calorimeter view of the bundled jets:
sample building vs a direct loop, split by event, length from the data, a short PointNet
training, ONNX per-point parity through OnnxTagger, the evaluation table and the baselines
(hand-made inputs: ``test_calo_pointnet_handmade.py``)."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from hepnn_coffea.calo.samples import CELL, FOCUS, OTHER

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "samples"
JETS = {"train": 60, "val": 20, "test": 20}
PT_MIN = 8.0
MODEL = ROOT / "models" / "calo" / "pointnet.yaml"
OVERRIDES = {
    "model": {"params": {"shared_sizes": [32, 32], "global_size": 64, "head_sizes": [32]}},
    "training": {
        "epochs": 2,
        "batch_size": 64,
        "lr": 3e-3,
        "scheduler": "none",
        "warmup_steps": 0,
        "seed": 1,
        "num_threads": 2,
        "early_stopping_patience": None,
    },
}


def _copy_jets(src: pathlib.Path, dst: pathlib.Path, n: int) -> None:
    arrays = uproot.open(src)["tree"].arrays(entry_stop=n)
    out = {f: arrays[f] if arrays[f].ndim > 1 else ak.to_numpy(arrays[f]) for f in arrays.fields}
    with uproot.recreate(dst) as f:
        f["tree"] = out


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    from hepnn_coffea.calo import calorimeter_view
    from hepnn_coffea.calo.samples import focused_track_samples

    tmp = tmp_path_factory.mktemp("calo_pointnet")
    fileset = {}
    for split, n in JETS.items():
        for kind in ("top", "qcd"):
            dst = tmp / f"{split}_{kind}.root"
            _copy_jets(SAMPLES / f"topqcd_{split}_{kind}.root", dst, n // 2)
            fileset[f"{kind}_{split}"] = {
                "files": {str(dst): "tree"},
                "metadata": {"sample": kind, "split": split},
            }
    calorimeter_view(fileset, tmp / "view", seed=5, chunksize=40)
    focused_track_samples(tmp / "view", tmp / "samples", pt_min=PT_MIN)
    return {"dir": tmp, "view": tmp / "view", "samples": tmp / "samples"}


def _tree(path: pathlib.Path) -> ak.Array:
    return uproot.open(path)["tree"].arrays()


def test_samples_match_a_direct_loop(staged) -> None:
    manifest = json.loads((staged["samples"] / "manifest.json").read_text())
    record = next(r for r in manifest["chunks"] if r["samples"] > 0)
    view = _tree(pathlib.Path(record["file"]))  # the chunk's calorimeter-view file
    samples = _tree(staged["samples"] / record["output"])
    checked = 0
    for j in range(min(len(view), 6)):
        jet = view[j]
        tracks = {
            f: np.asarray(jet[f"track_{f}"])
            for f in ("pt", "calo_eta", "calo_phi", "reaches_calo", "particle", "px", "py", "pz")
        }
        cells = {f: np.asarray(jet[f"cell_{f}"]) for f in ("eta", "phi", "E")}
        contrib = {
            (c, p): e
            for c, p, e in zip(
                jet.contrib_cell.tolist(), jet.contrib_particle.tolist(), jet.contrib_energy.tolist()
            )
        }
        for t in range(len(tracks["pt"])):
            focused = (
                tracks["pt"][t] > PT_MIN and tracks["reaches_calo"][t] and np.isfinite(tracks["calo_eta"][t])
            )
            match = samples[(samples.jet_entry == j) & (samples.focus_track == t)]
            if not focused:
                assert len(match) == 0
                continue
            assert len(match) == 1
            s = match[0]

            def dr(eta: float, phi: float, t: int = t, tracks: Any = tracks) -> float:
                dphi = (phi - tracks["calo_phi"][t] + math.pi) % (2 * math.pi) - math.pi
                return math.hypot(eta - tracks["calo_eta"][t], dphi)

            want_cells, want_tracks = {}, set()
            for c in range(len(cells["E"])):
                if dr(cells["eta"][c], cells["phi"][c]) < 0.2:
                    want_cells[c] = contrib.get((c, int(tracks["particle"][t])), 0.0)
            for o in range(len(tracks["pt"])):
                if (
                    o != t
                    and tracks["reaches_calo"][o]
                    and dr(tracks["calo_eta"][o], tracks["calo_phi"][o]) < 0.2
                ):
                    want_tracks.add(o)
            types, index, label = (np.asarray(s[f"point_{f}"]) for f in ("type", "index", "label"))
            assert types[0] == FOCUS and index[0] == t
            assert set(index[types == OTHER].tolist()) == want_tracks
            got = dict(zip(index[types == CELL].tolist(), label[types == CELL].tolist()))
            assert got.keys() == want_cells.keys()
            np.testing.assert_allclose(
                [got[c] for c in want_cells], list(want_cells.values()), rtol=1e-5, atol=1e-6
            )
            assert (label[types != CELL] == -1).all()
            assert (
                np.diff(np.asarray(s.point_dist)) >= 0
            ).all()  # sorted by distance: truncation drops the farthest
            assert s.label_sum == pytest.approx(sum(want_cells.values()), rel=1e-4, abs=1e-4)
            assert s.cone_energy == pytest.approx(sum(cells["E"][c] for c in want_cells), rel=1e-4, abs=1e-4)
            assert s.focus_p == pytest.approx(
                float(np.sqrt(tracks["px"][t] ** 2 + tracks["py"][t] ** 2 + tracks["pz"][t] ** 2)), rel=1e-5
            )
            checked += 1
    assert checked >= 5


def test_split_by_event_and_manifest_counts(staged) -> None:
    manifest = json.loads((staged["samples"] / "manifest.json").read_text())
    events: dict[str, set[int]] = {}
    n_samples = 0
    for r in manifest["chunks"]:
        s = _tree(staged["samples"] / r["output"])
        view_events = set(_tree(pathlib.Path(r["file"])).event_no.tolist())
        assert set(s.event_no.tolist()) <= view_events  # a sample inherits its jet's split
        assert f"/view/{r['split']}/" in r["file"]
        events.setdefault(r["split"], set()).update(s.event_no.tolist())
        n_samples += len(s)
        assert len(s) == r["samples"] == r["focused_tracks"] - r["dropped_few_cells"]
    assert set(events) == {"train", "val", "test"}
    for a in events:
        for b in events:
            if a < b:
                assert not events[a] & events[b]
    assert manifest["counts"]["samples"] == n_samples > 100
    assert manifest["counts"]["tracks"] >= manifest["counts"]["focused_tracks"]


@pytest.fixture(scope="module")
def trained(staged) -> dict[str, pathlib.Path]:
    from hepnn_coffea.processing.preprocess import preprocess
    from hepnn_coffea.training.trainer import train

    manifest = json.loads((staged["samples"] / "manifest.json").read_text())
    shards = staged["dir"] / "shards"
    config = yaml.safe_load((ROOT / "models" / "data" / "calo_pointnet.yaml").read_text())
    config["preprocess"]["data_fraction"] = 1.0  # the length quantile over every training sample
    (staged["dir"] / "calo_pointnet.yaml").write_text(yaml.safe_dump(config))
    preprocess(
        manifest["fileset"],
        staged["dir"] / "calo_pointnet.yaml",
        shards,
        executor="iterative",
        chunksize=5000,
    )
    train(MODEL, shards, staged["dir"] / "run", overrides=OVERRIDES, progress=False)
    return {**staged, "shards": shards, "run": staged["dir"] / "run"}


def test_length_from_the_data(trained) -> None:
    manifest = json.loads((trained["shards"] / "manifest.json").read_text())
    samples = json.loads((trained["samples"] / "manifest.json").read_text())
    counts = np.concatenate(
        [
            _tree(trained["samples"] / r["output"]).n_points.to_numpy()
            for r in samples["chunks"]
            if r["split"] == "train"
        ]
    )
    length = manifest["auto_lengths"]["points"]["length"]
    assert (
        length == int(np.ceil(np.quantile(counts, 0.99)))
        and manifest["auto_lengths"]["points"]["max"] == counts.max()
    )
    saved = yaml.safe_load((trained["shards"] / "data_config.yaml").read_text())
    assert (
        saved["inputs"]["points"]["length"] == saved["inputs"]["mask"]["length"] == length
    )  # stored, not in the YAML
    assert saved["labels"]["pad_to"] == "points" and saved["labels"]["pad_value"] == -1.0


def test_short_training_reduces_val_loss(trained) -> None:
    import csv

    with (trained["run"] / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 2  # at least one epoch after the first to compare with
    assert min(float(r["val_loss"]) for r in rows[1:]) < float(rows[0]["val_loss"])  # numbers, not strings


def test_onnx_parity_and_evaluation(trained) -> None:
    import torch

    from hepnn_coffea.calo.per_point_eval import evaluate_per_point
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.features.compute import compute_features
    from hepnn_coffea.inference.tagger import OnnxTagger
    from hepnn_coffea.training.trainer import load_network

    onnx_path = trained["dir"] / "pointnet.onnx"
    assert export_onnx(trained["run"], onnx_path)["max_abs_diff"] < 1e-3
    tagger = OnnxTagger(onnx_path, batch_size=50)
    assert tagger.per_point and tagger.output_fields == ["pred_deposit"]
    samples = json.loads((trained["samples"] / "manifest.json").read_text())
    test_file = next(
        f for k, v in samples["fileset"].items() if v["metadata"]["split"] == "test" for f in v["files"]
    )
    events = _tree(pathlib.Path(test_file))
    pred = tagger(events).pred_deposit
    length = tagger.config.inputs["points"].length
    assert ak.num(pred).to_list() == np.minimum(events.n_points.to_numpy(), length).tolist()
    net, _ = load_network(trained["run"])
    batch = compute_features(events, tagger.config, selection="test_time_selection", with_labels=False)
    with torch.no_grad():
        expected = net(*(torch.from_numpy(batch.inputs[g]) for g in net.input_groups)).numpy()
    real = batch.inputs["mask"][:, 0, :] != 0
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(pred)), expected[:, 0, :][real], rtol=1e-3, atol=1e-4)
    # track points predict 0 (energy bypass on cell energy only)
    kept_type = events.point_type[ak.local_index(events.point_type) < ak.num(pred)]
    assert ak.all(pred[kept_type != CELL] == 0)

    summary = evaluate_per_point(
        {"pointnet": onnx_path},
        trained["samples"],
        trained["dir"] / "eval",
        pt_edges=[5, 10, 20, 1000],
        n_displays=1,
    )
    assert summary["estimators"] == ["pointnet", "cone", "subtraction", "response"]
    assert [r["pt_bin"] for r in summary["rows"]] == ["5-10", "10-20", "20-1000", "all"]
    assert {"pointnet_mape", "cone_mape", "response_mape", "pointnet_resolution", "cone_bias"} <= set(
        summary["rows"][0]
    )
    assert summary["rows"][-1]["n"] > 0
    written = json.loads((trained["dir"] / "eval" / "summary.json").read_text())["rows"][-1]
    for key in ("pointnet_mape", "pointnet_resolution", "cone_bias"):  # 68% bootstrap intervals
        assert set(written[key]) == {"value", "low", "high"} and written[key]["low"] < written[key]["high"]
    table = np.load(trained["dir"] / "eval" / "table.npz")
    assert {
        "true",
        "pred_pointnet",
        "pred_cone",
        "pred_subtraction",
        "pred_response",
        "event_no",
        "focus_pt",
        "focus_type",
    } <= set(table.files)
    assert (table["pred_subtraction"] <= table["pred_cone"] + 1e-6).all() and (
        table["pred_subtraction"] >= 0
    ).all()
    # the cone holds all of the focused particle's cells (and others'; only negative noise can make it
    # smaller)
    assert np.median(table["pred_cone"] / np.maximum(table["true"], 1e-3)) > 1
    hists = __import__("pickle").loads((trained["dir"] / "eval" / "hists.pkl").read_bytes())
    h = hists["relative_residual"]
    assert set(h.axes["estimator"]) == {"pointnet", "cone", "subtraction", "response"}
    assert h[{"process": sum, "estimator": "cone", "pt": sum, "rel": sum}].value > 0
    assert (trained["dir"] / "eval" / "event_display_0.png").is_file()
    assert "| track pT [GeV] |" in (trained["dir"] / "eval" / "summary.md").read_text()


def test_per_point_targets_follow_their_group_in_ragged_shards(trained) -> None:
    from hepnn_coffea.processing.shards import open_shard

    manifest = json.loads((trained["shards"] / "manifest.json").read_text())
    rel = [
        s["path"]
        for sp in ("train", "val")
        for e in manifest["splits"][sp].values()
        for s in e["shards"]
        if s["entries"]
    ]
    assert rel and all(r.endswith(".arrow") for r in rel)
    for r in rel:
        shard = open_shard(trained["shards"] / r)
        meta = json.loads(shard._batch.schema.metadata[b"hepnn_coffea"])["fields"]
        assert (
            meta["target"]["ragged"] == meta["inputs/points"]["ragged"]
        )  # one multiplicity, one offsets array
        records = shard.to_records()
        points = shard.lengths("inputs/points")
        slots = np.arange(records["target"].shape[-1])[None, :]
        assert (
            records["target"][:, 0][slots >= points[:, None]] == -1
        ).all()  # labels.pad_value past the points
        assert shard.path.stat().st_size < 0.75 * records.nbytes  # only the real points are stored
