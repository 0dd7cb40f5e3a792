"""Fine-tuning: the ``finetune`` config section, loading with include/exclude, freezing, lr groups, stages,
report."""

from __future__ import annotations

import json
import pathlib
import re

import pytest
import torch
import yaml

from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.config.finetune_config import FinetuneConfig
from hepnn_coffea.config.model_config import load_model_config
from hepnn_coffea.config.training_config import ModelConfig
from hepnn_coffea.training.finetune import REPORT, FineTuner
from hepnn_coffea.training.optim import build_optimizer, build_scheduler
from tests.conftest import ROOT

SMALL_PN = {"conv_params": [(4, (8, 8)), (4, (16, 16))], "fc_params": [(16, 0.1)]}
HEAD = r"fc\.1\..*"  # the output layer of a ParticleNet with one hidden FC layer


def _particlenet(seed: int, n_classes: int = 2) -> torch.nn.Module:
    from hepnn_coffea.nn import Network
    from hepnn_coffea.nn.particlenet import ParticleNet

    torch.manual_seed(seed)
    params = {k: [tuple(x) for x in v] for k, v in SMALL_PN.items()}
    return Network(
        ParticleNet(7, n_classes, **params), ["pts", "fts", "mask"], ["points", "features", "mask"]
    )


def _checkpoint(
    tmp_path: pathlib.Path, net: torch.nn.Module, name: str = "ckpt.pt", weaver: bool = False
) -> str:
    """``net``'s weights as a hepnn checkpoint (``{"model": ...}``) or a weaver state dict (``mod.*``)."""
    from hepnn_coffea.nn.weaver_keys import to_weaver

    path = tmp_path / name
    torch.save(to_weaver(net.state_dict(), "particlenet") if weaver else {"model": net.state_dict()}, path)
    return str(path)


def _batch(n: int = 16, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.arange(12).expand(n, 1, 12) < torch.randint(6, 13, (n, 1, 1), generator=g)).float()
    inputs = [torch.randn(n, 2, 12, generator=g), torch.randn(n, 7, 12, generator=g), mask]
    return inputs, torch.randint(0, 2, (n,), generator=g)


def _steps(net: torch.nn.Module, optimizer: torch.optim.Optimizer, n: int) -> None:
    net.train()
    for i in range(n):
        inputs, target = _batch(seed=i)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(*inputs), target).backward()
        optimizer.step()


# ------------------------------------------------------------------ config
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"exlude": ["a"]}, r"finetune\.exlude: unknown key; did you mean 'exclude'\?"),
        (
            {"init_from": "x.pt", "stages": [{"epoch": 2}]},
            r"finetune\.stages\[0\]\.epoch: unknown key; did you mean 'epochs'\?",
        ),
        ({"freeze": ["fc\\.(1"]}, r"finetune\.freeze\[0\]: 'fc\\\\.\(1' is not a valid regular expression"),
        ({"lr_mult": {"fc.*": 0}}, r"finetune\.lr_mult\.fc\.\*: the factor must be > 0"),
        ({"lr_mult": {"fc.*": "fast"}}, r"finetune\.lr_mult: expected a mapping \(a string -> a number\)"),
        (
            {"exclude": ["fc.*"]},
            r"finetune: include/exclude select checkpoint tensors but init_from is not set",
        ),
        ({"stages": [{"train": "fc.*"}, {"train": ".*"}]}, r"finetune\.stages\[0\]\.epochs: missing"),
        ({"stages": [{"epochs": 0}]}, r"finetune\.stages\[0\]\.epochs: must be >= 1"),
        ({"freeze": [3]}, r"finetune\.freeze\[0\]: expected a regular expression \(a string\), got int 3"),
    ],
)
def test_config_errors_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict({"finetune": raw}, "cfg.yaml", complete=False)


def test_config_parsing_and_stage_lookup() -> None:
    raw = {
        "init_from": "a.pt",
        "exclude": HEAD,
        "lr_mult": {HEAD: 50},
        "stages": [{"epochs": 2, "train": "fc\\..*"}, {}],
    }
    cfg = ModelConfig.from_dict({"finetune": raw}, complete=False).finetune
    assert cfg.exclude == [HEAD] and cfg.lr_mult == {HEAD: 50}  # a single pattern may be a string
    assert [cfg.stage_at(e)[0] for e in range(4)] == [0, 0, 1, 1] and cfg.stages[1].train == [".*"]
    assert (
        FinetuneConfig(stages=cfg.stages[:1]).stage_at(2) is None
    )  # after the last stage: everything trains
    assert ModelConfig.from_dict({"expert_a": {"finetune": {"freeze": ["x"]}}}, complete=False).experts


def test_init_from_is_relative_to_the_config_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.yaml").write_text(yaml.safe_dump({"finetune": {"init_from": "../w/ckpt.pt"}}))
    assert load_model_config(tmp_path / "sub" / "m.yaml")["finetune"]["init_from"] == str(
        tmp_path / "w" / "ckpt.pt"
    )
    shipped = load_model_config(ROOT / "models" / "particlenet_finetune.yaml")
    checkpoint = ROOT.parent / "shared" / "pretrained" / "ParticleNet_JetClass_kin.pt"
    assert shipped["finetune"]["init_from"] == str(checkpoint)
    assert shipped["training"]["lr"] == 1e-3 and shipped["training"]["scheduler"] == "none"


def test_base_yaml_documents_every_finetune_key() -> None:
    text = (ROOT / "models" / "base.yaml").read_text()
    assert yaml.safe_load(text)["finetune"] is None  # the default: fresh initialisation
    for key in FinetuneConfig.__dataclass_fields__:
        assert re.search(rf"^#\s+{key}:", text, re.MULTILINE), (
            f"models/base.yaml does not document finetune.{key}"
        )


# ------------------------------------------------------------------ loading
@pytest.mark.parametrize("weaver", [False, True])
def test_include_and_exclude_select_what_is_loaded(tmp_path: pathlib.Path, weaver: bool) -> None:
    source, target = _particlenet(1), _particlenet(2)
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    cfg = FinetuneConfig(
        init_from=_checkpoint(tmp_path, source, weaver=weaver),
        include=[r"edge_convs\..*", "fc.*"],
        exclude=[HEAD],
    )
    report = FineTuner(cfg, target, "particlenet").report
    for name, value in target.core.state_dict().items():
        loaded = name.startswith(("edge_convs.", "fc.")) and not re.fullmatch(HEAD, name)
        expected = source.core.state_dict()[name] if loaded else fresh[f"core.{name}"]
        assert torch.equal(value, expected), name
        assert (name in report["loaded"]) == loaded
    assert report["new"]["fc.1.weight"] == "excluded" and report["new"]["bn_fts.weight"] == "not included"
    assert report["dropped"] == {k: report["new"][k] for k in report["dropped"]}  # same tensors in both
    assert report["format"] == ("weaver state dict (prefix 'mod.')" if weaver else "hepnn_coffea checkpoint")
    assert len(report["sha256"]) == 64 and report["counts"]["loaded"] == len(report["loaded"])


def test_run_directory_as_init_from(tmp_path: pathlib.Path) -> None:
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    _checkpoint(tmp_path / "run" / "checkpoints", _particlenet(1), "best.pt")
    report = FineTuner(FinetuneConfig(init_from=str(tmp_path / "run")), _particlenet(2), "particlenet").report
    assert report["init_from"].endswith("run/checkpoints/best.pt") and not report["new"]


def test_shape_mismatch_outside_exclude_names_the_tensor(tmp_path: pathlib.Path) -> None:
    path = _checkpoint(tmp_path, _particlenet(1, n_classes=10), weaver=True)  # like the JetClass head
    message = (
        r"shape mismatch for tensor\(s\) fc\.1\.weight \(\[10, 16\] in the checkpoint, "
        r"\[2, 16\] in the model\); fc\.1\.bias .*add them to finetune\.exclude"
    )
    with pytest.raises(ConfigError, match=message):
        FineTuner(FinetuneConfig(init_from=path), _particlenet(2), "particlenet")
    report = FineTuner(FinetuneConfig(init_from=path, exclude=[HEAD]), _particlenet(2), "particlenet").report
    assert report["shape_mismatched"]["fc.1.weight"] == {"checkpoint": [10, 16], "model": [2, 16]}


def test_missing_or_unreadable_checkpoint_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    net = _particlenet(0)
    with pytest.raises(ConfigError, match=r"finetune\.init_from: .*nowhere\.pt does not exist"):
        FineTuner(FinetuneConfig(init_from=str(tmp_path / "nowhere.pt")), net, "particlenet")
    with pytest.raises(ConfigError, match=r"is a folder without checkpoints/best\.pt"):
        FineTuner(FinetuneConfig(init_from=str(tmp_path)), net, "particlenet")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match=r"cannot read .*junk\.pt as a torch checkpoint"):
        FineTuner(FinetuneConfig(init_from=str(tmp_path / "junk.pt")), net, "particlenet")
    torch.save({"epoch": 3}, tmp_path / "nostate.pt")
    with pytest.raises(ConfigError, match=r"nostate\.pt holds no state dict"):
        FineTuner(FinetuneConfig(init_from=str(tmp_path / "nostate.pt")), net, "particlenet")


def test_patterns_that_match_nothing_are_errors(tmp_path: pathlib.Path) -> None:
    path = _checkpoint(tmp_path, _particlenet(1))
    with pytest.raises(ConfigError, match=r"finetune\.exclude\[0\]: 'fc_out\\\\\.\.\*' matches no tensor"):
        FineTuner(FinetuneConfig(init_from=path, exclude=[r"fc_out\..*"]), _particlenet(2), "particlenet")
    with pytest.raises(ConfigError, match=r"finetune\.lr_mult: 'head\.\*' matches no parameter"):
        FineTuner(FinetuneConfig(lr_mult={"head.*": 2.0}), _particlenet(2), "particlenet")


# ------------------------------------------------------------------ freezing, lr groups, stages
@pytest.mark.parametrize("optimizer", ["ranger", "adamw", "sgd"])
def test_frozen_tensors_do_not_change_in_training(optimizer: str) -> None:
    net = _particlenet(0)
    tuner = FineTuner(FinetuneConfig(freeze=[r"bn_fts\..*", r"edge_convs\.0\..*"]), net, "particlenet")
    before = {k: v.clone() for k, v in net.core.state_dict().items()}
    opt = build_optimizer(tuner.param_groups(1e-2), optimizer, 1e-2, weight_decay=0.01)
    _steps(net, opt, 7)  # ranger: past a lookahead synchronisation (every 6 steps)
    after = net.core.state_dict()
    for name, value in before.items():
        frozen = name.startswith(("bn_fts.", "edge_convs.0."))
        assert torch.equal(value, after[name]) == frozen or name.endswith("num_batches_tracked"), name
    assert tuner.report["frozen"] == [n for n in before if n.startswith(("bn_fts.", "edge_convs.0."))]
    assert all(not p.requires_grad for n, p in net.core.named_parameters() if n.startswith("edge_convs.0."))


def test_lr_mult_groups_and_schedulers() -> None:
    net = _particlenet(0)
    tuner = FineTuner(FinetuneConfig(lr_mult={HEAD: 50, r"edge_convs\.0\..*": 0.5}), net, "particlenet")
    opt = build_optimizer(tuner.param_groups(1e-3), "ranger", 1e-3)
    lrs = {g["lr_mult"]: g["lr"] for g in opt.param_groups}
    assert lrs == pytest.approx({0.5: 5e-4, 1.0: 1e-3, 50.0: 5e-2})
    head = next(g for g in opt.param_groups if g["lr_mult"] == 50.0)
    assert {id(p) for p in head["params"]} == {id(net.core.fc[1].weight), id(net.core.fc[1].bias)}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))
    scheduler = build_scheduler(opt, "flat+decay", 1, 10)
    for _ in range(9):
        opt.step()
        scheduler.step()
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs[2] / lrs[1] == pytest.approx(50) and lrs[1] < 1e-3  # decayed, the ratio kept
    assert tuner.report["lr_groups"][2]["names"] == ["fc.1.weight", "fc.1.bias"]


def test_stages_switch_the_trained_parameters() -> None:
    net = _particlenet(0)
    tuner = FineTuner(
        FinetuneConfig(
            stages=FinetuneConfig.from_dict(
                {"stages": [{"epochs": 1, "train": r"fc\..*"}, {"train": ".*"}]}
            ).stages
        ),
        net,
        "particlenet",
    )
    opt = build_optimizer(tuner.param_groups(1e-2), "adamw", 1e-2)
    tuner.start_epoch(0)
    assert {n for n, p in net.core.named_parameters() if p.requires_grad} == {
        n for n, _ in net.core.named_parameters() if n.startswith("fc.")
    }
    backbone = {k: v.clone() for k, v in net.core.state_dict().items() if not k.startswith("fc.")}
    _steps(net, opt, 2)
    assert all(
        torch.equal(v, net.core.state_dict()[k]) for k, v in backbone.items()
    )  # batch norms in eval mode
    tuner.start_epoch(1)
    assert all(p.requires_grad for p in net.parameters())
    _steps(net, opt, 1)
    running_mean = net.core.edge_convs[1].edge_mlp[1].running_mean
    assert not torch.equal(backbone["edge_convs.1.edge_mlp.1.running_mean"], running_mean)
    assert [s["train"] for s in tuner.schedule(3)] == [[r"fc\..*"], [".*"]]


# ------------------------------------------------------------------ through the trainer and the CLI
def test_train_writes_the_report_and_keeps_frozen_tensors(
    shards: pathlib.Path, trained_run: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    from hepnn_coffea.training.trainer import train

    finetune = {
        "init_from": str(trained_run),
        "exclude": [r"fc\.3\..*"],
        "freeze": [r"input_bn\..*", r"phi\..*"],
        "lr_mult": {r"fc\.3\..*": 10},
        "stages": [{"epochs": 1, "train": r"fc\.3\..*"}, {"train": ".*"}],
    }
    run = tmp_path / "ft"
    train(
        ROOT / "models" / "pfn.yaml",
        shards,
        run,
        progress=False,
        overrides={
            "training": {"epochs": 2, "batch_size": 128, "samples_per_epoch": 256, "tensorboard": False},
            "finetune": finetune,
        },
    )
    report = json.loads((run / REPORT).read_text())
    assert report["init_from"] == str((trained_run / "checkpoints" / "best.pt").resolve())
    assert (
        report["new"] == {"fc.3.bias": "excluded", "fc.3.weight": "excluded"}
        and not report["shape_mismatched"]
    )
    assert report["counts"]["loaded"] == len(report["loaded"]) > 0
    assert [g["lr_mult"] for g in report["lr_groups"]] == [1.0, 10.0]
    assert [(s["first_epoch"], s["last_epoch"]) for s in report["stages"]] == [(1, 1), (2, 2)]
    start = torch.load(trained_run / "checkpoints" / "best.pt", weights_only=True)["model"]
    end = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    for name in report["frozen"]:
        assert torch.equal(start[f"core.{name}"], end[f"core.{name}"]), name
    assert not torch.equal(start["core.fc.0.0.weight"], end["core.fc.0.0.weight"])  # trained in stage 2
    assert yaml.safe_load((run / "config.yaml").read_text())["finetune"]["init_from"] == str(trained_run)


def test_resume_does_not_need_the_initial_checkpoint(
    shards: pathlib.Path, trained_run: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    import shutil

    from hepnn_coffea.training.trainer import train

    copy = tmp_path / "init.pt"
    shutil.copyfile(trained_run / "checkpoints" / "best.pt", copy)
    run, training = (
        tmp_path / "ft",
        {"epochs": 1, "batch_size": 128, "samples_per_epoch": 128, "tensorboard": False},
    )
    train(
        ROOT / "models" / "pfn.yaml",
        shards,
        run,
        progress=False,
        overrides={"training": training, "finetune": {"init_from": str(copy), "freeze": [r"phi\..*"]}},
    )
    copy.unlink()
    result = train(None, None, run, resume=True, progress=False, overrides={"training": {"epochs": 2}})
    assert len(result.history) == 2


def test_cli_init_from(
    shards: pathlib.Path,
    trained_run: pathlib.Path,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hepnn_coffea.cli import main

    base = [
        "train",
        str(ROOT / "models" / "pfn.yaml"),
        "--shards",
        str(shards),
        "--no-progress",
        "--set",
        "training.epochs=1",
        "--set",
        "training.samples_per_epoch=128",
        "--set",
        "training.batch_size=128",
        "--set",
        "training.tensorboard=false",
    ]
    assert main([*base, "-o", str(tmp_path / "a"), "--init-from", str(trained_run)]) == 0
    report = json.loads((tmp_path / "a" / REPORT).read_text())
    assert not report["new"] and report["counts"]["loaded"] == len(report["loaded"])
    assert main([*base, "-o", str(tmp_path / "b"), "--init-from", str(tmp_path / "missing.pt")]) == 2
    assert "finetune.init_from:" in capsys.readouterr().err and not (tmp_path / "b" / "config.yaml").exists()


def test_pretrained_run_holds_the_checkpoint_and_refuses_fresh_tensors(
    shards: pathlib.Path, trained_run: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    from hepnn_coffea.training.pretrained import pretrained_run
    from hepnn_coffea.training.trainer import load_network

    run = pretrained_run(
        ROOT / "models" / "pfn.yaml",
        shards,
        tmp_path / "pre",
        overrides={"finetune": {"init_from": str(trained_run)}},
    )
    original, _ = load_network(trained_run)
    wrapped, _ = load_network(run)
    assert all(
        torch.equal(a, b) for a, b in zip(original.state_dict().values(), wrapped.state_dict().values())
    )
    with pytest.raises(ConfigError, match=r"freshly initialised: fc\.3\.bias \(excluded\)"):
        pretrained_run(
            ROOT / "models" / "pfn.yaml",
            shards,
            tmp_path / "pre2",
            overrides={"finetune": {"init_from": str(trained_run), "exclude": [r"fc\.3\..*"]}},
        )
