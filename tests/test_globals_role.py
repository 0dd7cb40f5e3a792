"""The optional ``globals`` role: per-jet values appended to every particle's features."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from hepnn_coffea.config import ConfigError, load_model_config
from hepnn_coffea.nn import build_network
from tests.conftest import ROOT
from tests.test_models import SHAPES, _jets

ZOO = ("pfn", "particlenet", "part", "pcnn")
GLOBALS = {**SHAPES, "jet_features": (6,)}


def _network(name: str) -> torch.nn.Module:
    model = load_model_config(ROOT / "models" / f"{name}.yaml")["model"]
    model["inputs"] = {**model["inputs"], "globals": "jet_features"}
    torch.manual_seed(0)
    return build_network(model, GLOBALS, 3).eval()


def _inputs(net: torch.nn.Module, n: int = 5, p: int = 24, seed: int = 3) -> dict[str, torch.Tensor]:
    jets = _jets(n, p, n_real=[p, 20, 17, 9, 2][:n], seed=seed)
    jets["jet_features"] = torch.randn(n, 6, generator=torch.Generator().manual_seed(seed))
    return jets


@pytest.mark.parametrize("name", ZOO)
def test_globals_equal_per_particle_features_appended(name: str) -> None:
    """A model with globals == the same core fed [features; globals broadcast over particles]."""
    net = _network(name)
    assert net.input_groups[-1] == "jet_features" and net.roles["globals"] == "jet_features"
    jets = _inputs(net)
    with torch.no_grad():
        out = net(*[jets[g] for g in net.input_groups])
        x = jets["pf_features"]
        manual = dict(
            jets, pf_features=torch.cat([x, jets["jet_features"][:, :, None].expand(-1, -1, x.shape[-1])], 1)
        )
        ref = net.core(*[manual[g] for g in net.input_groups[:-1]])
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    # the jet values matter: changing them for jet 0 moves only jet 0's output (the test can fail)
    jets["jet_features"][0] += 2.0
    with torch.no_grad():
        moved = net(*[jets[g] for g in net.input_groups])
    assert (moved[0] - out[0]).abs().max() > 1e-4
    torch.testing.assert_close(moved[1:], out[1:], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ("pfn", "particlenet"))
def test_globals_onnx_parity(name: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    net = _network(name)
    trace, check = _inputs(net, 2, 24, seed=4), _inputs(net, 5, 33, seed=5)
    groups = net.input_groups
    dynamic = {g: ({0: "N", 2: f"n_{g}"} if trace[g].ndim == 3 else {0: "N"}) for g in groups}
    buf = io.BytesIO()
    torch.onnx.export(
        net,
        tuple(trace[g] for g in groups),
        buf,
        input_names=groups,
        output_names=["logits"],
        dynamic_axes={**dynamic, "logits": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {g: check[g].numpy() for g in groups})[0]
    with torch.no_grad():
        expected = net(*[check[g] for g in groups]).numpy()
    assert np.max(np.abs(got - expected)) <= 1e-4


def test_globals_errors_name_the_problem() -> None:
    model = load_model_config(ROOT / "models" / "pfn.yaml")["model"]
    with pytest.raises(ConfigError, match="globls.*globals"):
        build_network({**model, "inputs": {**model["inputs"], "globls": "jet_features"}}, GLOBALS, 2)
    with pytest.raises(ConfigError, match="length-less"):  # a per-particle group cannot be 'globals'
        build_network({**model, "inputs": {**model["inputs"], "globals": "pf_points"}}, GLOBALS, 2)
    with pytest.raises(ConfigError, match="jet_nope"):
        build_network({**model, "inputs": {**model["inputs"], "globals": "jet_nope"}}, GLOBALS, 2)
