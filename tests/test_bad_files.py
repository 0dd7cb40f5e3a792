"""Bad input files in ``preprocess`` and ``infer``: clean exit-2 errors, ``--skip-bad-files`` accounting,
the dask mode, and bad files in the event-level NanoAOD workflow (retries and remote files:
``test_remote_files.py``)."""

from __future__ import annotations

import json
import pathlib
import shutil

import awkward as ak
import numpy as np
import pytest
import uproot

from hepnn_coffea.cli import main as cli
from hepnn_coffea.processing import bad_files
from tests.conftest import SAMPLES, TOP_KIN
from tests.helpers.reading import RUN, _rows, _scores

NANOSIM = SAMPLES / "nanosim_fileset.json"
NANO_CONFIG = SAMPLES.parents[1] / "models" / "data" / "nanoaod_fatjet.yaml"
BASE = SAMPLES / "topqcd_test_qcd.root"
#: bad kinds found before processing (file dropped whole) and while reading chunks
UP_FRONT = ("not_root", "no_branch", "wrong_tree")
IN_CHUNKS = ("truncated", "corrupt")


def _write_jets(path: pathlib.Path, arrays: ak.Array, step: int | None = None) -> None:
    """A TTree like the bundled samples (``part_*`` jagged with counter ``npart``), ``step`` entries
    per basket."""
    jagged = [k for k in arrays.fields if k.startswith("part_")]
    flat = {k: arrays[k] for k in arrays.fields if k not in jagged and k != "npart"}
    part = ak.zip({k[len("part_") :]: arrays[k] for k in jagged})
    with uproot.recreate(path, compression=uproot.ZLIB(1)) as f:
        tree = f.mktree(
            "tree",
            {**{k: v.type.content for k, v in flat.items()}, "part": part.type.content},
            counter_name=lambda counted: "n" + counted,
            field_name=lambda outer, inner: f"{outer}_{inner}" if outer else inner,
        )
        step = step or max(len(arrays), 1)
        for start in range(0, len(arrays), step):
            tree.extend(
                {**{k: v[start : start + step] for k, v in flat.items()}, "part": part[start : start + step]}
            )


def _corrupt_basket(path: pathlib.Path, branch: str, basket: int) -> None:
    """Overwrite the compressed payload of one basket (its key header stays intact)."""
    b = uproot.open(path)["tree"][branch]
    seek, size = int(b.member("fBasketSeek")[basket]), int(b.member("fBasketBytes")[basket])
    data = bytearray(path.read_bytes())
    data[seek + 100 : seek + size - 10] = b"\x5a" * (size - 110)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """The bad (and odd but good) files, each a variant of ``topqcd_test_qcd.root`` (500 jets)."""
    out = tmp_path_factory.mktemp("bad_files")
    arrays = uproot.open(BASE)["tree"].arrays()
    files = {
        k: out / f"{k}.root"
        for k in ("truncated", "not_root", "no_branch", "wrong_tree", "corrupt", "empty", "nonfinite")
    }
    data = BASE.read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["not_root"].write_text("this is not a ROOT file\n")
    _write_jets(files["no_branch"], arrays[[f for f in arrays.fields if f != "part_energy"]])
    shutil.copyfile(BASE, files["wrong_tree"])
    _write_jets(files["corrupt"], arrays, step=100)
    _corrupt_basket(files["corrupt"], "part_px", 2)  # entries 200-300
    _write_jets(files["empty"], arrays[:0])
    px = ak.to_numpy(ak.flatten(arrays["part_px"])).copy()
    px[::7], px[3::11] = np.nan, np.inf
    _write_jets(
        files["nonfinite"], ak.with_field(arrays, ak.unflatten(px, ak.num(arrays["part_px"])), "part_px")
    )
    return files


def _fileset(
    tmp: pathlib.Path, bad: dict[str, pathlib.Path], kinds: tuple[str, ...], name: str = "fs.json"
) -> str:
    """The bundled fileset plus one ``test`` dataset (sample = kind) per bad kind."""
    fileset = json.loads((SAMPLES / "fileset.json").read_text())
    fileset = {
        k: {**v, "files": {str(SAMPLES / f): t for f, t in v["files"].items()}} for k, v in fileset.items()
    }
    for kind in kinds:
        tree = "events" if kind == "wrong_tree" else "tree"
        fileset[kind] = {"files": {str(bad[kind]): tree}, "metadata": {"sample": kind, "split": "test"}}
    path = tmp / name
    path.write_text(json.dumps(fileset))
    return str(path)


def _expected_message(kind: str, path: pathlib.Path) -> list[str]:
    words = [str(path)]
    words += {
        "no_branch": ["part_energy", "'tree'"],
        "wrong_tree": ["'events'"],
        "corrupt": ["entries 200-300"],
        "truncated": ["entries 0-100"],
        "not_root": ["'tree'"],
    }[kind]
    return words


@pytest.mark.parametrize("kind", UP_FRONT + IN_CHUNKS)
def test_preprocess_stops_cleanly_on_a_bad_file(
    kind: str, bad: dict, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture
) -> None:
    fileset = json.loads(pathlib.Path(_fileset(tmp_path, bad, (kind,))).read_text())
    fileset = {k: v for k, v in fileset.items() if k in ("top_train", kind)}  # small: one good dataset
    (tmp_path / "fs.json").write_text(json.dumps(fileset))
    rc = cli(["preprocess", str(tmp_path / "fs.json"), "-c", str(TOP_KIN), "-o", str(tmp_path / "out"), *RUN])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.startswith("hepnn preprocess: error:"), err
    for word in _expected_message(kind, bad[kind]):
        assert word in err, (word, err)
    if kind in IN_CHUNKS:
        assert "--skip-bad-files" in err
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize("kind", UP_FRONT + IN_CHUNKS)
def test_infer_stops_cleanly_on_a_bad_file(
    kind: str, bad: dict, onnx_model: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture
) -> None:
    fileset = json.loads(pathlib.Path(_fileset(tmp_path, bad, (kind,))).read_text())
    fileset = {k: v for k, v in fileset.items() if k in ("top_test", kind)}
    (tmp_path / "fs.json").write_text(json.dumps(fileset))
    rc = cli(
        ["infer", str(onnx_model), "--fileset", str(tmp_path / "fs.json"), "-o", str(tmp_path / "out"), *RUN]
    )
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.startswith("hepnn infer: error:"), err
    for word in _expected_message(kind, bad[kind]):
        assert word in err, (word, err)
    assert not (tmp_path / "out" / "counts.json").exists()


def _check_skipped(records: list[dict], bad: dict[str, pathlib.Path]) -> None:
    """Every bad file is listed, with the entries lost (None where the file cannot tell)."""
    by_file: dict[str, list[dict]] = {}
    for r in records:
        assert set(r) == {"dataset", "file", "tree", "entry_start", "entry_stop", "entries_lost", "cause"}
        by_file.setdefault(pathlib.Path(r["file"]).stem, []).append(r)
    assert set(by_file) == set(UP_FRONT + IN_CHUNKS)
    assert [r["entries_lost"] for r in by_file["not_root"]] == [None]
    assert [r["entries_lost"] for r in by_file["wrong_tree"]] == [None]
    assert "events" in by_file["wrong_tree"][0]["cause"] and by_file["wrong_tree"][0]["tree"] == "events"
    (no_branch,) = by_file["no_branch"]
    assert no_branch["entries_lost"] == 500 and "part_energy" in no_branch["cause"]
    assert sum(r["entries_lost"] for r in by_file["truncated"]) == 500
    assert all(r["entry_stop"] - r["entry_start"] == 100 for r in by_file["truncated"])
    (corrupt,) = by_file["corrupt"]
    assert (corrupt["entry_start"], corrupt["entry_stop"], corrupt["entries_lost"]) == (200, 300, 100)
    assert "error" in corrupt["cause"].lower()


def test_preprocess_skip_bad_files_keeps_every_good_jet_once(
    bad: dict, shards: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture
) -> None:
    kinds = UP_FRONT + IN_CHUNKS + ("empty", "nonfinite")
    out = tmp_path / "out"
    rc = cli(
        [
            "preprocess",
            _fileset(tmp_path, bad, kinds),
            "-c",
            str(TOP_KIN),
            "-o",
            str(out),
            *RUN,
            "--skip-bad-files",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Traceback" not in captured.err
    assert captured.out.count("skipped: ") == 3 + 5 + 1  # up-front files, truncated chunks, corrupt chunk
    manifest = json.loads((out / "manifest.json").read_text())
    _check_skipped(manifest["skipped"], bad)
    # the good jets: the same rows as the run on the good files only (conftest: other chunking)
    for split in ("train", "val", "test"):
        for sample in ("top", "qcd"):
            np.testing.assert_array_equal(_rows(out, split, sample), _rows(shards, split, sample))
    test = manifest["splits"]["test"]
    assert set(test) == {"top", "qcd", "truncated", "corrupt", "empty", "nonfinite"}
    assert (
        test["truncated"]["entries_read"],
        test["truncated"]["entries_lost"],
        test["truncated"]["entries_out"],
    ) == (0, 500, 0)
    assert (test["corrupt"]["entries_read"], test["corrupt"]["entries_lost"]) == (400, 100)
    corrupt = _rows(out, "test", "corrupt")
    reference = _rows(shards, "test", "qcd")  # corrupt.root is a copy of topqcd_test_qcd.root
    np.testing.assert_array_equal(corrupt, np.concatenate([reference[:200], reference[300:]]))
    assert test["empty"]["num_entries"] == test["empty"]["entries_read"] == 0
    nonfinite = test["nonfinite"]["files"][str(bad["nonfinite"])]
    assert nonfinite["entries_out"] == 500 and nonfinite.get("nonfinite_part_px", 0) > 0
    rows = _rows(out, "test", "nonfinite")
    assert all(np.isfinite(rows[f]).all() for f in ("inputs/pf_features", "inputs/pf_vectors"))
    totals = manifest["entries"]
    assert totals["entries_read"] + totals["entries_lost"] == totals["entries_in_files"]
    # good files, no_branch, truncated, corrupt, empty, nonfinite (not_root and wrong_tree: unknown)
    assert totals["entries_in_files"] == 3500 + 500 + 500 + 500 + 0 + 500
    assert totals["entries_lost"] == 500 + 500 + 100  # no_branch, truncated, corrupt
    assert sorted(pathlib.Path(f).stem for f in totals["unknown_files"]) == ["not_root", "wrong_tree"]


def test_infer_skip_bad_files_scores_every_good_jet_once(
    bad: dict,
    onnx_model: pathlib.Path,
    good_scores: dict,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture,
) -> None:
    import pyarrow.parquet as pq

    kinds = UP_FRONT + IN_CHUNKS + ("empty", "nonfinite")
    out = tmp_path / "out"
    rc = cli(
        [
            "infer",
            str(onnx_model),
            "--fileset",
            _fileset(tmp_path, bad, kinds),
            "-o",
            str(out),
            "--split",
            "test",
            *RUN,
            "--skip-bad-files",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Traceback" not in captured.err and "skipped: " in captured.out
    table = pq.read_table(out / "scores.parquet").to_pydict()
    for sample in ("top", "qcd"):
        np.testing.assert_array_equal(_scores(table, sample), _scores(good_scores, sample))
    qcd = _scores(good_scores, "qcd")
    np.testing.assert_allclose(_scores(table, "corrupt"), np.concatenate([qcd[:200], qcd[300:]]), rtol=1e-6)
    assert len(_scores(table, "nonfinite")) == 500 and len(_scores(table, "empty")) == 0
    probs = np.stack([table["score_jet_isTop"], table["score_jet_isQCD"]], axis=1)
    assert np.isfinite(probs).all()
    info = json.loads((out / "counts.json").read_text())
    _check_skipped(info["skipped"], bad)
    assert sum(v for k, v in info["counts"]["nonfinite"].items() if k.startswith("nonfinite_part_pt_log")) > 0
    totals = info["entries"]
    assert totals["entries_read"] + totals["entries_lost"] == totals["entries_in_files"] == 1000 + 2000


def test_dask_mode_skips_the_same_chunks(bad: dict, tmp_path: pathlib.Path) -> None:
    from hepnn_coffea.processing.preprocess import preprocess

    fileset = {
        "corrupt": {"files": {str(bad["corrupt"]): "tree"}, "metadata": {"split": "test"}},
        "truncated": {"files": {str(bad["truncated"]): "tree"}, "metadata": {"split": "test"}},
    }
    manifests = {
        mode: preprocess(
            fileset,
            TOP_KIN,
            tmp_path / mode,
            mode=mode,
            executor="iterative",
            workers=1,
            chunksize=100,
            skip_bad_files=True,
        )
        for mode in ("runner", "dask")
    }
    strip = [{k: v for k, v in r.items() if k != "cause"} for r in manifests["runner"]["skipped"]]
    assert strip == [{k: v for k, v in r.items() if k != "cause"} for r in manifests["dask"]["skipped"]]
    runner, dask = _rows(tmp_path / "runner", "test", "corrupt"), _rows(tmp_path / "dask", "test", "corrupt")
    np.testing.assert_array_equal(runner, dask)
    with pytest.raises(bad_files.BadInputError, match="entries 200-300"):
        preprocess(fileset, TOP_KIN, tmp_path / "stop", mode="dask", workers=1, chunksize=100)


# -- event-level NanoAOD workflow ----------------------------------------------------------------------------


def test_events_workflow_bad_files(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    fileset = json.loads(NANOSIM.read_text())
    fileset = {
        k: {**fileset[k], "files": {str(SAMPLES / f): t for f, t in fileset[k]["files"].items()}}
        for k in ("wqq", "qcd_400to600")
    }
    (tmp_path / "good.json").write_text(json.dumps(fileset))
    truncated, text = tmp_path / "nanosim_truncated.root", tmp_path / "nanosim_text.root"
    data = (SAMPLES / "nanosim_ttbar_250to400.root").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    text.write_text("not ROOT\n")
    meta = {"process": "ttbar", "xsec": 31.0, "sumw": 250.0}
    fileset["ttbar_truncated"] = {"files": {str(truncated): "Events"}, "metadata": meta}
    fileset["ttbar_text"] = {"files": {str(text): "Events"}, "metadata": meta}
    (tmp_path / "bad.json").write_text(json.dumps(fileset))
    args = ["-c", str(NANO_CONFIG), *RUN[:2], "--chunksize", "150"]
    assert cli(["preprocess", str(tmp_path / "bad.json"), "-o", str(tmp_path / "stop"), *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(text) in err
    fileset.pop("ttbar_text")
    (tmp_path / "bad_chunks.json").write_text(json.dumps(fileset))
    assert cli(["preprocess", str(tmp_path / "bad_chunks.json"), "-o", str(tmp_path / "stop2"), *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(truncated) in err and "entries 0-" in err

    assert cli(["preprocess", str(tmp_path / "good.json"), "-o", str(tmp_path / "good"), *args]) == 0
    assert (
        cli(
            [
                "preprocess",
                str(tmp_path / "bad.json"),
                "-o",
                str(tmp_path / "skip"),
                *args,
                "--skip-bad-files",
            ]
        )
        == 0
    )
    capsys.readouterr()
    manifest = json.loads((tmp_path / "skip" / "manifest.json").read_text())
    good = json.loads((tmp_path / "good" / "manifest.json").read_text())
    lost = {pathlib.Path(r["file"]).name: 0 for r in manifest["skipped"]}
    for r in manifest["skipped"]:
        lost[pathlib.Path(r["file"]).name] += r["entries_lost"] or 0
    assert lost == {"nanosim_truncated.root": 250, "nanosim_text.root": 0}
    flow = manifest["cutflow"]["ttbar_truncated"]
    assert (flow["events"], flow["events_lost"], flow["events_in_files"]) == (0, 250, 250)
    for name in ("wqq", "qcd_400to600"):
        assert manifest["cutflow"][name] == good["cutflow"][name]
    for split, samples in good["splits"].items():
        for sample in samples:
            rows = _rows(tmp_path / "skip", split, sample)
            np.testing.assert_array_equal(rows, _rows(tmp_path / "good", split, sample))
    totals = manifest["entries"]
    assert totals["entries_read"] + totals["entries_lost"] == totals["entries_in_files"] == 350 + 200 + 250
