"""The public names: every ``__all__`` entry resolves, lazily (no torch for the inference side)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ("hepnn_coffea", "hepnn_coffea.processing", "hepnn_coffea.training", "hepnn_coffea.events",
            "hepnn_coffea.config", "hepnn_coffea.export", "hepnn_coffea.inference", "hepnn_coffea.calo")  # fmt: skip


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, package
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError, match="no_such_name"):
        module.no_such_name  # noqa: B018


def test_stage_functions_are_the_modules_own() -> None:
    import hepnn_coffea
    from hepnn_coffea.evaluation.stages import evaluate, infer
    from hepnn_coffea.processing.preprocess import preprocess

    assert (hepnn_coffea.preprocess, hepnn_coffea.infer, hepnn_coffea.evaluate) == (preprocess, infer, evaluate)
    assert {"preprocess", "train", "export_onnx", "infer", "evaluate", "OnnxTagger"} <= set(dir(hepnn_coffea))


def test_importing_the_package_and_inference_names_loads_no_torch() -> None:
    code = ("import sys, hepnn_coffea; hepnn_coffea.OnnxTagger; hepnn_coffea.preprocess; hepnn_coffea.evaluate; "
            "import hepnn_coffea.training; print('torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
