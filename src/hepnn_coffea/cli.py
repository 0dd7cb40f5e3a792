"""``hepnn`` command line: one thin verb per stage.

hepnn preprocess FILESET.json -c DATA_CONFIG.yaml -o SHARDS/
hepnn train models/pfn.yaml --shards SHARDS/ -o runs/pfn
hepnn export runs/pfn -o model.onnx
hepnn infer model.onnx --fileset FILESET.json -o OUT/ [--variations VARIATIONS.yaml]
hepnn evaluate OUT/
hepnn working-points OUT/scores.parquet --background-efficiency 0.01 0.05 -o wp.json
"""

from __future__ import annotations

import argparse
import sys

from hepnn_coffea.cli_commands import dispatch


def _add_execution(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mode",
        choices=("runner", "dask"),
        default="runner",
        help="coffea processor.Runner (virtual arrays) or dask-awkward apply_to_fileset",
    )
    p.add_argument(
        "--executor",
        choices=("dask", "futures", "iterative"),
        default="dask",
        help="Runner executor (default: dask on a distributed LocalCluster)",
    )
    p.add_argument("--workers", type=int, default=2, help="LocalCluster / futures worker processes")
    p.add_argument(
        "--scheduler", default=None, help="address of an existing dask scheduler, e.g. tcp://host:8786"
    )
    p.add_argument("--chunksize", type=int, default=50_000, help="entries per chunk (and per shard)")


def _add_bad_files(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="finish without files/chunks that cannot be read; list them (entries lost) in the output",
    )
    p.add_argument(
        "--retries",
        type=_count,
        default=0,
        metavar="N",
        help="retry a chunk N times after a transient (OSError) read error",
    )


def _add_wp_options(p: argparse.ArgumentParser, required: bool) -> None:
    """Working points (background efficiencies) and pT bins of ``working-points`` and ``variations``."""
    p.add_argument(
        "--background-efficiency",
        type=float,
        nargs="+",
        required=required,
        metavar="EFF",
        help="target background efficiencies, e.g. 0.01 0.05" + ("" if required else " (default 0.01 0.05)"),
    )
    p.add_argument(
        "--pt-edges",
        type=float,
        nargs="+",
        default=None,
        metavar="GEV",
        help="pT bin edges (default: background-pT quantiles)",
    )
    p.add_argument("--pt-column", default=None, help="pT column of the table (default: FatJet_pt or jet_pt)")


def _count(text: str) -> int:
    """A non-negative integer option."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``hepnn`` argument parser, one subcommand per stage (the module docstring is its description)."""
    parser = argparse.ArgumentParser(
        prog="hepnn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("preprocess", help="fileset + data config -> training shards + manifest")
    p.add_argument("fileset", help="coffea fileset JSON")
    p.add_argument("-c", "--data-config", required=True, help="weaver-style data config YAML")
    p.add_argument("-o", "--output", required=True, help="output folder for shards")
    p.add_argument("--seed", type=int, default=0, help="seed of the auto-standardization sampling")
    _add_execution(p)
    _add_bad_files(p)

    p = sub.add_parser("train", help="train a model config on shards")
    p.add_argument(
        "model_config", nargs="?", help="model config YAML (e.g. models/pfn.yaml); omit with --resume"
    )
    p.add_argument("--shards", help="output folder of 'hepnn preprocess'")
    p.add_argument("-o", "--run-dir", help="run directory to create")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument(
        "--expert",
        default=None,
        help="apply the config's expert_<NAME> overrides "
        "(and, with data-config 'experts', train that expert)",
    )
    p.add_argument(
        "--experts",
        action="store_true",
        help="train every expert of the data config's 'experts' split into RUN_DIR/expert_<name>/",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.epochs=3",
    )
    p.add_argument(
        "--init-from",
        metavar="PATH",
        default=None,
        help="start from this checkpoint (weaver .pt, hepnn checkpoint or run dir): sets finetune.init_from",
    )
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("export", help="export a run to ONNX (with parity check)")
    p.add_argument("run_dir")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--checkpoint", default="best.pt")
    p.add_argument("--opset", type=int, default=17)

    p = sub.add_parser("infer", help="run a model in the evaluation processor: hists + per-jet table")
    p.add_argument("model", help="ONNX file from 'hepnn export'")
    p.add_argument("--fileset", required=True)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--split", default=None, help="only datasets with this split in their metadata")
    p.add_argument("--batch-size", type=int, default=512, help="jets per onnxruntime call (bounds memory)")
    p.add_argument(
        "--naive",
        action="append",
        default=[],
        metavar="TARGET=EXPRESSION",
        help="regression: a simple estimate to compare with, e.g. --naive truth_pt=jet_pt",
    )
    p.add_argument(
        "--variations",
        default=None,
        metavar="YAML",
        help="systematic variations evaluated in the same pass (a YAML file with a 'variations:' section)",
    )
    p.add_argument(
        "--variation",
        action="append",
        default=[],
        metavar="NAME:TYPE[:KEY=VALUE,...]",
        help="one more variation, e.g. charged_up:scale:factor=1.01,particles=charged or "
        "drop5:drop:fraction=0.05 (list values with |, e.g. samples=qcd|top)",
    )
    p.add_argument(
        "--variation-seed", type=int, default=None, help="seed of the random variations (default 0)"
    )
    _add_execution(p)
    _add_bad_files(p)

    p = sub.add_parser(
        "variations", help="the variations table and plot of an infer folder, with other settings"
    )
    p.add_argument("output", help="an infer folder run with --variations/--variation")
    _add_wp_options(p, required=False)
    p.add_argument("--no-plots", action="store_true")

    p = sub.add_parser(
        "working-points", help="thresholds at fixed background efficiency -> correctionlib JSON"
    )
    p.add_argument("table", help="scores.parquet of 'hepnn infer' (or its folder)")
    _add_wp_options(p, required=True)
    p.add_argument("-o", "--output", required=True, help="the correctionlib JSON to write")

    p = sub.add_parser("evaluate", help="ROC, AUC, rejection, accuracy and plots from an infer folder")
    p.add_argument("output")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--compare", nargs="*", default=[], metavar="OUT", help="other infer folders to overlay")
    p.add_argument(
        "--baselines",
        nargs="*",
        default=[],
        choices=("logistic", "gbt"),
        help="classical jet-observable baselines to add (need --shards)",
    )
    p.add_argument("--shards", default=None, help="shard folder the baselines train on")
    p.add_argument(
        "--reference",
        default=None,
        metavar="NAME",
        help="row the others are compared to (paired AUC difference, rejection ratios, the ROC's ratio "
        "panel): the model's file stem, a --compare name, logistic or gbt (default: the model)",
    )
    p.add_argument(
        "--style",
        default="none",
        choices=("CMS", "ATLAS", "LHCb", "ALICE", "none"),
        help="mplhep style and experiment label of the classifier plots, flat-jet and event-level "
        "(none: no experiment name)",
    )
    p.add_argument("--label", default="Simulation", help="label text after the experiment name")
    p.add_argument(
        "--com", type=float, default=None, metavar="TEV", help="sqrt(s) written on the plots, in TeV"
    )
    p.add_argument(
        "--lumi", type=float, default=None, metavar="FB", help="luminosity written on the plots, in fb^-1"
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=100,
        metavar="N",
        help="bootstrap replicas of the AUC intervals and of the regression metrics' intervals",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap replicas")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hepnn`` console script; known input errors exit with status 2."""
    from hepnn_coffea.errors import USER_ERRORS

    args = build_parser().parse_args(argv)
    try:
        return dispatch(args)
    except USER_ERRORS as err:
        print(f"hepnn {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
