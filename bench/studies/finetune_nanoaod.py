"""Does the JetClass ParticleNet start help the top / W / QCD tagger on event-level NanoAOD? (issue 16)

Fine-tuned (``models/nanoaod/particlenet_finetune.yaml``) vs from scratch
(``models/nanoaod/particlenet_kin.yaml``) at an equal budget of 20 steps x 128 jets, two seeds, on
shards of ``models/data/nanoaod_fatjet_kin.yaml`` (the checkpoint's 7 "kin" inputs); weighted top-
and W-vs-QCD AUC (+- Poisson-bootstrap std) on a seeded 4,000-row subset of the test rows.

Usage::

    hepnn preprocess ../shared/data/nanosim/fileset.json -c models/data/nanoaod_fatjet_kin.yaml \
        -o /tmp/nano/shards_kin
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.studies.finetune_nanoaod --shards /tmp/nano/shards_kin \
        --workdir /tmp/nano
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

from bench.common import MODELS, markdown_table, plus_minus

STARTS = {"fine-tuned": "particlenet_finetune.yaml", "scratch": "particlenet_kin.yaml"}


def main(argv: list[str] | None = None) -> int:
    """Train (or reuse) every (seed, start) and print the AUC table row by row.

    ``argv``: the command line (default ``sys.argv[1:]``). Returns the exit status.
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rows", type=int, default=4000, help="test rows scored (seeded subset)")
    args = p.parse_args(argv)

    import torch

    from hepnn_coffea.evaluation.sculpting import auc_interval
    from hepnn_coffea.training.dataset import ShardDataset
    from hepnn_coffea.training.trainer import load_network, train

    test = ShardDataset(args.shards, "test")
    test.carry(["observers/xsec_weight"])
    rows = np.sort(np.random.default_rng(0).choice(test.rows, min(args.rows, len(test.rows)), replace=False))
    data = test.gather(rows)
    label, weight = data["target"], data["observers/xsec_weight"]
    print(markdown_table(["start", "seed", "top AUC", "W AUC"], []))
    for seed in (int(s) for s in args.seeds.split(",")):
        for start, config in STARTS.items():
            run = pathlib.Path(args.workdir) / f"ft_{config.removesuffix('.yaml')}_s{seed}"
            if not (run / "checkpoints" / "best.pt").is_file():
                training = {
                    "epochs": 1,
                    "samples_per_epoch": 128 * args.steps,
                    "batch_size": 128,
                    "val_samples": 512,
                    "tensorboard": False,
                    "seed": seed,
                }
                train(
                    MODELS / "nanoaod" / config,
                    args.shards,
                    run,
                    overrides={"training": training},
                    progress=False,
                )
            net, _ = load_network(run)
            with torch.no_grad():
                probs = np.concatenate(
                    [
                        torch.softmax(
                            net(*[torch.from_numpy(data[g][i : i + 256]) for g in net.input_groups]), 1
                        ).numpy()
                        for i in range(0, len(label), 256)
                    ]
                )
            cells = []
            for index in (0, 1):  # top, W vs QCD (label 2)
                sel = (label == index) | (label == 2)
                disc = probs[sel, index] / (probs[sel, index] + probs[sel, 2] + 1e-12)
                iv = auc_interval(disc, label[sel] == index, weight[sel])
                cells.append(plus_minus(iv))
            print(f"| {start} | {seed} | {' | '.join(cells)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
