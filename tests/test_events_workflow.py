"""Event-level NanoAOD workflow on the bundled nanosim cut-outs: rows, split, weights, cutflow, tagger."""

from __future__ import annotations

import json
import pathlib
import warnings

import awkward as ak
import numpy as np
import pytest
import uproot

from hepnn_coffea.cli import main as cli
from hepnn_coffea.config.data_config import DataConfig
from hepnn_coffea.processing.preprocess import preprocess
from hepnn_coffea.processing.shards import open_shard
from hepnn_coffea.training.dataset import ShardDataset

HERE = pathlib.Path(__file__).resolve().parent
SAMPLES = HERE / "samples"
FILESET = SAMPLES / "nanosim_fileset.json"
CONFIG = HERE.parent / "models" / "data" / "nanoaod_fatjet.yaml"
SPLITS = ("train", "val", "test")


def _fileset() -> dict:
    return json.loads(FILESET.read_text())


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("nanosim") / "shards"
    preprocess(FILESET, CONFIG, out, executor="iterative", chunksize=150)
    return out


def _direct(dataset: str) -> dict[str, np.ndarray]:
    """Per selected fat jet, straight from uproot/numpy (no hepnn code)."""
    meta = _fileset()[dataset]
    (file,) = meta["files"]
    t = uproot.open(SAMPLES / file)["Events"]
    a = t.arrays(
        ["FatJet_pt", "FatJet_eta", "FatJet_msoftdrop", "FatJet_nConstituents", "genWeight", "event"]
    )
    sel = (
        (a.FatJet_pt > 300)
        & (abs(a.FatJet_eta) < 2.4)
        & (a.FatJet_msoftdrop > 10)
        & (a.FatJet_msoftdrop < 400)
    )
    scale = meta["metadata"]["xsec"] * 1000.0 / meta["metadata"]["sumw"]
    return {
        "events": len(a),
        "jets": int(ak.sum(ak.num(a.FatJet_pt))),
        "selected": int(ak.sum(sel)),
        "pt": ak.to_numpy(ak.flatten(a.FatJet_pt[sel])),
        "weight": ak.to_numpy(ak.flatten(ak.broadcast_arrays(a.genWeight, a.FatJet_pt)[0][sel])) * scale,
    }


def _rows(shards: pathlib.Path, split: str, sample: str | None = None) -> np.ndarray:
    manifest = json.loads((shards / "manifest.json").read_text())
    parts = [
        open_shard(shards / s["path"]).to_records()
        for name, e in manifest["splits"].get(split, {}).items()
        if sample in (None, name)
        for s in e["shards"]
    ]
    return np.concatenate(parts) if parts else np.zeros(0)


def test_cutflow_reconciles_with_uproot(shards: pathlib.Path) -> None:
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["workflow"] == "events"
    for dataset, flow in manifest["cutflow"].items():
        direct = _direct(dataset)
        assert flow["events"] == flow["events_in_files"] == direct["events"]
        assert flow["jets"] == direct["jets"]
        assert flow["jets_selected"] == direct["selected"]
        dropped = sum(flow["unmatched"].values()) + sum(flow["filtered"].values())
        assert (
            flow["jets_selected"] == dropped + flow["jets_written"] == dropped + sum(flow["written"].values())
        )
        assert sum(flow["matched"].values()) == flow["jets_written"]
        if flow["process"] == "qcd":
            assert flow["matched"]["QCD"] == flow["jets_written"] > 0 and not flow["unmatched"]
    total = {c: sum(f["matched"][c] for f in manifest["cutflow"].values()) for c in ("top", "W", "QCD")}
    assert min(total.values()) >= 100, total  # the bundled samples hold every class
    unmatched = sum(sum(f["unmatched"].values()) for f in manifest["cutflow"].values())
    assert unmatched > 0


def test_rows_equal_direct_computation(shards: pathlib.Path) -> None:
    manifest = json.loads((shards / "manifest.json").read_text())
    qcd = [d for d, flow in manifest["cutflow"].items() if flow["process"] == "qcd"]
    assert len(qcd) == 4  # the four bundled pT-hat slices are compared below
    for dataset, flow in manifest["cutflow"].items():
        if flow["process"] != "qcd":
            continue  # every selected QCD jet is written: compare jet by jet
        direct = _direct(dataset)
        rows = np.concatenate([_rows(shards, s, dataset) for s in SPLITS])
        order = np.lexsort((rows["observers/fatjet_index"], rows["observers/event"]))
        np.testing.assert_allclose(np.sort(rows["observers/FatJet_pt"]), np.sort(direct["pt"]), rtol=1e-6)
        np.testing.assert_allclose(
            np.sort(rows["observers/xsec_weight"]), np.sort(direct["weight"]), rtol=1e-6
        )
        assert len(order) == flow["jets_written"]


def test_split_is_per_event(shards: pathlib.Path) -> None:
    seen: dict[tuple[int, int, int], str] = {}
    counts = {}
    for split in SPLITS:
        rows = _rows(shards, split)
        counts[split] = len(rows)
        ids = zip(
            rows["observers/run"].tolist(),
            rows["observers/luminosityBlock"].tolist(),
            rows["observers/event"].tolist(),
        )
        for key in ids:
            assert seen.setdefault(key, split) == split, f"event {key} in {seen[key]} and {split}"
    assert all(counts[s] > 0 for s in SPLITS)
    n = sum(counts.values())
    assert abs(counts["train"] / n - 0.6) < 0.1 and abs(counts["test"] / n - 0.3) < 0.1


def test_training_reads_event_shards(shards: pathlib.Path) -> None:
    data = ShardDataset(shards, "train")
    assert len(data) == len(_rows(shards, "train"))
    labels = np.concatenate([np.asarray(s["label"]) for s in data.shards])
    assert set(np.unique(labels)) == {0, 1, 2}


def _write_without(path: pathlib.Path, drop: str) -> None:
    src = uproot.open(SAMPLES / "nanosim_wqq.root")["Events"]
    arrays = src.arrays(library="ak")
    branches = {}
    for name in src.keys():
        if name == drop or name.startswith("n"):
            continue
        branches[name] = arrays[name]
    collections: dict[str, dict[str, ak.Array]] = {}
    flat = {}
    for name, value in branches.items():
        if value.ndim > 1:
            collections.setdefault(name.split("_", 1)[0], {})[name.split("_", 1)[1]] = value
        else:
            flat[name] = value
    with uproot.recreate(path) as f:
        f["Events"] = {**flat, **{c: ak.zip(v) for c, v in collections.items()}}


@pytest.mark.parametrize("problem", ["no_xsec", "missing_index", "unknown_field"])
def test_bad_input_exits_2_naming_it(
    problem: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture
) -> None:
    fileset = {
        "wqq": {
            "files": {str(SAMPLES / "nanosim_wqq.root"): "Events"},
            "metadata": {"process": "wqq", "xsec": 41.6, "sumw": 300.0},
        }
    }
    config = str(CONFIG)
    if problem == "no_xsec":
        del fileset["wqq"]["metadata"]["xsec"]
        expected = ["wqq", "xsec"]
    elif problem == "missing_index":
        bad = tmp_path / "no_index.root"
        _write_without(bad, "FatJetPFCand_pfCandIdx")
        fileset["wqq"]["files"] = {str(bad): "Events"}
        expected = [str(bad), "FatJetPFCand_pfCandIdx", "wqq"]
    else:
        text = CONFIG.read_text().replace("(FatJet_pt > 300)", "(FatJet_ptt > 300)", 1)
        config = str(tmp_path / "config.yaml")
        pathlib.Path(config).write_text(text)
        expected = ["FatJet_ptt", "wqq", "nanosim_wqq.root"]
    (tmp_path / "fs.json").write_text(json.dumps(fileset))
    rc = cli(
        [
            "preprocess",
            str(tmp_path / "fs.json"),
            "-c",
            config,
            "-o",
            str(tmp_path / "out"),
            "--executor",
            "iterative",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2, err
    for word in expected:
        assert word in err, (word, err)


def test_config_rejects_unknown_row_names(tmp_path: pathlib.Path) -> None:
    import yaml

    from hepnn_coffea.config.data_config import ConfigError

    raw = yaml.safe_load(CONFIG.read_text())
    raw["rows"]["splitt"] = {"train": 1.0}
    with pytest.raises(ConfigError, match="splitt"):
        DataConfig.from_dict(raw, source="cfg.yaml")
    raw = yaml.safe_load(CONFIG.read_text())
    raw["rows"]["split"] = {"train": 0.5, "test": 0.4}
    with pytest.raises(ConfigError, match="sum to 1"):
        DataConfig.from_dict(raw, source="cfg.yaml")
    raw = yaml.safe_load(CONFIG.read_text())
    raw["observers"].append("jet_pt")
    with pytest.raises(ConfigError, match="cfg.yaml: 'jet_pt' is not a row field"):
        DataConfig.from_dict(raw, source="cfg.yaml")


@pytest.fixture(scope="module")
def model(shards: pathlib.Path) -> pathlib.Path:
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.training.trainer import train

    run = shards.parent / "run"
    overrides = {"training": {"epochs": 1, "batch_size": 128, "tensorboard": False}}
    train(HERE.parent / "models" / "nanoaod" / "pfn.yaml", shards, run, overrides=overrides, progress=False)
    export_onnx(run, shards.parent / "model.onnx")
    return shards.parent / "model.onnx"


def test_one_call_tagger_eager_virtual_dask(model: pathlib.Path) -> None:
    import dask
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from hepnn_coffea import OnnxTagger

    tagger = OnnxTagger(model)
    path = str(SAMPLES / "nanosim_ttbar_400toInf.root")
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for mode in ("eager", "virtual", "dask"):
            events = NanoEventsFactory.from_root(
                {path: "Events"}, schemaclass=NanoAODSchema, mode=mode
            ).events()
            out = tagger.fatjets(events)
            if mode == "dask":
                (out,) = dask.compute(out)
            else:
                events["FatJet", "hepnn"] = out  # the one-line use in an analysis
                assert ak.all(
                    ak.num(events.FatJet.hepnn.score_top, axis=1) == ak.num(events.FatJet.pt, axis=1)
                )
            scores[mode] = ak.to_numpy(ak.flatten(out.score_top))
    assert len(scores["eager"]) == int(ak.sum(ak.num(events.FatJet.pt, axis=1)).compute())
    finite = np.isfinite(scores["eager"])
    assert 0.3 < finite.mean() < 1.0  # jets failing the test-time selection get NaN
    for mode in ("virtual", "dask"):
        np.testing.assert_array_equal(np.isnan(scores[mode]), ~finite)
        np.testing.assert_allclose(scores[mode][finite], scores["eager"][finite], rtol=1e-6)


def test_infer_writes_the_contract_table(
    model: pathlib.Path, shards: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    import pyarrow.parquet as pq

    assert (
        cli(
            [
                "infer",
                str(model),
                "--fileset",
                str(FILESET),
                "-o",
                str(tmp_path),
                "--split",
                "test",
                "--executor",
                "iterative",
            ]
        )
        == 0
    )
    table = pq.read_table(tmp_path / "scores.parquet").to_pydict()
    for column in (
        "sample",
        "event",
        "luminosityBlock",
        "fatjet_index",
        "label",
        "weight",
        "FatJet_pt",
        "FatJet_msoftdrop",
        "score_top",
        "score_W",
        "score_QCD",
    ):
        assert column in table, column
    labels = np.asarray(table["label"])
    assert set(labels) == {"top", "W", "QCD", "unmatched"}
    assert set(table["split"]) == {"test"}
    # the test rows with a class are exactly the test shards' rows, with the same weights
    rows = _rows(shards, "test")
    assert (labels != "unmatched").sum() == len(rows)
    np.testing.assert_allclose(
        np.sort(np.asarray(table["weight"])[labels != "unmatched"]),
        np.sort(rows["observers/xsec_weight"]),
        rtol=1e-6,
    )
    probs = np.stack([table[f"score_{c}"] for c in ("top", "W", "QCD")], axis=1)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    info = json.loads((tmp_path / "counts.json").read_text())
    assert info["workflow"] == "events" and info["classes"] == ["top", "W", "QCD"]


def test_one_call_tagger_on_real_pfnano(model: pathlib.Path) -> None:
    """The same model on a real CMS PFNano file (FatJetPFCands -> PFCands) with layout='pfnano'."""
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from hepnn_coffea import OnnxTagger

    path = HERE.parent.parent / "shared" / "data" / "nanoaod" / "pfnano.root"
    if not path.is_file():
        pytest.skip("../shared/data/nanoaod/pfnano.root not present")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        events = NanoEventsFactory.from_root(
            {str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager"
        ).events()
    scores = OnnxTagger(model).fatjets(events, layout="pfnano")
    top = ak.to_numpy(ak.flatten(scores.score_top))
    jets = events.FatJet
    selected = ak.to_numpy(
        ak.flatten((jets.pt > 300) & (abs(jets.eta) < 2.4) & (jets.msoftdrop > 10) & (jets.msoftdrop < 400))
    )
    assert len(top) == len(selected) and selected.any()
    assert np.isfinite(top[selected]).all() and np.isnan(top[~selected]).all()
    from hepnn_coffea.inference.tagger import TaggerError

    with pytest.raises(TaggerError, match=r"lack \['FatJetPFCand', 'PFCand'\].*layout 'nanoaod'"):
        OnnxTagger(model).fatjets(events)  # PFNano names its collections FatJetPFCands / PFCands


@pytest.mark.slow
def test_analysis_nanoaod_workflow_on_the_bundled_samples(tmp_path: pathlib.Path) -> None:
    """``python analysis.py --workflow nanoaod`` chains every stage and leaves DIR/model.onnx."""
    import subprocess
    import sys

    cmd = [
        sys.executable,
        str(HERE.parent / "analysis.py"),
        "--workflow",
        "nanoaod",
        "--fileset",
        str(FILESET),
        "--output",
        str(tmp_path),
        "--epochs",
        "6",
        "--executor",
        "iterative",
        "--chunksize",
        "200",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=HERE.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "model.onnx").is_file()
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert set(summary["taggers"]) == {"model", "GBT"}
    assert summary["taggers"]["model"]["top"]["auc"]["value"] > 0.8
    assert "existing NanoAOD analysis, ttbar_400toInf" in done.stdout
