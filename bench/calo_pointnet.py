"""Per-point energy regression of focused tracks (JetPointNet workflow) on the shared top/QCD jets.

The whole study through the library's stages: calorimeter view of a subset of
``../shared/data/topqcd`` (first N jets of the train/val/test files; the split is the file's,
so it is by event) -> focused-track samples (``pt_min`` GeV tracks, Delta R < 0.2 cones) ->
``preprocess`` (``models/data/calo_pointnet.yaml``, ``length: auto``) -> ``train`` PointNet
(``models/calo/pointnet.yaml``) and the attention variant (``pointnet_attention.yaml``) ->
``export_onnx`` -> ``evaluate_per_point`` (OnnxTagger in a coffea processor on the test
samples; cone and expected-response baselines). Prints the Markdown table (MAPE / resolution
per track-pT bin).

Usage::

    .venv/bin/python bench/calo_pointnet.py --workdir /tmp/calo_pn --json /tmp/calo_pn/summary.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from typing import Any

import awkward as ak
import uproot

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "topqcd"
MODELS = {"pointnet": ROOT / "models" / "calo" / "pointnet.yaml",
          "pointnet_attention": ROOT / "models" / "calo" / "pointnet_attention.yaml"}  # fmt: skip


def subset(work: pathlib.Path, jets: dict[str, int]) -> dict[str, Any]:
    """First ``jets[split] / 2`` top and QCD jets of the first file of each split, copied to ``work/jets``."""
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


def main() -> None:
    from hepnn_coffea.calo import calorimeter_view
    from hepnn_coffea.calo.samples import focused_track_samples
    from hepnn_coffea.evaluation.per_point import evaluate_per_point, summary_markdown
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.processing.preprocess import preprocess
    from hepnn_coffea.training.trainer import train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("/tmp/calo_pointnet"))
    ap.add_argument("--jets", default="300,100,200", help="train,val,test jets (half top, half QCD)")
    ap.add_argument("--pt-min", type=float, default=5.0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="pointnet,pointnet_attention")
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    jets = dict(zip(("train", "val", "test"), (int(x) for x in args.jets.split(","))))
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    calorimeter_view(subset(work, jets), work / "view", seed=1, chunksize=500)
    times["view"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    samples = focused_track_samples(work / "view", work / "samples", pt_min=args.pt_min)
    times["samples"] = time.perf_counter() - t0
    print("samples:", samples["splits"])
    t0 = time.perf_counter()
    shards = preprocess(samples["fileset"], ROOT / "models" / "data" / "calo_pointnet.yaml", work / "shards",
                        executor="iterative", chunksize=20_000)  # fmt: skip
    times["preprocess"] = time.perf_counter() - t0
    print("auto length:", shards["auto_lengths"]["points"])
    onnx = {}
    for name in args.models.split(","):
        run = work / "runs" / name
        t0 = time.perf_counter()
        if not (run / "checkpoints" / "best.pt").is_file():
            train(MODELS[name], work / "shards", run, progress=False,
                  overrides={"training": {"epochs": args.epochs, "num_threads": args.threads}})  # fmt: skip
        times[f"train_{name}"] = time.perf_counter() - t0
        onnx[name] = work / f"{name}.onnx"
        export_onnx(run, onnx[name])
    t0 = time.perf_counter()
    summary = evaluate_per_point(onnx, work / "samples", work / "eval", pt_edges=[args.pt_min, 10, 20, 50, 1000])
    times["evaluate"] = time.perf_counter() - t0
    summary["times_s"] = times
    summary["samples"] = samples["splits"]
    summary["auto_length"] = shards["auto_lengths"]["points"]
    print(summary_markdown(summary["rows"], summary["estimators"]))
    print("times [s]:", {k: round(v, 1) for k, v in times.items()})
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
