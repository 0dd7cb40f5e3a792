"""Regression configuration and training pieces, no training run: filters, expert splits, bucket
reweighting, the log-cosh loss and per-expert overrides in the zoo configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from hepnn_coffea.config import ConfigError
from hepnn_coffea.config.data_config import DataConfig
from hepnn_coffea.config.model_config import load_model_config, resolve_expert
from hepnn_coffea.features.compute import compute_features
from hepnn_coffea.training.sampling import (
    BucketSampler,
    bucket_edges,
    bucket_probabilities,
    sampler_from_config,
)
from hepnn_coffea.training.targets import LogCoshLoss
from tests.conftest import ROOT
from tests.helpers.regression import REGRESSION, _expected_cutflow, _flat, _top_arrays


def _config(raw: dict | None = None) -> DataConfig:
    """The regression data config with its auto standardization set to identity."""
    config = DataConfig.from_dict(raw or yaml.safe_load(REGRESSION.read_text()), source="test")
    auto = [v.name for g in config.inputs.values() for v in g.vars if v.center == "auto"]
    return config.with_standardization({n: {"center": 0.0, "scale": 1.0} for n in auto})


# ------------------------------------------------------------------ filters
def test_filters_count_what_each_removed_like_numpy() -> None:
    config = _config()
    a = _top_arrays()
    batch = compute_features(a, config, where="train_top")
    keep, removed = _expected_cutflow(a)
    a = _flat(a)
    assert removed["truth_match"] > 0  # the filter does something on these jets
    assert {k: batch.counts[f"filtered_{k}"] for k in removed} == removed
    assert batch.counts["entries_out"] == keep.sum()
    np.testing.assert_array_equal(batch.selected, keep)
    truth_pt = np.hypot(a["aux_truth_px"], a["aux_truth_py"])[keep]
    np.testing.assert_allclose(batch.labels[:, 0], truth_pt, rtol=1e-6)
    np.testing.assert_array_equal(batch.expert, (np.abs(a["jet_eta"][keep]) >= 1.0).astype(int))


def test_composable_filters_first_n_and_any_of() -> None:
    raw = yaml.safe_load(REGRESSION.read_text())
    raw["filters"] = [
        {"first": 600, "name": "first600"},
        {
            "any_of": [{"range": "jet_eta", "max": -0.5}, {"range": "jet_eta", "min": 0.5}],
            "name": "not_central",
        },
        {
            "all_of": [{"expression": "jet_nparticles >= 20"}, {"range": "jet_mass", "min": 100, "max": 250}],
            "name": "massive",
        },
    ]
    config = _config(raw)
    a = _top_arrays()
    batch = compute_features(a, config, entry_start=100)  # this chunk starts at entry 100 of its file
    a = _flat(a)
    first = 100 + np.arange(len(a["jet_pt"])) < 600
    forward = (a["jet_eta"] < -0.5) | (a["jet_eta"] >= 0.5)
    massive = (a["jet_nparticles"] >= 20) & (a["jet_mass"] >= 100) & (a["jet_mass"] < 250)
    keep = (a["label_Tbqq"] == 1) & (a["jet_nparticles"] > 0)
    expected = {}
    for name, mask in (("first600", first), ("not_central", forward), ("massive", massive)):
        expected[name] = int((keep & ~mask).sum())
        keep &= mask
    assert {k: batch.counts[f"filtered_{k}"] for k in expected} == expected
    assert batch.counts["entries_out"] == keep.sum() > 0
    # round trip through the weaver-format mapping keeps the filters
    again = DataConfig.from_dict(config.to_dict(), source="again")
    assert again.filters == config.filters and again.config_hash() == config.config_hash()


@pytest.mark.parametrize(
    "filters, message",
    [
        ([{"range": "jet_pt"}], "needs 'min' and/or 'max'"),
        ([{"range": "jet_pt", "min": 1, "expression": "x"}], "exactly one of"),
        ([{"first": -3}], "non-negative integer"),
        ([{"any_of": []}], "non-empty list"),
        ([{"expression": "__import__('os')"}], r"filters\[0\]"),
        ([{"first": 3, "name": "a"}, {"first": 4, "name": "a"}], "unique"),
    ],
)
def test_bad_filters_are_named(filters, message) -> None:
    raw = yaml.safe_load(REGRESSION.read_text())
    raw["filters"] = filters
    with pytest.raises(ConfigError, match=message):
        DataConfig.from_dict(raw, source="cfg.yaml")


def test_bad_expert_split_is_named() -> None:
    raw = yaml.safe_load(REGRESSION.read_text())
    raw["experts"] = {"variable": "jet_abseta", "bins": [1.0, 0.5]}
    with pytest.raises(ConfigError, match="experts.bins must be finite, strictly increasing"):
        DataConfig.from_dict(raw, source="cfg.yaml")


# --------------------------------------------------------------- reweighting
def test_bucket_sampler_follows_the_target_pdf() -> None:
    from scipy.stats import chisquare

    rng = np.random.default_rng(1)
    values = rng.gamma(4.0, 1.0, 50_000)  # peaked and skewed, like a pT spectrum
    edges = bucket_edges(values, 10, (1.0, 9.0), infinite_bounds=False)
    for pdf, params in (
        ("flat", {}),
        ("normal", {"mean": 5.0, "std": 2.0}),
        ("uniform", {"low": 3.0, "high": 7.0}),
    ):
        probs = bucket_probabilities(edges, pdf, params)
        sampler = BucketSampler.build(np.arange(len(values)), values, edges, probs)
        drawn = values[sampler.epoch_index([0, 1], 20_000)]
        counts = np.histogram(drawn, edges)[0]
        assert counts.sum() == 20_000  # finite bounds: rows outside [1, 9) are never drawn
        nonzero = probs > 0
        assert chisquare(counts[nonzero], 20_000 * probs[nonzero]).pvalue > 1e-3, pdf
        assert counts[~nonzero].sum() == 0
    # without reweighting the same histogram is far from flat
    natural = np.histogram(values[(values >= 1) & (values < 9)][:20_000], edges)[0]
    assert chisquare(natural).pvalue < 1e-10
    # infinite bounds: the outer buckets take the tails; normal probabilities include them
    inf_edges = bucket_edges(values, 10, (1.0, 9.0), infinite_bounds=True)
    assert np.isinf(inf_edges[[0, -1]]).all()
    assert bucket_probabilities(inf_edges, "normal", {"mean": 5, "std": 2}).sum() == pytest.approx(1.0)
    assert BucketSampler.build(np.arange(len(values)), values, inf_edges, np.full(10, 0.1)).outside == 0


def test_sampler_config_errors() -> None:
    targets = np.random.default_rng(0).normal(size=(100, 2))
    with pytest.raises(ConfigError, match="not a regression target"):
        sampler_from_config({"target": "pt"}, np.arange(100), targets, ["a", "b"])
    with pytest.raises(ConfigError, match="needs 'std'"):
        sampler_from_config({"pdf": "normal", "mean": 0}, np.arange(100), targets, ["a", "b"])
    with pytest.raises(ConfigError, match="unknown key"):
        sampler_from_config({"bukets": 3}, np.arange(100), targets, ["a", "b"])


def test_logcosh_matches_its_definition() -> None:
    x = torch.tensor([-30.0, -1.0, 0.0, 0.5, 30.0])
    expected = torch.log(torch.cosh(x.double())).float()
    torch.testing.assert_close(LogCoshLoss()(x, torch.zeros_like(x)), expected)


# ---------------------------------------------------------- expert overrides
def test_expert_overrides_in_the_zoo_configs() -> None:
    cfg = load_model_config(ROOT / "models" / "regression" / "mlp_trigger_reweighted.yaml")
    assert cfg["task"] == "regression" and cfg["training"]["reweight"]["pdf"] == "flat"
    forward = resolve_expert(cfg, "forward", fallback=1)
    assert forward["training"]["batch_size"] == 128 and forward["training"]["epochs"] == 40
    central = resolve_expert(cfg, "central", fallback=0)  # no overrides: the base config
    assert central["training"]["batch_size"] == 256 and central["training"]["epochs"] == 30
    assert central["model"] == {
        "name": "mlp",
        "inputs": {"features": "jet_features"},
        "params": {"hidden": [81], "activation": "tanh"},
    }
