#!/usr/bin/env python
"""The whole hepnn_coffea chain on top-vs-QCD jets, end to end.

    python analysis.py                       # bundled samples (tests/samples), a few minutes on 2 cores
    python analysis.py --fileset my.json     # any coffea fileset with train/val/test splits in metadata

Stages: preprocess (coffea processor on a dask LocalCluster -> shards) -> train
(by default a PFN that sees the constituents and the six jet observables of the classical
baselines) -> export (ONNX + embedded config, parity checked) -> infer (evaluation processor:
hists + per-jet table) -> evaluate (AUC/rejection/accuracy with 68% intervals next to a logistic
regression and a GBT on the jet observables, the network's difference to the GBT with a paired
bootstrap interval, plots) -> an existing analysis using the tagger in one line.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Callable

HERE = pathlib.Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--workflow",
        choices=("topqcd", "nanoaod"),
        default="topqcd",
        help="topqcd: flat jet trees (bundled samples); nanoaod: event-level NanoAOD, top/W/QCD tagger "
        "with gen-matched labels and cross-section weights (../shared/data/nanosim)",
    )
    p.add_argument(
        "--fileset",
        default=None,
        help="default: tests/samples/fileset.json (topqcd), ../shared/data/nanosim/fileset.json (nanoaod)",
    )
    p.add_argument(
        "--data-config",
        default=None,
        help="default: models/data/top_kin_hybrid.yaml (topqcd), models/data/nanoaod_fatjet_hybrid.yaml "
        "(nanoaod)",
    )
    p.add_argument(
        "--model-config",
        default=None,
        help="default: models/pfn_hybrid.yaml (topqcd), models/nanoaod/pfn_hybrid.yaml (nanoaod): the PFN "
        "with the jet observables next to the constituents (models/pfn.yaml: constituents only)",
    )
    p.add_argument("--output", default=str(HERE / "demo_output"), help="everything goes below this folder")
    p.add_argument("--epochs", type=int, default=None, help="default: 8 (topqcd), 12 (nanoaod)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 128 (topqcd), 256 (nanoaod)")
    p.add_argument("--executor", choices=("dask", "futures", "iterative"), default="dask")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--scheduler", default=None, help="existing dask scheduler address (default: LocalCluster)"
    )
    p.add_argument("--chunksize", type=int, default=50_000)
    p.add_argument(
        "--style",
        default="none",
        choices=("CMS", "ATLAS", "LHCb", "ALICE", "none"),
        help="topqcd: experiment style of the plots (default none: the samples are no experiment's)",
    )
    args = p.parse_args(argv)
    topqcd = args.workflow == "topqcd"
    defaults = {
        "fileset": HERE / "tests" / "samples" / "fileset.json"
        if topqcd
        else HERE.parent / "shared" / "data" / "nanosim" / "fileset.json",
        "data_config": HERE
        / "models"
        / "data"
        / ("top_kin_hybrid.yaml" if topqcd else "nanoaod_fatjet_hybrid.yaml"),
        "model_config": HERE / "models" / ("pfn_hybrid.yaml" if topqcd else "nanoaod/pfn_hybrid.yaml"),
        "epochs": 8 if topqcd else 12,
        "batch_size": 128 if topqcd else 256,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value if isinstance(value, int) else str(value))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workflow == "nanoaod":
        return nanoaod_workflow(args)
    from hepnn_coffea.evaluation.stages import evaluate, summary_markdown
    from hepnn_coffea.processing.fileset import load_fileset, select_split
    from hepnn_coffea.processing.preprocess import preprocess
    from hepnn_coffea.processing.runner import run_runner

    out, execution, step = chain_setup(args)
    shards, run_dir, model, results = out / "shards", out / "run", out / "model.onnx", out / "results"
    step(f"preprocess {args.fileset} with {args.data_config}")
    manifest = preprocess(args.fileset, args.data_config, shards, **execution)
    for split, samples in manifest["splits"].items():
        for sample, e in samples.items():
            print(
                f"         {split:5s} {sample:6s} read {e['entries_read']:7d} written {e['entries_out']:7d}"
            )
    step(f"shards + manifest -> {shards}")

    train_export_infer(args, shards, run_dir, model, results, execution, step)

    from hepnn_coffea.plotting.style import PlotStyle

    name = pathlib.Path(args.model_config).stem
    summary = evaluate(
        results,
        baselines=["logistic", "gbt"],
        shards=shards,
        reference="gbt",
        name=name,
        style=PlotStyle(args.style),
    )
    step(f"evaluation -> {results / 'summary.json'}, {results / 'summary.md'}")
    print(summary_markdown(summary))
    versus = summary["relative_to_reference"][name]
    diff, sigma = versus["auc_difference"], versus["auc_significance"]
    sigma = f"{sigma:+.1f} sigma" if sigma is not None else "no bootstrap spread"
    print(
        f"         {name} - gbt: AUC difference {diff['value']:+.4f} +- {diff['high'] - diff['value']:.4f} "
        f"({sigma}, paired bootstrap on the same {summary['n_jets']} test jets)"
    )
    for plot in summary["plots"]:
        print(f"         plot: {plot}")

    sys.path.insert(0, str(HERE))
    from processors.toptag_analysis import TopTagAnalysis

    test_files = select_split(load_fileset(args.fileset), "test")
    analysis = run_runner(test_files, TopTagAnalysis(str(model), cut=0.5), **execution)
    for dataset, res in analysis.items():
        print(
            f"         existing analysis, {dataset}: {res['n_tagged']} of {res['n_jets']} jets tagged "
            "(score > 0.5)"
        )
    step("done")
    (out / "artifacts.json").write_text(
        json.dumps(
            {
                "shards": str(shards),
                "run_dir": str(run_dir),
                "model": str(model),
                "results": str(results),
                "summary": summary["from_table"],
            },
            indent=2,
        )
    )
    return 0


def chain_setup(args: argparse.Namespace) -> tuple[pathlib.Path, dict, Callable[[str], None]]:
    """The output folder, the execution options of every stage and a timed progress printer."""
    execution = dict(
        executor=args.executor, workers=args.workers, scheduler=args.scheduler, chunksize=args.chunksize
    )
    t0 = time.time()

    def step(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)

    return pathlib.Path(args.output), execution, step


def train_export_infer(
    args: argparse.Namespace,
    shards: pathlib.Path,
    run_dir: pathlib.Path,
    model: pathlib.Path,
    results: pathlib.Path,
    execution: dict,
    step: Callable[[str], None],
) -> None:
    """Train ``args.model_config`` on ``shards`` afresh, export it to ``model`` and score the test split."""
    import shutil

    from hepnn_coffea.evaluation.stages import infer
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.training.trainer import train

    if run_dir.exists():
        shutil.rmtree(run_dir)
    overrides = {"training": {"epochs": args.epochs, "batch_size": args.batch_size}}
    result = train(args.model_config, shards, run_dir, overrides=overrides, progress=sys.stderr.isatty())
    step(
        f"trained {args.model_config}: best val AUC {result.best_metric:.4f} "
        f"(epoch {result.best_epoch}) -> {run_dir}"
    )
    info = export_onnx(run_dir, model)
    step(f"exported {model} (parity max |diff| {info['max_abs_diff']:.1e} on {info['n_jets']} jets)")
    infer(model, args.fileset, results, split="test", **execution)
    step(f"inference on the test split: hists.pkl, hists.root, scores.parquet -> {results}")


def nanoaod_workflow(args: argparse.Namespace) -> int:
    """Event-level NanoAOD: rows per FatJet, gen-matched top/W/QCD labels, weighted evaluation.

    preprocess (split per event, cross-section weights, cutflow) -> train -> export ->
    infer on the test events (``scores.parquet`` per selected fat jet) -> evaluate
    (weighted ROC / rejection / mass sculpting next to a GBT on six jet observables) ->
    an existing NanoAOD analysis adding the tagger in one line.
    """
    import warnings

    from coffea.nanoevents import NanoAODSchema

    from hepnn_coffea.evaluation.stages import evaluate, summary_markdown
    from hepnn_coffea.processing.fileset import load_fileset
    from hepnn_coffea.processing.preprocess import preprocess
    from hepnn_coffea.processing.runner import run_runner

    out, execution, step = chain_setup(args)
    shards, run_dir, model, results = out / "shards", out / "run", out / "model.onnx", out / "results"
    step(f"preprocess {args.fileset} with {args.data_config}")
    manifest = preprocess(args.fileset, args.data_config, shards, **execution)
    for name, flow in manifest["cutflow"].items():
        print(
            f"         {name:15s} events {flow['events']:6d} jets {flow['jets']:6d} "
            f"selected {flow['jets_selected']:6d} "
            f"matched {flow['matched']} unmatched {flow['unmatched']} written {flow['written']}"
        )
    step(f"shards + manifest (cutflow) -> {shards}")
    train_export_infer(args, shards, run_dir, model, results, execution, step)
    summary = evaluate(results, shards=shards)
    step(f"evaluation -> {results / 'summary.json'}, {results / 'summary.md'}")
    print(summary_markdown(summary))
    for plot in summary.get("plots", []):
        print(f"         plot: {plot}")

    sys.path.insert(0, str(HERE))
    from processors.nanoaod_fatjet_analysis import FatJetTagAnalysis

    warnings.filterwarnings("ignore", message="Missing cross-reference", category=RuntimeWarning)

    files = load_fileset(args.fileset, "Events", event_level=True)
    analysis = run_runner(files, FatJetTagAnalysis(str(model)), schema=NanoAODSchema, **execution)
    for dataset, res in sorted(analysis.items()):
        print(
            f"         existing NanoAOD analysis, {dataset}: {res['n_tagged']} of {res['n_jets']} fat jets "
            "(pT > 300 GeV) top-tagged (D_top > 0.9)"
        )
    step("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
