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

    .venv/bin/python -m bench.timing.compare_weaver    # all three, ~75 min on a busy 2-core box
    .venv/bin/python -m bench.timing.compare_weaver --models pfn --workdir /tmp/cmp \
        --json /tmp/cmp/compare.json
    # seed spread:
    .venv/bin/python -m bench.timing.compare_weaver --models part --seeds 1,2,3 --val-samples 2000

Options: ``--models`` (comma list, default ``pfn,particlenet,part``), ``--workdir``
(scratch folder for shards, runs, ONNX files and infer outputs, default
``/tmp/cmp``; shards found there are reused), ``--data`` (default
``../shared/data/topqcd``), ``--threads`` (default 2), ``--json`` (also write the
results there), ``--seeds`` (comma list: one run per seed, named ``<model>_s<seed>``, plus a
mean/std row per model), ``--val-samples`` (val jets scored per epoch; the one-epoch budgets
do not select epochs, so this only saves time), ``--infer-batch`` (jets per onnxruntime call
inside ``infer``, default 256; see below), ``--reuse-runs`` (take finished runs already in the
workdir instead of training again; their train time is then reported as "reused").

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

from bench.anchor import BUDGETS, METRICS, NAMES, WEAVER
from bench.common import DATA, MODELS, make_fileset, markdown_table, mean_std, topqcd_shards, write_json

BASELINES = {  # the anchor's non-NN rows, for context
    "logistic regression": {"auc": 0.9629, "accuracy": 0.9055, "rejection_at_30": 142, "rejection_at_50": 56},
    "HistGradientBoosting": {
        "auc": 0.9849,
        "accuracy": 0.9387,
        "rejection_at_30": 1250,
        "rejection_at_50": 300,
    },
}
COMMON = {"optimizer": "ranger", "num_threads": 2, "tensorboard": False}


def run_model(
    model: str,
    shards: pathlib.Path,
    fileset: dict[str, Any],
    work: pathlib.Path,
    threads: int,
    reuse: bool,
    infer_batch: int = 256,
    seed: int | None = None,
    val_samples: int | None = None,
) -> dict[str, Any]:
    """Train, export, infer on the test split and evaluate one model.

    Parameters
    ----------
    model
        Zoo model name (a key of :data:`bench.common.BUDGETS`).
    shards
        Preprocessed shards of the shared top/QCD data.
    fileset
        The coffea fileset of the shared data (the test split is scored).
    work
        Work folder: ``runs/<name>``, ``<name>.onnx``, ``infer/<name>``.
    threads
        Torch threads of the training.
    reuse
        Take a finished run already in ``work`` instead of training again.
    infer_batch
        Jets per onnxruntime call inside ``infer``.
    seed
        Training seed (default: the model config's); names the run ``<model>_s<seed>``.
    val_samples
        Val jets scored per epoch (no effect on one-epoch budgets but time).

    Returns
    -------
    dict
        Parameters, epochs, test metrics (from the table and from the hists) and timings.
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
        result = train(
            None, None, run_dir, resume=True, progress=False
        )  # no epochs left: returns its history
        t_train = None
        print(f"[{model}] reusing the finished run in {run_dir}", flush=True)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        result = train(MODELS / f"{model}.yaml", shards, run_dir, overrides=overrides, progress=False)
        t_train = time.perf_counter() - t0
    params = json.loads((run_dir / "provenance.json").read_text())["parameters"]
    t0 = time.perf_counter()
    export_onnx(run_dir, onnx_path)
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    info = infer(
        onnx_path, fileset, out_dir, split="test", executor="futures", workers=2, batch_size=infer_batch
    )
    t_infer = time.perf_counter() - t0
    summary = evaluate(out_dir, plots=False)
    last = result.history[-1]
    row = {
        "model": model,
        "seed": seed,
        "params": params,
        "overrides": overrides["training"],
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "best_val_auc": result.best_metric,
        "train_jets_per_s": last["train_jets_per_s"],
        "train_data_wait_frac": last["train_data_wait_frac"],
        "n_test_jets": info["n_jets"],
        "test": {k: float(summary["from_table"][k]["value"]) for k in METRICS},
        "test_from_hists": {
            k: float(summary["from_hists"][k]["value"]) for k in METRICS
        },  # intervals: summary.json
        "seconds": {
            "train": t_train,
            "export": t_export,
            "infer": t_infer,
            "infer_jets_per_s": info["n_jets"] / t_infer,
        },
    }
    print(
        f"[{name}] params {params:,}, best epoch {result.best_epoch} (val AUC {result.best_metric:.4f}), "
        f"train {'(reused)' if t_train is None else f'{t_train:.0f}'} s, export {t_export:.0f} s, "
        f"infer {t_infer:.0f} s "
        f"({info['n_jets'] / t_infer:.0f} jets/s), test {row['test']}",
        flush=True,
    )
    return row


def _label(r: dict[str, Any]) -> str:
    """The row label of one result: model name, and the seed if set."""
    return NAMES[r["model"]] + ("" if r.get("seed") is None else f" (seed {r['seed']})")


def markdown(rows: list[dict[str, Any]]) -> str:
    """The comparison table (hepnn_coffea vs the weaver anchor) and the timing table.

    Parameters
    ----------
    rows
        Results of :func:`run_model`.

    Returns
    -------
    str
        Markdown: the physics table (with the mean and std over seeds of a model run more than
        once, and the anchor's non-NN baselines) and the timings.
    """

    def fmt(m: dict[str, float]) -> str:
        return (
            f"{m['auc']:.4f} / {m['accuracy']:.4f} / {m['rejection_at_30']:.0f} / {m['rejection_at_50']:.0f}"
        )

    def cells(label: str, r: dict[str, Any], h: dict[str, float]) -> list[str]:
        w = WEAVER[r["model"]]
        ok = [
            "yes" if h[k] >= w[k] else f"no ({h[k] - w[k]:+.4g})"
            for k in ("auc", "accuracy", "rejection_at_30")
        ]
        return [label, f"{r['params']:,} / {w['params']:,}", w["budget"], fmt(h), fmt(w), *ok]

    physics = []
    for model in dict.fromkeys(r["model"] for r in rows):
        runs = [r for r in rows if r["model"] == model]
        physics += [cells(_label(r), r, r["test"]) for r in runs]
        if len(runs) > 1:  # the mean over seeds, and the seed-to-seed spread
            stats = {k: mean_std(r["test"][k] for r in runs) for k in METRICS}
            mean, std = {k: v[0] for k, v in stats.items()}, {k: v[1] for k, v in stats.items()}
            physics.append(
                cells(
                    f"{NAMES[model]} mean of {len(runs)} (std {std['auc']:.4f} / {std['accuracy']:.4f} / "
                    f"{std['rejection_at_30']:.0f} / {std['rejection_at_50']:.0f})",
                    runs[0],
                    mean,
                )
            )
    physics += [[f"{name} (anchor)", "-", "-", "-", fmt(b), "", "", ""] for name, b in BASELINES.items()]
    timing = [
        [
            _label(r),
            "reused" if r["seconds"]["train"] is None else f"{r['seconds']['train']:.0f}",
            f"{r['seconds']['export']:.1f}",
            f"{r['seconds']['infer']:.0f}",
            f"{r['seconds']['infer_jets_per_s']:.0f}",
            f"{r['train_jets_per_s']:.0f}",
            f"{r['train_data_wait_frac']:.3f}",
        ]
        for r in rows
    ]
    return "\n\n".join(
        [
            "Test split (15k jets): AUC / accuracy / 1/eps_B @ eps_S=30% / 50%",
            markdown_table(
                [
                    "model",
                    "params (hepnn / weaver)",
                    "budget",
                    "hepnn_coffea",
                    "weaver-core 0.5.3 (anchor)",
                    "AUC >=",
                    "acc >=",
                    "1/eps_B@30% >=",
                ],
                physics,
            ),
            markdown_table(
                [
                    "model",
                    "train s",
                    "export s",
                    "infer s (15k jets)",
                    "infer jets/s",
                    "train jets/s",
                    "data-wait frac",
                ],
                timing,
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Run every model (and seed) and print the tables.

    ``argv``: the command line (default ``sys.argv[1:]``). Returns the exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="pfn,particlenet,part", help="comma list of pfn, particlenet, part"
    )
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("/tmp/cmp"))
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the results here")
    parser.add_argument("--infer-batch", type=int, default=256, help="jets per onnxruntime call in infer")
    parser.add_argument("--reuse-runs", action="store_true", help="reuse finished runs found in the workdir")
    parser.add_argument(
        "--seeds", default=None, help="comma list of training seeds (one run each; default: the config's)"
    )
    parser.add_argument(
        "--val-samples", type=int, default=None, help="val jets scored per epoch (default: all)"
    )
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(BUDGETS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(BUDGETS)}")

    t_start = time.perf_counter()
    work = args.workdir
    fileset = make_fileset(args.data)
    shards = topqcd_shards(work, args.data, executor="futures", workers=2, chunksize=10_000)
    t_pre = time.perf_counter() - t_start
    print(f"preprocess: {t_pre:.0f} s", flush=True)

    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [None]
    rows = [
        run_model(
            m, shards, fileset, work, args.threads, args.reuse_runs, args.infer_batch, seed, args.val_samples
        )
        for m in models
        for seed in seeds
    ]
    table = markdown(rows)
    total = time.perf_counter() - t_start
    print("\n" + table + f"\n\npreprocess {t_pre:.0f} s; total {total:.0f} s")
    write_json(
        args.json,
        {
            "rows": rows,
            "weaver_anchor": WEAVER,
            "baselines": BASELINES,
            "preprocess_s": t_pre,
            "total_s": total,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
