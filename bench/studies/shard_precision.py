"""The PFN's test AUC on float32 and float16 shards: what reduced-precision storage costs.

The shared top/QCD files are preprocessed twice with the PFN's two input groups of
``top_kin.yaml`` (``pf_features``, ``pf_mask``): once in float32 and once with
``dtype: float16`` on both groups. ``models/pfn.yaml`` is trained on each with the
same seeds and scored on the 15k test jets (AUC with its bootstrap interval,
1/eps_B at 30% and 50% top efficiency with Clopper-Pearson intervals). The spread
over seeds is the yardstick for the difference between the two precisions.

Usage::

    .venv/bin/python -m bench.studies.shard_precision --work DIR [--seeds 1,2] [--epochs 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import time
from typing import Any

import numpy as np

from bench.common import DATA, MODELS, make_fileset, markdown_table, mean_std, plus_minus, write_json
from bench.timing.shard_io import data_configs

VARIANTS = ("PFN groups, float32", "PFN groups, float16")


def test_scores(
    run_dir: pathlib.Path, shards: pathlib.Path, batch: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Top probability of the run's best checkpoint on every test jet, and the truth."""
    import torch

    from hepnn_coffea.training.dataset import ShardDataset
    from hepnn_coffea.training.trainer import load_network

    net, _ = load_network(run_dir, "best.pt")
    net.eval()
    ds = ShardDataset(shards, "test", net.input_groups)
    probs, labels = [], []
    with torch.no_grad():
        for data in ds.batches(batch):
            probs.append(torch.softmax(net(*[data[g] for g in net.input_groups]), dim=1)[:, 0].numpy())
            labels.append(data["target"].numpy())
    return np.concatenate(probs), np.concatenate(labels) == 0  # labels [jet_isTop, jet_isQCD]


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Preprocess both variants, train and score every (variant, seed)."""
    from hepnn_coffea.evaluation.classifier_metrics import table_metrics
    from hepnn_coffea.processing.preprocess import preprocess
    from hepnn_coffea.training.trainer import train

    configs = data_configs(args.work)
    rows = []
    for variant in VARIANTS:
        shards = args.work / f"shards_{variant.split(', ')[1]}"
        if not (shards / "manifest.json").is_file():
            preprocess(
                make_fileset(args.data), configs[variant], shards, executor="iterative", chunksize=100_000
            )
        size = sum(p.stat().st_size for p in shards.rglob("*.arrow"))
        for seed in args.seeds:
            run_dir = args.work / "runs" / f"{variant.split(', ')[1]}_s{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            start = time.perf_counter()
            train(
                MODELS / "pfn.yaml",
                shards,
                run_dir,
                progress=False,
                overrides={"training": {"epochs": args.epochs, "seed": seed, "num_threads": args.threads}},
            )
            seconds = time.perf_counter() - start
            disc, is_top = test_scores(run_dir, shards)
            m = table_metrics(disc, is_top, np.ones(len(disc)), efficiencies=(0.3, 0.5))
            wait = [float(r["train_data_wait_frac"]) for r in _metrics_rows(run_dir)]
            rows.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "shard_bytes": size,
                    "train_s": seconds,
                    "data_wait_frac_max": max(wait),
                    "auc": m["auc"],
                    "rejection_at_30": m["rejection_at_30"],
                    "rejection_at_50": m["rejection_at_50"],
                }
            )
            print(f"[{variant} seed {seed}] {seconds:.0f} s: AUC {m['auc']['value']:.4f}", flush=True)
    return rows


def _metrics_rows(run_dir: pathlib.Path) -> list[dict[str, str]]:
    import csv

    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _interval(iv: dict[str, Any]) -> str:
    return f"{iv['value']:.0f} [{iv['low']:.0f}, {iv['high']:.0f}]"


def markdown(rows: list[dict[str, Any]]) -> str:
    """One row per run, then the mean +- std over seeds of each variant."""
    table = [
        [
            r["variant"],
            r["seed"],
            f"{r['shard_bytes'] / 1e6:.0f}",
            plus_minus(r["auc"]),
            _interval(r["rejection_at_30"]),
            _interval(r["rejection_at_50"]),
            f"{100 * r['data_wait_frac_max']:.1f}%",
        ]
        for r in rows
    ]
    for variant in VARIANTS:
        aucs = [r["auc"]["value"] for r in rows if r["variant"] == variant]
        mean, std = mean_std(aucs)
        table.append([f"{variant}: mean over seeds", len(aucs), "", f"{mean:.4f} +- {std:.4f}", "", "", ""])
    return markdown_table(
        [
            "shards",
            "seed",
            "MB (all splits)",
            "test AUC",
            "1/eps_B @30%",
            "1/eps_B @50%",
            "data wait (max epoch)",
        ],
        table,
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse the command line, run, print the table and optionally save the rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=pathlib.Path, required=True, help="work folder (shards, runs)")
    parser.add_argument("--data", type=pathlib.Path, default=DATA, help="folder of the shared top/QCD files")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training")
    parser.add_argument("--json", type=pathlib.Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = run(args)
    print(markdown(rows))
    write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
