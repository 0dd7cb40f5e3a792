"""The training loop: run-directory contents, exact resume, early stopping, and ShardDataset batching."""

from __future__ import annotations

import collections
import csv
import json
import pathlib
import shutil

import numpy as np
import pytest
import torch
import yaml

import hepnn_coffea
from hepnn_coffea.nn import count_parameters
from hepnn_coffea.training import trainer
from hepnn_coffea.training.dataset import ShardDataset
from hepnn_coffea.training.trainer import TrainResult, load_network, train
from tests.conftest import ROOT

PFN = ROOT / "models" / "pfn.yaml"
METRIC_COLUMNS = {"epoch", "train_loss", "val_loss", "val_auc", "val_acc"}


def _rows(run_dir: pathlib.Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture
def restore_threads():
    """``num_threads`` in a training config sets torch's global thread count; put it back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------- run directory


def test_run_directory_layout(trained_run: pathlib.Path) -> None:
    cfg = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert cfg["training"]["epochs"] == 2
    assert cfg["training"]["batch_size"] == 128
    assert cfg["training"]["optimizer"] == "ranger"  # inherited from models/base.yaml
    assert "extends" not in cfg
    assert cfg["model"]["name"] == "pfn"
    assert pathlib.Path(cfg["data_config"]).is_absolute()

    dc = yaml.safe_load((trained_run / "data_config.yaml").read_text())
    assert "pf_features" in dc["inputs"] and "labels" in dc
    std = json.loads((trained_run / "standardization.json").read_text())
    assert isinstance(std, dict) and std

    prov = json.loads((trained_run / "provenance.json").read_text())
    assert prov["hepnn_coffea_version"] == hepnn_coffea.__version__
    assert prov["torch_version"] == torch.__version__
    assert prov["parameters"] > 0
    assert prov["labels"] == ["jet_isTop", "jet_isQCD"] and prov["n_outputs"] == 2
    assert prov["input_groups"] == ["pf_features", "pf_mask"]
    assert pathlib.Path(prov["shards"]).is_dir()

    rows = _rows(trained_run)
    assert len(rows) == 2
    assert METRIC_COLUMNS <= set(rows[0])
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for r in rows:
        assert np.isfinite(float(r["train_loss"])) and np.isfinite(float(r["val_loss"]))
        assert 0.0 <= float(r["val_acc"]) <= 1.0
    assert max(float(r["val_auc"]) for r in rows) > 0.75

    events = list((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    assert (trained_run / "checkpoints" / "best.pt").is_file()
    assert (trained_run / "checkpoints" / "last.pt").is_file()


def test_checkpoints_rebuild_the_network(trained_run: pathlib.Path) -> None:
    prov = json.loads((trained_run / "provenance.json").read_text())
    net, cfg = load_network(trained_run)
    assert not net.training
    assert count_parameters(net) == prov["parameters"] == 84_624
    assert cfg["model"]["name"] == "pfn"

    last = torch.load(trained_run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert last["state"]["epoch"] == 2 and len(last["state"]["history"]) == 2
    assert {"model", "optimizer", "scheduler", "torch_rng", "state"} <= set(last)
    best = torch.load(trained_run / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert best["epoch"] == last["state"]["best_epoch"]
    aucs = [float(r["val_auc"]) for r in _rows(trained_run)]
    assert last["state"]["best"] == pytest.approx(max(aucs))
    assert best["epoch"] == 1 + int(np.argmax(aucs))
    for key, tensor in best["model"].items():
        assert torch.equal(net.state_dict()[key], tensor)


def test_new_run_in_used_folder_raises(trained_run: pathlib.Path, shards: pathlib.Path) -> None:
    before = (trained_run / "metrics.csv").read_text()
    with pytest.raises(FileExistsError):
        train(PFN, shards, trained_run, overrides={"training": {"epochs": 1}}, progress=False)
    assert (trained_run / "metrics.csv").read_text() == before


def test_resume_without_checkpoint_raises(tmp_path: pathlib.Path, shards: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match="last.pt"):
        train(PFN, shards, tmp_path / "empty", resume=True, progress=False)
    (tmp_path / "half" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="last.pt"):
        train(PFN, shards, tmp_path / "half", resume=True, progress=False)


def test_resume_needs_only_the_run_dir_missing_checkpoint(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        train(None, None, tmp_path / "empty", resume=True, progress=False)


def test_resume_needs_only_the_run_dir(tmp_path: pathlib.Path, trained_run: pathlib.Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    result = train(None, None, run, resume=True, progress=False)  # already at its last epoch: no training
    assert len(result.history) == 2
    assert len(_rows(run)) == 2


# --------------------------------------------------------------------------- resume


def test_resume_is_bit_exact(
    tmp_path: pathlib.Path, shards: pathlib.Path, monkeypatch: pytest.MonkeyPatch, restore_threads: None
) -> None:
    overrides = {"training": {"epochs": 2, "batch_size": 256, "num_threads": 1, "tensorboard": False}}
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    result_a = train(PFN, shards, run_a, overrides=overrides, progress=False)
    assert isinstance(result_a, TrainResult) and len(result_a.history) == 2

    real_evaluate = trainer.evaluate
    calls = []

    def interrupt_on_second_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # end of epoch 2: epoch 1's checkpoint is already written
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", interrupt_on_second_call)
    with pytest.raises(KeyboardInterrupt):
        train(PFN, shards, run_b, overrides=overrides, progress=False)
    monkeypatch.setattr(trainer, "evaluate", real_evaluate)
    assert len(calls) == 2
    interrupted = torch.load(run_b / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert interrupted["state"]["epoch"] == 1
    assert len(_rows(run_b)) == 1

    # config and shards come from the run folder on resume
    result_b = train(None, None, run_b, resume=True, progress=False)
    assert len(result_b.history) == 2
    assert result_b.best_epoch == result_a.best_epoch and result_b.best_metric == result_a.best_metric

    ckpt_a = torch.load(run_a / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    ckpt_b = torch.load(run_b / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt_a["model"].keys() == ckpt_b["model"].keys()
    for key in ckpt_a["model"]:
        assert torch.equal(ckpt_a["model"][key], ckpt_b["model"][key]), key
    # a real change in training would show here: epoch-1 weights differ from the final ones
    assert any(not torch.equal(interrupted["model"][k], ckpt_a["model"][k]) for k in ckpt_a["model"])
    slow_a, slow_b = ckpt_a["optimizer"]["lookahead"]["slow"], ckpt_b["optimizer"]["lookahead"]["slow"]
    assert all(torch.equal(x, y) for x, y in zip(slow_a, slow_b))
    assert ckpt_a["scheduler"]["last_epoch"] == ckpt_b["scheduler"]["last_epoch"]
    assert ckpt_a["state"]["step"] == ckpt_b["state"]["step"] == 2 * (2000 // 256)

    rows_a, rows_b = _rows(run_a), _rows(run_b)
    assert len(rows_a) == len(rows_b) == 2
    for ra, rb in zip(rows_a, rows_b):
        for col in ("epoch", "train_loss", "lr", "val_loss", "val_auc", "val_acc"):
            assert ra[col] == rb[col], (col, ra, rb)


# --------------------------------------------------------------------------- early stopping


def test_early_stopping(tmp_path: pathlib.Path, shards: pathlib.Path, restore_threads: None) -> None:
    # lr 0 and no BatchNorm (whose running stats would still move): the network cannot change,
    # so the validation AUC never improves after epoch 1
    overrides = {
        "model": {"params": {"use_bn": False}},
        "training": {
            "epochs": 5,
            "lr": 0.0,
            "early_stopping_patience": 1,
            "batch_size": 500,
            "num_threads": 1,
            "tensorboard": False,
        },
    }
    result = train(PFN, shards, tmp_path / "run", overrides=overrides, progress=False)
    rows = _rows(tmp_path / "run")
    assert len(rows) == 2
    assert len(result.history) == 2
    assert result.best_epoch == 1
    assert rows[0]["val_auc"] == rows[1]["val_auc"]
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert cfg["model"]["params"]["use_bn"] is False
    assert cfg["model"]["params"]["phi_sizes"] == [128, 128, 128]  # merged, not replaced


# --------------------------------------------------------------------------- ShardDataset


@pytest.fixture(scope="module")
def train_set(shards: pathlib.Path) -> ShardDataset:
    return ShardDataset(shards, "train", ["pf_features", "pf_vectors", "pf_mask"])


def _keys(batch: dict) -> list[bytes]:
    """One hashable fingerprint per row: raw four-momenta plus the label."""
    vec, tgt = (np.asarray(batch[k]) for k in ("pf_vectors", "target"))
    return [v.tobytes() + bytes([int(t)]) for v, t in zip(vec, tgt)]


def test_dataset_sizes_and_shapes(shards: pathlib.Path, train_set: ShardDataset) -> None:
    assert len(train_set) == 2000
    assert len(ShardDataset(shards, "val")) == 500
    assert len(ShardDataset(shards, "test")) == 1000
    shapes = train_set.input_shapes()
    assert shapes["pf_features"] == (7, 128) and shapes["pf_mask"] == (1, 128)
    assert shapes["pf_points"] == (2, 128) and shapes["pf_vectors"] == (4, 128)
    assert train_set.target_field == "label"
    with pytest.raises(ValueError, match="nosplit"):
        ShardDataset(shards, "nosplit")
    with pytest.raises(ValueError, match="pf_nope"):
        ShardDataset(shards, "train", ["pf_nope"])


def test_val_subset_is_seeded_and_scored(shards: pathlib.Path) -> None:
    full = ShardDataset(shards, "val")
    a, b, c = (ShardDataset(shards, "val") for _ in range(3))
    a.keep_subset(120, seed=3)
    b.keep_subset(120, seed=3)
    c.keep_subset(120, seed=4)
    assert len(a) == 120 and np.array_equal(a.rows, b.rows) and not np.array_equal(a.rows, c.rows)
    assert np.all(np.diff(a.rows) > 0) and set(a.rows) <= set(full.rows)
    batch = next(a.batches(1000))
    np.testing.assert_array_equal(batch["target"].numpy(), full.arrays(["label"])["label"][a.rows])
    big = ShardDataset(shards, "val")
    big.keep_subset(10_000, seed=3)  # more than the split: everything
    assert len(big) == len(full)
    with pytest.raises(ValueError, match="val_samples"):
        a.keep_subset(0, seed=3)


@pytest.mark.parametrize(("batch_size", "drop_last"), [(256, False), (300, True), (2000, False)])
def test_epoch_covers_every_row_once(train_set: ShardDataset, batch_size: int, drop_last: bool) -> None:
    columns = train_set.arrays(["inputs/pf_vectors", "label"])
    reference = _keys({"pf_vectors": columns["inputs/pf_vectors"], "target": columns["label"]})
    labels = columns["label"]

    n_rows, keys, targets = 0, [], []
    for batch in train_set.batches(batch_size, shuffle=True, seed=[42, 0], drop_last=drop_last):
        assert set(batch) == {"pf_features", "pf_vectors", "pf_mask", "target"}
        assert batch["pf_features"].shape[1:] == (7, 128) and batch["pf_features"].dtype == torch.float32
        assert len(batch["target"]) <= batch_size
        if drop_last:
            assert len(batch["target"]) == batch_size
        n_rows += len(batch["target"])
        keys += _keys(batch)
        targets.append(batch["target"].numpy())
    targets = np.concatenate(targets)

    if drop_last:
        assert n_rows == len(train_set) - len(train_set) % batch_size
        assert collections.Counter(keys) <= collections.Counter(reference)  # no row twice
    else:
        assert n_rows == len(train_set)
        assert collections.Counter(keys) == collections.Counter(reference)
        assert collections.Counter(targets.tolist()) == collections.Counter(labels.tolist())
        assert sorted(targets.tolist()) == sorted(labels.tolist())


def test_shuffle_depends_only_on_seed(train_set: ShardDataset) -> None:
    def epoch_order(seed: list[int]) -> list[bytes]:
        return [k for b in train_set.batches(500, shuffle=True, seed=seed) for k in _keys(b)]

    first = epoch_order([42, 0])
    assert epoch_order([42, 0]) == first
    second = epoch_order([42, 1])
    assert second != first
    assert sorted(second) == sorted(first)
    assert epoch_order([7, 0]) != first
    unshuffled = [k for b in train_set.batches(500) for k in _keys(b)]
    assert unshuffled != first and sorted(unshuffled) == sorted(first)


def test_gather_returns_rows_in_requested_order(train_set: ShardDataset) -> None:
    columns = train_set.arrays(["inputs/pf_features", "label"])
    assert len(train_set.shards) > 1  # the index below crosses shard boundaries
    index = np.random.default_rng(1).permutation(len(train_set))[:333]
    index[:3] = [len(train_set) - 1, 0, int(train_set.offsets[1])]
    rows = train_set.gather(index)
    np.testing.assert_array_equal(rows["pf_features"], columns["inputs/pf_features"][index])
    np.testing.assert_array_equal(rows["target"], columns["label"][index])
