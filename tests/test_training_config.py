"""Typed model/training configs: unknown keys and wrong types are errors, defaults live in one place."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from hepnn_coffea.config.data_config import ConfigError, DataConfig
from hepnn_coffea.config.model_config import load_model_config, resolve_expert
from hepnn_coffea.config.training_config import ModelConfig, TrainingConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SHIPPED = sorted(p for p in MODELS.rglob("*.y*ml") if "data" not in p.relative_to(MODELS).parts)


def _check(raw: dict, complete: bool = False) -> ModelConfig:
    return ModelConfig.from_dict(raw, "cfg.yaml", complete=complete)


# ------------------------------------------------------------------ unknown keys
def test_unknown_training_key_names_the_closest_valid_one() -> None:
    with pytest.raises(
        ConfigError, match=r"cfg\.yaml: training\.epohcs: unknown key; did you mean 'epochs'\?"
    ):
        _check({"training": {"epohcs": 3}})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"trainig": {"epochs": 3}}, r"cfg\.yaml: trainig: unknown key; did you mean 'training'\?"),
        ({"model": {"name": "pfn", "parms": {}}}, r"model\.parms: unknown key; did you mean 'params'\?"),
        (
            {"expert_forward": {"batch_sise": 128}},
            r"expert_forward\.batch_sise: unknown key; did you mean 'batch_size'\?",
        ),
        (
            {"expert_forward": {"training": {"lrr": 0.1}}},
            r"expert_forward\.training\.lrr: unknown key; did you mean 'lr'\?",
        ),
        (
            {"expert_forward": {"model": {"inptus": {}}}},
            r"expert_forward\.model\.inptus: unknown key; did you mean 'inputs'\?",
        ),
        (
            {"training": {"optimizer": "adamm"}},
            r"training\.optimizer: 'adamm' is not one of .*did you mean 'adam'\?",
        ),
        ({"task": "regresion"}, r"task: 'regresion' is not one of .*did you mean 'regression'\?"),
        ({"training": {"amp": "fp8"}}, r"training\.amp: 'fp8' is not one of \['bf16', 'fp16'\] \(or null\)"),
        (
            {"training": {"sample_by_weight": "balanced"}},
            r"training\.sample_by_weight: 'balanced' is not one of",
        ),
    ],
)
def test_unknown_keys_and_choices_in_every_section(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _check(raw)


# ------------------------------------------------------------------ types
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"training": {"epochs": "ten"}}, r"training\.epochs: expected an integer, got str 'ten'"),
        ({"training": {"epochs": 2.5}}, r"training\.epochs: expected an integer, got float 2\.5"),
        ({"training": {"batch_size": True}}, r"training\.batch_size: expected an integer, got bool"),
        ({"training": {"lr": "fast"}}, r"training\.lr: expected a number, got str 'fast'"),
        ({"training": {"tensorboard": "yes"}}, r"training\.tensorboard: expected true/false, got str 'yes'"),
        ({"training": {"grad_clip": [1]}}, r"training\.grad_clip: expected a number or null, got list"),
        ({"training": {"disco": [1, 2]}}, r"training\.disco: expected a mapping or null, got list"),
        (
            {"training": {"samples_per_epoch": "all"}},
            r"training\.samples_per_epoch: expected an integer or null",
        ),
        ({"training": 3}, r"cfg\.yaml: training: expected a mapping, got int 3"),
        (
            {"model": {"inputs": {"features": 1}}},
            r"model\.inputs: expected a mapping \(a string -> a string\)",
        ),
        ({"model": {"params": [1]}}, r"model\.params: expected a mapping, got list"),
        ({"data_config": 3}, r"data_config: expected a string or null, got int 3"),
        ({"expert_a": [1]}, r"expert_a: expected a mapping of overrides, got list"),
    ],
)
def test_wrong_types_are_named(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _check(raw)


def test_numbers_are_coerced_as_declared() -> None:
    cfg = _check({"training": {"lr": 1, "weight_decay": "1e-4", "grad_clip": 5, "optimizer": "AdamW"}})
    assert cfg.training.lr == 1.0 and isinstance(cfg.training.lr, float)  # ints are accepted for floats
    assert cfg.training.weight_decay == pytest.approx(1e-4)  # PyYAML reads 1e-4 (no dot) as a string
    assert cfg.training.grad_clip == 5.0 and cfg.training.optimizer == "AdamW"  # optimizer names: any case
    assert cfg.training.epochs == TrainingConfig().epochs  # missing keys take the defaults


def test_complete_configs_need_model_and_training() -> None:
    with pytest.raises(ConfigError, match="needs 'model' and 'training' sections"):
        _check({"training": {}}, complete=True)
    with pytest.raises(ConfigError, match=r"model\.name: missing"):
        _check({"model": {"inputs": {}}, "training": {}}, complete=True)


def test_model_params_are_checked_against_the_constructor() -> None:
    from hepnn_coffea.nn import check_params

    check_params("pfn", {"phi_sizes": [16], "f_sizes": [16], "use_bn": False})
    with pytest.raises(
        ConfigError,
        match=r"model\.params\.phi_size: not a parameter of model 'pfn'; did you mean 'phi_sizes'\?",
    ):
        check_params("pfn", {"phi_size": [16]})
    with pytest.raises(
        ConfigError, match=r"model\.name 'particle_net' is not in the zoo; did you mean 'particlenet'\?"
    ):
        check_params("particle_net", {})


# ------------------------------------------------------------------ defaults in one place
def test_base_yaml_documents_the_dataclass_defaults() -> None:
    base = yaml.safe_load((MODELS / "base.yaml").read_text())
    defaults = TrainingConfig().to_dict()
    assert base["training"] == defaults  # every option, with the dataclass's value
    assert set(base) - {"training"} <= {f.name for f in dataclasses.fields(ModelConfig)}
    for key in set(base) - {"training"}:
        assert base[key] == getattr(ModelConfig(), key), key
    assert ModelConfig.from_dict(base, "base.yaml", complete=False).training == TrainingConfig()


# ------------------------------------------------------------------ shipped configs
@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(MODELS)) for p in SHIPPED])
def test_every_shipped_model_config_loads_and_validates(path: pathlib.Path) -> None:
    from hepnn_coffea.nn import check_params

    cfg = load_model_config(path)
    complete = "model" in cfg  # base configs (models/base.yaml, */base.yaml, ...) carry no model
    typed = ModelConfig.from_dict(cfg, str(path), complete=complete)
    if typed.data_config is not None:
        data = DataConfig.from_yaml(typed.data_config)
        missing = set(typed.model.inputs.values()) - set(data.inputs)
        assert not missing, f"{path}: model.inputs {missing} not in {typed.data_config}"
    if complete:
        check_params(typed.model.name, typed.model.params)
    for expert in typed.experts:
        resolved = ModelConfig.from_dict(resolve_expert(cfg, expert), f"{path} {expert}", complete=complete)
        if complete:
            check_params(resolved.model.name, resolved.model.params)
    assert len(SHIPPED) >= 20  # models/, models/nanoaod, models/regression, models/calo


# ------------------------------------------------------------------ trainer and CLI
def test_train_rejects_a_typo_before_reading_the_shards(tmp_path: pathlib.Path) -> None:
    from hepnn_coffea.training.trainer import train

    with pytest.raises(
        ConfigError,
        match=r"pfn\.yaml \(with overrides\): training\.epohcs: unknown key; did you mean 'epochs'",
    ):
        train(
            MODELS / "pfn.yaml",
            tmp_path / "no_shards",
            tmp_path / "run",
            overrides={"training": {"epohcs": 3}},
        )
    assert not (tmp_path / "run").exists()


def test_cli_exits_2_on_an_unknown_training_key(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hepnn_coffea.cli",
            "train",
            str(MODELS / "pfn.yaml"),
            "--shards",
            str(tmp_path / "shards"),
            "-o",
            str(tmp_path / "run"),
            "--set",
            "training.epohcs=3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    assert "training.epohcs: unknown key; did you mean 'epochs'?" in proc.stderr
    assert "Traceback" not in proc.stderr
