"""Ragged shards (format /2): the same arrays as the padded ones, fewer bytes, padded at batch time."""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import numpy as np
import pytest
import uproot
import yaml

from hepnn_coffea.config.data_config import DataConfig
from hepnn_coffea.config.input_groups import ConfigError
from hepnn_coffea.features import compute_features
from hepnn_coffea.features.ragged import from_bfloat16, offsets_of, pad_rows, to_bfloat16
from hepnn_coffea.processing.shard_format import RaggedShard, ShardFormatError
from hepnn_coffea.processing.shards import open_shard, write_shard
from hepnn_coffea.training.dataset import ShardDataset
from tests.conftest import ROOT, SAMPLES, TOP_KIN
from tests.helpers.ddp import torchrun_train

SAMPLE = SAMPLES / "topqcd_train_top.root"


@pytest.fixture(scope="module")
def config() -> DataConfig:
    return DataConfig.from_yaml(TOP_KIN)


@pytest.fixture(scope="module")
def events(config: DataConfig):
    return uproot.open(SAMPLE)["tree"].arrays(config.required_branches())


def _padded_records(batch) -> np.ndarray:
    """The structured array a format /1 shard held (as the old ``batch_to_records`` built it)."""
    columns = {f"inputs/{k}": v for k, v in batch.inputs.items()}
    columns["label"] = batch.labels
    columns.update({f"observers/{k}": v for k, v in batch.observers.items()})
    records = np.empty(len(batch), dtype=[(k, v.dtype, v.shape[1:]) for k, v in columns.items()])
    for k, v in columns.items():
        records[k] = v
    return records


def test_ragged_shard_round_trips_to_the_padded_arrays(config, events, tmp_path) -> None:
    padded = compute_features(events, config)
    ragged = compute_features(events, config, ragged=True)
    path = write_shard(tmp_path, "a.arrow", ragged)
    shard = open_shard(path)
    assert isinstance(shard, RaggedShard) and len(shard) == len(padded) > 100
    records = shard.to_records()
    expected = _padded_records(padded)
    assert records.dtype == expected.dtype
    for field in expected.dtype.names:
        np.testing.assert_array_equal(records[field], expected[field], err_msg=field)
    # wrap-padded groups really repeat the jet's particles; the constant mask is stored as a constant
    row = int(np.flatnonzero(padded.lengths["pf_features"] <= 64)[0])
    n = int(padded.lengths["pf_features"][row])
    block = padded.inputs["pf_features"][row]
    np.testing.assert_array_equal(block[:, n : 2 * n], block[:, :n])
    meta = json.loads(RaggedShard(path)._batch.schema.metadata[b"hepnn_coffea"])
    assert meta["fields"]["inputs/pf_mask"]["columns"] == [{"constant": 1.0}]
    # part_deta / part_dphi are in two groups but stored once
    children = RaggedShard(path)._collection("c0")[1]
    assert sorted(children).count("part_deta") == 1 and len(children) == 11
    assert path.stat().st_size < 0.5 * expected.nbytes


def test_batch_time_trimming_equals_cutting_the_padded_rows(config, events, tmp_path) -> None:
    shard = open_shard(write_shard(tmp_path, "a.arrow", compute_features(events, config, ragged=True)))
    rows = np.random.default_rng(3).choice(len(shard), 64, replace=False)
    full = shard.take(rows, ["inputs/pf_features", "inputs/pf_mask"])
    longest = int(shard.lengths("inputs/pf_mask")[rows].max())
    np.testing.assert_array_equal(
        shard.lengths("inputs/pf_mask", rows), shard.lengths("inputs/pf_mask")[rows]
    )
    for cut in (longest, -(-longest // 8) * 8, 7):
        part = shard.take(rows, ["inputs/pf_features", "inputs/pf_mask"], {"inputs/pf_features": cut})
        np.testing.assert_array_equal(part["inputs/pf_features"], full["inputs/pf_features"][..., :cut])
        assert part["inputs/pf_mask"].shape[-1] == 128
    assert (full["inputs/pf_mask"] != 0).sum(axis=(1, 2)).max() == longest


def test_pad_rows_matches_a_loop_over_jets() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 9, size=40)
    counts[5] = 0
    values = rng.normal(size=int(counts.sum())).astype(np.float32)
    offsets = offsets_of(counts)
    picked = rng.permutation(40)[:25]
    picked[0] = 5
    for mode, rows in (("constant", picked), ("wrap", picked), ("wrap", picked[counts[picked] > 0])):
        out = pad_rows([values, 2.5], offsets, rows, length=6, pad_values=[-1.0, 0.0], pad_mode=mode)
        for k, r in enumerate(rows):
            jet = values[offsets[r] : offsets[r + 1]][:6]
            want = np.full(6, -1.0, np.float32)
            if len(jet):
                want[: len(jet)] = jet
                if mode == "wrap":
                    want = np.resize(jet, 6)
            np.testing.assert_array_equal(out[k, 0], want, err_msg=f"{mode} row {r}")
            assert (
                out[k, 1] == np.where(np.arange(6) < (6 if mode == "wrap" and len(jet) else len(jet)), 2.5, 0)
            ).all()


def test_reduced_precision_groups(config, events, tmp_path) -> None:
    raw = yaml.safe_load(TOP_KIN.read_text())
    raw["inputs"]["pf_features"]["dtype"] = "float16"
    raw["inputs"]["pf_vectors"]["dtype"] = "bfloat16"
    half = DataConfig.from_dict(raw, "half.yaml")
    assert half.storage_dtypes() == {"pf_features": "float16", "pf_vectors": "bfloat16"}
    assert DataConfig.from_dict(half.to_dict(), "again").storage_dtypes() == half.storage_dtypes()
    full = open_shard(write_shard(tmp_path, "f.arrow", compute_features(events, config, ragged=True)))
    path = write_shard(
        tmp_path, "h.arrow", compute_features(events, half, ragged=True), half.storage_dtypes()
    )
    small = open_shard(path)
    assert path.stat().st_size < 0.75 * full.path.stat().st_size
    rows = np.arange(len(full))
    for field, rel in (("inputs/pf_features", 2**-11), ("inputs/pf_vectors", 2**-8), ("inputs/pf_points", 0)):
        a, b = full.take(rows, [field])[field], small.take(rows, [field])[field]
        assert b.dtype == np.float32
        np.testing.assert_allclose(b, a, rtol=rel, atol=1e-7 if rel else 0, err_msg=field)
        assert rel == 0 or not np.array_equal(a, b)
    bits = to_bfloat16(np.array([1.0, 1.00390625, 1.01171875, -3.5e5], np.float32))  # ties go to even
    np.testing.assert_array_equal(from_bfloat16(bits), [1.0, 1.0, 1.015625, -350208.0])


def test_config_errors_name_the_key() -> None:
    raw = yaml.safe_load(TOP_KIN.read_text())
    raw["inputs"]["pf_mask"]["dtype"] = "float8"
    with pytest.raises(ConfigError, match=r"inputs.pf_mask.dtype .*'float8'"):
        DataConfig.from_dict(raw, "bad.yaml")
    raw["inputs"]["pf_mask"].pop("dtype")
    raw["inputs"]["pf_mask"]["lenght"] = 10
    with pytest.raises(ConfigError, match=r"inputs.pf_mask: unknown key\(s\) \['lenght'\]"):
        DataConfig.from_dict(raw, "bad.yaml")


@pytest.fixture(scope="module")
def padded_shards(shards, tmp_path_factory) -> pathlib.Path:
    """The bundled samples' shards rewritten as padded ``.npy`` shards of format /1."""
    old = tmp_path_factory.mktemp("padded") / "old"
    shutil.copytree(shards, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for samples in manifest["splits"].values():
        for entry in samples.values():
            for s in entry["shards"]:
                np.save(old / s["path"].replace(".arrow", ".npy"), open_shard(old / s["path"]).to_records())
                (old / s["path"]).unlink()
                s["path"] = s["path"].replace(".arrow", ".npy")
    manifest["format"] = "hepnn_coffea.shards/1"
    (old / "manifest.json").write_text(json.dumps(manifest))
    return old


def test_padded_npy_shards_still_load_and_give_the_same_batches(shards, padded_shards) -> None:
    old = padded_shards
    new_set, old_set = ShardDataset(shards, "train"), ShardDataset(old, "train")
    index = new_set.epoch_index(True, 5)[:300]
    short = index[new_set.lengths("pf_mask")[index] < 50][:40]
    a, b = new_set.gather(index), old_set.gather(index)
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    np.testing.assert_array_equal(new_set.lengths("pf_mask"), old_set.lengths("pf_mask"))
    new_set.trim_at_gather(("pf_features", "pf_mask"), "pf_mask", 16)
    trimmed, whole = new_set.gather(short), old_set.gather(short)
    length = trimmed["pf_features"].shape[-1]
    assert length == 56 and trimmed["pf_mask"].shape[-1] == 56
    np.testing.assert_array_equal(trimmed["pf_features"], whole["pf_features"][..., :length])
    assert (whole["pf_mask"][..., length:] == 0).all()
    assert new_set.gather(index)["pf_features"].shape[-1] == 128


def test_unreadable_shard_names_the_file(tmp_path) -> None:
    bad = tmp_path / "x.arrow"
    bad.write_bytes(b"not arrow at all")
    with pytest.raises(ShardFormatError, match="x.arrow"):
        open_shard(bad)


def _weights(run_dir: pathlib.Path) -> dict:
    import torch

    return torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["model"]


def test_training_on_ragged_and_padded_shards_is_bit_identical(shards, padded_shards, tmp_path) -> None:
    from hepnn_coffea.training.trainer import train

    overrides = {"training": {"epochs": 2, "batch_size": 128, "samples_per_epoch": 768, "num_threads": 1}}
    for name, folder in (("ragged", shards), ("padded", padded_shards)):
        train(ROOT / "models" / "pfn.yaml", folder, tmp_path / name, overrides=overrides, progress=False)
    a, b = _weights(tmp_path / "ragged"), _weights(tmp_path / "padded")
    assert a.keys() == b.keys()
    for key in a:
        assert torch_equal(a[key], b[key]), key
    assert (tmp_path / "ragged" / "metrics.csv").read_text().split("\n")[1].split(",")[1] == (
        tmp_path / "padded" / "metrics.csv"
    ).read_text().split("\n")[1].split(",")[1]  # same train loss


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


@pytest.mark.slow
def test_ddp_on_ragged_and_padded_shards_is_bit_identical(shards, padded_shards, tmp_path) -> None:
    for name, folder in (("ragged", shards), ("padded", padded_shards)):
        sets = ("training.epochs=1", "training.batch_size=128", "training.samples_per_epoch=1024")
        torchrun_train(ROOT / "models" / "pfn.yaml", folder, tmp_path / name, *sets)
    a, b = _weights(tmp_path / "ragged"), _weights(tmp_path / "padded")
    assert all(torch_equal(a[k], b[k]) for k in a)


def test_open_shards_hold_no_file_descriptor(shards) -> None:
    paths = sorted(shards.rglob("*.arrow"))
    before = len(os.listdir("/proc/self/fd"))
    opened = [open_shard(p) for p in paths for _ in range(20)]  # a dataset of many shards
    assert len(os.listdir("/proc/self/fd")) == before
    rows = np.arange(min(len(opened[-1]), 5))
    assert opened[-1].take(rows, ["inputs/pf_features"])["inputs/pf_features"].shape == (len(rows), 7, 128)


def test_variables_with_other_multiplicities_are_padded_one_by_one() -> None:
    from hepnn_coffea.features.compute import _jagged_group

    a = (np.array([2, 0, 3]), np.arange(5, dtype=np.float32))
    b = (np.array([1, 1, 1]), np.array([7, 8, 9], dtype=np.float32))
    same = _jagged_group(["a", "a2"], [a, a], 2, "constant", [-1, -2])
    assert same.counts.tolist() == [2, 0, 2] and same.columns[0].tolist() == [0, 1, 2, 3]
    block = _jagged_group(["a", "b"], [a, b], 2, "wrap", [-1, -2])
    np.testing.assert_array_equal(block[:, 0], [[0, 1], [-1, -1], [2, 3]])
    np.testing.assert_array_equal(block[:, 1], [[7, 7], [8, 8], [9, 9]])
