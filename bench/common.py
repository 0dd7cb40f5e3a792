"""Helpers shared by the timed benchmarks (``bench.timing``) and the studies (``bench.studies``).

Paths of the repository and the shared data, the top/QCD fileset and its shards, timing loops,
Markdown tables and JSON output (the weaver-core anchor: :mod:`bench.anchor`). Only the standard
library is imported at module level (NumPy, uproot and hepnn_coffea inside the functions), so a
GPU machine without coffea/uproot can import it.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
"""The repository root."""
MODELS = ROOT / "models"
SAMPLES = ROOT / "tests" / "samples"
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data" / "topqcd"
"""The shared top-vs-QCD files ``{split}_{top,qcd}_{i}.root`` (tree ``tree``)."""
DATA_CONFIG = MODELS / "data" / "top_kin.yaml"
DEFAULT_FILES = [DATA / "test_top_0.root", DATA / "test_qcd_0.root"]
"""The 15k shared test jets the inference benchmarks read."""
ORT_BATCH = 512
"""Jets per bare onnxruntime call: the same batch as ``OnnxTagger``'s default."""


def make_fileset(data: pathlib.Path) -> dict[str, Any]:
    """Datasets ``{sample}_{split}`` over ``{split}_{sample}_*.root`` (tree ``tree``).

    Parameters
    ----------
    data
        Folder of the shared top/QCD files (:data:`DATA`).

    Returns
    -------
    dict
        A coffea fileset with metadata ``sample`` and ``split``.

    Raises
    ------
    FileNotFoundError
        A dataset has no file.
    """
    fileset = {
        f"{sample}_{split}": {
            "files": {str(p): "tree" for p in sorted(data.glob(f"{split}_{sample}_*.root"))},
            "metadata": {"sample": sample, "split": split},
        }
        for sample in ("top", "qcd")
        for split in ("train", "val", "test")
    }
    empty = [k for k, v in fileset.items() if not v["files"]]
    if empty:
        raise FileNotFoundError(f"no files for {empty} under {data}")
    return fileset


def topqcd_shards(work: pathlib.Path, data: pathlib.Path, **options: Any) -> pathlib.Path:
    """``work/shards``: the shared top/QCD files preprocessed with :data:`DATA_CONFIG`, reused if present.

    Parameters
    ----------
    work
        Work folder; receives ``fileset.json`` and ``shards/``.
    data
        Folder of the shared files (:data:`DATA`).
    **options
        Passed to :func:`hepnn_coffea.processing.preprocess.preprocess` (executor, workers, chunksize).

    Returns
    -------
    pathlib.Path
        The shard folder.
    """
    shards = work / "shards"
    if (shards / "manifest.json").is_file():
        print(f"reusing shards in {shards}", flush=True)
        return shards
    from hepnn_coffea.processing.preprocess import preprocess

    work.mkdir(parents=True, exist_ok=True)
    (work / "fileset.json").write_text(json.dumps(make_fileset(data), indent=1))
    preprocess(work / "fileset.json", DATA_CONFIG, shards, **options)
    return shards


def first_jets(
    work: pathlib.Path, counts: Mapping[str, int], branches: Sequence[str] | None = None, reuse: bool = False
) -> dict[str, Any]:
    """The first ``counts[split] / 2`` top and QCD jets of each split's first shared file, copied to
    ``work/jets``.

    Parameters
    ----------
    work
        Work folder; the copies are ``work/jets/{split}_{sample}.root``.
    counts
        Jets per split (half top, half QCD).
    branches
        Branches to copy (those the file has); None copies all.
    reuse
        Keep a copy that already exists.

    Returns
    -------
    dict
        A coffea fileset ``{sample}_{split}`` over the copies.
    """
    import awkward as ak
    import uproot

    fileset = {}
    for split, n in counts.items():
        for sample in ("top", "qcd"):
            dst = work / "jets" / f"{split}_{sample}.root"
            if not (reuse and dst.is_file()):
                dst.parent.mkdir(parents=True, exist_ok=True)
                tree = uproot.open(DATA / f"{split}_{sample}_0.root")["tree"]
                names = None if branches is None else [b for b in branches if b in tree.keys()]
                arrays = tree.arrays(names, entry_stop=n // 2)
                with uproot.recreate(dst) as f:
                    f["tree"] = {
                        k: arrays[k] if arrays[k].ndim > 1 else ak.to_numpy(arrays[k]) for k in arrays.fields
                    }
            fileset[f"{sample}_{split}"] = {
                "files": {str(dst): "tree"},
                "metadata": {"sample": sample, "split": split},
            }
    return fileset


def fileset_of(files: Sequence[pathlib.Path]) -> dict[str, Any]:
    """A coffea fileset with one ``test`` dataset per file, named by its sample.

    Parameters
    ----------
    files
        ROOT files named ``{split}_{sample}_{i}.root``.

    Returns
    -------
    dict
        The fileset.
    """
    fileset = {}
    for path in files:
        name = path.stem.replace("test_", "").replace("train_", "").replace("val_", "")
        fileset[name] = {"files": {str(path): "tree"}, "metadata": {"split": "test"}}
    return fileset


def build_pfn(tmp: pathlib.Path) -> pathlib.Path:
    """Preprocess the bundled samples and train ``models/pfn.yaml`` for 1 epoch, in this process.

    Parameters
    ----------
    tmp
        Scratch folder; receives ``model_shards/`` and ``model_run/``.

    Returns
    -------
    pathlib.Path
        The run folder (``tmp/model_run``), ready for :func:`hepnn_coffea.export.export_onnx`.
    """
    from hepnn_coffea.processing.preprocess import preprocess
    from hepnn_coffea.training.trainer import train

    shards, run_dir = tmp / "model_shards", tmp / "model_run"
    preprocess(SAMPLES / "fileset.json", DATA_CONFIG, shards, mode="runner", executor="iterative")
    train(
        MODELS / "pfn.yaml",
        shards,
        run_dir,
        overrides={"training": {"epochs": 1, "batch_size": 256}},
        progress=False,
    )
    return run_dir


def run_in_batches(session: Any, feeds: Sequence[Mapping[str, Any]], batch: int = ORT_BATCH) -> None:
    """Run an onnxruntime session over ready input arrays, ``batch`` jets per call (bare onnxruntime).

    Parameters
    ----------
    session
        ``onnxruntime.InferenceSession``.
    feeds
        Input arrays by input name, one mapping per file (all arrays of a mapping have the same length).
    batch
        Jets per ``session.run`` call.
    """
    for feed in feeds:
        n = len(next(iter(feed.values())))
        for start in range(0, n, batch):
            session.run(None, {k: v[start : start + batch] for k, v in feed.items()})


def best_of(fn: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None) -> float:
    """Seconds of the fastest of ``repeat`` calls of ``fn`` after one warm-up call.

    Parameters
    ----------
    fn
        The work to time.
    repeat
        Number of timed calls.
    setup
        Called (untimed) before every call of ``fn``, e.g. to clear an output folder.

    Returns
    -------
    float
        The shortest time.
    """
    return interleaved_times({"fn": fn}, repeat, setup)["fn"]


def interleaved_times(
    fns: Mapping[str, Callable[[], Any]], repeat: int, setup: Callable[[], Any] | None = None
) -> dict[str, float]:
    """Best seconds of each of ``fns``: one warm-up round, then ``repeat`` rounds calling each once.

    Interleaving the candidates puts them under the same load of a shared machine, so their
    ratios drift less than timings taken one after the other.

    Parameters
    ----------
    fns
        Candidates by name.
    repeat
        Number of timed rounds.
    setup
        Called (untimed) before every call, e.g. to clear an output folder.

    Returns
    -------
    dict
        The shortest time of each candidate.
    """
    best = dict.fromkeys(fns, float("inf"))
    for round_ in range(repeat + 1):
        for name, fn in fns.items():
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            fn()
            if round_:  # round 0 is the warm-up
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``) of ``values``.

    Parameters
    ----------
    values
        At least two numbers.

    Returns
    -------
    tuple of float
        ``(mean, std)``.
    """
    import numpy as np

    array = np.asarray(list(values), dtype=float)
    return float(array.mean()), float(array.std(ddof=1))


def plus_minus(interval: Mapping[str, Any], digits: int = 4) -> str:
    """``value +- half-width`` of an interval dict (``value``, ``low``, ``high``).

    Parameters
    ----------
    interval
        E.g. an AUC with its bootstrap interval.
    digits
        Decimals.

    Returns
    -------
    str
        The formatted interval.
    """
    half = (interval["high"] - interval["low"]) / 2
    return f"{interval['value']:.{digits}f} +- {half:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table.

    Parameters
    ----------
    header
        Column titles.
    rows
        Cells of each row (formatted with ``str``).

    Returns
    -------
    str
        The table, one line per row, without a trailing newline.
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(
    path: pathlib.Path | str | None, obj: Any, indent: int = 1, default: Callable[[Any], Any] | None = None
) -> None:
    """Write ``obj`` as JSON to ``path`` (its folder created); nothing if ``path`` is None.

    Parameters
    ----------
    path
        Output file (``--json``), or None.
    obj
        JSON-serialisable results.
    indent
        Indentation.
    default
        Passed to :func:`json.dumps` for objects it cannot serialise.
    """
    if path is None:
        return
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=indent, default=default))
