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

    .venv/bin/python -m bench.studies.weaver_runs --model part --runs 2 --workdir /tmp/wr \
        --json /tmp/wr/part.json

Options: ``--model`` (``part`` or ``particlenet``), ``--runs`` (default 2), ``--weaver`` (the
weaver CLI, default ``$WEAVER_BIN``, else ``weaver`` on PATH), ``--anchor`` (default
``../shared/anchor/weaver``), ``--data`` (default ``../shared/data/topqcd``), ``--threads``
(default 2), ``--workdir``, ``--json``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
from typing import Any

import numpy as np

from bench.anchor import (
    BUDGETS,
    METRICS,
    NAMES,
    WEAVER,
    add_weaver_arguments,
    fresh_anchor_copy,
    run_logged,
    weaver_cli,
    weaver_io_options,
    weaver_train_command,
)
from bench.common import mean_std, write_json

BATCH = 128
LABEL = "jet_isTop"  # the anchor data config's signal label


def train_and_predict(model: str, run: int, args: argparse.Namespace) -> dict[str, Any]:
    """One weaver training (48 steps) and its ``--predict`` on the test files.

    Parameters
    ----------
    model
        ``part`` or ``particlenet``.
    run
        Run number (names the folder ``WORKDIR/<model>_run<run>``).
    args
        The parsed command line (``weaver``, ``anchor``, ``data``, ``threads``, ``workdir``).

    Returns
    -------
    dict
        Test metrics (:data:`bench.common.METRICS`), number of test jets, train and predict seconds.

    Raises
    ------
    RuntimeError
        A weaver call failed; its log is in the run folder.
    """
    import uproot

    from hepnn_coffea.evaluation.roc import roc_from_scores

    work = fresh_anchor_copy(args.anchor, args.workdir / f"{model}_run{run}")
    train = weaver_train_command(
        args.weaver, args.data, work, model, BATCH, BUDGETS[model]["samples_per_epoch"]
    )
    predict = [
        str(args.weaver),
        "--predict",
        "--data-test",
        f"top:{args.data}/test_top_*.root",
        f"qcd:{args.data}/test_qcd_*.root",
        "--model-prefix",
        str(work / "train" / "net_epoch-0_state.pt"),
        "--num-workers",
        "0",
        "--predict-output",
        str(work / "predict" / "pred.root"),
        *weaver_io_options(work, model, BATCH),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    seconds = {}
    for name, cmd in (("train", train), ("predict", predict)):
        proc, seconds[name] = run_logged(cmd, work, env, work / f"{name}.log")
        if proc.returncode != 0:
            raise RuntimeError(f"weaver {name} failed (rc {proc.returncode}), see {work / f'{name}.log'}")
    scores, truth = [], []
    for sample in ("top", "qcd"):
        arrays = uproot.open(work / "predict" / f"pred_{sample}.root")["Events"].arrays(library="np")
        scores.append(arrays[f"score_{LABEL}"])
        truth.append(arrays[LABEL].astype(bool) if LABEL in arrays else arrays["_label_"] == 0)
    score, is_top = np.concatenate(scores), np.concatenate(truth)
    roc = roc_from_scores(score, is_top)
    metrics = {
        "auc": roc.auc,
        "accuracy": float(np.mean((score > 0.5) == is_top)),
        "rejection_at_30": roc.rejection_at(0.3),
        "rejection_at_50": roc.rejection_at(0.5),
    }
    print(
        f"[weaver {model} run {run}] {len(score)} test jets, {metrics}, train {seconds['train']:.0f} s, "
        f"predict {seconds['predict']:.0f} s",
        flush=True,
    )
    return {"run": run, "n_test_jets": int(len(score)), "test": metrics, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    """Run weaver ``--runs`` times and print each metric with the anchor's value.

    ``argv``: the command line (default ``sys.argv[1:]``). Returns the exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="part", choices=["part", "particlenet"])
    parser.add_argument("--runs", type=int, default=2)
    add_weaver_arguments(parser)
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("/tmp/weaver_runs"))
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    args.weaver = weaver_cli(args.weaver)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = [train_and_predict(args.model, i, args) for i in range(args.runs)]
    anchor = WEAVER[args.model]
    values = {k: [r["test"][k] for r in rows] + [anchor[k]] for k in METRICS}
    print(
        f"\n{NAMES[args.model]}, weaver-core 0.5.3, {len(rows)} new runs + the anchor: "
        "AUC / accuracy / 1/eps_B@30% / @50%"
    )
    for k in METRICS:
        mean, std = mean_std(values[k])
        print(f"  {k}: " + ", ".join(f"{v:.4g}" for v in values[k]) + f" -> mean {mean:.4g}, std {std:.2g}")
    write_json(args.json, {"model": args.model, "runs": rows, "anchor": anchor})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
