"""Input files read with trouble: retries of transient read errors, and remote (``root://``) files
from a local XRootD server giving the same shards and scores as the local ones."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import numpy as np
import pytest

from hepnn_coffea.cli import main as cli
from hepnn_coffea.processing import bad_files
from tests.conftest import SAMPLES, TOP_KIN
from tests.helpers.reading import RUN, _rows, _scores

BASE = SAMPLES / "topqcd_test_qcd.root"


def test_transient_read_errors_are_retried(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    from hepnn_coffea.processing import processor
    from hepnn_coffea.processing.preprocess import preprocess

    monkeypatch.setattr(bad_files, "RETRY_WAIT", 0.0)
    failed: list[int] = []

    def flaky(events, columns):
        if events.metadata["entrystart"] == 100 and len(failed) < 2:
            failed.append(1)
            raise OSError("connection reset by peer")
        return bad_files.materialize(events, columns)

    monkeypatch.setattr(processor, "materialize", flaky)
    fileset = {"qcd": {"files": {str(BASE): "tree"}, "metadata": {"split": "test"}}}
    message = r"entries 100-200.*OSError: connection reset by peer \(after 1 retry\)"
    with pytest.raises(bad_files.BadInputError, match=message):
        preprocess(fileset, TOP_KIN, tmp_path / "once", executor="iterative", chunksize=100, retries=1)
    failed.clear()
    manifest = preprocess(
        fileset, TOP_KIN, tmp_path / "twice", executor="iterative", chunksize=100, retries=2
    )
    assert len(failed) == 2 and manifest["skipped"] == []
    assert manifest["splits"]["test"]["qcd"]["entries_read"] == 500


# -- remote files --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def xrootd_url() -> str:
    """``root://localhost:PORT/`` of a local XRootD server exporting copies of the bundled samples."""
    if shutil.which("xrootd") is None:
        pytest.skip("the xrootd server binary is missing (Debian: apt-get install xrootd-server)")
    pytest.importorskip("fsspec_xrootd", reason="fsspec-xrootd is missing (pip install -e '.[remote]')")
    pytest.importorskip(
        "XRootD.client", reason="the XRootD python bindings are missing (pip install -e '.[remote]')"
    )
    root = pathlib.Path(
        tempfile.mkdtemp(prefix="hepnn-xrootd-")
    )  # not under pytest's 0700 folders: the server
    data, admin = root / "data", root / "admin"  # may run as another user
    data.mkdir()
    admin.mkdir()
    for name in ("topqcd_test_top.root", "topqcd_test_qcd.root"):
        shutil.copyfile(SAMPLES / name, data / name)
        os.chmod(data / name, 0o644)
    for folder, mode in ((root, 0o755), (data, 0o755), (admin, 0o777)):
        os.chmod(folder, mode)
    config = root / "xrootd.cfg"
    config.write_text(f"all.export /\noss.localroot {data}\nall.adminpath {admin}\nall.pidpath {admin}\n")
    port = _free_port()
    command = ["xrootd", "-p", str(port), "-c", str(config)]
    if os.geteuid() == 0:  # xrootd refuses to run as root
        command += ["-R", "xrootd" if _user_exists("xrootd") else "nobody"]
    log = (root / "xrootd.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:  # a TCP connection first: the XRootD client waits long before retrying a refused one
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(
                        f"the local xrootd server did not start: {(root / 'xrootd.log').read_text()[-500:]}"
                    )
                time.sleep(0.2)
        yield f"root://localhost:{port}/"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_remote_files_give_the_same_shards_and_scores(
    xrootd_url: str, onnx_model: pathlib.Path, good_scores: dict, shards: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    import pyarrow.parquet as pq

    fileset = {
        f"{s}_test": {
            "files": {f"{xrootd_url}/topqcd_test_{s}.root": "tree"},
            "metadata": {"sample": s, "split": "test"},
        }
        for s in ("top", "qcd")
    }
    (tmp_path / "remote.json").write_text(json.dumps(fileset))
    assert (
        cli(
            [
                "preprocess",
                str(tmp_path / "remote.json"),
                "-c",
                str(TOP_KIN),
                "-o",
                str(tmp_path / "shards"),
                *RUN,
            ]
        )
        == 0
    )
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert all(f.startswith("root://") for e in manifest["splits"]["test"].values() for f in e["files"])
    for sample in ("top", "qcd"):
        np.testing.assert_array_equal(
            _rows(tmp_path / "shards", "test", sample), _rows(shards, "test", sample)
        )
    assert (
        cli(
            [
                "infer",
                str(onnx_model),
                "--fileset",
                str(tmp_path / "remote.json"),
                "-o",
                str(tmp_path / "out"),
                *RUN,
            ]
        )
        == 0
    )
    table = pq.read_table(tmp_path / "out" / "scores.parquet").to_pydict()
    for sample in ("top", "qcd"):
        np.testing.assert_array_equal(_scores(table, sample), _scores(good_scores, sample))
