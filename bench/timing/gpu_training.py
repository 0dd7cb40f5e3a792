"""Trainer on a CUDA device: AMP (bf16/fp16) for every zoo model, and background prefetch vs none.

Needs only torch, numpy, PyYAML, scikit-learn, awkward and vector (no coffea/uproot: the
training side reads shards made elsewhere). Make the shards on a CPU machine, e.g. from the
bundled samples::

    .venv/bin/python -c "from hepnn_coffea.processing.preprocess import preprocess; \\
        preprocess('tests/samples/fileset.json', 'models/data/top_kin.yaml', 'gpu_shards', \\
        executor='iterative')"

then on the GPU machine::

    PYTHONPATH=src python3 -m bench.timing.gpu_training --shards gpu_shards --json gpu.json

Prints, per model: best val AUC after a few epochs with amp off / bf16 / fp16 (the paths
run), and the training jets/s and data-wait fraction with ``prefetch`` 0, 2 and 4.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import tempfile
from typing import Any

import torch

from bench.common import MODELS, write_json
from hepnn_coffea.training.trainer import select_device, train

BATCH = {"pfn": 512, "particlenet": 128, "part": 128, "pcnn": 256}


def run(model: str, shards: str, work: pathlib.Path, **training: Any) -> dict[str, float]:
    """Train one zoo model on the selected device; its best val AUC and last epoch's throughput.

    Parameters
    ----------
    model
        Zoo model name (a key of :data:`BATCH`).
    shards
        Shard folder.
    work
        Scratch folder; each call trains into a new subfolder.
    **training
        Overrides of the ``training`` section (epochs, amp, prefetch, ...).

    Returns
    -------
    dict
        ``best_val_auc``, ``jets_per_s`` and ``data_wait`` (fraction).
    """
    result = train(
        MODELS / f"{model}.yaml",
        shards,
        work / f"{model}-{len(list(work.iterdir()))}",
        progress=False,
        overrides={"training": {"batch_size": BATCH[model], "tensorboard": False, **training}},
    )
    last = result.history[-1]
    return {
        "best_val_auc": result.best_metric,
        "jets_per_s": round(last["train_jets_per_s"]),
        "data_wait": round(last["train_data_wait_frac"], 3),
    }


def main(argv: list[str] | None = None) -> None:
    """Run the AMP and prefetch variants of every model and print each result.

    ``argv``: the command line (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", required=True)
    parser.add_argument("--models", default="pfn,particlenet,part,pcnn")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    device = select_device()
    out: dict[str, object] = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
    }
    print(out, flush=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="hepnn-gpu-"))
    try:
        for model in args.models.split(","):
            for amp in (None, "bf16", "fp16"):
                out[f"{model}/amp={amp}"] = run(model, args.shards, work, epochs=3, amp=amp)
                print(model, f"amp={amp}", out[f"{model}/amp={amp}"], flush=True)
            for prefetch in (0, 2, 4):
                n = 30000 if model == "pfn" else 8000
                out[f"{model}/prefetch={prefetch}"] = run(
                    model, args.shards, work, epochs=2, amp="bf16", samples_per_epoch=n, prefetch=prefetch
                )
                print(model, f"prefetch={prefetch}", out[f"{model}/prefetch={prefetch}"], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_json(args.json, out)


if __name__ == "__main__":
    main()
