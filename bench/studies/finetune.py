"""Fine-tuned vs from-scratch ParticleNet at equal budgets, and the JetClass checkpoint zero-shot.

Fine-tuned: ``models/particlenet_finetune.yaml`` (the published JetClass ParticleNet "kin"
weights, new 2-class output layer at 50 x lr 1e-3, ranger, no scheduler). From scratch:
``models/particlenet.yaml`` with the anchor's ParticleNet budget settings (lr 1e-2, ranger, no
scheduler). Both: batch 128, ``training.num_threads`` 1 (``--threads``), one run per seed.

Budgets (equal for both starts; ParticleNet trains at ~13 jets/s on one shared CPU thread, so
the anchor's 48-step budget would cost ~8 min per run):

==========  ==================================================================================
``fresh``   one epoch of ``--steps`` x 128 train jets (a new seeded draw per seed)
``2epoch``  2 epochs over a fixed subset of ``--steps`` x 64 train jets (half top, half QCD;
            the first rows of the first shard of each class): the same number of steps, each
            jet seen twice (``WORK/shards_subset``, val/test linked to the full shards)
==========  ==================================================================================

Every run is scored with its final weights (``checkpoints/last.pt``; no epoch selection) on the
same fixed seeded subset of ``--test-jets`` jets of the shared test split, in torch, with jets
batched by multiplicity (padding does not change ParticleNet's outputs in eval mode). Zero-shot:
the checkpoint with its own 10 classes (``models/data/jetclass_kin.yaml``,
``models/particlenet_jetclass.yaml``) wrapped by :func:`hepnn_coffea.training.pretrained.pretrained_run`,
exported to ONNX and run by ``OnnxTagger`` inside the ``infer`` stage's processor on all 15k test
jets; discriminant ``score_label_Tbqq / (score_label_Tbqq + score_label_QCD)``; also quoted on the
test subset (same jets, matched by sample and ``event_no``). AUC: +- the spread of 100 Poisson
bootstrap replicas; 1/eps_B: Clopper-Pearson 68% interval.

Usage::

    .venv/bin/python -m bench.studies.finetune --workdir /tmp/ft --json /tmp/ft/finetune.json
    .venv/bin/python -m bench.studies.finetune --zero-shot-only          # ~5 min
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import time
from typing import Any

import numpy as np

from bench.common import (
    DATA,
    MODELS,
    make_fileset,
    markdown_table,
    mean_std,
    plus_minus,
    topqcd_shards,
    write_json,
)
from bench.scoring import metrics, score, subset_shards, test_subset

STARTS = {
    "finetuned": (MODELS / "particlenet_finetune.yaml", {}),
    "scratch": (MODELS / "particlenet.yaml", {"lr": 1e-2}),
}
COMMON = {
    "batch_size": 128,
    "optimizer": "ranger",
    "scheduler": "none",
    "val_samples": 256,
    "tensorboard": False,
}


def run_one(
    start: str,
    budget: str,
    seed: int,
    shards: pathlib.Path,
    work: pathlib.Path,
    args: argparse.Namespace,
    test: tuple[Any, np.ndarray],
) -> dict[str, Any]:
    """Train one (start, budget, seed), score its final weights on the test subset.

    Parameters
    ----------
    start
        ``finetuned`` or ``scratch`` (:data:`STARTS`).
    budget
        ``fresh`` or ``2epoch``.
    seed
        Training seed.
    shards
        Shards to train on (the subset for ``2epoch``).
    work
        Work folder; the run goes to ``runs/<start>_<budget>_s<seed>``.
    args
        The parsed command line.
    test
        The test dataset and rows (:func:`bench.scoring.test_subset`).

    Returns
    -------
    dict
        Settings, timings and metrics of the run.
    """
    from hepnn_coffea.training.trainer import load_network, train

    config, extra = STARTS[start]
    training = {**COMMON, **extra, "seed": seed, "num_threads": args.threads}
    if budget == "fresh":
        training.update(epochs=1, samples_per_epoch=args.steps * 128)
    else:
        training.update(epochs=2, samples_per_epoch=None)
    run_dir = work / "runs" / f"{start}_{budget}_s{seed}"
    t0 = time.perf_counter()
    if not (args.reuse_runs and (run_dir / "checkpoints" / "last.pt").is_file()):
        shutil.rmtree(run_dir, ignore_errors=True)
        train(config, shards, run_dir, overrides={"training": training}, progress=False)
    t_train = time.perf_counter() - t0
    net, _ = load_network(run_dir, "last.pt")
    t0 = time.perf_counter()
    ds, rows = test
    probs = score(net, ds, rows)
    is_top = ds.gather(rows)["target"] == 0  # labels [jet_isTop, jet_isQCD]
    row = {
        "start": start,
        "budget": budget,
        "seed": seed,
        "overrides": training,
        "train_s": t_train,
        "test_s": time.perf_counter() - t0,
        **metrics(probs[:, 0], is_top),
    }
    print(
        f"[{start} {budget} seed {seed}] train {t_train:.0f} s, test {row['test_s']:.0f} s: "
        f"AUC {row['auc']['value']:.4f}, 1/eps_B@30% {row['rejection_at_30']['value']}",
        flush=True,
    )
    return row


def zero_shot(work: pathlib.Path, data: pathlib.Path, test: tuple[Any, np.ndarray]) -> dict[str, Any]:
    """The JetClass checkpoint as a 10-class ONNX model through OnnxTagger on the test split.

    Parameters
    ----------
    work
        Work folder (``zero_shot_*``).
    data
        Folder of the shared top/QCD files.
    test
        The test dataset and rows (:func:`bench.scoring.test_subset`): the same jets are also scored alone.

    Returns
    -------
    dict
        Jets, export parity, timings and the metrics on all test jets and on the test subset.
    """
    import pyarrow.parquet as pq

    from hepnn_coffea.evaluation.sculpting import discriminant
    from hepnn_coffea.evaluation.stages import infer
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.processing.preprocess import preprocess
    from hepnn_coffea.training.pretrained import pretrained_run

    fileset = {k: v for k, v in make_fileset(data).items() if v["metadata"]["split"] == "test"}
    shards, run, onnx_path, out = (work / f"zero_shot_{n}" for n in ("shards", "run", "model.onnx", "infer"))
    t0 = time.perf_counter()
    if not (shards / "manifest.json").is_file():
        preprocess(fileset, MODELS / "data" / "jetclass_kin.yaml", shards, executor="iterative")
    shutil.rmtree(run, ignore_errors=True)
    pretrained_run(MODELS / "particlenet_jetclass.yaml", shards, run)
    export = export_onnx(run, onnx_path, parity_jets=128)
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    info = infer(onnx_path, fileset, out, split="test", executor="iterative", batch_size=256)
    t_infer = time.perf_counter() - t0
    table = pq.read_table(out / "scores.parquet").to_pydict()
    disc = discriminant(np.asarray(table["score_label_Tbqq"]), np.asarray(table["score_label_QCD"]))
    is_top = np.asarray(table["label_Tbqq"]) == 1
    ds, rows = test
    keys = {(bool(t), int(e)): i for i, (t, e) in enumerate(zip(is_top, table["event_no"]))}
    sub = ds.gather(rows)
    picked = [keys[(bool(t == 0), int(e))] for t, e in zip(sub["target"], sub["observers/event_no"])]
    row = {
        "n_jets": info["n_jets"],
        "export_parity": export["max_abs_diff"],
        "prepare_export_s": t_export,
        "infer_s": t_infer,
        "all": metrics(disc, is_top),
        "test_subset": metrics(disc[picked], is_top[picked]),
    }
    print(
        f"[zero-shot] {info['n_jets']} jets in {t_infer:.0f} s: AUC {row['all']['auc']['value']:.4f}, "
        f"on the test subset {row['test_subset']['auc']['value']:.4f}",
        flush=True,
    )
    return row


def _fmt(iv: dict[str, Any], digits: int = 4) -> str:
    """An interval: ``value +- half-width`` below 1 (AUC), else ``value +high -low``."""
    from hepnn_coffea.evaluation.intervals import format_interval

    if iv["value"] is not None and iv["value"] < 1:
        return plus_minus(iv, digits)
    return format_interval(iv)


def markdown(rows: list[dict[str, Any]], zero: dict[str, Any] | None, args: argparse.Namespace) -> str:
    """The results table: per budget, start and seed, then the means over seeds.

    Parameters
    ----------
    rows
        Results of :func:`run_one`.
    zero
        Result of :func:`zero_shot`, or None.
    args
        The parsed command line (``test_jets``, ``steps``).

    Returns
    -------
    str
        A title line and the Markdown table.
    """
    names = {
        "fresh": f"{args.steps} steps x 128 (1 epoch, {args.steps * 128:,} jets)",
        "2epoch": f"2 epochs x {args.steps // 2} steps ({args.steps * 64:,} fixed jets)",
    }
    keys = ("auc", "rejection_at_30", "rejection_at_50")
    cells = []
    for budget in dict.fromkeys(r["budget"] for r in rows):
        for start in STARTS:
            runs = [r for r in rows if r["budget"] == budget and r["start"] == start]
            cells += [
                [names[budget], start, r["seed"], *(_fmt(r[k]) for k in keys), f"{r['train_s']:.0f}"]
                for r in runs
            ]
            if len(runs) > 1:
                (m_auc, s_auc), (m_30, s_30), (m_50, s_50) = (
                    mean_std(r[k]["value"] for r in runs) for k in keys
                )
                cells.append(
                    [
                        names[budget],
                        f"**{start} mean (std)**",
                        "-",
                        f"**{m_auc:.4f} ({s_auc:.4f})**",
                        f"**{m_30:.0f} ({s_30:.0f})**",
                        f"**{m_50:.0f} ({s_50:.0f})**",
                        "",
                    ]
                )
    if zero is not None:
        for key, label in (("all", f"all {zero['n_jets']:,} test jets"), ("test_subset", "the test subset")):
            cells.append(
                [
                    "zero-shot (no training)",
                    f"JetClass checkpoint, Tbqq/(Tbqq+QCD), {label}",
                    "-",
                    *(_fmt(zero[key][k]) for k in keys),
                    0,
                ]
            )
    header = ["budget", "start", "seed", "AUC", "1/eps_B @ 30%", "1/eps_B @ 50%", "train s"]
    return (
        f"Test subset: {args.test_jets} jets of the shared test split (fixed seed); final weights.\n\n"
        + markdown_table(header, cells)
    )


def main(argv: list[str] | None = None) -> int:
    """Run the zero-shot scoring and every (budget, seed, start), print the table.

    ``argv``: the command line (default ``sys.argv[1:]``). Returns the exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("/tmp/ft"))
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    parser.add_argument("--seeds", default="1,2", help="comma list of training seeds")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps of every budget (even)")
    parser.add_argument("--budgets", default="fresh,2epoch", help="comma list of fresh, 2epoch")
    parser.add_argument("--test-jets", type=int, default=2500, help="test jets every run is scored on")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the trainings")
    parser.add_argument("--zero-shot-only", action="store_true")
    parser.add_argument("--skip-zero-shot", action="store_true")
    parser.add_argument(
        "--reuse-runs", action="store_true", help="score finished runs found in the workdir again"
    )
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    work = args.workdir
    shards = topqcd_shards(work, args.data, executor="iterative", chunksize=50_000)
    test = test_subset(shards, args.test_jets)
    results: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": [],
        "zero_shot": None,
    }

    def save() -> None:
        write_json(args.json, results)

    if not args.skip_zero_shot:
        results["zero_shot"] = zero_shot(work, args.data, test)
        save()
    if not args.zero_shot_only:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        for budget in [b.strip() for b in args.budgets.split(",") if b.strip()]:
            source = (
                shards
                if budget == "fresh"
                else subset_shards(shards, work / "shards_subset", args.steps * 64)
            )
            for seed in seeds:
                for start in STARTS:
                    results["rows"].append(run_one(start, budget, seed, source, work, args, test))
                    save()
    results["total_s"] = time.perf_counter() - t_start
    save()
    print(
        "\n" + markdown(results["rows"], results["zero_shot"], args) + f"\n\ntotal {results['total_s']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
