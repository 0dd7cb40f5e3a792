"""Per-point regression: length auto from the data, padded per-point targets, masked loss, PointNet,
jagged inference."""

from __future__ import annotations

import json
import pathlib

import awkward as ak
import numpy as np
import pytest
import torch
import uproot
import yaml

from hepnn_coffea.nn.pointnet import PointNetSegmentation, per_track_loss, soft_sqrt
from hepnn_coffea.training.targets import MaskedPointLoss

DATA_CONFIG = {
    "treename": "tree",
    "selection": "n_points > 0",
    "new_variables": {"point_mask": "ak.ones_like(point_e)", "point_loge": "np.log(point_e)"},
    "preprocess": {"method": "manual", "length_quantile": 0.9},
    "inputs": {
        "points": {
            "length": "auto",
            "pad_mode": "constant",
            "vars": [["point_x", None], ["point_y", None], ["point_loge", 0, 1]],
        },
        "energy": {"length": "auto", "pad_mode": "constant", "vars": [["point_e", None]]},
        "mask": {"length": "auto", "pad_mode": "constant", "vars": [["point_mask", None]]},
    },
    "labels": {
        "type": "custom",
        "value": {"deposit": "point_e * np.where(point_x > 0, 0.8, 0.2)"},
        "pad_to": "points",
    },
    "observers": ["n_points"],
}
MODEL = {
    "task": "per_point_regression",
    "loss": "mse",
    "model": {
        "name": "pointnet",
        "inputs": {"features": "points", "energy": "energy", "mask": "mask"},
        "params": {"shared_sizes": [32, 32], "global_size": 64, "head_sizes": [32], "attention_layers": 1},
    },
    "training": {
        "epochs": 4,
        "batch_size": 64,
        "optimizer": "adamw",
        "lr": 3e-3,
        "scheduler": "none",
        "seed": 1,
        "tensorboard": False,
    },
}


def _write(path: pathlib.Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 40, n)
    total = counts.sum()
    points = {
        "x": rng.normal(size=total),
        "y": rng.normal(size=total),
        "e": rng.exponential(2.0, total) + 0.1,
    }
    with uproot.recreate(path) as f:
        f.mktree(
            "tree",
            {
                "n_points": np.int64,
                "point_x": "var * float32",
                "point_y": "var * float32",
                "point_e": "var * float32",
            },
        )
        f["tree"].extend(
            {
                "n_points": counts,
                **{f"point_{k}": ak.unflatten(v.astype(np.float32), counts) for k, v in points.items()},
            }
        )


@pytest.fixture(scope="module")
def per_point_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    from hepnn_coffea.processing.preprocess import preprocess
    from hepnn_coffea.training.trainer import train

    tmp = tmp_path_factory.mktemp("per_point")
    fileset = {}
    for i, split in enumerate(("train", "val", "test")):
        _write(tmp / f"{split}.root", 600 if split == "train" else 200, i)
        fileset[split] = {
            "files": {str(tmp / f"{split}.root"): "tree"},
            "metadata": {"sample": "pts", "split": split},
        }
    (tmp / "data.yaml").write_text(yaml.safe_dump(DATA_CONFIG))
    preprocess(fileset, tmp / "data.yaml", tmp / "shards", executor="iterative", chunksize=250)
    train(MODEL, tmp / "shards", tmp / "run", progress=False)
    return {"dir": tmp, "shards": tmp / "shards", "run": tmp / "run"}


def test_length_auto_is_the_quantile_of_the_training_lengths(per_point_run) -> None:
    manifest = json.loads((per_point_run["shards"] / "manifest.json").read_text())
    with uproot.open(per_point_run["dir"] / "train.root") as f:
        counts = f["tree"]["n_points"].array(library="np")
    expected = int(np.ceil(np.quantile(counts[counts > 0], 0.9)))
    assert manifest["auto_lengths"]["points"]["length"] == expected
    assert manifest["auto_lengths"]["points"]["max"] == counts.max()
    saved = yaml.safe_load((per_point_run["shards"] / "data_config.yaml").read_text())
    assert saved["inputs"]["points"]["length"] == expected  # stored, not hard-coded in the config
    assert saved["labels"]["pad_to"] == "points" and saved["labels"]["pad_value"] == -1.0


def test_per_point_targets_are_padded_with_minus_one(per_point_run) -> None:
    from hepnn_coffea.training.dataset import ShardDataset

    ds = ShardDataset(per_point_run["shards"], "train")
    data = ds.gather(np.arange(len(ds)))
    length = data["points"].shape[-1]
    assert data["target"].shape == (len(ds), 1, length)
    real = data["mask"][:, 0, :] != 0
    np.testing.assert_array_equal(data["target"][:, 0, :] == -1, ~real)
    ratio = data["target"][:, 0, :][real] / data["energy"][:, 0, :][real]
    np.testing.assert_allclose(np.where(data["points"][:, 0, :][real] > 0, 0.8, 0.2), ratio, rtol=1e-5)


def test_masked_point_loss_ignores_padding() -> None:
    pred = torch.tensor([[[1.0, 2.0, 9.0]], [[0.0, 0.0, 0.0]]])
    target = torch.tensor([[[1.0, 4.0, -1.0]], [[-1.0, -1.0, -1.0]]])
    loss = MaskedPointLoss(torch.nn.MSELoss(reduction="none"))(pred, target)
    torch.testing.assert_close(loss, torch.tensor([2.0, 0.0]))


def test_soft_sqrt_is_linear_then_sqrt_like() -> None:
    x = torch.tensor([-4.0, -1.0, 0.3, 1.0, 4.0])
    torch.testing.assert_close(soft_sqrt(x), torch.tensor([-3.0, -1.0, 0.3, 1.0, 3.0]))


def test_pointnet_learns_and_ignores_padding(per_point_run) -> None:
    rows = list(csvrows(per_point_run["run"]))
    assert float(rows[-1]["val_loss"]) < 0.5 * float(rows[0]["val_loss"])
    net = PointNetSegmentation(
        3, 1, shared_sizes=[8], global_size=8, head_sizes=[8], attention_layers=1
    ).eval()
    feats, energy = torch.randn(2, 3, 6), torch.rand(2, 1, 6) + 0.5
    mask = torch.tensor([[[1, 1, 1, 0, 0, 0]], [[0, 0, 0, 0, 0, 0]]], dtype=torch.float32)
    out = net(feats, energy, mask)
    changed = net(feats.masked_fill(mask == 0, 50.0), energy, mask)  # padding content does not matter
    torch.testing.assert_close(out, changed)
    assert torch.isfinite(out).all() and (out[:, :, 3:] == 0).all()


def test_per_track_loss_terms_and_masking() -> None:
    pred = torch.tensor([[[9.0, 1.0, 3.0, 5.0]], [[0.0, 0.0, 0.0, 0.0]]])
    target = torch.tensor([[[-1.0, 2.0, 2.0, -1.0]], [[-1.0, 0.2, -1.0, -1.0]]])  # -1: track point / padding
    total = per_track_loss(pred, target, cell="none", total_weight=1.0)
    # |(1 + 3) - 4| / 4 = 0; second entry: |0 - 0.2| / max(0.2, 0.5)
    torch.testing.assert_close(total, torch.tensor([0.0, 0.4]))
    mae = per_track_loss(pred, target, cell="mae", total_weight=0.0)  # mean |diff| over real points / T
    torch.testing.assert_close(mae, torch.tensor([1.0 / 4.0, 0.2 / 0.5]))
    mse = per_track_loss(pred, target, cell="mse", total_weight=0.0, normalize=False)
    torch.testing.assert_close(mse, torch.tensor([1.0, 0.04]))
    both = per_track_loss(pred, target, cell="mae", total_weight=2.0)
    torch.testing.assert_close(both, mae + 2.0 * total)
    with pytest.raises(ValueError, match="cell loss"):
        per_track_loss(pred, target, cell="huber")


def test_model_loss_takes_the_data_configs_pad_value() -> None:
    from hepnn_coffea.training.targets import ModelLoss

    net = PointNetSegmentation(3, 1, shared_sizes=[4], global_size=4, head_sizes=[4], loss_cell="mae")
    pred = torch.tensor([[[9.0, 1.0, 3.0, 5.0]]])
    target = torch.tensor([[[-5.0, 2.0, 2.0, -5.0]]])  # labels.pad_value: -5
    expected = per_track_loss(pred, target, cell="mae", pad_value=-5.0)
    assert not torch.allclose(net.loss(pred, target), expected)  # the model alone assumes -1
    loss = ModelLoss(net, pad_value=-5.0)
    assert net.label_pad_value == -5.0
    torch.testing.assert_close(loss(pred, target), expected)


def test_pointnet_options_keep_padding_out() -> None:
    torch.manual_seed(0)
    net = PointNetSegmentation(
        3,
        1,
        shared_sizes=[8],
        global_size=8,
        head_sizes=[8],
        attention_layers=1,
        global_pool="max+mean",
        focus_context=True,
        nonnegative=True,
    ).eval()
    feats, energy = torch.randn(2, 3, 6), torch.rand(2, 1, 6) + 0.5
    mask = torch.tensor([[[1, 1, 1, 0, 0, 0]], [[1, 1, 1, 1, 1, 0]]], dtype=torch.float32)
    out = net(feats, energy, mask)
    torch.testing.assert_close(
        out, net(feats.masked_fill(mask == 0, 50.0), energy, mask)
    )  # mean pool is masked
    assert (out >= 0).all() and (out[0, :, 3:] == 0).all()
    # the focused track (first point) feeds every point's head: changing it changes the others
    moved = feats.clone()
    moved[:, :, 0] += 3.0
    assert not torch.allclose(net(moved, energy, mask)[:, :, 1:], out[:, :, 1:])
    target = torch.where(mask > 0, energy * 0.5, torch.full_like(energy, -1.0))
    assert net.loss(out, target).shape == (2,)
    with pytest.raises(ValueError, match="global_pool"):
        PointNetSegmentation(3, global_pool="sum")


def csvrows(run: pathlib.Path):
    import csv

    with (run / "metrics.csv").open() as f:
        yield from csv.DictReader(f)


def test_export_and_jagged_inference_match_torch(per_point_run) -> None:
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.features.compute import compute_features
    from hepnn_coffea.inference.tagger import OnnxTagger
    from hepnn_coffea.training.trainer import load_network

    onnx_path = per_point_run["dir"] / "pointnet.onnx"
    info = export_onnx(per_point_run["run"], onnx_path)
    assert info["max_abs_diff"] < 1e-4
    tagger = OnnxTagger(onnx_path, batch_size=37)
    assert tagger.per_point and tagger.output_fields == ["pred_deposit"]
    with uproot.open(per_point_run["dir"] / "test.root") as f:
        events = f["tree"].arrays()
    pred = tagger(events)
    length = tagger.config.inputs["points"].length
    assert ak.to_list(ak.num(pred.pred_deposit)) == np.minimum(ak.to_numpy(events.n_points), length).tolist()
    net, _ = load_network(per_point_run["run"])
    batch = compute_features(events, tagger.config, selection="test_time_selection", with_labels=False)
    with torch.no_grad():
        expected = net(*(torch.from_numpy(batch.inputs[g]) for g in net.input_groups)).numpy()
    real = batch.inputs["mask"][:, 0, :] != 0
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(pred.pred_deposit)), expected[:, 0, :][real], rtol=1e-4, atol=1e-5
    )
