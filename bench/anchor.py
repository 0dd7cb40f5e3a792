"""The weaver-core 0.5.3 anchor: its numbers and budgets, its CLI and the command lines run with it.

The anchor (``../shared/anchor/README.md``) is one weaver-core run per zoo model on the shared
top/QCD data; weaver-core lives in its own virtual environment (never a dependency of this
package; ``bench/README.md`` has the install command). Used by ``bench.timing.compare_weaver``,
``bench.timing.bench_training`` and ``bench.studies.weaver_runs``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from bench.common import DATA, SHARED

ANCHOR = SHARED / "anchor" / "weaver"
"""The anchor's weaver-core configs (``topqcd_kin.yaml``, ``networks/``)."""

# Anchor (weaver-core 0.5.3, 2-core CPU, 2 threads), test split: ../shared/anchor/README.md
WEAVER: dict[str, dict[str, Any]] = {
    "pfn": {
        "params": 83_842,
        "budget": "10 epochs",
        "auc": 0.9773,
        "accuracy": 0.9251,
        "rejection_at_30": 441,
        "rejection_at_50": 117,
    },
    "particlenet": {
        "params": 366_160,
        "budget": "6,144 jets",
        "auc": 0.9538,
        "accuracy": 0.8982,
        "rejection_at_30": 54,
        "rejection_at_50": 30,
    },
    "part": {
        "params": 2_141_134,
        "budget": "6,144 jets",
        "auc": 0.9380,
        "accuracy": 0.8706,
        "rejection_at_30": 58,
        "rejection_at_50": 23,
    },
}
BUDGETS: dict[str, dict[str, Any]] = {
    "pfn": {
        "epochs": 10,
        "batch_size": 512,
        "lr": 1e-2,
        "scheduler": "flat+decay",
        "samples_per_epoch": None,
    },
    "particlenet": {
        "epochs": 1,
        "batch_size": 128,
        "lr": 1e-2,
        "scheduler": "none",
        "samples_per_epoch": 6144,
    },
    "part": {
        "epochs": 1,
        "batch_size": 128,
        "lr": 1e-3,
        "weight_decay": 0.01,
        "scheduler": "none",
        "samples_per_epoch": 6144,
    },
}
"""The anchor's training budget of every zoo model (the same in hepnn_coffea and weaver-core)."""
NAMES = {"pfn": "PFN", "particlenet": "ParticleNet", "part": "ParT"}
METRICS = ("auc", "accuracy", "rejection_at_30", "rejection_at_50")


def weaver_cli(path: pathlib.Path | None) -> pathlib.Path:
    """The weaver CLI to run: ``path``, else ``$WEAVER_BIN``, else ``weaver`` on PATH.

    Parameters
    ----------
    path
        An explicit weaver executable (``--weaver``), or None.

    Returns
    -------
    pathlib.Path
        The executable.

    Raises
    ------
    SystemExit
        None found (weaver-core lives in its own venv; bench/README.md has the install command).
    """
    found = path or os.environ.get("WEAVER_BIN") or shutil.which("weaver")
    if not found or not pathlib.Path(found).is_file():
        raise SystemExit(
            f"weaver CLI {found or '(not on PATH, $WEAVER_BIN unset)'} not found: install weaver-core "
            "in its own venv and pass --weaver PATH (see bench/README.md)"
        )
    return pathlib.Path(found)


def add_weaver_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of every script that runs weaver-core: ``--weaver``, ``--anchor``, ``--data``,
    ``--threads``.

    Parameters
    ----------
    parser
        The script's parser.
    """
    parser.add_argument(
        "--weaver",
        type=pathlib.Path,
        default=None,
        help="weaver CLI of a weaver-core install (default: $WEAVER_BIN, else `weaver` on PATH)",
    )
    parser.add_argument("--anchor", type=pathlib.Path, default=ANCHOR, help="the anchor's weaver configs")
    parser.add_argument("--data", type=pathlib.Path, default=DATA, help="folder of the shared top/QCD files")
    parser.add_argument("--threads", type=int, default=2, help="torch / OpenMP threads")


def fresh_anchor_copy(anchor: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    """Copy the anchor's weaver configs to an emptied ``dst`` (weaver writes ``*.auto.yaml`` beside them).

    Parameters
    ----------
    anchor
        The anchor folder (:data:`ANCHOR`).
    dst
        Destination folder; removed first if it exists.

    Returns
    -------
    pathlib.Path
        ``dst``.
    """
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(anchor, dst)
    return dst


def weaver_io_options(cfg_dir: pathlib.Path, model: str, batch: int) -> list[str]:
    """Options of every weaver call: data and network configs of ``cfg_dir``, CPU, batch size.

    Parameters
    ----------
    cfg_dir
        A copy of the anchor folder (:func:`fresh_anchor_copy`).
    model
        Zoo model name (``pfn``, ``particlenet``, ``part``): ``networks/<model>.py``.
    batch
        Batch size.

    Returns
    -------
    list of str
        Command-line options.
    """
    return [
        "--data-config",
        str(cfg_dir / "topqcd_kin.yaml"),
        "--network-config",
        str(cfg_dir / "networks" / f"{model}.py"),
        "--gpus",
        "",
        "--batch-size",
        str(batch),
    ]


def weaver_train_command(
    weaver: pathlib.Path, data: pathlib.Path, cfg_dir: pathlib.Path, model: str, batch: int, samples: int
) -> list[str]:
    """The anchor's one-epoch weaver training (``--run-mode train``: no validation pass), in memory.

    Parameters
    ----------
    weaver
        The weaver CLI (:func:`weaver_cli`).
    data
        Folder of the shared top/QCD files (train split: ``train_*.root``).
    cfg_dir
        A copy of the anchor folder; the weights go to ``cfg_dir/train/net_epoch-0_state.pt``.
    model
        Zoo model name; its learning rate and weight decay come from :data:`BUDGETS`.
    batch
        Batch size.
    samples
        Training jets of the epoch (``--samples-per-epoch``).

    Returns
    -------
    list of str
        The command line.
    """
    budget = BUDGETS[model]
    cmd = [
        str(weaver),
        "--data-train",
        f"{data}/train_*.root",
        "--model-prefix",
        str(cfg_dir / "train" / "net"),
        "--num-workers",
        "1",
        "--fetch-step",
        "1",
        "--in-memory",
        "--num-epochs",
        "1",
        "--start-lr",
        str(budget["lr"]),
        "--optimizer",
        "ranger",
        "--lr-scheduler",
        "none",
        "--run-mode",
        "train",
        "--samples-per-epoch",
        str(samples),
        *weaver_io_options(cfg_dir, model, batch),
    ]
    if budget.get("weight_decay"):
        cmd += ["--optimizer-option", "weight_decay", str(budget["weight_decay"])]
    return cmd


def run_logged(
    cmd: list[str], cwd: pathlib.Path, env: Mapping[str, str], log: pathlib.Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``cmd``, write the command and its output to ``log``; return the process and its wall time.

    Parameters
    ----------
    cmd
        Command line.
    cwd
        Working directory.
    env
        Environment of the process.
    log
        File that receives the command line, then stdout and stderr.

    Returns
    -------
    tuple of (subprocess.CompletedProcess, float)
        The finished process (output captured as text) and the seconds it ran.
    """
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=dict(env), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    log.write_text(" ".join(cmd) + "\n\n" + proc.stdout + "\n" + proc.stderr)
    return proc, seconds
