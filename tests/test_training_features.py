"""Trainer features: expert overrides, trimming and length bucketing, AMP on CPU, DDP with torchrun."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch
import yaml

from hepnn_coffea.config import ConfigError
from hepnn_coffea.config.model_config import load_model_config, resolve_expert
from hepnn_coffea.training.dataset import ShardDataset
from hepnn_coffea.training.loop import StepSettings, trim
from hepnn_coffea.training.trainer import load_network, train
from tests.conftest import ROOT
from tests.helpers.ddp import torchrun_train

PFN = ROOT / "models" / "pfn.yaml"


def _rows(run_dir) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_expert_overrides_resolve_over_an_extended_config(tmp_path) -> None:
    (tmp_path / "base.yaml").write_text(
        yaml.safe_dump({"training": {"batch_size": 512, "epochs": 10, "lr": 0.01}})
    )
    (tmp_path / "trigger.yaml").write_text(
        yaml.safe_dump(
            {
                "extends": "base",
                "model": {"name": "pfn", "params": {"use_bn": True}},
                "expert_3": {"batch_size": 128, "epochs": 2000},
                "expert_1": {"model": {"params": {"use_bn": False}}, "training": {"lr": 0.1}},
            }
        )
    )
    cfg = load_model_config(tmp_path / "trigger.yaml")
    three = resolve_expert(cfg, "expert_3")
    assert three["training"] == {"batch_size": 128, "epochs": 2000, "lr": 0.01}
    assert not any(k.startswith("expert_") for k in three)
    one = resolve_expert(cfg, "1")
    assert one["model"]["params"]["use_bn"] is False and one["training"]["lr"] == 0.1
    assert one["training"]["batch_size"] == 512
    assert resolve_expert(cfg, None)["training"]["batch_size"] == 512
    with pytest.raises(ConfigError, match="expert_7.*expert_1"):
        resolve_expert(cfg, "expert_7")


def test_train_with_expert_saves_the_resolved_config(shards, tmp_path) -> None:
    cfg = load_model_config(PFN)
    cfg["expert_b"] = {"batch_size": 256, "epochs": 1}
    train(
        cfg, shards, tmp_path / "run", expert="b", overrides={"training": {"num_threads": 1}}, progress=False
    )
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["training"]["batch_size"] == 256 and saved["training"]["epochs"] == 1
    assert "expert_b" not in saved and len(_rows(tmp_path / "run")) == 1


def test_trim_cuts_to_the_longest_jet_and_keeps_outputs(trained_run, shards) -> None:
    net, _ = load_network(trained_run)
    data = ShardDataset(shards, "test", net.input_groups)
    lengths = data.lengths("pf_mask")
    assert lengths.max() <= 128 and lengths.min() >= 1
    np.testing.assert_array_equal(lengths[:50], data.gather(np.arange(50))["pf_mask"].sum(axis=(1, 2)))
    short = np.flatnonzero(lengths < 40)[:64]
    batch = {k: torch.from_numpy(v) for k, v in data.gather(short).items()}
    settings = StepSettings(torch.device("cpu"), trim_groups=("pf_features", "pf_mask"), mask_group="pf_mask")
    cut = trim(batch, settings)
    expected = max(32, -(-int(lengths[short].max()) // 8) * 8)
    assert cut["pf_features"].shape[-1] == cut["pf_mask"].shape[-1] == expected
    with torch.no_grad():
        full = net(batch["pf_features"], batch["pf_mask"])
        trimmed = net(cut["pf_features"], cut["pf_mask"])
    torch.testing.assert_close(trimmed, full, rtol=0, atol=1e-5)


def test_bucketing_groups_similar_lengths_and_covers_every_row(shards, tmp_path) -> None:
    from hepnn_coffea.training.trainer import _bucketed

    data = ShardDataset(shards, "train", ["pf_features", "pf_mask"])
    index = data.epoch_index(True, [1, 0])
    order = _bucketed(index, data, {"bucket_by_length": True}, 64, [1, 0], "pf_mask")
    assert sorted(order.tolist()) == sorted(index.tolist())
    lengths = data.lengths("pf_mask")
    spread_bucketed = np.mean([np.ptp(lengths[b]) for b in np.split(order[: 64 * 30], 30)])
    spread_random = np.mean([np.ptp(lengths[b]) for b in np.split(index[: 64 * 30], 30)])
    assert spread_bucketed < 0.5 * spread_random
    train(
        PFN,
        shards,
        tmp_path / "run",
        progress=False,
        overrides={
            "training": {
                "epochs": 1,
                "batch_size": 128,
                "bucket_by_length": True,
                "amp": "bf16",
                "num_threads": 1,
            }
        },
    )
    assert float(_rows(tmp_path / "run")[0]["val_auc"]) > 0.6  # amp is ignored on CPU, training still works


def test_bad_amp_setting_is_rejected(shards, tmp_path) -> None:
    with pytest.raises(ConfigError, match="training.amp"):
        train(
            PFN, shards, tmp_path / "run", progress=False, overrides={"training": {"epochs": 1, "amp": "fp8"}}
        )


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not (ROOT / ".venv" / "bin" / "torchrun").exists(),
    reason="torchrun not installed",
)
def test_ddp_two_cpu_processes_with_gloo(shards, tmp_path) -> None:
    run_dir = tmp_path / "ddp"
    torchrun_train(PFN, shards, run_dir, "training.epochs=2", "training.batch_size=128")
    rows = _rows(run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2"]  # written once, by rank 0
    assert all(r["world_size"] == "2" for r in rows)
    assert float(rows[-1]["val_auc"]) > 0.7
    net, _ = load_network(run_dir)
    assert all(torch.isfinite(p).all() for p in net.parameters())


@pytest.mark.parametrize("model", ["particlenet", "part", "pcnn"])
def test_every_zoo_model_trains_and_exports_with_parity(model, shards, tmp_path) -> None:
    from hepnn_coffea.export import export_onnx, read_metadata

    run_dir = tmp_path / model
    train(
        ROOT / "models" / f"{model}.yaml",
        shards,
        run_dir,
        progress=False,
        overrides={"training": {"epochs": 1, "batch_size": 64, "samples_per_epoch": 256, "num_threads": 2}},
    )
    info = export_onnx(run_dir, tmp_path / f"{model}.onnx", parity_jets=256)
    assert info["max_abs_diff"] <= 1e-4 and info["n_jets"] == 256
    assert read_metadata(tmp_path / f"{model}.onnx")["provenance"]["model"] == model
