"""Histogram reweighting with weaver-core's ``weights:`` semantics: parsing, histograms, sampling,
preprocess + train."""

from __future__ import annotations

import copy
import json
import pathlib

import numpy as np
import pytest
import yaml

from hepnn_coffea.config.data_config import ConfigError, DataConfig
from hepnn_coffea.config.weights_config import WeightsConfig
from hepnn_coffea.processing.shards import OBSERVER_PREFIX
from hepnn_coffea.training.reweight import compute_reweight_hists, reweight_details, reweight_factors
from hepnn_coffea.training.sampling import HistogramSampler, histogram_sampler
from tests.conftest import ROOT, TOP_KIN

LABELS = ["top", "w", "qcd"]
PT_BINS = [300.0, 400.0, 500.0, 600.0, 800.0, 1000.0]
MSD_BINS = [0.0, 40.0, 80.0, 120.0, 160.0, 200.0, 250.0]


def _wcfg(method: str = "flat", **extra: object) -> WeightsConfig:
    raw = {
        "reweight_method": method,
        "reweight_vars": {"pt": PT_BINS, "msd": MSD_BINS},
        "reweight_classes": list(LABELS),
        **extra,
    }
    cfg = WeightsConfig.from_dict(raw, "test.yaml", LABELS)
    assert cfg is not None
    return cfg


@pytest.fixture(scope="module")
def sample() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Three classes with different (pT, msoftdrop) spectra; every bin well filled, some rows outside."""
    rng = np.random.default_rng(1)
    pts, msds, labels = [], [], []
    for label, (n, pt_scale, msd_peak, msd_width) in enumerate(
        [(40_000, 250, 175, 25), (30_000, 400, 85, 12), (60_000, 150, 30, 30)]
    ):
        flat = rng.random(n) < 0.35
        pts.append(np.where(flat, rng.uniform(300, 1000, n), 300 + rng.exponential(pt_scale, n)))
        msds.append(
            np.where(rng.random(n) < 0.35, rng.uniform(0, 250, n), rng.normal(msd_peak, msd_width, n))
        )
        labels.append(np.full(n, label))
    return {"pt": np.concatenate(pts), "msd": np.concatenate(msds)}, np.concatenate(labels)


def _draw(
    values: dict[str, np.ndarray], labels: np.ndarray, cfg: WeightsConfig, size: int = 300_000, seed: int = 3
) -> np.ndarray:
    hists = compute_reweight_hists(values, labels, LABELS, cfg)
    factors = reweight_factors(values, labels, LABELS, cfg, hists)
    return HistogramSampler.build(np.arange(len(labels)), factors).epoch_index([seed, 0], size)


def _hist(values: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    return np.histogram2d(values["pt"][rows], values["msd"][rows], bins=[PT_BINS, MSD_BINS])[0]


def _chi2_flat(counts: np.ndarray) -> float:
    """chi2/ndf of the bin counts against their mean."""
    mean = counts.mean()
    return float(((counts - mean) ** 2 / mean).sum() / (counts.size - 1))


def _chi2_two(a: np.ndarray, b: np.ndarray) -> float:
    """chi2/ndf of two histograms' shapes (normalised)."""
    na, nb = a.sum(), b.sum()
    ok = (a + b) > 0
    chi2 = ((a / na - b / nb) ** 2 / (a / na**2 + b / nb**2))[ok].sum()
    return float(chi2 / (ok.sum() - 1))


# ----------------------------------------------------------------------------- algorithm


def test_hand_computed_weaver_factors() -> None:
    """weaver-core's WeightMaker on 2x1 bins: A = [10, 30], B = [20, 20] entries."""
    x = np.array([0.5] * 10 + [1.5] * 30 + [0.5] * 20 + [1.5] * 20)
    values, labels = {"x": x, "y": np.full(80, 0.5)}, np.array([0] * 40 + [1] * 40)
    raw = {
        "reweight_vars": {"x": [0, 1, 2], "y": [0, 1]},
        "reweight_classes": ["A", "B"],
        "reweight_threshold": 0,
    }
    flat = WeightsConfig.from_dict({"reweight_method": "flat", **raw}, "t", ["A", "B"])
    hists = compute_reweight_hists(values, labels, ["A", "B"], flat)
    # flat: w = clip(min/h, 0, 1); events A 20, B 40; x 0.9 * min(events) / events
    np.testing.assert_allclose(hists["A"], [[0.9], [0.3]])
    np.testing.assert_allclose(hists["B"], [[0.45], [0.45]])
    ref = WeightsConfig.from_dict({"reweight_method": "ref", **raw}, "t", ["A", "B"])
    hists = compute_reweight_hists(values, labels, ["A", "B"], ref)
    # ref: A is the reference; B: ratio [0.5, 1.5] / 1.5
    np.testing.assert_allclose(hists["A"], [[0.6], [0.6]])
    np.testing.assert_allclose(hists["B"], [[0.3], [0.9]])


@pytest.mark.parametrize("threshold", [0, 10])
def test_flat_makes_every_class_flat(sample, threshold: float) -> None:
    values, labels = sample
    cfg = _wcfg("flat", reweight_threshold=threshold)
    rows = _draw(values, labels, cfg)
    hists = compute_reweight_hists(values, labels, LABELS, cfg)
    for c, name in enumerate(LABELS):
        drawn = _hist(values, rows[labels[rows] == c])
        raw = _hist(values, np.flatnonzero(labels == c))
        level = raw * np.asarray(
            hists[name]
        )  # expected draws: the same in every bin cut down to the reference
        cut = level > level.max() * (1 - 1e-9)  # (threshold 0: all bins; else the sparsest ones keep fewer)
        assert cut.sum() >= (raw.size if threshold == 0 else 0.8 * raw.size)
        assert _chi2_flat(drawn[cut]) < 2.0, name
        assert _chi2_flat(raw[cut] * len(rows) / len(labels)) > 20, (
            name
        )  # the un-reweighted sample is not flat


def test_ref_matches_the_reference_class(sample) -> None:
    values, labels = sample
    cfg = _wcfg("ref", reweight_threshold=0)
    rows = _draw(values, labels, cfg)
    reference = _hist(values, rows[labels[rows] == 0])
    for c in (1, 2):
        drawn = _hist(values, rows[labels[rows] == c])
        assert _chi2_two(drawn, reference) < 2.0, LABELS[c]
        assert _chi2_two(_hist(values, np.flatnonzero(labels == c)), reference) > 20, LABELS[c]


def test_ref_default_threshold_caps_the_largest_ratios(sample) -> None:
    values, labels = sample
    hists = compute_reweight_hists(values, labels, LABELS, _wcfg("ref"))
    assert np.ptp(hists["top"]) == 0  # the reference keeps its shape
    for name in LABELS[1:]:  # ratios above their 90th percentile are capped (about 10% of the bins)
        h = np.asarray(hists[name])
        assert (h > 0).all() and 0 < np.isclose(h, h.max()).mean() < 0.2


@pytest.mark.parametrize(
    ("class_weights", "method"), [(None, "flat"), ([1.0, 2.0, 3.0], "flat"), ([3.0, 1.0, 1.0], "ref")]
)
def test_class_weights_set_the_class_fractions(sample, class_weights, method) -> None:
    values, labels = sample
    cfg = _wcfg(method, **({"class_weights": class_weights} if class_weights else {}))
    rows = _draw(values, labels, cfg)
    expected = np.asarray(class_weights or [1, 1, 1], float)
    fractions = np.bincount(labels[rows], minlength=3) / len(rows)
    np.testing.assert_allclose(fractions, expected / expected.sum(), atol=0.01)
    details = reweight_details(values, labels, LABELS, cfg)  # weaver: sum(raw * w) per class = 0.9 * min * cw
    events = np.array([np.sum(details.raw_counts[n] * details.hists[n]) for n in LABELS])
    np.testing.assert_allclose(events / events.sum(), expected / expected.sum(), rtol=1e-9)


def test_under_overflow(sample) -> None:
    values, labels = sample
    inside = (
        (values["pt"] >= PT_BINS[0])
        & (values["pt"] <= PT_BINS[-1])
        & (values["msd"] >= MSD_BINS[0])
        & (values["msd"] <= MSD_BINS[-1])
    )
    assert 0 < (~inside).sum() < len(labels) // 2
    discard = _wcfg("flat")
    details = reweight_details(values, labels, LABELS, discard)
    assert details.entries_used == inside.sum()
    factors = reweight_factors(values, labels, LABELS, discard, details.hists)
    assert (factors[~inside] == 0).all() and (factors[inside] > 0).all()

    keep = _wcfg("flat", reweight_discard_under_overflow=False)
    details = reweight_details(values, labels, LABELS, keep)
    assert details.entries_used == len(labels)  # clipped into the edge bins
    factors = reweight_factors(values, labels, LABELS, keep, details.hists)
    assert (factors > 0).all()
    clipped = {"pt": np.clip(values["pt"], 300, 1000), "msd": np.clip(values["msd"], 0, 250)}
    np.testing.assert_array_equal(factors, reweight_factors(clipped, labels, LABELS, keep, details.hists))

    nan = {k: v.copy() for k, v in values.items()}
    nan["msd"][:5] = np.nan
    assert (reweight_factors(nan, labels, LABELS, keep, details.hists)[:5] == 0).all()


def test_classes_outside_reweight_classes_get_zero(sample) -> None:
    values, labels = sample
    cfg = WeightsConfig.from_dict(
        {
            "reweight_method": "flat",
            "reweight_vars": {"pt": PT_BINS, "msd": MSD_BINS},
            "reweight_classes": ["top", "qcd"],
        },
        "t",
        LABELS,
    )
    hists = compute_reweight_hists(values, labels, LABELS, cfg)
    assert set(hists) == {"top", "qcd"}
    factors = reweight_factors(values, labels, LABELS, cfg, hists)
    assert (factors[labels == 1] == 0).all()


def test_base_weight_scales_the_factors(sample) -> None:
    values, labels = sample
    cfg = _wcfg("flat", reweight_basewgt="genWeight * 2")
    base = np.random.default_rng(0).uniform(0.5, 1.5, len(labels))
    details = reweight_details(values, labels, LABELS, cfg, base)
    factors = reweight_factors(values, labels, LABELS, cfg, details.hists, base_weights=base)
    assert np.percentile(factors, 90) == pytest.approx(
        1.0
    )  # weaver: divided by the (100 - threshold) percentile
    np.testing.assert_allclose(
        details.weighted_counts["top"].sum(), base[labels == 0][factors[labels == 0] > 0].sum()
    )


# ----------------------------------------------------------------------------- config


def _raw_top_kin(weights: object) -> dict:
    raw = yaml.safe_load(TOP_KIN.read_text())
    raw["weights"] = weights
    return raw


REWEIGHT = {
    "reweight_method": "flat",
    "reweight_vars": {"jet_pt": [550, 575, 600, 625, 650], "jet_sdmass": [0, 50, 100, 150, 200, 250]},
    "reweight_classes": ["jet_isTop", "jet_isQCD"],
}


def test_config_parses_and_adds_observers() -> None:
    weights = copy.deepcopy(REWEIGHT)
    weights["reweight_vars"] = {"jet_energy": [0, 1000, 2000], "jet_sdmass": [0, 100, 300]}
    weights.update(reweight_basewgt="jet_pt / 500", weight_branches=["ignored"])
    cfg = DataConfig.from_dict(_raw_top_kin(weights), source="kin.yaml")
    wc = cfg.weights_config
    assert wc.is_reweighting and wc.reweight_threshold == 10 and wc.reweight_discard_under_overflow is True
    assert wc.class_weights == (1.0, 1.0) and wc.var_names == ("jet_energy", "jet_sdmass")
    assert cfg.observers[-2:] == ["jet_energy", "_basewgt_"] and cfg.observers.count("jet_sdmass") == 1
    assert cfg.new_variables["_basewgt_"] == "jet_pt / 500"
    assert (
        "jet_energy" in cfg.variables() and cfg.weight_branches == []
    )  # no precomputed weight in reweight mode
    again = DataConfig.from_dict(yaml.safe_load(cfg.to_yaml()), source="again.yaml")
    assert again.observers == cfg.observers and again.to_dict() == cfg.to_dict()

    pre = DataConfig.from_dict(
        _raw_top_kin(
            {"use_precomputed_weights": True, "weight_branches": ["jet_pt"], "reweight_method": "flat"}
        ),
        source="pre.yaml",
    )
    assert pre.weight_branches == ["jet_pt"] and not pre.weights_config.is_reweighting
    assert "_basewgt_" not in pre.observers


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"reweight_foo": 1}, "reweight_foo"),
        ({"reweight_threshold": "ten"}, "reweight_threshold"),
        ({"reweight_threshold": 150}, "reweight_threshold"),
        ({"reweight_discard_under_overflow": "yes"}, "reweight_discard_under_overflow"),
        ({"use_precomputed_weights": "no"}, "use_precomputed_weights"),
        ({"reweight_vars": {"jet_pt": [], "jet_sdmass": [0, 100]}}, "reweight_vars.jet_pt"),
        ({"reweight_vars": {"jet_pt": None, "jet_sdmass": [0, 100]}}, "reweight_vars.jet_pt"),
        ({"reweight_vars": {"jet_pt": [1, 3, 2], "jet_sdmass": [0, 100]}}, "reweight_vars.jet_pt"),
        ({"reweight_vars": {"jet_pt": [1, 2]}}, "reweight_vars"),
        ({"reweight_classes": ["jet_isTop", "jet_isW"]}, "reweight_classes"),
        ({"reweight_classes": "jet_isW"}, "reweight_classes"),
        ({"class_weights": [1.0]}, "class_weights"),
        ({"class_weights": [1.0, "a"]}, "class_weights"),
        ({"reweight_method": "equal"}, "reweight_method"),
        ({"reweight_method": None}, "reweight_method"),
        ({"reweight_basewgt": "__import__('os')"}, "reweight_basewgt"),
        ({"reweight_hists": {"jet_isTop": [[1.0]]}}, "reweight_hists"),
        ({"use_precomputed_weights": True}, "weight_branches"),
    ],
)
def test_bad_weights_config(change: dict, key: str) -> None:
    weights = {**copy.deepcopy(REWEIGHT), **change}
    with pytest.raises(ConfigError, match=rf"bad\.yaml: weights.*{key}"):
        DataConfig.from_dict(_raw_top_kin(weights), source="bad.yaml")


def test_reweighting_needs_class_labels() -> None:
    raw = _raw_top_kin(copy.deepcopy(REWEIGHT))
    raw["labels"] = {"type": "custom", "value": {"pt": "jet_pt"}}
    with pytest.raises(ConfigError, match="reweight_method.*labels.type simple"):
        DataConfig.from_dict(raw, source="reg.yaml")


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def reweighted_shards(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    from hepnn_coffea.processing.preprocess import preprocess

    folder = tmp_path_factory.mktemp("reweight")
    config = folder / "top_kin_reweight.yaml"
    config.write_text(yaml.safe_dump(_raw_top_kin(copy.deepcopy(REWEIGHT)), sort_keys=False))
    out = folder / "shards"
    preprocess(ROOT / "tests" / "samples" / "fileset.json", config, out, executor="iterative", chunksize=1000)
    return out


def test_preprocess_writes_reweight_hists(reweighted_shards: pathlib.Path) -> None:
    out = reweighted_shards
    written = yaml.safe_load((out / "data_config.yaml").read_text())
    hists = written["weights"]["reweight_hists"]
    assert set(hists) == {"jet_isTop", "jet_isQCD"} and np.asarray(hists["jet_isTop"]).shape == (4, 5)
    config = DataConfig.from_yaml(out / "data_config.yaml")  # re-parses
    assert config.weights_config.reweight_hists is not None
    summary = json.loads((out / "reweight_hists.json").read_text())
    assert summary["method"] == "flat" and summary["vars"]["jet_pt"] == [550, 575, 600, 625, 650]
    assert summary["entries_total"] == 2000 and 0 < summary["entries_used"] <= 2000
    assert sum(np.sum(v) for v in summary["raw_counts"].values()) == summary["entries_used"]
    assert summary["expected_class_fractions"]["jet_isTop"] == pytest.approx(0.5)
    np.testing.assert_allclose(summary["hists"]["jet_isQCD"], hists["jet_isQCD"])

    from hepnn_coffea.training.dataset import ShardDataset

    train = ShardDataset(out, "train")
    assert OBSERVER_PREFIX + "jet_sdmass" in train.fields
    sampler = histogram_sampler(train)
    assert sampler is not None
    assert sampler.zero_rows == sum(summary["rows_factor_zero"].values()) == 2000 - summary["entries_used"]
    labels = train.arrays(["label"])["label"]
    rows = sampler.epoch_index([0, 0], 20_000)
    assert abs((labels[rows] == 0).mean() - 0.5) < 0.02
    assert (
        histogram_sampler(ShardDataset(out, "val")) is not None
    )  # the config is shared; the trainer samples train only


def test_train_with_reweighting(reweighted_shards: pathlib.Path, tmp_path: pathlib.Path) -> None:
    import torch

    from hepnn_coffea.training.trainer import train

    n_threads = torch.get_num_threads()
    overrides = {
        "model": {"params": {"phi_sizes": [16], "f_sizes": [16]}},
        "training": {"epochs": 1, "batch_size": 128, "num_threads": 1, "tensorboard": False},
    }
    try:
        result = train(
            ROOT / "models" / "pfn.yaml",
            reweighted_shards,
            tmp_path / "run",
            overrides=overrides,
            progress=False,
        )
    finally:
        torch.set_num_threads(n_threads)
    assert len(result.history) == 1 and np.isfinite(result.history[0]["train_loss"])
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["histogram_reweight"]["rows"] == 2000 and prov["histogram_reweight"]["rows_factor_zero"] > 0
    assert "reweight_hists" in yaml.safe_load((tmp_path / "run" / "data_config.yaml").read_text())["weights"]
