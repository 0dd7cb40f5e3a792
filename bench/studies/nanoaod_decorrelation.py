"""Top / W / QCD tagging on the shared nanosim NanoAOD: taggers vs the GBT, and mass decorrelation.

Runs the event-level workflow through the library's stages for each variant:
``preprocess`` (``models/data/nanoaod_fatjet*.yaml``: rows per FatJet, gen-matched labels,
split per event, cross-section weights) -> ``train`` -> ``export_onnx`` -> ``infer`` on the
test events -> ``evaluate`` (weighted ROC / rejection / 1/JSD, with a GBT on six jet
observables trained on the same train rows, and every variant overlaid with ``--compare``).

Variants (``--variants``, comma list; default ``pfn,pfn_flat,pfn_disco``):

============  =====================================================================================
pfn           nominal: models/nanoaod/pfn.yaml (train rows drawn by xsec weight, class-balanced)
pfn_flat      every class flat in (pT, msoftdrop): models/nanoaod/pfn_flat.yaml on flat shards
pfn_disco     DisCo term (lambda 10) on the QCD jets' top discriminant vs msoftdrop
pfn_hybrid    constituents + the six jet observables (``globals`` role): models/nanoaod/pfn_hybrid.yaml
pfn_hybrid_flat   pfn_flat + jet observables without the masses (pfn_hybrid_flat.yaml)
pfn_hybrid_disco  pfn_disco + jet observables without the masses (pfn_hybrid_disco.yaml)
particlenet_lite_hybrid, part_hybrid  the same jet observables next to those architectures
particlenet_lite  models/nanoaod/particlenet_lite.yaml (k=7, 32/64 channels; ~130 jets/s on 2 CPU cores)
particlenet   models/nanoaod/particlenet.yaml (slow on CPU: use --epochs / --samples-per-epoch)
part          models/nanoaod/part.yaml (GPU)
============  =====================================================================================

Usage::

    .venv/bin/python -m bench.studies.nanoaod_decorrelation --workdir /tmp/nano --epochs 12

The summary of the first variant's folder (``WORKDIR/out_<first>/summary.md``) holds the table
of all variants and the GBT; the plot ``plots/rejection_vs_jsd_top.png`` compares them.
"""

from __future__ import annotations

import argparse
import pathlib
import time

from bench.common import MODELS, SHARED

FILESET = SHARED / "data" / "nanosim" / "fileset.json"
DATA = {
    "nominal": MODELS / "data" / "nanoaod_fatjet.yaml",
    "flat": MODELS / "data" / "nanoaod_fatjet_flat.yaml",
    "hybrid": MODELS / "data" / "nanoaod_fatjet_hybrid.yaml",
}
VARIANTS = {  # name -> (model config, shard set)
    "pfn": ("pfn.yaml", "nominal"),
    "pfn_flat": ("pfn_flat.yaml", "flat"),
    "pfn_disco": ("pfn_disco.yaml", "nominal"),
    "particlenet_lite": ("particlenet_lite.yaml", "nominal"),
    "particlenet": ("particlenet.yaml", "nominal"),
    "part": ("part.yaml", "nominal"),
    "pfn_hybrid": ("pfn_hybrid.yaml", "hybrid"),
    "pfn_hybrid_flat": ("pfn_hybrid_flat.yaml", "flat"),
    "pfn_hybrid_disco": ("pfn_hybrid_disco.yaml", "hybrid"),
    "particlenet_lite_hybrid": ("particlenet_lite_hybrid.yaml", "hybrid"),
    "part_hybrid": ("part_hybrid.yaml", "hybrid"),
}


def main(argv: list[str] | None = None) -> int:
    """Run every variant (preprocess, train, export, infer) and evaluate them together.

    ``argv``: the command line (default ``sys.argv[1:]``). Returns the exit status.
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--fileset", default=str(FILESET))
    p.add_argument("--variants", default="pfn,pfn_flat,pfn_disco")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--samples-per-epoch", type=int, default=None)
    p.add_argument("--executor", default="iterative")
    p.add_argument(
        "--skip-existing", action="store_true", help="reuse shards/runs/outputs already in WORKDIR"
    )
    args = p.parse_args(argv)

    from hepnn_coffea.evaluation.stages import evaluate, infer
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.processing.preprocess import preprocess
    from hepnn_coffea.training.trainer import train

    work = pathlib.Path(args.workdir)
    variants = args.variants.split(",")
    t0 = time.time()
    for name in variants:
        config, data = VARIANTS[name]
        shards, run, model, out = (
            work / f"shards_{data}",
            work / f"run_{name}",
            work / f"{name}.onnx",
            work / f"out_{name}",
        )
        if not (args.skip_existing and (shards / "manifest.json").is_file()):
            preprocess(args.fileset, DATA[data], shards, executor=args.executor, chunksize=10_000)
            print(f"[{time.time() - t0:7.0f}s] preprocessed {data} -> {shards}", flush=True)
        if not (args.skip_existing and (run / "checkpoints" / "best.pt").is_file()):
            training = {
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "samples_per_epoch": args.samples_per_epoch,
            }
            result = train(
                MODELS / "nanoaod" / config, shards, run, overrides={"training": training}, progress=False
            )
            print(
                f"[{time.time() - t0:7.0f}s] trained {name}: best val AUC {result.best_metric:.4f}",
                flush=True,
            )
        if not (args.skip_existing and (out / "scores.parquet").is_file()):
            export_onnx(run, model)
            infer(model, args.fileset, out, split="test", executor=args.executor, chunksize=20_000)
            print(f"[{time.time() - t0:7.0f}s] scored the test events with {name}", flush=True)
    first = work / f"out_{variants[0]}"
    others = [f"{name}={work / f'out_{name}'}" for name in variants[1:]]
    evaluate(first, shards=work / "shards_nominal", compare=others)
    print((first / "summary.md").read_text())
    print(f"plots: {first / 'plots'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
