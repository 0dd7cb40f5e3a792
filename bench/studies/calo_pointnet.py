"""Per-point energy regression of focused tracks (JetPointNet workflow) on the shared top/QCD jets.

The whole study through the library's stages: calorimeter view of a subset of
``../shared/data/topqcd`` (first N jets of the train/val/test files; the split is the file's,
so it is by event) -> focused-track samples (``pt_min`` GeV tracks, Delta R < 0.2 cones) ->
``preprocess`` (``models/data/calo_pointnet.yaml``, ``length: auto``) -> ``train`` PointNet
(``models/calo/pointnet.yaml``) and the attention variant (``pointnet_attention.yaml``) ->
``export_onnx`` -> ``evaluate_per_point`` (OnnxTagger in a coffea processor on the test
samples; cone, subtraction and response baselines). Prints the Markdown table (MAPE / resolution
per track-pT bin).

Stages (``--stage``, comma-separated; default all): ``data`` (view, samples, shards), ``train``
(needs only the shard folder: the ragged shards hold only the real points and travel to a GPU
machine without uproot/coffea as they are), ``eval`` (export every run of ``--run-dir`` and
evaluate on the test samples).
Besides the table over all tracks it prints the same table without muon tracks (whose true
deposit is a ~1.8 GeV MIP whatever their momentum, the response template's main failure).

Usage (the numbers of ``bench/README.md``: data here, training on one H100, evaluation here)::

    .venv/bin/python -m bench.studies.calo_pointnet --stage data --workdir /tmp/calo_pn
    # on the GPU machine (carry /tmp/calo_pn/shards as .gpu_pointnet/shards; install the awkward
    # wheels first):
    python3 -m bench.studies.calo_pointnet --stage train --shards .gpu_pointnet/shards \
        --workdir /tmp/calo_pn --run-dir $OUT/runs --device cuda --threads 4
    # back here, with the runs from $OUT (e.g. in .gpu_pointnet/runs):
    .venv/bin/python -m bench.studies.calo_pointnet --stage eval --workdir /tmp/calo_pn \
        --run-dir .gpu_pointnet/runs --json /tmp/calo_pn/summary.json

or everything on the CPU: ``.venv/bin/python -m bench.studies.calo_pointnet --workdir /tmp/calo_pn``.
"""

from __future__ import annotations

import argparse
import pathlib
import time
from typing import Any

from bench.common import MODELS as CONFIGS
from bench.common import first_jets, write_json

MODELS = {
    "pointnet": CONFIGS / "calo" / "pointnet.yaml",
    "pointnet_attention": CONFIGS / "calo" / "pointnet_attention.yaml",
}


def model_configs(models: str) -> dict[str, pathlib.Path]:
    """``--models``: names of :data:`MODELS` or paths of model configs (run named after the file).

    Parameters
    ----------
    models
        Comma list.

    Returns
    -------
    dict
        Config path by run name.
    """
    return {
        m if m in MODELS else pathlib.Path(m).stem: MODELS.get(m, pathlib.Path(m)) for m in models.split(",")
    }


def data_stage(args: argparse.Namespace, work: pathlib.Path, times: dict[str, float]) -> dict[str, Any]:
    """View, focused-track samples and shards.

    Parameters
    ----------
    args
        The parsed command line.
    work
        Work folder: ``jets/``, ``view/``, ``samples/``.
    times
        Receives the seconds of each step.

    Returns
    -------
    dict
        Samples per split and the data-derived point length.
    """
    from hepnn_coffea.calo import calorimeter_view
    from hepnn_coffea.calo.samples import focused_track_samples
    from hepnn_coffea.processing.preprocess import preprocess

    jets = dict(zip(("train", "val", "test"), (int(x) for x in args.jets.split(","))))
    t0 = time.perf_counter()
    calorimeter_view(first_jets(work, jets, reuse=True), work / "view", seed=1, chunksize=500)
    times["view"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    samples = focused_track_samples(work / "view", work / "samples", pt_min=args.pt_min)
    times["samples"] = time.perf_counter() - t0
    print("samples:", {k: v["samples"] for k, v in samples["splits"].items()})
    t0 = time.perf_counter()
    shards = preprocess(
        samples["fileset"],
        CONFIGS / "data" / "calo_pointnet.yaml",
        args.shards,
        executor="iterative",
        chunksize=20_000,
    )
    times["preprocess"] = time.perf_counter() - t0
    print("auto length:", shards["auto_lengths"]["points"])
    return {"samples": samples["splits"], "auto_length": shards["auto_lengths"]["points"]}


def train_stage(args: argparse.Namespace, times: dict[str, float]) -> None:
    """Train every ``--models`` run in ``--run-dir`` (skipped where a best checkpoint exists).

    Parameters
    ----------
    args
        The parsed command line.
    times
        Receives the seconds of each training.
    """
    from hepnn_coffea.training.trainer import train

    overrides: dict[str, Any] = {"training": {"num_threads": args.threads}}
    if args.epochs:
        overrides["training"]["epochs"] = args.epochs
    if args.device:
        overrides["training"]["device"] = args.device
    for name, config in model_configs(args.models).items():
        run = args.run_dir / name
        t0 = time.perf_counter()
        if not (run / "checkpoints" / "best.pt").is_file():
            result = train(config, args.shards, run, progress=False, overrides=overrides)
            print(f"{name}: best epoch {result.best_epoch}, val loss {result.best_metric:.4f}")
        times[f"train_{name}"] = time.perf_counter() - t0


def eval_stage(args: argparse.Namespace, work: pathlib.Path, times: dict[str, float]) -> dict[str, Any]:
    """Export the runs to ONNX and evaluate them with the baselines on the test samples.

    Parameters
    ----------
    args
        The parsed command line.
    work
        Work folder (``samples/``; receives the ONNX files and ``eval/``).
    times
        Receives the seconds of the evaluation.

    Returns
    -------
    dict
        The per-point summary, also without the muon tracks.
    """
    import numpy as np

    from hepnn_coffea.calo.geometry import MUON
    from hepnn_coffea.calo.per_point_eval import evaluate_per_point, per_point_summary, summary_markdown
    from hepnn_coffea.export import export_onnx

    onnx = {}
    for name in model_configs(args.models):
        onnx[name] = work / f"{name}.onnx"
        export_onnx(args.run_dir / name, onnx[name])
    t0 = time.perf_counter()
    edges = [args.pt_min, 10, 20, 50, 1000]
    summary = evaluate_per_point(onnx, work / "samples", work / "eval", pt_edges=edges)
    times["evaluate"] = time.perf_counter() - t0
    table = {k: v for k, v in np.load(work / "eval" / "table.npz").items()}
    no_mu = {k: v[table["focus_type"] != MUON] for k, v in table.items()}
    summary["rows_without_muons"] = per_point_summary(no_mu, summary["estimators"], edges)
    summary["muon_tracks"] = int(((table["focus_type"] == MUON) & (table["true"] >= 0.5)).sum())
    print(summary_markdown(summary["rows"], summary["estimators"]))
    print(f"\nwithout the {summary['muon_tracks']} muon tracks:")
    print(summary_markdown(summary["rows_without_muons"], summary["estimators"]))
    return summary


def main(argv: list[str] | None = None) -> None:
    """Run the selected stages and print the tables and timings.

    ``argv``: the command line (default ``sys.argv[1:]``).
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", default="data,train,eval", help="comma-separated: data, train, eval")
    ap.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("/tmp/calo_pointnet"))
    ap.add_argument("--jets", default="1700,200,1000", help="train,val,test jets (half top, half QCD)")
    ap.add_argument("--pt-min", type=float, default=5.0)
    ap.add_argument("--epochs", type=int, help="override the model configs' epochs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", help="override training.device (cpu, cuda)")
    ap.add_argument("--models", default="pointnet,pointnet_attention")
    ap.add_argument("--shards", type=pathlib.Path, help="shard folder (default WORKDIR/shards)")
    ap.add_argument(
        "--run-dir", type=pathlib.Path, help="folder of the runs, one per model (default WORKDIR/runs)"
    )
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args(argv)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    args.shards = args.shards or work / "shards"
    args.run_dir = args.run_dir or work / "runs"
    stages = set(args.stage.split(","))
    times: dict[str, float] = {}
    summary: dict[str, Any] = {}
    if "data" in stages:
        summary.update(data_stage(args, work, times))
    if "train" in stages:
        train_stage(args, times)
    if "eval" in stages:
        summary.update(eval_stage(args, work, times))
    summary["times_s"] = times
    print("times [s]:", {k: round(v, 1) for k, v in times.items()})
    write_json(args.json, summary, default=str)


if __name__ == "__main__":
    main()
