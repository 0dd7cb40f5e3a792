"""Model zoo (parameter counts, padding invariance, ONNX parity, build errors) and model-config
inheritance (optimizers and schedulers: ``test_optim.py``)."""

from __future__ import annotations

import io
import pathlib

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from hepnn_coffea.config import ConfigError, load_model_config
from hepnn_coffea.config.model_config import deep_merge
from hepnn_coffea.nn import ARCHITECTURES, Network, build_network, count_parameters
from hepnn_coffea.nn.particlenet import ParticleNet
from hepnn_coffea.nn.pfn import ParticleFlowNetwork
from tests.conftest import ROOT

SHAPES = {"pf_points": (2, 128), "pf_features": (7, 128), "pf_vectors": (4, 128), "pf_mask": (1, 128)}
ZOO = {name: ROOT / "models" / f"{name}.yaml" for name in ("pfn", "particlenet", "part", "pcnn")}


def _zoo_network(name: str) -> Network:
    return build_network(load_model_config(ZOO[name])["model"], SHAPES, 2)


def _jets(n: int, p: int, n_real: list[int] | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random jets in the data-config layout; jet i has n_real[i] real particles, the rest padding."""
    g = torch.Generator().manual_seed(seed)
    if n_real is None:
        n_real = torch.randint(1, p + 1, (n,), generator=g).tolist()
    mask = torch.zeros(n, 1, p)
    for i, k in enumerate(n_real):
        mask[i, 0, :k] = 1.0
    momentum = 20 * torch.randn(n, 3, p, generator=g)
    energy = torch.sqrt((momentum**2).sum(dim=1, keepdim=True) + 0.14**2)
    return {
        "pf_points": 0.4 * torch.randn(n, 2, p, generator=g),
        "pf_features": torch.randn(n, 7, p, generator=g),
        "pf_vectors": torch.cat([momentum, energy], dim=1) * mask,
        "pf_mask": mask,
    }


def _warm_bn(net: nn.Module, n_batches: int = 3) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics, then switch to eval mode."""
    net.train()
    with torch.no_grad():
        for i in range(n_batches):
            jets = _jets(16, 40, seed=100 + i)
            net(*[jets[g] for g in net.input_groups])
    return net.eval()


# --------------------------------------------------------------------------- parameter counts


def test_pfn_parameter_count_matches_weaver() -> None:
    assert count_parameters(ParticleFlowNetwork(7, 2, use_bn=False)) == 83_842
    assert count_parameters(ParticleFlowNetwork(7, 2, use_bn=True)) == 84_624
    # the documented BN overhead: 2 * (input_dims + sum(phi_sizes))
    assert 84_624 - 83_842 == 2 * (7 + 3 * 128)


def test_particlenet_parameter_count_matches_weaver() -> None:
    assert count_parameters(ParticleNet(7, 2)) == 366_160


def test_zoo_configs_build_expected_sizes() -> None:
    pn = build_network(load_model_config(ROOT / "models/particlenet.yaml")["model"], SHAPES, 2)
    assert isinstance(pn, Network) and isinstance(pn.core, ParticleNet)
    assert pn.input_groups == ["pf_points", "pf_features", "pf_mask"]
    assert count_parameters(pn) == 366_160
    pfn = build_network(load_model_config(ROOT / "models/pfn.yaml")["model"], SHAPES, 2)
    assert isinstance(pfn.core, ParticleFlowNetwork)
    assert pfn.input_groups == ["pf_features", "pf_mask"]
    assert count_parameters(pfn) == 84_624


def test_count_parameters_ignores_frozen() -> None:
    net = ParticleFlowNetwork(7, 2, use_bn=False)
    for p in net.fc.parameters():
        p.requires_grad_(False)
    assert count_parameters(net) == 83_842 - sum(p.numel() for p in net.fc.parameters())


# --------------------------------------------------------------------------- padding invariance


@pytest.mark.parametrize("name", sorted(ZOO))
def test_padding_does_not_change_outputs(name: str) -> None:
    torch.manual_seed(0)
    net = _warm_bn(_zoo_network(name))
    # include jets with fewer real particles than ParticleNet's k = 16
    jets = _jets(6, 48, n_real=[48, 30, 17, 10, 3, 1], seed=1)
    pad = jets["pf_mask"] == 0  # (N, 1, P)
    garbage = {g: t.clone() for g, t in jets.items()}
    for g in ("pf_points", "pf_features"):
        noise = 50.0 * torch.randn_like(garbage[g]) + 7.0
        garbage[g] = torch.where(pad.expand_as(garbage[g]), noise, garbage[g])
    assert not torch.equal(garbage["pf_features"], jets["pf_features"])
    with torch.no_grad():
        ref = net(*[jets[g] for g in net.input_groups])
        out = net(*[garbage[g] for g in net.input_groups])
    assert ref.shape == (6, 2) and torch.isfinite(ref).all()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)

    # ...while changing a *real* particle does change the output (the test can fail)
    real_changed = {g: t.clone() for g, t in jets.items()}
    real_changed["pf_features"][0, :, 0] += 3.0
    real_changed["pf_points"][0, :, 0] += 0.5
    with torch.no_grad():
        moved = net(*[real_changed[g] for g in net.input_groups])
    assert (moved[0] - ref[0]).abs().max() > 1e-4
    torch.testing.assert_close(moved[1:], ref[1:], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- ONNX parity


def _onnx_parity(net: Network, trace: dict[str, torch.Tensor], check: dict[str, torch.Tensor]) -> float:
    """Export with dynamic batch/particle axes, run onnxruntime on ``check``; max abs diff vs torch."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    groups = net.input_groups
    dynamic = {g: {0: "N", 2: f"n_{g}"} for g in groups}
    dynamic["logits"] = {0: "N"}
    buf = io.BytesIO()
    torch.onnx.export(
        net,
        tuple(trace[g] for g in groups),
        buf,
        input_names=groups,
        output_names=["logits"],
        dynamic_axes=dynamic,
        opset_version=17,
        dynamo=False,
    )
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == groups
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {g: check[g].numpy() for g in groups})[0]
    with torch.no_grad():
        expected = net(*[check[g] for g in groups]).numpy()
    assert got.shape == expected.shape
    return float(np.max(np.abs(got - expected)))


#: architectures whose ONNX parity is tested with their own task's inputs elsewhere
PARITY_ELSEWHERE = {
    "mlp": "tests/test_regression.py::test_routed_onnx_matches_each_expert_in_torch",
    "pointnet": "tests/test_per_point.py::test_export_and_jagged_inference_match_torch",
    "hit_clustering": "tests/test_calo_clustering.py",
}


def test_every_architecture_has_an_onnx_parity_test() -> None:
    assert set(ARCHITECTURES) == set(ZOO) | set(PARITY_ELSEWHERE)
    for where in PARITY_ELSEWHERE.values():
        path, _, test = where.partition("::")
        assert (ROOT / path).is_file() and test in (ROOT / path).read_text()


@pytest.mark.parametrize("name", sorted(ZOO))
def test_onnx_parity_dynamic_axes(name: str) -> None:
    torch.manual_seed(0)
    net = _warm_bn(_zoo_network(name))
    trace = _jets(2, 24, n_real=[24, 20], seed=5)
    check = _jets(7, 41, n_real=[41, 35, 25, 17, 16, 9, 2], seed=6)
    diff = _onnx_parity(net, trace, check)
    assert diff <= 1e-4, f"{name}: onnxruntime differs from torch by {diff}"


# --------------------------------------------------------------------------- build_network errors


def test_build_network_unknown_model() -> None:
    with pytest.raises(ConfigError, match="transformer"):
        build_network({"name": "transformer", "inputs": {}}, SHAPES, 2)


def test_build_network_missing_role() -> None:
    with pytest.raises(ConfigError, match="mask"):
        build_network({"name": "pfn", "inputs": {"features": "pf_features"}}, SHAPES, 2)
    with pytest.raises(ConfigError, match="points"):
        pn_inputs = {"features": "pf_features", "mask": "pf_mask"}
        build_network({"name": "particlenet", "inputs": pn_inputs}, SHAPES, 2)


def test_build_network_unknown_group() -> None:
    with pytest.raises(ConfigError, match="pf_nope"):
        build_network({"name": "pfn", "inputs": {"features": "pf_nope", "mask": "pf_mask"}}, SHAPES, 2)


def test_build_network_bad_params() -> None:
    with pytest.raises(ConfigError, match="pfn"):
        build_network(
            {
                "name": "pfn",
                "inputs": {"features": "pf_features", "mask": "pf_mask"},
                "params": {"no_such_param": 3},
            },
            SHAPES,
            2,
        )


def test_build_network_name_is_case_insensitive_and_uses_shapes() -> None:
    inputs = {"features": "pf_features", "mask": "pf_mask"}
    cfg = {"name": "PFN", "inputs": inputs, "params": {"use_bn": False}}
    net = build_network(cfg, {"pf_features": (5, 30), "pf_mask": (1, 30)}, 3)
    assert net.core.input_dims == 5 and net.core.num_classes == 3
    with torch.no_grad():
        assert net(torch.randn(4, 5, 30), torch.ones(4, 1, 30)).shape == (4, 3)


# --------------------------------------------------------------------------- model-config inheritance


def _write(path: pathlib.Path, data: dict) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_extends_deep_merge(tmp_path: pathlib.Path) -> None:
    _write(
        tmp_path / "base.yaml",
        {
            "task": "classification",
            "data_config": "data/base_dc.yaml",
            "model": {"name": "pfn", "params": {"phi_sizes": [8, 8], "use_bn": True}},
            "training": {"epochs": 10, "lr": 0.01, "optimizer": "ranger", "batch_size": 512},
        },
    )
    child = _write(
        tmp_path / "child.yaml",
        {"extends": "base", "model": {"params": {"use_bn": False}}, "training": {"lr": 0.001}},
    )
    cfg = load_model_config(child)
    assert "extends" not in cfg
    assert cfg["training"] == {"epochs": 10, "lr": 0.001, "optimizer": "ranger", "batch_size": 512}
    assert cfg["model"] == {"name": "pfn", "params": {"phi_sizes": [8, 8], "use_bn": False}}
    assert cfg["task"] == "classification"
    # the base declared data_config relative to itself
    assert cfg["data_config"] == str((tmp_path / "data" / "base_dc.yaml").resolve())
    assert pathlib.Path(cfg["data_config"]).is_absolute()


def test_extends_from_subfolder_and_child_data_config(tmp_path: pathlib.Path) -> None:
    _write(tmp_path / "base.yaml", {"data_config": "dc.yaml", "training": {"epochs": 1}})
    child = _write(
        tmp_path / "sub" / "child.yaml", {"extends": "../base.yaml", "data_config": "local/dc.yaml"}
    )
    cfg = load_model_config(child)
    assert cfg["data_config"] == str((tmp_path / "sub" / "local" / "dc.yaml").resolve())
    assert cfg["training"] == {"epochs": 1}
    grandchild = _write(tmp_path / "sub" / "gc.yml", {"extends": "child", "training": {"seed": 3}})
    cfg = load_model_config(grandchild)
    assert cfg["training"] == {"epochs": 1, "seed": 3}
    assert cfg["data_config"] == str((tmp_path / "sub" / "local" / "dc.yaml").resolve())


def test_extends_circular(tmp_path: pathlib.Path) -> None:
    _write(tmp_path / "a.yaml", {"extends": "b", "training": {"epochs": 1}})
    _write(tmp_path / "b.yaml", {"extends": "a", "training": {"lr": 1.0}})
    with pytest.raises(ConfigError, match="circular"):
        load_model_config(tmp_path / "a.yaml")
    _write(tmp_path / "self.yaml", {"extends": "self"})
    with pytest.raises(ConfigError, match="circular"):
        load_model_config(tmp_path / "self.yaml")


def test_extends_missing_parent(tmp_path: pathlib.Path) -> None:
    _write(tmp_path / "c.yaml", {"extends": "nowhere"})
    with pytest.raises(ConfigError, match="nowhere"):
        load_model_config(tmp_path / "c.yaml")


def test_bundled_model_configs_resolve() -> None:
    for name, path in ZOO.items():
        cfg = load_model_config(path)
        assert cfg["model"]["name"] == name
        assert cfg["training"]["optimizer"] == "ranger"  # from base.yaml
        assert cfg["training"]["scheduler"] == "flat+decay"
        assert cfg["data_config"] == str((ROOT / "models" / "data" / "top_kin.yaml").resolve())
        assert pathlib.Path(cfg["data_config"]).is_file()
    assert load_model_config(ZOO["pfn"])["training"]["batch_size"] == 512
    assert load_model_config(ZOO["particlenet"])["training"]["batch_size"] == 128


def test_deep_merge_does_not_mutate_inputs() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    over = {"a": {"b": 2}, "e": {"f": 1}}
    out = deep_merge(base, over)
    assert out == {"a": {"b": 2, "c": [1, 2]}, "d": 1, "e": {"f": 1}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    out["a"]["c"].append(3)
    out["e"]["f"] = 9
    assert base["a"]["c"] == [1, 2] and over["e"]["f"] == 1
