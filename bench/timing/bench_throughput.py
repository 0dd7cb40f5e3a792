"""Throughput of hepnn_coffea's preprocessing and inference against bare baselines.

Measures, side by side in one process on the same machine:

1. Preprocessing (jets/s): a raw ``uproot`` read of the config's branches, the
   feature computation alone (``compute_features`` on the read arrays), and the
   full ``preprocess`` stage (read + features + shards + manifest) with the
   ``iterative`` and the ``dask`` (2 workers) executors.
2. Inference (jets/s): bare onnxruntime on ready input arrays, ``OnnxTagger`` on
   eager events (features + onnxruntime, files already read), and the full
   ``infer`` stage (file reading included).
3. Shards and loader (:mod:`bench.timing.shard_io`): bytes per jet of the shards of the
   shared train+val split against the source files, loader jets/s from ragged and
   padded shards, and a JetClass-scale projection (``--no-shards`` skips it).

Every timing runs once as warm-up, then reports the best of ``--repeat`` runs.

Usage::

    .venv/bin/python -m bench.timing.bench_throughput [--model M.onnx] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import tempfile
from typing import Any

import numpy as np
import uproot

import hepnn_coffea
from bench.common import DATA_CONFIG, DEFAULT_FILES, ORT_BATCH, best_of, build_pfn, fileset_of, run_in_batches
from bench.timing import shard_io
from hepnn_coffea.config.data_config import DataConfig
from hepnn_coffea.evaluation.stages import infer
from hepnn_coffea.export import export_onnx
from hepnn_coffea.features import compute_features
from hepnn_coffea.processing.preprocess import preprocess


def build_model(tmp: pathlib.Path) -> pathlib.Path:
    """A 1-epoch PFN on the bundled samples (:func:`bench.common.build_pfn`), exported to ONNX."""
    export_onnx(build_pfn(tmp), tmp / "model.onnx")
    return tmp / "model.onnx"


def bench_preprocess(
    files: list[pathlib.Path], config_path: pathlib.Path, tmp: pathlib.Path, repeat: int
) -> dict[str, float]:
    """Jets/s of raw read, feature computation and the full preprocess stage."""
    config = DataConfig.from_yaml(config_path)
    branches = config.required_branches()
    arrays = [uproot.open(f)["tree"].arrays(branches) for f in files]
    n_jets = sum(len(a) for a in arrays)
    fileset = fileset_of(files)
    out = tmp / "pre_out"
    clear = lambda: shutil.rmtree(out, ignore_errors=True)  # noqa: E731

    t_read = best_of(lambda: [uproot.open(f)["tree"].arrays(branches) for f in files], repeat)
    t_feat = best_of(lambda: [compute_features(a, config, ragged=True) for a in arrays], repeat)
    t_iter = best_of(
        lambda: preprocess(fileset, config_path, out, mode="runner", executor="iterative", chunksize=50_000),
        repeat,
        clear,
    )
    t_dask = best_of(
        lambda: preprocess(
            fileset, config_path, out, mode="runner", executor="dask", workers=2, chunksize=50_000
        ),
        repeat,
        clear,
    )
    # the same on an already running 2-worker cluster: the stage's cost without LocalCluster start-up
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        address = cluster.scheduler_address
        t_warm = best_of(
            lambda: preprocess(
                fileset, config_path, out, mode="runner", executor="dask", scheduler=address, chunksize=50_000
            ),
            repeat,
            clear,
        )
    return {
        "n_jets": n_jets,
        "raw_read": n_jets / t_read,
        "compute_features": n_jets / t_feat,
        "preprocess_iterative": n_jets / t_iter,
        "preprocess_dask2": n_jets / t_dask,
        "preprocess_dask2_running_cluster": n_jets / t_warm,
    }


def bench_inference(
    files: list[pathlib.Path], model: pathlib.Path, tmp: pathlib.Path, repeat: int
) -> dict[str, float]:
    """Jets/s of bare onnxruntime, ``OnnxTagger`` on eager events and the ``infer`` stage."""
    import onnxruntime as ort

    tagger = hepnn_coffea.OnnxTagger(model)  # 1 intra-op thread, batches of 512 by default
    config = tagger.config
    events = [uproot.open(f)["tree"].arrays(config.required_branches()) for f in files]
    n_jets = sum(len(e) for e in events)
    # ready model inputs, built once outside the timing (the same features OnnxTagger computes)
    batches = [
        compute_features(e, config, selection="test_time_selection", with_labels=False) for e in events
    ]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feeds = [{k: np.ascontiguousarray(b.inputs[k]) for k in names} for b in batches]

    out = tmp / "infer_out"
    t_ort = best_of(lambda: run_in_batches(session, feeds), repeat)
    t_tagger = best_of(lambda: [tagger(e) for e in events], repeat)
    t_infer = best_of(
        lambda: infer(model, fileset_of(files), out, executor="iterative"),
        repeat,
        lambda: shutil.rmtree(out, ignore_errors=True),
    )
    return {
        "n_jets": n_jets,
        "bare_ort": n_jets / t_ort,
        "onnx_tagger": n_jets / t_tagger,
        "infer_iterative": n_jets / t_infer,
    }


def report(pre: dict[str, float], inf: dict[str, float], meta: dict[str, Any]) -> dict[str, Any]:
    """Print the table of throughputs and ratios; return everything as one dict."""
    ratios = {
        "preprocess_iterative / raw_read": pre["preprocess_iterative"] / pre["raw_read"],
        "preprocess_dask2 / raw_read": pre["preprocess_dask2"] / pre["raw_read"],
        "preprocess_dask2_running_cluster / raw_read": pre["preprocess_dask2_running_cluster"]
        / pre["raw_read"],
        "compute_features / raw_read": pre["compute_features"] / pre["raw_read"],
        "onnx_tagger / bare_ort": inf["onnx_tagger"] / inf["bare_ort"],
        "infer_iterative / bare_ort": inf["infer_iterative"] / inf["bare_ort"],
    }
    rows = [
        ("1a raw uproot read", pre["raw_read"]),
        ("1b compute_features only", pre["compute_features"]),
        ("1c preprocess (iterative)", pre["preprocess_iterative"]),
        ("1c preprocess (dask, 2 workers)", pre["preprocess_dask2"]),
        ("1c preprocess (dask, 2 workers, running cluster)", pre["preprocess_dask2_running_cluster"]),
        ("2a bare onnxruntime (1 thread)", inf["bare_ort"]),
        ("2b OnnxTagger(events)", inf["onnx_tagger"]),
        ("2c infer stage (iterative)", inf["infer_iterative"]),
    ]
    print(
        f"\nhepnn_coffea {hepnn_coffea.__version__}; {pre['n_jets']} jets; best of {meta['repeat']}; "
        f"model {meta['model']}"
    )
    print(f"{'measurement':<48}{'jets/s':>12}")
    print("-" * 60)
    for name, value in rows:
        print(f"{name:<48}{value:>12,.0f}")
    print(f"\n{'ratio':<48}{'value':>12}")
    print("-" * 60)
    for name, value in ratios.items():
        print(f"{name:<48}{value:>12.3f}")
    return {"meta": meta, "preprocess": pre, "inference": inf, "ratios": ratios}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the command line, run both benchmarks, print and optionally save the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--files",
        nargs="+",
        type=pathlib.Path,
        default=DEFAULT_FILES,
        help="RNTuple/TTree files with a 'tree' (default: shared test_top_0 + test_qcd_0)",
    )
    parser.add_argument("--data-config", type=pathlib.Path, default=DATA_CONFIG)
    parser.add_argument("--model", type=pathlib.Path, help="ONNX model (default: train a 1-epoch PFN here)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up; best is kept")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results to this JSON file")
    parser.add_argument("--no-shards", action="store_true", help="skip the shard size / loader measurement")
    args = parser.parse_args(argv)
    files = [f.resolve() for f in args.files]
    with tempfile.TemporaryDirectory(prefix="hepnn_bench_") as tmp_name:
        tmp = pathlib.Path(tmp_name)
        model = args.model.resolve() if args.model else build_model(tmp)
        pre = bench_preprocess(files, args.data_config.resolve(), tmp, args.repeat)
        inf = bench_inference(files, model, tmp, args.repeat)
        meta = {
            "files": [str(f) for f in files],
            "data_config": str(args.data_config),
            "repeat": args.repeat,
            "model": str(args.model) if args.model else "1-epoch pfn (built)",
            "ort_batch": ORT_BATCH,
        }
        results = report(pre, inf, meta)
        if not args.no_shards:
            print()
            results["shards"] = shard_io.main(["--repeat", str(args.repeat)])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwritten {args.json}")
    return results


if __name__ == "__main__":
    main()
