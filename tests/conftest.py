"""Shared fixtures: the bundled samples, their shards, a small trained PFN, its ONNX export and scores."""

from __future__ import annotations

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "samples"
SHARED = ROOT.parent / "shared" / "data"
TOPQCD = SHARED / "topqcd"
TOP_KIN = ROOT / "models" / "data" / "top_kin.yaml"

needs_shared = pytest.mark.skipif(not TOPQCD.is_dir(), reason="needs ../shared/data beside the repository")


@pytest.fixture(scope="session")
def fileset_path() -> pathlib.Path:
    return SAMPLES / "fileset.json"


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory, fileset_path: pathlib.Path) -> pathlib.Path:
    """Shards of the bundled samples (Runner, iterative executor, 400-entry chunks)."""
    from hepnn_coffea.processing.preprocess import preprocess

    out = tmp_path_factory.mktemp("shards")
    preprocess(fileset_path, TOP_KIN, out, executor="iterative", chunksize=400)
    return out


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, shards: pathlib.Path) -> pathlib.Path:
    """A PFN trained for 2 epochs on the bundled train split."""
    from hepnn_coffea.training.trainer import train

    run_dir = tmp_path_factory.mktemp("runs") / "pfn"
    train(
        ROOT / "models" / "pfn.yaml",
        shards,
        run_dir,
        overrides={"training": {"epochs": 2, "batch_size": 128}},
        progress=False,
    )
    return run_dir


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory, trained_run: pathlib.Path) -> pathlib.Path:
    from hepnn_coffea.export import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "pfn.onnx"
    export_onnx(trained_run, path)
    return path


@pytest.fixture(scope="session")
def good_scores(onnx_model: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``scores.parquet`` (as a dict of columns) of ``infer`` on the bundled test split, 100-entry chunks."""
    import pyarrow.parquet as pq

    from hepnn_coffea.cli import main as cli
    from tests.helpers.reading import RUN

    out = tmp_path_factory.mktemp("good_infer")
    assert (
        cli(
            [
                "infer",
                str(onnx_model),
                "--fileset",
                str(SAMPLES / "fileset.json"),
                "-o",
                str(out),
                "--split",
                "test",
                *RUN,
            ]
        )
        == 0
    )
    return pq.read_table(out / "scores.parquet").to_pydict()
