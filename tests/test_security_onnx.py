"""Untrusted ONNX files are checked before onnxruntime opens them: embedded data configs,
metadata keys and types, external-data locations (:mod:`hepnn_coffea.inference.model_check`)."""

from __future__ import annotations

import pathlib
import re
import shutil

import awkward as ak
import numpy as np
import pytest
import yaml

from hepnn_coffea import OnnxTagger
from hepnn_coffea.inference.model_check import META_PREFIX, TASKS, check_onnx_file, parse_metadata
from hepnn_coffea.inference.tagger import TaggerError
from hepnn_coffea.inference.weaver import load_weaver_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "weaver_pfn"
ONNX = FIXTURE / "pfn.onnx"
WEAVER_YAML = FIXTURE / "topqcd_kin.auto.yaml"


def _raw_config() -> dict:
    return load_weaver_config(WEAVER_YAML).to_dict()


# ----------------------------------------------------------------------- ONNX files
def _save_with_metadata(
    tmp: pathlib.Path, metadata: dict[str, str], name: str = "model.onnx"
) -> pathlib.Path:
    import onnx

    model = onnx.load(str(ONNX))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path = tmp / name
    onnx.save_model(model, str(path))
    return path


def test_hostile_embedded_data_config_is_rejected_before_onnxruntime(tmp_path: pathlib.Path) -> None:
    raw = _raw_config()
    raw["new_variables"]["part_evil"] = (
        f"part_px * 0 + np.savetxt('{tmp_path}/evil.pth', [0], header='import os')"
    )
    path = _save_with_metadata(tmp_path, {META_PREFIX + "data_config": yaml.safe_dump(raw)})
    for make in (lambda: OnnxTagger(path), lambda: OnnxTagger(path, data_config=WEAVER_YAML)):
        with pytest.raises(TaggerError) as info:
            make()
        message = str(info.value)
        assert str(path) in message and "new_variables.part_evil" in message and "'np.savetxt'" in message, (
            message
        )
    from hepnn_coffea.export import read_metadata

    with pytest.raises(TaggerError, match="np.savetxt"):
        read_metadata(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_clean_embedded_data_config_loads(tmp_path: pathlib.Path) -> None:
    path = _save_with_metadata(
        tmp_path,
        {
            META_PREFIX + "data_config": yaml.safe_dump(_raw_config()),
            META_PREFIX + "classes": '["jet_isTop", "jet_isQCD"]',
            META_PREFIX + "task": "classification",
            META_PREFIX + "provenance": '{"model": "pfn"}',
        },
    )
    tagger = OnnxTagger(path)
    assert tagger.classes == ["jet_isTop", "jet_isQCD"] and tagger.metadata["provenance"] == {"model": "pfn"}


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("evil", "x", "unknown metadata key 'hepnn_coffea.evil'"),
        ("classes", '"jet_isTop"', "metadata 'hepnn_coffea.classes' must be a JSON list of strings"),
        ("classes", "[1, 2]", "metadata 'hepnn_coffea.classes' must be a JSON list of strings"),
        ("classes", "not json", "metadata 'hepnn_coffea.classes' is not valid JSON"),
        ("input_groups", '{"a": 1}', "metadata 'hepnn_coffea.input_groups' must be a JSON list of strings"),
        ("task", "hack", "metadata 'hepnn_coffea.task' must be one of"),
        ("provenance", "[1]", "metadata 'hepnn_coffea.provenance' must be a JSON mapping"),
        ("experts", '"x"', "metadata 'hepnn_coffea.experts' must be a JSON mapping"),
        ("data_config", "[1, 2]", "metadata 'hepnn_coffea.data_config' must be a YAML mapping"),
        ("data_config", "a: [unclosed", "metadata 'hepnn_coffea.data_config' is not valid YAML"),
    ],
)
def test_bad_metadata_is_rejected_naming_file_and_key(
    tmp_path: pathlib.Path, key: str, value: str, named: str
) -> None:
    path = _save_with_metadata(tmp_path, {META_PREFIX + key: value})
    with pytest.raises(TaggerError) as info:
        OnnxTagger(path, data_config=WEAVER_YAML)
    assert str(path) in str(info.value) and named in str(info.value), str(info.value)


def test_yaml_alias_bomb_in_metadata_is_rejected(tmp_path: pathlib.Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(
        TaggerError, match=r"model\.onnx: metadata 'hepnn_coffea\.data_config' expands to more than"
    ):
        parse_metadata({META_PREFIX + "data_config": "\n".join(lines)}, "model.onnx")


def test_without_onnx_the_file_check_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    import hepnn_coffea.inference.model_check as model_check

    def missing(module: str) -> None:
        raise ImportError(module)

    monkeypatch.setattr(model_check, "require", missing)
    with pytest.warns(
        model_check.ModelCheckWarning, match="external data references of the model are not checked"
    ):
        assert check_onnx_file(ONNX) == {}


def test_metadata_constants_match_the_exporter_and_trainer() -> None:
    from hepnn_coffea.export.onnx_export import META_PREFIX as EXPORT_PREFIX
    from hepnn_coffea.training.trainer import TASKS as TRAINER_TASKS

    assert META_PREFIX == EXPORT_PREFIX and tuple(TASKS) == tuple(TRAINER_TASKS)


def _external_model(folder: pathlib.Path) -> pathlib.Path:
    import onnx

    folder.mkdir()
    model = onnx.load(str(ONNX))
    path = folder / "model.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    return path


def _relocate(path: pathlib.Path, location: str) -> str:
    """Point the first external tensor of ``path`` at ``location``; returns the tensor's name."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    for entry in tensor.external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save_model(model, str(path))
    return tensor.name


def test_external_data_inside_the_model_folder_loads(tmp_path: pathlib.Path) -> None:
    import uproot

    from tests.conftest import SAMPLES

    path = _external_model(tmp_path / "model")
    assert (tmp_path / "model" / "weights.bin").stat().st_size > 100_000
    with uproot.open(SAMPLES / "topqcd_test_top.root") as f:
        jets = f["tree"].arrays(entry_stop=20)
    ours = OnnxTagger(path, data_config=WEAVER_YAML)(jets)
    reference = OnnxTagger(ONNX, data_config=WEAVER_YAML)(jets)
    np.testing.assert_allclose(
        ak.to_numpy(ours["score_jet_isTop"]), ak.to_numpy(reference["score_jet_isTop"]), rtol=1e-6
    )


@pytest.mark.parametrize(
    ("location", "named"),
    [
        ("../outside.bin", "relative path inside the model's folder"),
        ("{tmp}/outside.bin", "relative path inside the model's folder"),
        ("sub/../../outside.bin", "relative path inside the model's folder"),
        ("link.bin", "outside the model's folder"),
        ("*/_ORT_MEM_ADDR_/*", "relative path inside the model's folder"),
        ("missing.bin", "no such file"),
        ("..\\outside.bin", "not a plain relative path"),
        ("", "not a plain relative path"),
    ],
)
def test_external_data_outside_the_model_folder_is_rejected(
    tmp_path: pathlib.Path, location: str, named: str
) -> None:
    path = _external_model(tmp_path / "model")
    shutil.copy(tmp_path / "model" / "weights.bin", tmp_path / "outside.bin")
    (tmp_path / "model" / "link.bin").symlink_to(tmp_path / "outside.bin")
    tensor = _relocate(path, location.format(tmp=tmp_path))
    with pytest.raises(TaggerError) as info:
        OnnxTagger(path, data_config=WEAVER_YAML)
    message = str(info.value)
    assert str(path) in message and f"initializer '{tensor}'" in message and named in message, message
    with pytest.raises(TaggerError, match=re.escape(f"initializer '{tensor}'")):
        check_onnx_file(path)
