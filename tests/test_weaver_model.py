"""A weaver-core ``--export-onnx`` model runs through :class:`OnnxTagger` unchanged.

The fixture ``tests/fixtures/weaver_pfn/`` holds a PFN trained and exported by weaver-core
0.5.3 on the shared top-vs-QCD files, weaver's auto-standardized data config, its
``preprocess.json``, and the scores weaver's own ``--predict`` gave on the bundled test
samples (see the fixture's README.md for the commands).
"""

from __future__ import annotations

import json
import pathlib

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from hepnn_coffea import OnnxTagger
from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.inference.tagger import TaggerError
from hepnn_coffea.inference.weaver import load_weaver_config
from tests.conftest import SAMPLES

FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "weaver_pfn"
ONNX = FIXTURE / "pfn.onnx"
YAML = FIXTURE / "topqcd_kin.auto.yaml"
JSON = FIXTURE / "preprocess.json"
AUC_FLOOR = 0.95  # the fixture model: 0.9592 on the 1,000 bundled test jets (weaver --predict too)


def _jets(sample: str) -> ak.Array:
    with uproot.open(SAMPLES / f"topqcd_test_{sample}.root") as f:
        return f["tree"].arrays()


def _weaver_scores() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "weaver_scores.npz") as data:
        return {k: data[k] for k in data.files}


def _auc(signal: np.ndarray, background: np.ndarray) -> float:
    """Mann-Whitney AUC: P(score of a signal jet > score of a background jet)."""
    scores = np.concatenate([signal, background])
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return float(
        (ranks[: len(signal)].sum() - len(signal) * (len(signal) + 1) / 2) / (len(signal) * len(background))
    )


def test_fixture_is_a_plain_weaver_export() -> None:
    import onnx

    model = onnx.load(str(ONNX))
    assert ONNX.stat().st_size < 1_000_000
    assert not any(p.key.startswith("hepnn") for p in model.metadata_props)  # no hepnn metadata
    assert [i.name for i in model.graph.input] == ["pf_features", "pf_mask"]  # weaver drops unused inputs
    assert [o.name for o in model.graph.output] == ["softmax"]
    raw = yaml.safe_load(YAML.read_text())
    assert (
        raw["preprocess"]["method"] == "auto"
        and raw["preprocess"]["params"]["part_pt_log"]["center"] != "auto"
    )


@pytest.mark.parametrize("config", [YAML, JSON], ids=["auto_yaml", "preprocess_json"])
def test_scores_equal_weaver_predict(config: pathlib.Path) -> None:
    if config.suffix == ".json":  # preprocess.json has no expressions: take weaver's new_variables
        new_variables = yaml.safe_load(YAML.read_text())["new_variables"]
        config = load_weaver_config(JSON, new_variables=new_variables, pad_mode={"pf_features": "wrap"})
    tagger = OnnxTagger(ONNX, data_config=config)
    assert tagger.output_fields == ["score_jet_isTop", "score_jet_isQCD"]
    assert list(tagger.config.inputs) == ["pf_features", "pf_mask"]
    reference = _weaver_scores()
    for sample in ("top", "qcd"):
        jets = _jets(sample)
        n = len(reference[f"{sample}_event_no"])
        np.testing.assert_array_equal(ak.to_numpy(jets.event_no[:n]), reference[f"{sample}_event_no"])
        scores = tagger(jets[:n])
        ours = np.stack([ak.to_numpy(scores[f]) for f in tagger.output_fields], axis=1)
        diff = np.abs(ours - reference[f"{sample}_scores"])
        assert diff.max() < 1e-5, f"{sample}: max |tagger - weaver --predict| = {diff.max():.2e}"


def test_auc_on_bundled_test_samples() -> None:
    tagger = OnnxTagger(ONNX, data_config=YAML)
    top, qcd = (ak.to_numpy(tagger(_jets(s)).score_jet_isTop) for s in ("top", "qcd"))
    assert np.isfinite(top).all() and np.isfinite(qcd).all()
    assert _auc(top, qcd) > AUC_FLOOR


def test_weaver_yaml_and_json_give_the_same_standardization() -> None:
    from_yaml, from_json = load_weaver_config(YAML), load_weaver_config(JSON)
    assert from_json.label_names == from_yaml.label_names == ["jet_isTop", "jet_isQCD"]
    for group in ("pf_features", "pf_mask"):
        a, b = from_yaml.inputs[group], from_json.inputs[group]
        assert a.var_names == b.var_names and a.length == b.length
        for va, vb in zip(a.vars, b.vars):
            assert (va.center is None) == (vb.center is None)
            if va.center is not None:
                assert (va.center, va.scale, va.min, va.max) == pytest.approx(
                    (vb.center, vb.scale, vb.min, vb.max)
                )


def test_missing_config_and_mismatched_inputs_are_clear_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(TaggerError, match="no embedded hepnn_coffea data config.*data_config="):
        OnnxTagger(ONNX)
    raw = yaml.safe_load(YAML.read_text())
    raw["inputs"]["pf_feats"] = raw["inputs"].pop("pf_features")
    renamed = tmp_path / "renamed.auto.yaml"
    renamed.write_text(yaml.safe_dump(raw))
    with pytest.raises(TaggerError, match=r"model inputs \['pf_features'\] are not input groups"):
        OnnxTagger(ONNX, data_config=renamed)
    raw = yaml.safe_load(YAML.read_text())
    raw["inputs"]["pf_features"]["vars"] = raw["inputs"]["pf_features"]["vars"][:-1]
    short = tmp_path / "short.auto.yaml"
    short.write_text(yaml.safe_dump(raw))
    with pytest.raises(TaggerError, match="has shape .* 6 variables"):
        OnnxTagger(ONNX, data_config=short)
    raw = yaml.safe_load(YAML.read_text())
    del raw["preprocess"]["params"]  # the training YAML, before weaver filled in the standardization
    untrained = tmp_path / "topqcd_kin.yaml"
    untrained.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="auto.yaml"):
        OnnxTagger(ONNX, data_config=untrained)
    broken = tmp_path / "preprocess.json"
    broken.write_text(json.dumps({"input_names": ["pf_features"]}))
    with pytest.raises(ConfigError, match="not a weaver preprocess.json"):
        OnnxTagger(ONNX, data_config=broken)


def test_missing_branch_names_the_branch() -> None:
    tagger = OnnxTagger(ONNX, data_config=YAML)
    jets = _jets("top")[:10]
    with pytest.raises(TaggerError, match="part_energy"):
        tagger(jets[[f for f in jets.fields if f != "part_energy"]])
    assert tagger.columns() == sorted(
        ["jet_energy", "jet_eta", "jet_phi", "jet_pt", "part_energy", "part_px", "part_py", "part_pz"]
    )
