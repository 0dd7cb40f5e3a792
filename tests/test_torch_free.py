"""Inference never imports torch: a dask worker that runs an ONNX model loads only onnxruntime.

Each check runs in a fresh interpreter (this test process has torch loaded already).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "samples"
FIXTURE = ROOT / "tests" / "fixtures" / "weaver_pfn"


def _python(code: str, timeout: int = 300) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON line last."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_onnx_tagger_scores_the_bundled_samples_without_torch() -> None:
    result = _python(f"""
        import json, sys
        import awkward as ak, numpy as np, uproot
        from hepnn_coffea import OnnxTagger
        tagger = OnnxTagger(
            {str(FIXTURE / "pfn.onnx")!r}, data_config={str(FIXTURE / "topqcd_kin.auto.yaml")!r}
        )
        n = 0
        for sample in ("top", "qcd"):
            with uproot.open({str(SAMPLES)!r} + f"/topqcd_test_{{sample}}.root") as f:
                scores = tagger(f["tree"].arrays())
            assert np.isfinite(ak.to_numpy(scores["score_jet_isTop"])).all()
            n += len(scores)
        print(json.dumps({{"jets": n, "torch": "torch" in sys.modules}}))
    """)
    assert result == {"jets": 1000, "torch": False}


def test_hepnn_infer_does_not_import_torch(onnx_model: pathlib.Path, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    result = _python(f"""
        import json, sys
        # the errors module and the infer stage, as 'hepnn infer' loads them
        from hepnn_coffea.cli import main
        rc = main(["infer", {str(onnx_model)!r}, "--fileset", {str(SAMPLES / "fileset.json")!r},
                   "-o", {str(out)!r}, "--split", "test", "--executor", "iterative"])
        print(json.dumps({{"rc": rc, "torch": "torch" in sys.modules}}))
    """)
    assert result == {"rc": 0, "torch": False}
    assert (out / "scores.parquet").is_file()


def test_training_modules_say_which_extra_to_install() -> None:
    result = _python("""
        import json, sys
        sys.modules["torch"] = None  # as if the 'train' extra were not installed
        messages = {}
        for name in ("hepnn_coffea.training.trainer", "hepnn_coffea.export.onnx_export", "hepnn_coffea.nn"):
            try:
                __import__(name)
            except ImportError as err:
                messages[name] = str(err)
        from hepnn_coffea.export import read_metadata  # torch-free parts still import
        from hepnn_coffea.evaluation.stages import infer
        from hepnn_coffea.processing.preprocess import preprocess
        print(json.dumps(messages))
    """)
    assert set(result) == {
        "hepnn_coffea.training.trainer",
        "hepnn_coffea.export.onnx_export",
        "hepnn_coffea.nn",
    }
    for message in result.values():
        assert "pip install 'hepnn_coffea[train]'" in message and "'torch' is not installed" in message
