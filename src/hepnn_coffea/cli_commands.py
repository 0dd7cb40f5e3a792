"""What each verb of the ``hepnn`` command line runs, from its parsed arguments.

:func:`hepnn_coffea.cli.build_parser` parses the command line; :func:`dispatch` runs the verb's
stage and prints its result. The stages are imported only by the verb that runs them (``hepnn
infer`` loads no torch).
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

import yaml

__all__ = ["dispatch"]


def _print_skipped(output: dict[str, Any]) -> None:
    """The skipped files and chunks of a run, and its entry totals."""
    from hepnn_coffea.processing.bad_files import where

    for record in output.get("skipped", []):
        print(f"skipped: {where(record)}")
    totals = output.get("entries")
    if totals and output.get("skipped"):
        unknown = (
            f" (+ unknown entries of {len(totals['unknown_files'])} file(s))"
            if totals["unknown_files"]
            else ""
        )
        print(
            f"entries: {totals['entries_read']} read + {totals['entries_lost']} lost = "
            f"{totals['entries_in_files']} in the files{unknown}"
        )


def _overrides(pairs: list[str]) -> dict[str, Any]:
    """``training.epochs=3`` -> ``{"training": {"epochs": 3}}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


def dispatch(args: argparse.Namespace) -> int:
    """Run the stage of ``args.command`` with the parsed options; the exit status (0)."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    keys = ("mode", "executor", "workers", "scheduler", "chunksize", "skip_bad_files", "retries")
    execution = {k: getattr(args, k) for k in keys if hasattr(args, k)}
    if args.command == "preprocess":
        from hepnn_coffea.processing.preprocess import preprocess

        manifest = preprocess(args.fileset, args.data_config, args.output, seed=args.seed, **execution)
        for name, flow in manifest.get("cutflow", {}).items():  # event-level inputs
            print(
                f"{name:16s} events {flow['events']:8d}  jets {flow['jets']:8d}  "
                f"selected {flow['jets_selected']:8d}  "
                f"matched {flow['matched']}  unmatched {flow['unmatched']}  written {flow['written']}"
            )
        for split, samples in ({} if "cutflow" in manifest else manifest["splits"]).items():
            for sample, e in samples.items():
                print(
                    f"{split:5s} {sample:12s} read {e['entries_read']:8d}  "
                    f"selected {e['entries_selected']:8d}  "
                    f"written {e['entries_out']:8d}  shards {len(e['shards'])}"
                )
        _print_skipped(manifest)
        print(f"manifest: {args.output}/manifest.json")
    elif args.command == "train":
        from hepnn_coffea.training.trainer import train

        if args.init_from:  # same as --set finetune.init_from=PATH, relative to the working directory
            if args.resume:
                raise SystemExit(
                    "hepnn train: --init-from starts a new run; it cannot be combined with --resume"
                )
            args.set.append(
                f"finetune.init_from={json.dumps(str(__import__('pathlib').Path(args.init_from).resolve()))}"
            )
        if args.experts:
            from hepnn_coffea.training.experts import train_experts

            if not (args.model_config and args.shards and args.run_dir):
                raise SystemExit("hepnn train --experts: give MODEL_CONFIG --shards SHARDS -o RUN_DIR")
            results = train_experts(
                args.model_config,
                args.shards,
                args.run_dir,
                overrides=_overrides(args.set),
                progress=not args.no_progress,
            )
            for name, r in results.items():
                print(
                    f"expert {name}: best epoch {r.best_epoch}: {r.best_metric:.5f}; "
                    f"run directory {r.run_dir}"
                )
            return 0
        if args.resume:
            result = train(
                None,
                None,
                args.resume,
                resume=True,
                overrides=_overrides(args.set),
                progress=not args.no_progress,
            )
        else:
            if not (args.model_config and args.shards and args.run_dir):
                raise SystemExit(
                    "hepnn train: give MODEL_CONFIG --shards SHARDS -o RUN_DIR (or --resume RUN_DIR)"
                )
            result = train(
                args.model_config,
                args.shards,
                args.run_dir,
                overrides=_overrides(args.set),
                expert=args.expert,
                progress=not args.no_progress,
            )
        print(f"best epoch {result.best_epoch}: {result.best_metric:.5f}; run directory {result.run_dir}")
    elif args.command == "export":
        from hepnn_coffea.export import export_onnx

        info = export_onnx(args.run_dir, args.output, checkpoint=args.checkpoint, opset=args.opset)
        print(
            f"wrote {info['path']} (inputs {info['inputs']}; parity max |diff| {info['max_abs_diff']:.2e} "
            f"on {info['n_jets']} jets)"
        )
    elif args.command == "infer":
        from hepnn_coffea.config.variations_config import variations_from_options
        from hepnn_coffea.evaluation.stages import infer

        options = {"naive": dict(pair.split("=", 1) for pair in args.naive)} if args.naive else {}
        variations = variations_from_options(args.variations, args.variation, args.variation_seed)
        info = infer(
            args.model,
            args.fileset,
            args.output,
            split=args.split,
            batch_size=args.batch_size,
            **execution,
            variations=variations,
            **options,
        )
        print(json.dumps(info["counts"], indent=1))
        _print_skipped(info)
        print(f"{info['n_jets']} jets scored; hists and scores.parquet in {args.output}")
        if "variation_report" in info:
            print(__import__("pathlib").Path(info["variation_report"]["md"]).read_text())
    elif args.command == "variations":
        from hepnn_coffea.config.variations_config import ReportSettings
        from hepnn_coffea.evaluation.variation_report import write_variation_report

        settings = ReportSettings(
            **({"background_efficiencies": args.background_efficiency} if args.background_efficiency else {}),
            pt_edges=args.pt_edges,
        )
        files = write_variation_report(
            args.output, settings, plots=not args.no_plots, pt_column=args.pt_column
        )
        print(__import__("pathlib").Path(files["md"]).read_text())
        for plot in files["plots"]:
            print(f"plot: {plot}")
    elif args.command == "working-points":
        from hepnn_coffea.evaluation.working_points import working_points_markdown, write_working_points

        points = write_working_points(
            args.table,
            args.output,
            args.background_efficiency,
            pt_edges=args.pt_edges,
            pt_column=args.pt_column,
        )
        print(working_points_markdown(points))
        print(f"correctionlib JSON (validated, reproduces the table's efficiencies): {args.output}")
    elif args.command == "evaluate":
        from hepnn_coffea.evaluation.stages import evaluate, summary_markdown
        from hepnn_coffea.plotting.style import PlotStyle

        style = PlotStyle(args.style, args.label, args.com, args.lumi)
        summary = evaluate(
            args.output,
            plots=not args.no_plots,
            compare=args.compare,
            baselines=args.baselines,
            shards=args.shards,
            reference=args.reference,
            style=style,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
        )
        print(summary_markdown(summary))  # summary.md, the same for every flow
        for plot in summary.get("plots", []):
            print(f"plot: {plot}")
    return 0
