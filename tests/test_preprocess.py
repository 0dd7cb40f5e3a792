"""The preprocessing stage: counts vs uproot, Runner == dask-awkward, shards, re-runs, bad files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import uproot
import yaml

from hepnn_coffea.config import DataConfig
from hepnn_coffea.processing.fileset import FilesetError
from hepnn_coffea.processing.preprocess import preprocess
from hepnn_coffea.processing.shards import open_shard
from hepnn_coffea.training.dataset import ShardDataset
from tests.conftest import SAMPLES, TOP_KIN, TOPQCD, needs_shared


def _all_rows(shard_dir, split: str) -> np.ndarray:
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    rows = [
        open_shard(shard_dir / s["path"]).to_records()
        for e in manifest["splits"][split].values()
        for s in e["shards"]
    ]
    return np.concatenate(rows)


def test_counts_reconcile_with_uproot(shards, fileset_path) -> None:
    manifest = json.loads((shards / "manifest.json").read_text())
    fileset = json.loads(fileset_path.read_text())
    for dataset in fileset.values():
        meta = dataset["metadata"]
        entry = manifest["splits"][meta["split"]][meta["sample"]]
        for name in dataset["files"]:
            with uproot.open(SAMPLES / name) as f:
                n = f["tree"].num_entries
            stats = entry["files"][str(SAMPLES / name)]
            assert stats["entries_read"] == stats["num_entries"] == n
        assert entry["entries_out"] == sum(s["entries"] for s in entry["shards"])
        assert entry["entries_out"] == entry["entries_selected"] - entry["rejected_labels"]
        for name in dataset["files"]:  # one shard per chunk; the chunks tile the file exactly
            ranges = sorted(
                (s["entry_start"], s["entry_stop"]) for s in entry["shards"] if s["file"].endswith(name)
            )
            assert ranges[0][0] == 0 and ranges[-1][1] == entry["num_entries"]
            assert len(ranges) == (
                2 if entry["num_entries"] == 1000 else 1
            )  # coffea: round(n / chunksize) chunks
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert manifest["config_hash"] == DataConfig.from_yaml(shards / "data_config.yaml").config_hash()
    assert manifest["standardization"]["part_pt_log"]["center"] == 1.7


def test_shards_hold_the_features_of_the_selected_jets(shards) -> None:
    rows = _all_rows(shards, "test")
    assert (
        rows.dtype["inputs/pf_features"].shape == (7, 128) and rows["inputs/pf_features"].dtype == np.float32
    )
    cfg = DataConfig.from_yaml(TOP_KIN)
    with uproot.open(SAMPLES / "topqcd_test_qcd.root") as f:
        arrays = f["tree"].arrays(cfg.required_branches())
    from hepnn_coffea.features import compute_features

    expected = compute_features(arrays, cfg)
    qcd = rows[rows["label"] == 1]
    order = np.argsort(qcd["observers/event_no"])
    ref_order = np.argsort(expected.observers["event_no"])
    np.testing.assert_array_equal(qcd["inputs/pf_features"][order], expected.inputs["pf_features"][ref_order])
    assert set(np.unique(rows["label"])) == {0, 1}


def test_runner_dask_executor_and_dask_awkward_give_identical_shards(shards, fileset_path, tmp_path) -> None:
    reference = {split: _all_rows(shards, split) for split in ("train", "val", "test")}
    ref_manifest = json.loads((shards / "manifest.json").read_text())
    for mode, executor in (("dask", "dask"), ("runner", "dask")):
        out = tmp_path / f"{mode}-{executor}"
        manifest = preprocess(
            fileset_path, TOP_KIN, out, mode=mode, executor=executor, workers=2, chunksize=400
        )
        for split, samples in manifest["splits"].items():
            for sample, entry in samples.items():
                ref = ref_manifest["splits"][split][sample]
                assert [s["path"] for s in entry["shards"]] == [s["path"] for s in ref["shards"]]
                assert {k: entry[k] for k in ("entries_read", "entries_out")} == {
                    k: ref[k] for k in ("entries_read", "entries_out")
                }
            np.testing.assert_array_equal(_all_rows(out, split), reference[split])


def test_rerun_is_idempotent_and_removes_stale_shards(fileset_path, tmp_path) -> None:
    out = tmp_path / "shards"
    preprocess(fileset_path, TOP_KIN, out, executor="iterative", chunksize=400)
    first = sorted(p.relative_to(out) for p in out.rglob("*.arrow"))
    preprocess(fileset_path, TOP_KIN, out, executor="iterative", chunksize=400)
    assert sorted(p.relative_to(out) for p in out.rglob("*.arrow")) == first
    assert not list(out.rglob("*.tmp"))
    preprocess(fileset_path, TOP_KIN, out, executor="iterative", chunksize=1000)
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {
        s["path"] for samples in manifest["splits"].values() for e in samples.values() for s in e["shards"]
    }
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.arrow")} == listed
    assert len(ShardDataset(out, "train")) == 2000


def test_auto_standardization_follows_weaver(fileset_path, tmp_path) -> None:
    raw = yaml.safe_load(TOP_KIN.read_text())
    raw["preprocess"] = {"method": "auto", "data_fraction": 1.0}
    raw["inputs"]["pf_features"]["vars"][0] = ["part_pt_log"]
    cfg_path = tmp_path / "auto.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "shards"
    preprocess(fileset_path, cfg_path, out, executor="iterative", chunksize=400)
    params = json.loads((out / "standardization.json").read_text())["part_pt_log"]
    values = []
    for name in ("topqcd_train_top.root", "topqcd_train_qcd.root"):
        with uproot.open(SAMPLES / name) as f:
            px, py = f["tree"].arrays(["part_px", "part_py"], how=tuple)
        import awkward as ak

        values.append(np.log(np.hypot(ak.flatten(px).to_numpy(), ak.flatten(py).to_numpy())))
    low, med, high = np.percentile(np.concatenate(values), [16, 50, 84])
    assert params["center"] == pytest.approx(med, abs=1e-3)
    assert params["scale"] == pytest.approx(1 / max(high - med, med - low), abs=1e-3)
    saved = DataConfig.from_yaml(out / "data_config.yaml")
    assert saved.inputs["pf_features"].vars[0].center == params["center"]


def test_corrupt_and_missing_files_are_reported(tmp_path) -> None:
    broken = tmp_path / "broken.root"
    broken.write_bytes((SAMPLES / "topqcd_val_top.root").read_bytes()[:5000])
    fileset = {"top": {"files": {str(broken): "tree"}, "metadata": {"split": "train"}}}
    with pytest.raises(Exception, match="broken.root"):
        preprocess(fileset, TOP_KIN, tmp_path / "out", executor="iterative")
    missing = {"top": {"files": {str(tmp_path / "nope.root"): "tree"}}}
    with pytest.raises(FilesetError, match="nope.root"):
        preprocess(missing, TOP_KIN, tmp_path / "out", executor="iterative")
    assert not list((tmp_path / "out").rglob("*.arrow"))


@needs_shared
def test_rntuple_files_preprocess(tmp_path) -> None:
    src = TOPQCD / "val_top_0.root"
    local = tmp_path / "val_top_0.root"
    shutil.copyfile(src, local)
    fileset = {"top": {"files": {str(local): "tree"}, "metadata": {"split": "val"}}}
    for mode in ("runner", "dask"):
        manifest = preprocess(
            fileset, TOP_KIN, tmp_path / mode, mode=mode, executor="iterative", workers=1, chunksize=2000
        )
        entry = manifest["splits"]["val"]["top"]
        with uproot.open(src) as f:
            assert entry["entries_read"] == f["tree"].num_entries == entry["entries_out"]
    np.testing.assert_array_equal(_all_rows(tmp_path / "runner", "val"), _all_rows(tmp_path / "dask", "val"))


def test_existing_scheduler_by_address(shards, fileset_path, tmp_path) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        manifest = preprocess(
            fileset_path,
            TOP_KIN,
            tmp_path / "out",
            executor="dask",
            scheduler=cluster.scheduler_address,
            chunksize=400,
        )
    assert manifest["splits"]["val"]["qcd"]["entries_out"] == 250
    np.testing.assert_array_equal(_all_rows(tmp_path / "out", "train"), _all_rows(shards, "train"))
