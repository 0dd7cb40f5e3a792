"""Hit-to-particle clustering on the calorimeter view of the shared top/QCD jets: transformer vs DBSCAN.

Steps (``--stage``): ``data``: take the first ``--train/--val/--test`` jets (half top, half QCD) of
../shared/data/topqcd, make their calorimeter view (:func:`hepnn_coffea.calo.calorimeter_view`) and
preprocess with ``models/data/calo_clustering.yaml`` (``--pack F`` also writes the train/val shards
as an xz tarball to carry to a GPU machine); ``train``: train ``models/calo/clustering.yaml`` into
``--run-dir`` (default ``WORK/run``; needs only torch/numpy/scipy, so it runs on a bare GPU machine
with ``--shards``); ``eval``: export the run to ONNX and evaluate the learned clustering (through
OnnxTagger inside the coffea processor) and the DBSCAN + nearest-track baseline on the test split
(the baseline's eps and the learned other-slot grouping radius chosen on 200 val jets). ``all``
(default) does the three here::

    .venv/bin/python -m bench.studies.calo_clustering --work /tmp/calo_clustering [--epochs 6]

The numbers of bench/README.md: data here (the tarball, 44 MB, carried to a GPU machine), training
on one H100 (24 epochs, ~4 min beside two other runs), export and evaluation here::

    .venv/bin/python -m bench.studies.calo_clustering --stage data --work /tmp/clgpu --train 10000 \
        --val 1000 --test 1000 --pack .gpu_clustering/shards.tar.xz
    # on the GPU machine, after `tar -xJf .gpu_clustering/shards.tar.xz -C /tmp/d`:
    python3 -m bench.studies.calo_clustering --stage train --shards /tmp/d/shards --run-dir /tmp/runs/B \
        --epochs 24 --device cuda --threads 4 --overrides '{"training": {"early_stopping_patience": null,
        "warmup_steps": 200, "batch_size": 64, "bucket_by_length": false}}'
    .venv/bin/python -m bench.studies.calo_clustering --stage eval --work /tmp/clgpu \
        --run-dir .gpu_clustering/run_B
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tarfile
import time
from typing import Any

from bench.common import MODELS, first_jets


def make_data(work: pathlib.Path, n: dict[str, int], pack: pathlib.Path | None = None) -> dict[str, float]:
    """View + shards in ``work`` (and the xz tarball of the train/val shards).

    Parameters
    ----------
    work
        Work folder: ``jets/``, ``view/``, ``shards/``.
    n
        Jets per split (half top, half QCD).
    pack
        Where to write the xz tarball of the train/val shards, or None.

    Returns
    -------
    dict
        Seconds of the view and of the preprocessing.
    """
    from hepnn_coffea.calo import calorimeter_view
    from hepnn_coffea.calo.samples import calo_fileset
    from hepnn_coffea.calo.view import JET_BRANCHES, PARTICLE_BRANCHES
    from hepnn_coffea.processing.preprocess import preprocess

    times = {}
    t = time.time()
    calorimeter_view(
        first_jets(work, n, (*PARTICLE_BRANCHES, *JET_BRANCHES)),
        work / "view",
        seed=1,
        executor="iterative",
        chunksize=1000,
    )
    times["view_s"] = time.time() - t
    t = time.time()
    view_fs = {k: v for s in n for k, v in calo_fileset(work / "view", s).items()}
    preprocess(
        view_fs,
        MODELS / "data" / "calo_clustering.yaml",
        work / "shards",
        executor="iterative",
        chunksize=1000,
    )
    times["preprocess_s"] = time.time() - t
    if pack is not None:
        pack.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(pack, "w:xz", preset=1) as tar:
            for p in sorted((work / "shards").iterdir()):
                if p.name != "test":
                    tar.add(p, arcname=f"shards/{p.name}")
    return times


def train_run(
    shards: pathlib.Path,
    run_dir: pathlib.Path,
    epochs: int,
    device: str,
    threads: int,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``models/calo/clustering.yaml``.

    Parameters
    ----------
    shards
        Shard folder.
    run_dir
        Run folder.
    epochs
        Training epochs.
    device
        ``training.device`` (``auto``, ``cpu``, ``cuda``).
    threads
        Torch threads.
    overrides
        Further config overrides by section (JSON of ``--overrides``).

    Returns
    -------
    dict
        Training seconds, best epoch and the per-epoch history.
    """
    import torch

    from hepnn_coffea.training.trainer import train

    torch.set_num_threads(threads)
    t = time.time()
    over = {"training": {"epochs": epochs, "device": device}}
    for key, value in (overrides or {}).items():
        over.setdefault(key, {}).update(value)
    result = train(MODELS / "calo" / "clustering.yaml", shards, run_dir, overrides=over, progress=False)
    return {"train_s": time.time() - t, "best_epoch": result.best_epoch, "history": result.history}


def relocate(run_dir: pathlib.Path, shards: pathlib.Path) -> None:
    """Point a run trained on another machine at the same shards here.

    The run records that machine's shard path and the ONNX export checks parity on its shards; the
    original path is kept as ``shards_trained``.

    Parameters
    ----------
    run_dir
        Run folder (its ``provenance.json`` is rewritten if its shard path is missing here).
    shards
        The shard folder on this machine.
    """
    prov_path = run_dir / "provenance.json"
    prov = json.loads(prov_path.read_text())
    if not pathlib.Path(prov["shards"]).is_dir() and shards.is_dir():
        prov.setdefault("shards_trained", prov["shards"])
        prov["shards"] = str(shards.resolve())
        prov_path.write_text(json.dumps(prov, indent=2))


def evaluate(work: pathlib.Path, run_dir: pathlib.Path) -> dict[str, Any]:
    """Export ``run_dir`` to ONNX, tune both methods on 200 val jets, compare them on the test split.

    The baseline's DBSCAN eps and the learned clustering's ``other_eps`` are both chosen by
    efficiency x purity on the val jets.

    Parameters
    ----------
    work
        Work folder (``view/``; receives ``clustering.onnx`` and ``eval/``).
    run_dir
        Trained run.

    Returns
    -------
    dict
        Summary table, timings, chosen baseline parameters and both scans.
    """
    import awkward as ak
    import uproot

    from hepnn_coffea.calo.clustering_eval import (
        BaselineParams,
        evaluate_jets,
        run_clustering_evaluation,
        summarize,
        view_hits,
        write_summary,
    )
    from hepnn_coffea.calo.samples import calo_fileset
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.inference.tagger import OnnxTagger

    times = {}
    export_onnx(run_dir, work / "clustering.onnx", parity_jets=64)
    t = time.time()
    val = uproot.concatenate(
        [f"{p}:tree" for ds in calo_fileset(work / "view", "val").values() for p in ds["files"]]
    )
    val = val[ak.num(val.cell_E) > 0][:200]
    val_hits = view_hits(val)
    best, scan = None, {}
    for eps in (0.03, 0.05, 0.08, 0.12):  # baseline: DBSCAN eps with the best efficiency x purity
        params = BaselineParams(eps=eps)
        row = summarize(evaluate_jets(val_hits, None, "val", 0, params))["all"]["baseline"]
        scan[eps] = row["efficiency"] * row["purity"]
        if best is None or scan[eps] > scan[best.eps]:
            best = params
    tagger = OnnxTagger(work / "clustering.onnx", batch_size=64)
    n_slots = sum(f.startswith("pred_slot_") for f in tagger.output_fields)
    val_pred = tagger(val)
    other_scan = {}
    for other_eps in (0.0, 0.005, 0.01, 0.02, 0.04):  # learned: grouping radius of the other slot's hits
        res = summarize(evaluate_jets(val_hits, val_pred, "val", n_slots, best, other_eps=other_eps))["all"][
            "learned"
        ]
        other_scan[other_eps] = res["efficiency"] * res["purity"]
    other_eps = max(other_scan, key=other_scan.get)
    times["val_scans_s"] = time.time() - t
    t = time.time()
    out = run_clustering_evaluation(
        work / "view",
        work / "clustering.onnx",
        split="test",
        baseline=best,
        chunksize=250,
        other_eps=other_eps,
    )
    times["evaluate_s"] = time.time() - t
    table = summarize(out)
    write_summary(table, work / "eval")
    try:
        from hepnn_coffea.calo.clustering_plots import plot_clustering

        plot_clustering(out, work / "eval" / "plots")
    except ImportError:  # matplotlib missing
        pass
    return {
        "table": table,
        "times": times,
        "baseline": best.__dict__,
        "eps_scan": scan,
        "other_eps": other_eps,
        "other_eps_scan": other_scan,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the selected stages and print the evaluation table.

    ``argv``: the command line (default ``sys.argv[1:]``). Returns the report (also written to
    ``WORK/report.json`` by the eval stage).
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("all", "data", "train", "eval"), default="all")
    ap.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/calo_clustering"))
    ap.add_argument("--shards", type=pathlib.Path, help="shards to train on (default WORK/shards)")
    ap.add_argument(
        "--run-dir",
        type=pathlib.Path,
        help="training run (default WORK/run); eval of a run trained elsewhere",
    )
    ap.add_argument("--pack", type=pathlib.Path, help="data stage: xz tarball of the train/val shards")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--overrides", type=json.loads, default=None, help="JSON overrides of the model config")
    args = ap.parse_args(argv)

    work = args.work
    shards = args.shards or work / "shards"
    run_dir = args.run_dir or work / "run"
    report: dict[str, Any] = {"jets": {"train": args.train, "val": args.val, "test": args.test}}
    if args.stage in ("all", "data"):
        report["times"] = make_data(work, report["jets"], args.pack)
    if args.stage in ("all", "train"):
        report["train"] = train_run(shards, run_dir, args.epochs, args.device, args.threads, args.overrides)
        (run_dir / "bench_train.json").write_text(json.dumps(report["train"], indent=2, default=float))
    if args.stage in ("all", "eval"):
        from hepnn_coffea.calo.clustering_eval import to_markdown

        relocate(run_dir, shards)
        report["eval"] = evaluate(work, run_dir)
        report["run_dir"] = str(run_dir)
        md = to_markdown(report["eval"]["table"])
        (work / "report.json").write_text(json.dumps(report, indent=2, default=float))
        print(md)
        print(
            json.dumps(
                {k: report["eval"][k] for k in ("times", "baseline", "eps_scan", "other_eps_scan")},
                default=float,
            )
        )
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
