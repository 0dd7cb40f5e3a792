"""Data config parsing (weaver semantics) and its errors."""

from __future__ import annotations

import copy

import pytest
import yaml

from hepnn_coffea.config import ConfigError, DataConfig
from tests.conftest import TOP_KIN


@pytest.fixture()
def raw() -> dict:
    return yaml.safe_load(TOP_KIN.read_text())


def test_top_kin_parses_with_weaver_defaults(raw: dict) -> None:
    cfg = DataConfig.from_dict(raw)
    assert cfg.input_names == ["pf_points", "pf_features", "pf_vectors", "pf_mask"]
    assert all(g.length == 128 for g in cfg.inputs.values())
    spec = cfg.inputs["pf_features"].vars[0]
    assert (spec.name, spec.center, spec.scale, spec.min, spec.max, spec.pad_value) == (
        "part_pt_log",
        1.7,
        0.7,
        -5,
        5,
        0,
    )
    assert cfg.inputs["pf_points"].vars[0].center is None
    assert cfg.label_names == ["jet_isTop", "jet_isQCD"] and cfg.is_classification
    assert "part_px" in cfg.required_branches() and "jet_isTop" not in cfg.required_branches()
    assert set(cfg.required_branches(inputs_only=True)) == {
        "jet_energy",
        "jet_eta",
        "jet_nparticles",
        "jet_phi",
        "jet_pt",
        "part_energy",
        "part_px",
        "part_py",
        "part_pz",
    }


def test_round_trip_and_hash_are_stable(raw: dict) -> None:
    cfg = DataConfig.from_dict(raw)
    again = DataConfig.from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again.to_dict() == cfg.to_dict()
    assert again.config_hash() == cfg.config_hash()
    raw["inputs"]["pf_features"]["vars"][0][1] = 1.8
    assert DataConfig.from_dict(raw).config_hash() != cfg.config_hash()


def test_auto_method_marks_missing_centers_auto(raw: dict) -> None:
    raw["preprocess"]["method"] = "auto"
    raw["inputs"]["pf_features"]["vars"][0] = ["part_pt_log"]
    cfg = DataConfig.from_dict(raw)
    assert cfg.inputs["pf_features"].vars[0].center == "auto" and cfg.needs_auto_standardization
    filled = cfg.with_standardization({"part_pt_log": {"center": 2.0, "scale": 0.5}})
    assert filled.inputs["pf_features"].vars[0].center == 2.0 and not filled.needs_auto_standardization


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["inputs"]["pf_features"].update(length=0), "inputs.pf_features.length"),
        (lambda r: r["inputs"]["pf_features"].update(length=-3), "positive integer"),
        (lambda r: r["inputs"]["pf_mask"].update(pad_mode="reflect"), "pad_mode"),
        (lambda r: r.pop("labels"), "'labels'"),
        (lambda r: r["labels"].update(value=["jet_isTop"]), "labels.value"),
        (lambda r: r["new_variables"].update(part_bad="np.log(part_pt"), "new_variables.part_bad"),
        (lambda r: r["new_variables"].update(part_bad="__import__('os')"), "not allowed"),
        (lambda r: r["new_variables"].update(part_bad="part_pt.__class__"), "not allowed"),
        (lambda r: r["new_variables"].update(part_bad="[x for x in part_pt]"), "not allowed"),
        (lambda r: r["inputs"]["pf_features"]["vars"].append(["part_x", "one"]), "part_x"),
        (lambda r: r.update(inptus={}), "inptus"),
        (lambda r: r["preprocess"].update(method="magic"), "preprocess.method"),
    ],
)
def test_bad_configs_name_the_key(raw: dict, mutate, message: str) -> None:
    bad = copy.deepcopy(raw)
    mutate(bad)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        DataConfig.from_dict(bad, source="cfg.yaml")


def test_unknown_branch_is_reported_with_file(tmp_path, raw: dict, fileset_path) -> None:
    from hepnn_coffea.processing.preprocess import preprocess

    raw["new_variables"]["part_deltaR"] = "part_p4.deltaR(jet_p4) + part_nonexistent"
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"part_nonexistent.*topqcd_train_top\.root"):
        preprocess(fileset_path, path, tmp_path / "out", executor="iterative")


def test_failing_expression_names_expression_and_file(raw: dict) -> None:
    import uproot

    from hepnn_coffea.features import compute_features
    from hepnn_coffea.features.compute import FeatureError
    from tests.conftest import SAMPLES

    raw["new_variables"]["part_pt_log"] = "np.log(part_pt, part_pt, part_pt, part_pt)"
    cfg = DataConfig.from_dict(raw)
    events = uproot.open(SAMPLES / "topqcd_val_qcd.root")["tree"].arrays(
        cfg.required_branches(), entry_stop=10
    )
    with pytest.raises(FeatureError, match=r"'part_pt_log'.*in val_qcd\.root"):
        compute_features(events, cfg, where="val_qcd.root")
