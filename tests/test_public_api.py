"""The public names: every ``__all__`` entry resolves, lazily (no torch for the inference side)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types

import pytest

#: subpackages whose names never need torch (a dask worker that runs an ONNX model imports them)
CORE = (
    "hepnn_coffea.config",
    "hepnn_coffea.features",
    "hepnn_coffea.export",
    "hepnn_coffea.inference",
    "hepnn_coffea.events",
    "hepnn_coffea.processing",
    "hepnn_coffea.evaluation",
    "hepnn_coffea.plotting",
)
PACKAGES = ("hepnn_coffea", *CORE, "hepnn_coffea.training", "hepnn_coffea.nn", "hepnn_coffea.calo")
#: the public names that need the 'train' extra (torch); every other one of CORE and the top level is
#: torch-free
TORCH_NAMES = {
    "hepnn_coffea": {"train", "export_onnx", "load_network"},
    "hepnn_coffea.export": {"export_onnx"},
}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, package
    assert len(set(module.__all__)) == len(module.__all__), f"{package}.__all__ has duplicates"
    for name in module.__all__:
        value = getattr(module, name)
        assert value is not None, f"{package}.{name}"
        assert not isinstance(value, types.ModuleType), (
            f"{package}.{name} is a module, not the exported object"
        )
    assert set(module.__all__) - {"__version__"} <= set(dir(module)), package
    with pytest.raises(AttributeError, match="no_such_name"):
        module.no_such_name  # noqa: B018


def test_stage_functions_are_the_modules_own() -> None:
    import hepnn_coffea
    from hepnn_coffea.evaluation.stages import evaluate, infer
    from hepnn_coffea.processing.preprocess import preprocess

    assert (hepnn_coffea.preprocess, hepnn_coffea.infer, hepnn_coffea.evaluate) == (
        preprocess,
        infer,
        evaluate,
    )
    assert {"preprocess", "train", "export_onnx", "infer", "evaluate", "OnnxTagger"} <= set(dir(hepnn_coffea))


def test_a_name_shared_with_a_submodule_stays_the_function() -> None:
    """``processing.preprocess`` is a function and a submodule: importing the submodule first must not
    rebind it."""
    code = (
        "import importlib; from hepnn_coffea.processing.preprocess import build_manifest; "
        "import hepnn_coffea.processing as p; from hepnn_coffea.processing import preprocess; "
        "m = importlib.import_module('hepnn_coffea.processing.preprocess'); "
        "print(callable(p.preprocess) and p.preprocess is preprocess is m.preprocess is p.preprocess)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out.stderr


def test_importing_the_package_and_inference_names_loads_no_torch() -> None:
    code = (
        "import sys, hepnn_coffea; hepnn_coffea.OnnxTagger; hepnn_coffea.preprocess; hepnn_coffea.evaluate; "
        "import hepnn_coffea.training, hepnn_coffea.export; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_the_core_public_names_load_no_torch() -> None:
    """Resolving every torch-free public name of the top level and the core subpackages loads no torch."""
    code = f"""
import importlib, json, sys
torch_names = {json.dumps({k: sorted(v) for k, v in TORCH_NAMES.items()})}
first = {{}}
for package in {json.dumps(["hepnn_coffea", *CORE])}:
    module = importlib.import_module(package)
    for name in module.__all__:
        if name not in torch_names.get(package, []):
            getattr(module, name)
            if "torch" in sys.modules and not first:
                first = {{"package": package, "name": name}}
print(json.dumps(first))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}, "this public name imports torch"
