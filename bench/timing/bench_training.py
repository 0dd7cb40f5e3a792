"""Training throughput (jets/s) of hepnn_coffea next to weaver-core 0.5.3, side by side.

For each model (PFN batch 512, ParticleNet batch 128, ParT batch 128; optimizer
ranger; 2 torch threads) the script runs, one after the other in the same run on
the same machine, hepnn_coffea and then weaver-core, so both see the same load:

* **hepnn_coffea**: ``train(models/<m>.yaml, shards, run, overrides={"training":
  {"epochs": 1, "samples_per_epoch": N, "batch_size": B, "num_threads": 2, ...}})``
  and read ``train_jets_per_s`` (jets seen / wall time of the whole training loop,
  data reading included) and ``train_data_wait_frac`` (fraction of that time spent
  waiting for the next batch from the shards) from ``RUN/metrics.csv``. The
  validation pass that ``train`` runs afterwards (on 512 val jets) is not timed.
* **weaver-core**: its CLI, the anchor's command (``../shared/anchor/README.md``)
  with ``--samples-per-epoch N --num-epochs 1 --in-memory --gpus "" --num-workers 1
  --fetch-step 1 --run-mode train`` (so no validation), in the weaver venv. Two
  numbers are parsed from its output: (a) weaver's own ``Processed N entries in
  total (avg. speed X entries/s)`` line of the training loop, which includes the
  in-memory load of the whole train split (read + new_variables + padding, done by
  the loader worker when the first batch is requested); (b) the steady-state rate
  over steps 2..N, from per-batch tqdm timestamps (the environment sets
  ``TQDM_BAR_FORMAT="@@ {n} {elapsed_s:.4f}"`` and ``TQDM_MININTERVAL=0``, which
  tqdm >= 4.66 reads as defaults), i.e. pure step time without the data loading.
  PFN runs in weaver with ``--network-option use_bn True`` so that both sides train the
  same network (hepnn_coffea's zoo PFN has batch norm; both 84,624 parameters).
  The ratio column is hepnn_coffea's whole-loop rate divided by weaver's steady
  rate (b), the stricter comparison; the table shows (a) as well.

Usage::

    .venv/bin/python -m bench.timing.bench_training                                  # ~26 min on 2 cores
    .venv/bin/python -m bench.timing.bench_training --models pfn --samples pfn=30000 --json /tmp/bt/bench.json

Options: ``--models`` (default ``pfn,particlenet,part``), ``--samples`` (jets per
epoch, ``m=N`` items, defaults pfn=30000 particlenet=1536 part=1536), ``--weaver``
(the weaver CLI, default ``$WEAVER_BIN``, else ``weaver`` on PATH), ``--anchor`` (default
``../shared/anchor/weaver``; its config and networks are copied to the work
folder because weaver writes ``*.auto.yaml`` next to the data config),
``--shards`` (reuse a preprocessed shard folder, e.g. ``/tmp/cmp/shards`` from
``bench.timing.compare_weaver``; otherwise the shared data is preprocessed first),
``--workdir`` (default ``/tmp/bench_training``), ``--threads`` (default 2),
``--json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import re
import shutil
import time
from typing import Any

from bench.anchor import (
    BUDGETS,
    NAMES,
    add_weaver_arguments,
    fresh_anchor_copy,
    run_logged,
    weaver_cli,
    weaver_train_command,
)
from bench.common import MODELS, markdown_table, topqcd_shards, write_json

BATCH = {"pfn": 512, "particlenet": 128, "part": 128}
SAMPLES = {"pfn": 30_000, "particlenet": 1536, "part": 1536}
SPEED_RE = re.compile(r"Processed (\d+) entries in total \(avg\. speed ([\d.]+) entries/s\)")
TQDM_RE = re.compile(r"@@ (\d+) ([\d.]+)")


def hepnn_run(
    model: str, shards: pathlib.Path, work: pathlib.Path, samples: int, threads: int
) -> dict[str, Any]:
    """One hepnn_coffea epoch of ``samples`` jets; the trainer's own per-epoch throughput row.

    Parameters
    ----------
    model
        Zoo model name.
    shards
        Preprocessed shards of the shared top/QCD data.
    work
        Work folder; the run goes to ``work/hepnn/<model>``.
    samples
        Training jets of the epoch.
    threads
        Torch threads.

    Returns
    -------
    dict
        ``jets_per_s`` and ``data_wait_frac`` of ``metrics.csv``, parameters, wall time (val pass included).
    """
    from hepnn_coffea.training.trainer import train

    run_dir = work / "hepnn" / model
    shutil.rmtree(run_dir, ignore_errors=True)
    budget = {k: v for k, v in BUDGETS[model].items() if k in ("lr", "weight_decay")}
    overrides = {
        "training": {
            **budget,
            "epochs": 1,
            "batch_size": BATCH[model],
            "samples_per_epoch": samples,
            "optimizer": "ranger",
            "scheduler": "none",
            "num_threads": threads,
            "tensorboard": False,
            "val_samples": 512,
        }
    }  # the val pass is not timed
    t0 = time.perf_counter()
    train(MODELS / f"{model}.yaml", shards, run_dir, overrides=overrides, progress=False)
    wall = time.perf_counter() - t0
    with (run_dir / "metrics.csv").open() as f:
        row = list(csv.DictReader(f))[-1]
    params = json.loads((run_dir / "provenance.json").read_text())["parameters"]
    return {
        "jets_per_s": float(row["train_jets_per_s"]),
        "data_wait_frac": float(row["train_data_wait_frac"]),
        "params": params,
        "wall_s_incl_val": wall,
    }


def weaver_run(model: str, args: argparse.Namespace, work: pathlib.Path, samples: int) -> dict[str, Any]:
    """One weaver-core epoch of ``samples`` jets through its CLI; parses its log for the rates.

    Parameters
    ----------
    model
        Zoo model name.
    args
        The parsed command line (``weaver``, ``anchor``, ``data``, ``threads``).
    work
        Work folder; the anchor's configs are copied to ``work/weaver/<model>``.
    samples
        Training jets of the epoch.

    Returns
    -------
    dict
        Parameters, weaver's loop rate (in-memory load included), the steady rate of steps 2..N,
        the time of the first batch and the wall time.

    Raises
    ------
    RuntimeError
        weaver failed; its log is in the work folder.
    """
    import torch

    cfg_dir = fresh_anchor_copy(args.anchor, work / "weaver" / model)
    cmd = weaver_train_command(args.weaver, args.data, cfg_dir, model, BATCH[model], samples)
    cmd += ["--data-val", f"{args.data}/val_*.root", "--samples-per-epoch-val", "10000"]
    if model == "pfn":  # the anchor's weaver PFN defaults to use_bn=False; hepnn_coffea's zoo PFN has it on
        cmd += ["--network-option", "use_bn", "True"]
    env = {
        **os.environ,
        "TQDM_BAR_FORMAT": "@@ {n} {elapsed_s:.4f}\n",
        "TQDM_MININTERVAL": "0",
        "OMP_NUM_THREADS": str(args.threads),
    }
    proc, wall = run_logged(cmd, cfg_dir, env, cfg_dir / "weaver.log")
    log = proc.stdout + "\n" + proc.stderr
    speed = SPEED_RE.search(log)
    if proc.returncode != 0 or speed is None:
        raise RuntimeError(
            f"weaver failed (rc {proc.returncode}), see {cfg_dir / 'weaver.log'}:\n{log[-3000:]}"
        )
    # "@@ k t": tqdm prints n=k when batch k+1 is requested (t = end of step k), and again after
    # step k+1 (set_postfix refresh); the last line is printed after the last step. So the first
    # timestamp of k=1 is the end of step 1 (data loading included) and the last one the end of
    # step N: the steady rate spans steps 2..N.
    ticks = [(int(n), float(t)) for n, t in TQDM_RE.findall(log[log.find("Epoch #0 training") :])]
    t1, t_end = next(t for n, t in ticks if n == 1), ticks[-1][1]
    n_steps = int(speed.group(1)) // BATCH[model]
    steady = (n_steps - 1) * BATCH[model] / (t_end - t1) if n_steps > 1 and t_end > t1 else float("nan")
    state = torch.load(cfg_dir / "train" / "net_epoch-0_state.pt", map_location="cpu", weights_only=True)
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    params = sum(v.numel() for k, v in state.items() if not k.endswith(buffers))
    return {
        "params": params,
        "jets_per_s_loop": float(speed.group(2)),
        "jets_per_s_steady": steady,
        "jets": int(speed.group(1)),
        "first_batch_s": t1,
        "steady_steps": n_steps - 1,
        "wall_s": wall,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    """The side-by-side table: rates of both frameworks and their ratio.

    Parameters
    ----------
    rows
        One dict per model: ``model``, ``batch``, ``samples`` and the ``hepnn`` / ``weaver`` results.

    Returns
    -------
    str
        Markdown table.
    """
    header = [
        "model",
        "params hepnn / weaver",
        "batch",
        "jets/epoch",
        "hepnn jets/s",
        "weaver jets/s (steady)",
        "ratio hepnn/weaver",
        "weaver jets/s incl. in-memory load",
        "hepnn data-wait fraction",
        "weaver first batch s",
    ]
    cells = []
    for r in rows:
        h, w = r["hepnn"], r["weaver"]
        cells.append(
            [
                NAMES[r["model"]],
                f"{h['params']:,} / {w['params']:,}",
                r["batch"],
                r["samples"],
                f"{h['jets_per_s']:.1f}",
                f"{w['jets_per_s_steady']:.1f}",
                f"{h['jets_per_s'] / w['jets_per_s_steady']:.2f}",
                f"{w['jets_per_s_loop']:.1f}",
                f"{h['data_wait_frac']:.3f}",
                f"{w['first_batch_s']:.1f}",
            ]
        )
    return markdown_table(header, cells)


def main(argv: list[str] | None = None) -> int:
    """Run both frameworks per model and print the table.

    ``argv``: the command line (default ``sys.argv[1:]``). Returns the exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="pfn,particlenet,part")
    parser.add_argument("--samples", nargs="*", default=[], help="jets per epoch as model=N, e.g. pfn=30000")
    add_weaver_arguments(parser)
    parser.add_argument("--shards", type=pathlib.Path, default=None, help="reuse these preprocessed shards")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("/tmp/bench_training"))
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if set(models) - set(BATCH):
        parser.error(f"unknown model(s) {sorted(set(models) - set(BATCH))}; choose from {sorted(BATCH)}")
    samples = dict(SAMPLES)
    for item in args.samples:
        name, _, value = item.partition("=")
        if name not in BATCH or not value.isdigit():
            parser.error(f"--samples wants model=N, got {item!r}")
        samples[name] = int(value)
    args.weaver = weaver_cli(args.weaver)

    t_start = time.perf_counter()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    shards = args.shards
    if shards is None or not (shards / "manifest.json").is_file():
        shards = topqcd_shards(work, args.data, executor="futures", workers=2, chunksize=10_000)
    print(f"shards: {shards}", flush=True)

    rows = []
    for model in models:
        h = hepnn_run(model, shards, work, samples[model], args.threads)
        print(f"[{model}] hepnn_coffea: {h}", flush=True)
        w = weaver_run(model, args, work, samples[model])
        print(f"[{model}] weaver-core: {w}", flush=True)
        rows.append(
            {"model": model, "batch": BATCH[model], "samples": samples[model], "hepnn": h, "weaver": w}
        )
    total = time.perf_counter() - t_start
    print("\n" + markdown(rows) + f"\n\ntotal {total:.0f} s")
    write_json(args.json, {"rows": rows, "total_s": total, "threads": args.threads})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
