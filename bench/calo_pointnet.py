"""Per-point energy regression of focused tracks (JetPointNet workflow) on the shared top/QCD jets.

The whole study through the library's stages: calorimeter view of a subset of
``../shared/data/topqcd`` (first N jets of the train/val/test files; the split is the file's,
so it is by event) -> focused-track samples (``pt_min`` GeV tracks, Delta R < 0.2 cones) ->
``preprocess`` (``models/data/calo_pointnet.yaml``, ``length: auto``) -> ``train`` PointNet
(``models/calo/pointnet.yaml``) and the attention variant (``pointnet_attention.yaml``) ->
``export_onnx`` -> ``evaluate_per_point`` (OnnxTagger in a coffea processor on the test
samples; cone, subtraction and response baselines). Prints the Markdown table (MAPE / resolution
per track-pT bin).

Stages (``--stage``, comma-separated; default all): ``data`` (view, samples, shards; with
``--pack DIR`` also the train/val shards packed for carrying, :mod:`shard_pack`), ``train``
(with ``--unpack DIR`` first rebuilds the shards from a pack: the GPU machine has no
uproot/coffea), ``eval`` (export every run of ``--run-dir`` and evaluate on the test samples).
Besides the table over all tracks it prints the same table without muon tracks (whose true
deposit is a ~1.8 GeV MIP whatever their momentum, the response template's main failure).

Usage (the numbers of ``bench/README.md``: data here, training on one H100, evaluation here)::

    .venv/bin/python bench/calo_pointnet.py --stage data --workdir /tmp/calo_pn --pack .gpu_pointnet/packed
    # on the GPU machine (carry .gpu_pointnet, 44 MiB; install the awkward wheels first):
    python3 bench/calo_pointnet.py --stage train --unpack .gpu_pointnet/packed --workdir /tmp/calo_pn \
        --run-dir $OUT/runs --device cuda --threads 4
    # back here, with the runs from $OUT (e.g. in .gpu_pointnet/runs):
    .venv/bin/python bench/calo_pointnet.py --stage eval --workdir /tmp/calo_pn --run-dir .gpu_pointnet/runs \
        --json /tmp/calo_pn/summary.json

or everything on the CPU: ``.venv/bin/python bench/calo_pointnet.py --workdir /tmp/calo_pn``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "topqcd"
MODELS = {"pointnet": ROOT / "models" / "calo" / "pointnet.yaml",
          "pointnet_attention": ROOT / "models" / "calo" / "pointnet_attention.yaml"}  # fmt: skip


def subset(work: pathlib.Path, jets: dict[str, int]) -> dict[str, Any]:
    """First ``jets[split] / 2`` top and QCD jets of the first file of each split, copied to ``work/jets``."""
    import awkward as ak
    import uproot

    fileset = {}
    for split, n in jets.items():
        for kind in ("top", "qcd"):
            dst = work / "jets" / f"{split}_{kind}.root"
            if not dst.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                arrays = uproot.open(DATA / f"{split}_{kind}_0.root")["tree"].arrays(entry_stop=n // 2)
                with uproot.recreate(dst) as f:
                    f["tree"] = {k: arrays[k] if arrays[k].ndim > 1 else ak.to_numpy(arrays[k]) for k in arrays.fields}
            fileset[f"{kind}_{split}"] = {"files": {str(dst): "tree"}, "metadata": {"sample": kind, "split": split}}
    return fileset


def model_configs(models: str) -> dict[str, pathlib.Path]:
    """``--models``: names of :data:`MODELS` or paths of model configs (run named after the file)."""
    return {m if m in MODELS else pathlib.Path(m).stem: MODELS.get(m, pathlib.Path(m)) for m in models.split(",")}


def data_stage(args: argparse.Namespace, work: pathlib.Path, times: dict[str, float]) -> dict[str, Any]:
    """View, focused-track samples and shards (and the carried pack with ``--pack``)."""
    from hepnn_coffea.calo import calorimeter_view
    from hepnn_coffea.calo.samples import focused_track_samples
    from hepnn_coffea.processing.preprocess import preprocess

    jets = dict(zip(("train", "val", "test"), (int(x) for x in args.jets.split(","))))
    t0 = time.perf_counter()
    calorimeter_view(subset(work, jets), work / "view", seed=1, chunksize=500)
    times["view"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    samples = focused_track_samples(work / "view", work / "samples", pt_min=args.pt_min)
    times["samples"] = time.perf_counter() - t0
    print("samples:", {k: v["samples"] for k, v in samples["splits"].items()})
    t0 = time.perf_counter()
    shards = preprocess(samples["fileset"], ROOT / "models" / "data" / "calo_pointnet.yaml", args.shards,
                        executor="iterative", chunksize=20_000)  # fmt: skip
    times["preprocess"] = time.perf_counter() - t0
    print("auto length:", shards["auto_lengths"]["points"])
    if args.pack:
        from shard_pack import pack

        print("packed:", pack(args.shards, args.pack))
    return {"samples": samples["splits"], "auto_length": shards["auto_lengths"]["points"]}


def train_stage(args: argparse.Namespace, times: dict[str, float]) -> None:
    """Train every ``--models`` run in ``--run-dir`` (skipped where a best checkpoint exists)."""
    from hepnn_coffea.training.trainer import train

    if args.unpack:
        from shard_pack import unpack

        print("unpacked rows:", unpack(args.unpack, args.shards))
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
    """Export the runs to ONNX and evaluate them with the baselines on the test samples."""
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


def main() -> None:
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
    ap.add_argument("--run-dir", type=pathlib.Path, help="folder of the runs, one per model (default WORKDIR/runs)")
    ap.add_argument("--pack", type=pathlib.Path, help="data stage: also pack the train/val shards here")
    ap.add_argument("--unpack", type=pathlib.Path, help="train stage: first rebuild the shards from this pack")
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args()
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
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    main()
