"""Hit-to-particle clustering on the calorimeter view of the shared top/QCD jets: transformer vs DBSCAN.

Steps: take the first ``--train/--val/--test`` jets (half top, half QCD) of ../shared/data/topqcd,
make their calorimeter view (:func:`hepnn_coffea.calo.calorimeter_view`), preprocess with
``models/data/calo_clustering.yaml``, train ``models/calo/clustering.yaml``, export to ONNX, and
evaluate the learned clustering (through OnnxTagger inside the coffea processor) and the
DBSCAN + nearest-track baseline (eps chosen on the val split) on the test split.

    .venv/bin/python bench/calo_clustering.py --work /tmp/calo_clustering [--epochs 6] [--readme]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import awkward as ak
import numpy as np
import uproot

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "topqcd"
BRANCHES = ("part_px", "part_py", "part_pz", "part_energy", "part_charge", "part_pid", "jet_pt", "jet_eta", "jet_phi",
            "jet_energy", "jet_mass", "jet_nparticles", "event_no", "label_Tbqq", "label_QCD")  # fmt: skip


def subset(work: pathlib.Path, n: dict[str, int]) -> dict:
    fileset = {}
    for split, count in n.items():
        for sample in ("top", "qcd"):
            src = DATA / f"{split}_{sample}_0.root"
            tree = uproot.open(src)["tree"]
            arrays = tree.arrays([b for b in BRANCHES if b in tree.keys()], entry_stop=count // 2)
            out = work / "jets" / f"{split}_{sample}.root"
            out.parent.mkdir(parents=True, exist_ok=True)
            with uproot.recreate(out) as f:
                f["tree"] = {k: arrays[k] for k in arrays.fields}
            fileset[f"{sample}_{split}"] = {"files": {str(out): "tree"}, "metadata": {"sample": sample, "split": split}}
    return fileset


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/calo_clustering"))
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--readme", action="store_true", help="append the table to bench/README.md")
    args = ap.parse_args(argv)

    import torch

    from hepnn_coffea.calo import calorimeter_view
    from hepnn_coffea.evaluation.clustering import (
        BaselineParams, evaluate_jets, run_clustering_evaluation, summarize, to_markdown, view_fileset, view_hits,
        write_summary,
    )  # fmt: skip
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.processing.preprocess import preprocess
    from hepnn_coffea.training.trainer import train

    torch.set_num_threads(args.threads)
    work = args.work
    times = {}
    t = time.time()
    files = subset(work, {"train": args.train, "val": args.val, "test": args.test})
    calorimeter_view(files, work / "view", seed=1, executor="iterative", chunksize=1000)
    times["view_s"] = time.time() - t
    t = time.time()
    view_fs = {k: v for s in ("train", "val", "test") for k, v in view_fileset(work / "view", s).items()}
    preprocess(view_fs, ROOT / "models" / "data" / "calo_clustering.yaml", work / "shards", executor="iterative",
               chunksize=1000)  # fmt: skip
    times["preprocess_s"] = time.time() - t
    t = time.time()
    result = train(ROOT / "models" / "calo" / "clustering.yaml", work / "shards", work / "run",
                   overrides={"training": {"epochs": args.epochs, "device": args.device}}, progress=False)  # fmt: skip
    times["train_s"] = time.time() - t
    export_onnx(work / "run", work / "clustering.onnx", parity_jets=64)

    # baseline eps on the val split (best energy-weighted efficiency x purity)
    t = time.time()
    val = uproot.concatenate([f"{p}:tree" for ds in view_fileset(work / "view", "val").values() for p in ds["files"]])
    val = val[ak.num(val.cell_E) > 0][:200]
    best, scan = None, {}
    for eps in (0.03, 0.05, 0.08, 0.12):
        params = BaselineParams(eps=eps)
        row = summarize(evaluate_jets(view_hits(val), None, "val", 0, params))["all"]["baseline"]
        scan[eps] = row["efficiency"] * row["purity"]
        if best is None or scan[eps] > scan[best.eps]:
            best = params
    times["baseline_scan_s"] = time.time() - t
    t = time.time()
    out = run_clustering_evaluation(work / "view", work / "clustering.onnx", split="test", baseline=best, chunksize=250)
    times["evaluate_s"] = time.time() - t
    table = summarize(out)
    write_summary(table, work / "eval")
    md = to_markdown(table)
    report = {"table": table, "times": times, "baseline": best.__dict__, "eps_scan": scan, "best_epoch": result.best_epoch,
              "history": result.history, "jets": {"train": args.train, "val": args.val, "test": args.test}}  # fmt: skip
    (work / "report.json").write_text(json.dumps(report, indent=2, default=float))
    print(md)
    print(json.dumps({"times": times, "baseline": best.__dict__, "eps_scan": scan, "best_epoch": result.best_epoch}, default=float))
    if args.readme:
        with (ROOT / "bench" / "README.md").open("a") as f:
            f.write(readme_section(report, md))
    return report


def readme_section(report: dict, md: str) -> str:
    t = report["times"]
    j = report["jets"]
    return (
        "\n## Hit-to-particle clustering (calorimeter view, `bench/calo_clustering.py`)\n\n"
        f"First {j['train']} / {j['val']} / {j['test']} jets (train/val/test, half top, half QCD) of "
        "`../shared/data/topqcd` through `hepnn_coffea.calo.calorimeter_view` (seed 1); hits = tracks reaching "
        "the calorimeter + cells above 0.3 GeV; truth = the particle that deposited most of a cell's energy. "
        "Learned: `models/calo/clustering.yaml` (transformer, 16 bounded slots, Hungarian-matched loss), "
        f"best epoch {report['best_epoch']}; baseline: DBSCAN in (deta, dphi) weighted by energy "
        f"(eps={report['baseline']['eps']} chosen on 200 val jets, core energy {report['baseline']['min_energy']} GeV) + "
        "nearest-track association and an EM-fraction rule for the type. Metrics on the test cells: "
        "energy-weighted efficiency/purity (pooled), ARI and energy-weighted ARI (mean over jets), energy "
        "response of the best-matching cluster for true clusters > 1 GeV (median - 1, half 16-84 % width), "
        "PID accuracy over those clusters.\n\n"
        f"{md}\n\n"
        f"Times (2 shared CPU cores): view {t['view_s']:.0f} s, preprocess {t['preprocess_s']:.0f} s, "
        f"train {t['train_s']:.0f} s, baseline eps scan {t['baseline_scan_s']:.0f} s, evaluation {t['evaluate_s']:.0f} s.\n"
    )


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
