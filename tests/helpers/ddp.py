"""Training with ``torchrun`` on 2 CPU processes (gloo), as the DDP tests run it."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys


def torchrun_train(model: pathlib.Path, shards: pathlib.Path, run_dir: pathlib.Path, *settings: str) -> None:
    """Train with ``torchrun --nproc_per_node 2 -m hepnn_coffea.cli train`` on the CPU.

    ``settings`` are ``--set`` values (``training.epochs=1``).

    Raises
    ------
    AssertionError
        The run failed (the message holds the end of its stderr).
    """
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "hepnn_coffea.cli", "train", str(model)]
    cmd += ["--shards", str(shards), "-o", str(run_dir), "--no-progress", "--set", "training.device=cpu"]
    for setting in settings:
        cmd += ["--set", setting]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
