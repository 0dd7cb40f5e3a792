"""Focused-track samples (JetPointNet workflow) from the calorimeter view of the bundled jets:
sample building vs a direct loop, split by event, length from the data, a short PointNet
training, ONNX per-point parity through OnnxTagger, the evaluation table and the baselines."""

from __future__ import annotations

import json
import math
import pathlib
import re
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from hepnn_coffea.calo.per_point_eval import (
    cone_baseline,
    metrics,
    per_point_summary,
    response_baseline,
    response_calibration,
    subtraction_baseline,
    sum_cell_predictions,
)
from hepnn_coffea.calo.samples import CELL, FOCUS, OTHER, build_samples

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


def test_empty_chunk_and_hand_made_jet() -> None:
    # one jet, two tracks 0.1 apart in phi, three cells; track 1 is below pt_min
    view = ak.Array(
        {
            "track_px": [[10.0, 1.0]],
            "track_py": [[0.0, 0.0]],
            "track_pz": [[0.0, 0.0]],
            "track_pt": [[10.0, 1.0]],
            "track_eta": [[0.0, 0.0]],
            "track_phi": [[0.0, 0.1]],
            "track_charge": [[1, -1]],
            "track_particle": [[0, 2]],
            "track_calo_eta": [[0.0, 0.0]],
            "track_calo_phi": [[0.0, 0.1]],
            "track_calo_x": [[1.5, 1.49]],
            "track_calo_y": [[0.0, 0.15]],
            "track_calo_z": [[0.0, 0.0]],
            "track_reaches_calo": [[True, True]],
            "cell_eta": [[0.01, 0.0, 0.0]],
            "cell_phi": [[0.0, 0.15, 0.5]],
            "cell_layer": [[0, 1, 0]],
            "cell_x": [[1.5, 2.0, 1.3]],
            "cell_y": [[0.0, 0.3, 0.7]],
            "cell_z": [[0.0, 0.0, 0.0]],
            "cell_E": [[5.0, 3.0, 2.0]],
            "contrib_cell": [[0, 0, 1, 2]],
            "contrib_particle": [[0, 1, 1, 0]],
            "contrib_energy": [[4.0, 1.0, 3.0, 2.0]],
            "part_deposited_energy": [[6.5, 4.0, 0.5]],
            "part_expected_energy": [[7.0, 4.0, 0.6]],
            "part_type": [[3, 2, 3]],
            "event_no": [7],
            "jet_pt": [30.0],
        }
    )
    out = build_samples(view, pt_min=2.0)
    assert out["counts"] == {
        "tracks": 2,
        "focused_tracks": 1,
        "samples": 1,
        "dropped_few_cells": 0,
        "points": 4,
        "cells_in_cones": 2,
    }
    pts = {k: ak.to_list(v[0]) for k, v in out["point"].items()}
    assert pts["type"] == [FOCUS, CELL, OTHER, CELL] and pts["index"] == [0, 0, 1, 1]
    assert pts["label"] == [-1.0, 4.0, -1.0, 0.0]
    assert out["label_sum"][0] == 4.0 and out["cone_energy"][0] == 8.0
    assert out["focus_deposited_energy"][0] == 6.5 and out["event_no"][0] == 7
    empty = build_samples(view[:0])
    assert empty["counts"]["samples"] == 0 and len(empty["point"]["e"]) == 0


def test_baselines_on_a_hand_made_example() -> None:
    pt = np.array([2.0, 3.0, 4.0, 12.0, 15.0, 30.0])
    p = np.array([2.0, 3.0, 4.0, 12.0, 15.0, 30.0])
    true = np.array([1.0, 1.5, 3.0, 6.0, 9.0, 24.0])  # responses 0.5, 0.5, 0.75 | 0.5, 0.6 | 0.8
    cal = response_calibration(pt, p, true, pt_edges=[1, 10, 20, 100], min_entries=2)
    assert cal["response"] == [0.5, pytest.approx(0.55), 0.55] and cal["entries"] == [3, 2, 1]
    assert cal["overall"] == pytest.approx(0.55)  # the 1-entry bin takes the overall median
    np.testing.assert_allclose(
        response_baseline([5.0, 11.0, 50.0, 500.0], [10.0, 10.0, 10.0, 10.0], cal), [5.0, 5.5, 5.5, 5.5]
    )
    np.testing.assert_array_equal(cone_baseline([1.0, 2.0]), [1.0, 2.0])
    # cone minus the expected response of the other tracks (type 2), never below 0
    e = ak.Array([[10.0, 4.0, 6.0, 3.0], [5.0, 20.0]])
    kind = ak.Array([[FOCUS, OTHER, CELL, OTHER], [FOCUS, OTHER]])
    np.testing.assert_allclose(subtraction_baseline([12.0, 3.0], e, kind, 0.5), [12.0 - 3.5, 0.0])
    # per-track sums use only the kept cell points
    pred = ak.Array([[9.0, 1.0, 2.0], [], [0.5]])
    types = ak.Array([[FOCUS, CELL, CELL, CELL], [CELL], [OTHER, CELL]])
    np.testing.assert_allclose(sum_cell_predictions(pred, types), [3.0, 0.0, 0.0])
    m = metrics(np.array([1.1, 0.9, 2.0]), np.array([1.0, 1.0, 1.0]))
    assert m["mape"] == pytest.approx(0.4) and m["bias"] == pytest.approx(0.1) and m["n"] == 3
    table = {
        "true": np.array([1.0, 2.0, 0.1]),
        "focus_pt": np.array([3.0, 30.0, 3.0]),
        "pred_a": np.array([1.5, 2.0, 5.0]),
    }
    rows = per_point_summary(table, ["a"], pt_edges=[1, 10, 100], min_true=0.5)
    assert [r["n"] for r in rows] == [1, 1, 2] and rows[0]["a_mape"]["value"] == pytest.approx(0.5)
    assert rows[-1]["pt_bin"] == "all" and rows[-1]["a_mape"]["value"] == pytest.approx(0.25)
    # one track: every replica is that track, a zero-width interval; two tracks (|rel| 0.5 and 0): replica
    # MAPEs 0, 0.25, 0.5 with probabilities 1/4, 1/2, 1/4, a spread of 0.25 / sqrt(2)
    assert rows[0]["a_mape"]["low"] == rows[0]["a_mape"]["high"] == pytest.approx(0.5)
    assert rows[-1]["a_mape"]["high"] - 0.25 == pytest.approx(0.25 / np.sqrt(2), abs=0.03)
    assert set(rows[-1]["a_bias"]) == {"value", "low", "high"}


def test_per_point_summary_intervals_and_markdown() -> None:
    """Seeded bootstrap intervals per pT bin that shrink like 1/sqrt(n); Markdown prints ``value +high -low``."""
    from hepnn_coffea.calo.per_point_eval import summary_markdown

    rng = np.random.default_rng(3)
    n = 4000
    true = rng.uniform(1.0, 20.0, n)
    pt = np.where(np.arange(n) < 400, 3.0, 30.0)  # 400 tracks in the first bin, 3600 in the second
    table = {"true": true, "focus_pt": pt, "pred_a": true * (1 + rng.normal(0.0, 0.2, n))}
    rows = per_point_summary(table, ["a"], pt_edges=[1, 10, 100], n_bootstrap=60, seed=1)
    assert rows == per_point_summary(table, ["a"], pt_edges=[1, 10, 100], n_bootstrap=60, seed=1)  # seeded
    widths = []
    for row in rows[:2]:
        res = row["a_resolution"]  # truth: half the 16-84% range of N(0, 0.2)
        assert res["low"] <= res["value"] <= res["high"]
        assert abs(res["value"] - 0.2 * 0.9945) < 3 * (res["high"] - res["low"])
        widths.append(res["high"] - res["low"])
    assert widths[0] / widths[1] == pytest.approx(3.0, rel=0.35)  # sqrt(3600 / 400)
    md = summary_markdown(rows, ["a"])
    interval = r"\d\.\d+ \+\d\.\d+ -\d\.\d+"
    assert re.search(rf"\| all \| 4000 \| {interval} / {interval} \|", md), md


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
    # the cone holds all of the focused particle's cells (and others'; only negative noise can make it smaller)
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
