"""Repeat the weaver-core 0.5.3 anchor runs (their seed spread) and score them on the test split.

The anchor (``../shared/anchor/README.md``) is one weaver run per model. To tell a real gap
from seed-to-seed spread, this script trains weaver-core again ``--runs`` times with the
anchor's command (its own venv; weaver sets no seed, so every run draws new initial weights and
batches), then runs weaver's own ``--predict`` on the test split and computes AUC, accuracy and
1/eps_B at eps_S = 30% / 50% from its scores with the same functions as ``evaluate``
(:func:`hepnn_coffea.evaluation.roc.roc_from_scores`). ParticleNet and ParT only (48 steps of
128 jets, ``--lr-scheduler none``, as the anchor); ``--run-mode train`` (one epoch: no epoch is
selected, so the val pass is skipped).

Usage::

    .venv/bin/python bench/weaver_runs.py --model part --runs 2 --workdir /tmp/wr --json /tmp/wr/part.json

Options: ``--model`` (``part`` or ``particlenet``), ``--runs`` (default 2), ``--weaver`` (the
weaver CLI, default ``$WEAVER_BIN``, else ``weaver`` on PATH), ``--anchor`` (default
``../shared/anchor/weaver``), ``--data`` (default ``../shared/data/topqcd``), ``--threads``
(default 2), ``--workdir``, ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from compare_weaver import BUDGETS, DATA, METRICS, NAMES, ROOT, WEAVER, weaver_cli  # noqa: E402

BATCH = 128
LABEL = "jet_isTop"  # the anchor data config's signal label


def train_and_predict(model: str, run: int, args: argparse.Namespace) -> dict[str, Any]:
    """One weaver training (48 steps) and its ``--predict`` on the test files; returns the metrics."""
    import uproot

    from hepnn_coffea.evaluation.roc import roc_from_scores

    work = args.workdir / f"{model}_run{run}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(args.anchor, work)  # weaver writes *.auto.yaml beside its data config
    budget = BUDGETS[model]
    common = ["--data-config", str(work / "topqcd_kin.yaml"), "--network-config", str(work / "networks" / f"{model}.py"),
              "--gpus", "", "--batch-size", str(BATCH)]  # fmt: skip
    train = [str(args.weaver), "--data-train", f"{args.data}/train_*.root", "--model-prefix", str(work / "train" / "net"),
             "--num-workers", "1", "--fetch-step", "1", "--in-memory", "--num-epochs", "1",
             "--start-lr", str(budget["lr"]), "--optimizer", "ranger", "--lr-scheduler", "none", "--run-mode", "train",
             "--samples-per-epoch", str(budget["samples_per_epoch"]), *common]  # fmt: skip
    if budget.get("weight_decay"):
        train += ["--optimizer-option", "weight_decay", str(budget["weight_decay"])]
    predict = [str(args.weaver), "--predict", "--data-test", f"top:{args.data}/test_top_*.root",
               f"qcd:{args.data}/test_qcd_*.root", "--model-prefix", str(work / "train" / "net_epoch-0_state.pt"),
               "--num-workers", "0", "--predict-output", str(work / "predict" / "pred.root"), *common]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    seconds = {}
    for name, cmd in (("train", train), ("predict", predict)):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        seconds[name] = time.perf_counter() - t0
        (work / f"{name}.log").write_text(" ".join(cmd) + "\n\n" + proc.stdout + "\n" + proc.stderr)
        if proc.returncode != 0:
            raise RuntimeError(f"weaver {name} failed (rc {proc.returncode}), see {work / f'{name}.log'}")
    scores, truth = [], []
    for sample in ("top", "qcd"):
        arrays = uproot.open(work / "predict" / f"pred_{sample}.root")["Events"].arrays(library="np")
        scores.append(arrays[f"score_{LABEL}"])
        truth.append(arrays[LABEL].astype(bool) if LABEL in arrays else arrays["_label_"] == 0)
    score, is_top = np.concatenate(scores), np.concatenate(truth)
    roc = roc_from_scores(score, is_top)
    metrics = {"auc": roc.auc, "accuracy": float(np.mean((score > 0.5) == is_top)),
               "rejection_at_30": roc.rejection_at(0.3), "rejection_at_50": roc.rejection_at(0.5)}  # fmt: skip
    print(f"[weaver {model} run {run}] {len(score)} test jets, {metrics}, train {seconds['train']:.0f} s, "
          f"predict {seconds['predict']:.0f} s", flush=True)  # fmt: skip
    return {"run": run, "n_test_jets": int(len(score)), "test": metrics, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="part", choices=["part", "particlenet"])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--weaver", type=pathlib.Path, default=None,
                        help="weaver CLI of a weaver-core install (default: $WEAVER_BIN, else `weaver` on PATH)")
    parser.add_argument("--anchor", type=pathlib.Path, default=ROOT.parent / "shared" / "anchor" / "weaver")
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("/tmp/weaver_runs"))
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    args.weaver = weaver_cli(args.weaver)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = [train_and_predict(args.model, i, args) for i in range(args.runs)]
    anchor = WEAVER[args.model]
    values = {k: [r["test"][k] for r in rows] + [anchor[k]] for k in METRICS}
    print(f"\n{NAMES[args.model]}, weaver-core 0.5.3, {len(rows)} new runs + the anchor: AUC / accuracy / 1/eps_B@30% / @50%")
    for k in METRICS:
        print(f"  {k}: " + ", ".join(f"{v:.4g}" for v in values[k]) + f" -> mean {np.mean(values[k]):.4g}, "
              f"std {np.std(values[k], ddof=1):.2g}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "runs": rows, "anchor": anchor}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
