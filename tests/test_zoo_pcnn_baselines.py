"""P-CNN (parameter count, padding invariance, ONNX parity) and the jet-observable baselines."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import SAMPLES, TOP_KIN

BASELINE_OBSERVERS = ["jet_tau1", "jet_tau2", "jet_tau3", "jet_nparticles"]


# ----------------------------------------------------------------------------- P-CNN


def _pcnn(seed: int = 0) -> torch.nn.Module:
    """A P-CNN in eval mode with randomised batch-norm statistics and affine parameters."""
    from hepnn_coffea.nn.pcnn import ParticleCNN

    torch.manual_seed(seed)
    model = ParticleCNN(7, 2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.5)
    return model.eval()


def _jets(n_real: list[int], length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random jets: ``n_real[i]`` real particles first, then padded slots holding garbage."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(n_real), 7, length, generator=g) * 3.0
    mask = torch.zeros(len(n_real), 1, length)
    for i, n in enumerate(n_real):
        mask[i, 0, :n] = 1.0
    return feats, mask


def test_pcnn_parameter_count() -> None:
    from hepnn_coffea.nn import count_parameters
    from hepnn_coffea.nn.pcnn import REFERENCE_NUM_PARAMS, ParticleCNN

    n = count_parameters(ParticleCNN(7, 2))
    # Same layers as jet-universe/particle_transformer networks/example_PCNN.py ResNet.
    assert n == REFERENCE_NUM_PARAMS[(7, 2)] == 349_456
    # ParT paper (arXiv:2202.03772, Table 3): P-CNN has 354k parameters on JetClass (17 features, 10 classes).
    assert count_parameters(ParticleCNN(17, 10)) == 354_540
    assert abs(n - 354_540) / 354_540 < 0.02


def test_pcnn_padding_invariance() -> None:
    model = _pcnn()
    n_real = [1, 2, 5, 13, 20, 33]
    feats, mask = _jets(n_real, 40, seed=1)
    more, more_mask = _jets(n_real, 71, seed=2)
    more[:, :, :40] = torch.where(mask.bool(), feats, more[:, :, :40])  # same real particles, other garbage
    with torch.no_grad():
        out = model(feats, mask)
        out_more = model(more, more_mask)
        alone = torch.cat(
            [model(feats[i : i + 1, :, :n], mask[i : i + 1, :, :n]) for i, n in enumerate(n_real)]
        )
    assert out.shape == (len(n_real), 2)
    torch.testing.assert_close(out, out_more, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, alone, rtol=1e-5, atol=1e-5)
    # the garbage would matter without the mask
    with torch.no_grad():
        unmasked = model(feats, torch.ones_like(mask))
    assert not torch.allclose(out[:-1], unmasked[:-1], atol=1e-3)


def test_pcnn_trains() -> None:
    from hepnn_coffea.nn.pcnn import ParticleCNN

    torch.manual_seed(0)
    model = ParticleCNN(7, 2)
    feats, mask = _jets([3, 10, 30, 8], 32, seed=3)
    loss = torch.nn.functional.cross_entropy(model(feats, mask), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    probs = ParticleCNN(7, 2, for_inference=True).eval()(feats, mask)
    torch.testing.assert_close(probs.sum(1), torch.ones(4))


def test_pcnn_onnx_parity(tmp_path: pathlib.Path) -> None:
    import onnxruntime as ort

    model = _pcnn(seed=4)
    feats, mask = _jets([4, 16], 16, seed=5)
    path = tmp_path / "pcnn.onnx"
    torch.onnx.export(
        model,
        (feats, mask),
        str(path),
        input_names=["features", "mask"],
        output_names=["logits"],
        dynamic_axes={"features": {0: "N", 2: "P"}, "mask": {0: "N", 2: "P"}, "logits": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n_real, length in (([1, 7, 50, 64, 33], 64), ([3, 100, 9], 101)):
        x, m = _jets(n_real, length, seed=length)
        got = session.run(None, {"features": x.numpy(), "mask": m.numpy()})[0]
        with torch.no_grad():
            expected = model(x, m).numpy()
        assert got.shape == expected.shape == (len(n_real), 2)
        assert np.max(np.abs(got - expected)) < 1e-4


# ----------------------------------------------------------------------------- baselines


def _config_with_observers(path: pathlib.Path, add: list[str], drop: list[str] = ()) -> pathlib.Path:
    raw = yaml.safe_load(TOP_KIN.read_text())
    raw["observers"] = [o for o in list(raw.get("observers") or []) + add if o not in drop]
    raw["observers"] = list(dict.fromkeys(raw["observers"]))
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def baseline_shards(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Shards of the bundled samples from a data config that has the baseline observers."""
    from hepnn_coffea.processing.preprocess import preprocess

    tmp = tmp_path_factory.mktemp("baseline")
    cfg = _config_with_observers(tmp / "top_kin_obs.yaml", BASELINE_OBSERVERS)
    out = tmp / "shards"
    preprocess(SAMPLES / "fileset.json", cfg, out, executor="iterative", chunksize=400)
    return out


@pytest.mark.parametrize("kind", ["logistic", "gbt"])
def test_baseline_auc(baseline_shards: pathlib.Path, kind: str, tmp_path: pathlib.Path) -> None:
    from hepnn_coffea.evaluation import baselines
    from hepnn_coffea.evaluation.classifier_metrics import WORKING_POINTS

    assert baselines.WORKING_POINTS == WORKING_POINTS
    model = baselines.train_baseline(baseline_shards, kind, seed=0)
    result = baselines.score_baseline(model, baseline_shards, split="test")
    for key in ("auc", "accuracy", "rejection_at_30", "rejection_at_50"):
        assert np.isfinite(result[key]), key
    assert result["auc"] > 0.8
    assert result["accuracy"] > 0.7
    assert result["n_jets"] == len(result["score"]) == len(result["is_signal"]) > 0
    assert 0 < result["n_signal"] < result["n_jets"]
    assert result["roc"].auc == pytest.approx(result["auc"])
    assert np.all((result["score"] >= 0) & (result["score"] <= 1))
    # the signal (class 0) gets higher scores
    assert result["score"][result["is_signal"]].mean() > result["score"][~result["is_signal"]].mean()
    path = baselines.save_baseline(model, tmp_path / f"{kind}.pkl")
    again = baselines.score_baseline(baselines.load_baseline(path), baseline_shards)
    np.testing.assert_array_equal(again["score"], result["score"])


def test_baseline_features() -> None:
    from hepnn_coffea.evaluation.baselines import JET_OBSERVABLES, baseline_features

    cols = {
        "jet_mass": np.array([170.0, 30.0]),
        "jet_sdmass": np.array([160.0, 10.0]),
        "jet_tau1": np.array([0.4, 0.2]),
        "jet_tau2": np.array([0.2, 0.0]),
        "jet_tau3": np.array([0.1, 0.0]),
        "observers/jet_nparticles": np.array([50, 0]),
        "jet_pt": np.array([600.0, 550.0]),
    }
    x = baseline_features(cols)
    assert x.shape == (2, len(JET_OBSERVABLES)) and x.dtype == np.float64
    np.testing.assert_allclose(x[0], [170.0, 160.0, 0.5, 0.5, 50.0, 12.0])
    np.testing.assert_allclose(x[1], [30.0, 10.0, 0.0, 0.0, 0.0, 0.0])  # safe ratios
    del cols["jet_tau3"], cols["observers/jet_nparticles"]
    with pytest.raises(ValueError, match=r"jet_tau3.*jet_nparticles|jet_nparticles.*jet_tau3"):
        baseline_features(cols)
    with pytest.raises(ValueError, match="unknown jet observable"):
        baseline_features(cols, ["nonsense"])
    with pytest.raises(ValueError, match="unknown baseline kind"):
        from hepnn_coffea.evaluation.baselines import make_baseline

        make_baseline("svm")


def test_baseline_missing_observer(tmp_path: pathlib.Path) -> None:
    """Shards lacking an observer: a ValueError naming it (test split only, to stay quick)."""
    from hepnn_coffea.evaluation.baselines import score_baseline, train_baseline
    from hepnn_coffea.processing.preprocess import preprocess

    cfg = _config_with_observers(tmp_path / "no_tau3.yaml", BASELINE_OBSERVERS, drop=["jet_tau3"])
    full = json.loads((SAMPLES / "fileset.json").read_text())
    fileset = {k: v for k, v in full.items() if k.endswith("_test")}
    for dataset in fileset.values():
        dataset["files"] = {str(SAMPLES / f): t for f, t in dataset["files"].items()}
    out = tmp_path / "shards"
    preprocess(fileset, cfg, out, executor="iterative", chunksize=400)
    with pytest.raises(ValueError, match="jet_tau3") as err:
        train_baseline(out, "logistic", split="test")
    assert "jet_tau1" not in str(err.value) and "observers" in str(err.value)
    with pytest.raises(ValueError, match="jet_tau3"):
        score_baseline(object(), out, split="test")
