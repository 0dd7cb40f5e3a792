"""Side-by-side physics comparison of hepnn_coffea with the weaver-core 0.5.3 anchor.

Trains the zoo models (``models/{pfn,particlenet,part}.yaml``) on the shared
top-vs-QCD RNTuples with the same budget as the anchor's weaver runs
(``../shared/anchor/README.md``), exports them to ONNX and scores the test split
(15k jets) through hepnn_coffea's own ``infer``/``evaluate`` stages. Prints a
Markdown table next to weaver's numbers and whether hepnn_coffea reaches them.

Budgets (identical to the anchor; ``num_threads: 2`` everywhere):

=============  =====  ======  =====================  ==========  ==========================
model          batch  lr      optimizer / extra      scheduler   length
=============  =====  ======  =====================  ==========  ==========================
PFN            512    1e-2    ranger                 flat+decay  10 epochs of the train split
ParticleNet    128    1e-2    ranger                 none        1 epoch, 6,144 jets (48 steps)
ParT           128    1e-3    ranger, wd 0.01        none        1 epoch, 6,144 jets (48 steps)
=============  =====  ======  =====================  ==========  ==========================

Differences that remain: hepnn_coffea selects the best epoch on the *whole* val
split (10k jets; weaver used ``--samples-per-epoch-val 10000``, the same jets), and
its PFN uses batch norm (the anchor's weaver PFN is built with ``use_bn=False``).

Usage::

    .venv/bin/python bench/compare_weaver.py                         # all three, ~75 min on a busy 2-core box
    .venv/bin/python bench/compare_weaver.py --models pfn --workdir /tmp/cmp --json /tmp/cmp/compare.json
    .venv/bin/python bench/compare_weaver.py --models part --seeds 1,2,3 --val-samples 2000   # seed spread

Options: ``--models`` (comma list, default ``pfn,particlenet,part``), ``--workdir``
(scratch folder for shards, runs, ONNX files and infer outputs, default
``/tmp/cmp``; shards found there are reused), ``--data`` (default
``../shared/data/topqcd``), ``--threads`` (default 2), ``--json`` (also write the
results there), ``--seeds`` (comma list: one run per seed, named ``<model>_s<seed>``, plus a
mean/std row per model), ``--val-samples`` (val jets scored per epoch; the one-epoch budgets
do not select epochs, so this only saves time), ``--infer-batch`` (jets per onnxruntime call inside ``infer``, default
256; see below), ``--reuse-runs`` (take finished runs already in the workdir instead of
training again; their train time is then reported as "reused").

ParticleNet needs ~6 MB of onnxruntime memory per jet, so ``--infer-batch`` (passed to
``infer(batch_size=...)``) keeps each onnxruntime call at 256 jets.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import time
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "topqcd"
DATA_CONFIG = ROOT / "models" / "data" / "top_kin.yaml"

# Anchor (weaver-core 0.5.3, 2-core CPU, 2 threads), test split: ../shared/anchor/README.md
WEAVER = {
    "pfn": {"params": 83_842, "budget": "10 epochs", "auc": 0.9773, "accuracy": 0.9251,
            "rejection_at_30": 441, "rejection_at_50": 117},
    "particlenet": {"params": 366_160, "budget": "6,144 jets", "auc": 0.9538, "accuracy": 0.8982,
                    "rejection_at_30": 54, "rejection_at_50": 30},
    "part": {"params": 2_141_134, "budget": "6,144 jets", "auc": 0.9380, "accuracy": 0.8706,
             "rejection_at_30": 58, "rejection_at_50": 23},
}  # fmt: skip
BASELINES = {  # the anchor's non-NN rows, for context
    "logistic regression": {"auc": 0.9629, "accuracy": 0.9055, "rejection_at_30": 142, "rejection_at_50": 56},
    "HistGradientBoosting": {"auc": 0.9849, "accuracy": 0.9387, "rejection_at_30": 1250, "rejection_at_50": 300},
}
COMMON = {"optimizer": "ranger", "num_threads": 2, "tensorboard": False}
BUDGETS: dict[str, dict[str, Any]] = {
    "pfn": {"epochs": 10, "batch_size": 512, "lr": 1e-2, "scheduler": "flat+decay", "samples_per_epoch": None},
    "particlenet": {"epochs": 1, "batch_size": 128, "lr": 1e-2, "scheduler": "none", "samples_per_epoch": 6144},
    "part": {"epochs": 1, "batch_size": 128, "lr": 1e-3, "weight_decay": 0.01, "scheduler": "none",
             "samples_per_epoch": 6144},
}  # fmt: skip
NAMES = {"pfn": "PFN", "particlenet": "ParticleNet", "part": "ParT"}
METRICS = ("auc", "accuracy", "rejection_at_30", "rejection_at_50")


def weaver_cli(path: pathlib.Path | None) -> pathlib.Path:
    """The weaver CLI to run: ``path``, else ``$WEAVER_BIN``, else ``weaver`` on PATH.

    Raises
    ------
    SystemExit
        None found (weaver-core lives in its own venv; bench/README.md has the install command).
    """
    import os
    import shutil

    found = path or os.environ.get("WEAVER_BIN") or shutil.which("weaver")
    if not found or not pathlib.Path(found).is_file():
        raise SystemExit(f"weaver CLI {found or '(not on PATH, $WEAVER_BIN unset)'} not found: install weaver-core "
                         "in its own venv and pass --weaver PATH (see bench/README.md)")  # fmt: skip
    return pathlib.Path(found)


def make_fileset(data: pathlib.Path) -> dict[str, Any]:
    """Datasets ``{sample}_{split}`` over ``{split}_{sample}_*.root`` (tree ``tree``)."""
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


def run_model(model: str, shards: pathlib.Path, fileset: dict[str, Any], work: pathlib.Path, threads: int,
              reuse: bool, infer_batch: int = 256, seed: int | None = None, val_samples: int | None = None,
              ) -> dict[str, Any]:  # fmt: skip
    """Train, export, infer on the test split and evaluate one model; returns metrics and timings.

    ``seed`` (default: the model config's) names the run ``<model>_s<seed>``; ``val_samples``
    scores only that many val jets per epoch (no effect on one-epoch budgets but time).
    """
    from hepnn_coffea.evaluation.stages import evaluate, infer
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.training.trainer import train

    name = model if seed is None else f"{model}_s{seed}"
    run_dir, onnx_path, out_dir = work / "runs" / name, work / f"{name}.onnx", work / "infer" / name
    overrides = {"training": {**COMMON, **BUDGETS[model], "num_threads": threads}}
    if seed is not None:
        overrides["training"]["seed"] = seed
    if val_samples:
        overrides["training"]["val_samples"] = val_samples
    shutil.rmtree(out_dir, ignore_errors=True)
    t0 = time.perf_counter()
    if reuse and (run_dir / "checkpoints" / "last.pt").is_file():  # finished run of an earlier call
        result = train(None, None, run_dir, resume=True, progress=False)  # no epochs left: returns its history
        t_train = None
        print(f"[{model}] reusing the finished run in {run_dir}", flush=True)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        result = train(ROOT / "models" / f"{model}.yaml", shards, run_dir, overrides=overrides, progress=False)
        t_train = time.perf_counter() - t0
    params = json.loads((run_dir / "provenance.json").read_text())["parameters"]
    t0 = time.perf_counter()
    export_onnx(run_dir, onnx_path)
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    info = infer(onnx_path, fileset, out_dir, split="test", executor="futures", workers=2, batch_size=infer_batch)
    t_infer = time.perf_counter() - t0
    summary = evaluate(out_dir, plots=False)
    last = result.history[-1]
    row = {
        "model": model, "seed": seed, "params": params, "overrides": overrides["training"],
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch, "best_val_auc": result.best_metric,
        "train_jets_per_s": last["train_jets_per_s"], "train_data_wait_frac": last["train_data_wait_frac"],
        "n_test_jets": info["n_jets"], "test": {k: float(summary["from_table"][k]["value"]) for k in METRICS},
        "test_from_hists": {k: float(summary["from_hists"][k]["value"]) for k in METRICS},  # intervals: summary.json
        "seconds": {"train": t_train, "export": t_export, "infer": t_infer,
                    "infer_jets_per_s": info["n_jets"] / t_infer},
    }  # fmt: skip
    print(f"[{name}] params {params:,}, best epoch {result.best_epoch} (val AUC {result.best_metric:.4f}), "
          f"train {'(reused)' if t_train is None else f'{t_train:.0f}'} s, export {t_export:.0f} s, infer {t_infer:.0f} s "
          f"({info['n_jets'] / t_infer:.0f} jets/s), test {row['test']}", flush=True)  # fmt: skip
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    """The comparison table (hepnn_coffea vs weaver anchor)."""

    def fmt(m: dict[str, float]) -> str:
        return f"{m['auc']:.4f} / {m['accuracy']:.4f} / {m['rejection_at_30']:.0f} / {m['rejection_at_50']:.0f}"

    lines = [
        "Test split (15k jets): AUC / accuracy / 1/eps_B @ eps_S=30% / 50%",
        "",
        "| model | params (hepnn / weaver) | budget | hepnn_coffea | weaver-core 0.5.3 (anchor) "
        "| AUC >= | acc >= | 1/eps_B@30% >= |",
        "|---|---|---|---|---|---|---|---|",
    ]
    def line(label: str, r: dict[str, Any], h: dict[str, float]) -> str:
        w = WEAVER[r["model"]]
        ok = ["yes" if h[k] >= w[k] else f"no ({h[k] - w[k]:+.4g})" for k in ("auc", "accuracy", "rejection_at_30")]
        return f"| {label} | {r['params']:,} / {w['params']:,} | {w['budget']} | {fmt(h)} | {fmt(w)} | " + " | ".join(ok) + " |"

    for model in dict.fromkeys(r["model"] for r in rows):
        runs = [r for r in rows if r["model"] == model]
        for r in runs:
            lines.append(line(NAMES[model] + ("" if r.get("seed") is None else f" (seed {r['seed']})"), r, r["test"]))
        if len(runs) > 1:  # the mean over seeds, and the seed-to-seed spread
            mean = {k: float(np.mean([r["test"][k] for r in runs])) for k in METRICS}
            std = {k: float(np.std([r["test"][k] for r in runs], ddof=1)) for k in METRICS}
            lines.append(line(f"{NAMES[model]} mean of {len(runs)} (std {std['auc']:.4f} / {std['accuracy']:.4f} / "
                              f"{std['rejection_at_30']:.0f} / {std['rejection_at_50']:.0f})", runs[0], mean))
    for name, b in BASELINES.items():
        lines.append(f"| {name} (anchor) | - | - | - | {fmt(b)} | | | |")
    lines += ["", "| model | train s | export s | infer s (15k jets) | infer jets/s | train jets/s | data-wait frac |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        s = r["seconds"]
        train = "reused" if s["train"] is None else f"{s['train']:.0f}"
        label = NAMES[r["model"]] + ("" if r.get("seed") is None else f" (seed {r['seed']})")
        lines.append(f"| {label} | {train} | {s['export']:.1f} | {s['infer']:.0f} "
                     f"| {s['infer_jets_per_s']:.0f} | {r['train_jets_per_s']:.0f} | {r['train_data_wait_frac']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="pfn,particlenet,part", help="comma list of pfn, particlenet, part")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("/tmp/cmp"))
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the results here")
    parser.add_argument("--infer-batch", type=int, default=256,
                        help="jets per onnxruntime call in infer")
    parser.add_argument("--reuse-runs", action="store_true", help="reuse finished runs found in the workdir")
    parser.add_argument("--seeds", default=None, help="comma list of training seeds (one run each; default: the config's)")
    parser.add_argument("--val-samples", type=int, default=None, help="val jets scored per epoch (default: all)")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(BUDGETS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(BUDGETS)}")

    from hepnn_coffea.processing.preprocess import preprocess

    t_start = time.perf_counter()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    fileset = make_fileset(args.data)
    (work / "fileset.json").write_text(json.dumps(fileset, indent=1))
    shards = work / "shards"
    t0 = time.perf_counter()
    if (shards / "manifest.json").is_file():
        print(f"reusing shards in {shards}", flush=True)
    else:
        preprocess(work / "fileset.json", DATA_CONFIG, shards, executor="futures", workers=2, chunksize=10_000)
    t_pre = time.perf_counter() - t0
    print(f"preprocess: {t_pre:.0f} s", flush=True)

    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [None]
    rows = [run_model(m, shards, fileset, work, args.threads, args.reuse_runs, args.infer_batch, seed, args.val_samples)
            for m in models for seed in seeds]  # fmt: skip
    table = markdown(rows)
    total = time.perf_counter() - t_start
    print("\n" + table + f"\n\npreprocess {t_pre:.0f} s; total {total:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "weaver_anchor": WEAVER, "baselines": BASELINES,
                                         "preprocess_s": t_pre, "total_s": total}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
