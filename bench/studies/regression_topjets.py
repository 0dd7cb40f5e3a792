"""Top-quark (pT, eta) regression on the shared top jets: model vs naive, reweighting on vs off.

Runs the whole regression workflow through the library's stages:
``preprocess`` (``models/data/top_regression.yaml``: filters, two |eta| experts) ->
``train_experts`` / ``train`` -> ``export_onnx`` (one routed file for the experts) ->
``infer`` on the test split with the naive estimator (jet pT / eta as the top's) ->
``evaluate`` (resolution from the 68% interquantile range and a Gaussian core fit,
bias vs true pT). Prints one Markdown table.

Variants (``--variants``, comma list; default ``mlp,mlp_reweighted,pfn``):

=================  =========================================================================
mlp                trigger-style MLP (81 tanh units) per expert: models/regression/mlp_trigger.yaml
mlp_reweighted     the same, rows re-sampled flat in truth pT: mlp_trigger_reweighted.yaml
pfn                the zoo PFN on the constituents, one model: models/regression/pfn_regression.yaml
=================  =========================================================================

Usage::

    .venv/bin/python -m bench.studies.regression_topjets --workdir /tmp/reg6 --json /tmp/reg6/regression.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from typing import Any

from bench.common import DATA, MODELS, markdown_table, write_json

VARIANTS = {  # name -> (model config, one model per |eta| expert)
    "mlp": (MODELS / "regression" / "mlp_trigger.yaml", True),
    "mlp_reweighted": (MODELS / "regression" / "mlp_trigger_reweighted.yaml", True),
    "pfn": (MODELS / "regression" / "pfn_regression.yaml", False),
}
NAIVE = {"truth_pt": "jet_pt", "truth_deta": "0 * jet_eta"}  # the jet itself as the top


def fileset(data: pathlib.Path) -> dict[str, Any]:
    """The top-jet files of every split (QCD jets carry no truth top).

    Parameters
    ----------
    data
        Folder of the shared top/QCD files.

    Returns
    -------
    dict
        A coffea fileset ``top_{split}``.
    """
    files = {
        "train": [f"train_top_{i}.root" for i in range(3)],
        "val": ["val_top_0.root"],
        "test": ["test_top_0.root"],
    }
    return {
        f"top_{s}": {
            "files": {str(data / f): "tree" for f in names},
            "metadata": {"sample": "top", "split": s},
        }
        for s, names in files.items()
    }


def run_variant(
    name: str, shards: pathlib.Path, work: pathlib.Path, files: dict[str, Any], threads: int
) -> dict[str, Any]:
    """Train (or reuse), export, infer on the test split with the naive estimator, evaluate one variant.

    Parameters
    ----------
    name
        A key of :data:`VARIANTS`.
    shards
        Preprocessed shards (``models/data/top_regression.yaml``).
    work
        Work folder: ``runs/<name>``, ``<name>.onnx``, ``infer/<name>``.
    files
        The coffea fileset (:func:`fileset`).
    threads
        Torch threads of the training.

    Returns
    -------
    dict
        Training seconds and the evaluation rows.
    """
    from hepnn_coffea.evaluation.stages import evaluate, infer
    from hepnn_coffea.export import export_onnx
    from hepnn_coffea.training.experts import train_experts
    from hepnn_coffea.training.trainer import train

    config, experts = VARIANTS[name]
    run = work / "runs" / name
    overrides = {"training": {"num_threads": threads}}
    t0 = time.perf_counter()
    done = (run / "experts.json").is_file() if experts else (run / "checkpoints" / "best.pt").is_file()
    if not done:
        if experts:
            train_experts(config, shards, run, overrides=overrides, progress=False)
        else:
            train(config, shards, run, overrides=overrides, progress=False)
    t_train = time.perf_counter() - t0
    onnx = work / f"{name}.onnx"
    export_onnx(run, onnx)
    out = work / "infer" / name
    infer(onnx, files, out, split="test", executor="iterative", naive=NAIVE, binning=common_binning(shards))
    summary = evaluate(out)
    return {"train_s": t_train, "rows": summary["rows"]}


def common_binning(shards: pathlib.Path) -> dict[str, dict[str, Any]]:
    """Hist axes from the whole train split's targets, the same for every variant.

    Parameters
    ----------
    shards
        Preprocessed shards.

    Returns
    -------
    dict
        Binning per target.
    """
    from hepnn_coffea.evaluation.regression import target_binning
    from hepnn_coffea.training.dataset import ShardDataset

    train = ShardDataset(shards, "train")
    targets = train.arrays(["target"])["target"]
    return {
        t: target_binning(float(targets[:, i].mean()), float(targets[:, i].std()))
        for i, t in enumerate(train.manifest["labels"])
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown of the ``all``-expert rows; every metric ``value +high -low`` (68% bootstrap interval).

    Parameters
    ----------
    results
        Results of :func:`run_variant` by variant name.

    Returns
    -------
    str
        The Markdown table.
    """
    from hepnn_coffea.evaluation.intervals import format_interval as f

    header = [
        "variant",
        "estimator",
        "pT rel. resolution (68%/2)",
        "pT core sigma / true",
        "pT bias slope vs true",
        "pT bias spread [GeV]",
        "eta resolution (68%/2 of the offset)",
    ]
    cells = []
    for name, res in results.items():
        rows = {(r["target"], r["estimator"]): r for r in res["rows"] if r["expert"] == "all"}
        for estimator in ("model", "naive"):
            pt, eta = rows[("truth_pt", estimator)], rows[("truth_deta", estimator)]
            cells.append(
                [
                    name,
                    estimator,
                    f(pt["rel_iqr68"]),
                    f(pt["rel_gauss_sigma"]),
                    f(pt["bias_slope"]),
                    f(pt["bias_spread"]),
                    f(eta["iqr68"]),
                ]
            )
    return markdown_table(header, cells)


def main(argv: list[str] | None = None) -> None:
    """Preprocess (once), run every variant and print the table.

    ``argv``: the command line (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default="/tmp/reg6")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--variants", default="mlp,mlp_reweighted,pfn")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from hepnn_coffea.processing.preprocess import preprocess

    work = pathlib.Path(args.workdir)
    files = fileset(pathlib.Path(args.data))
    shards = work / "shards"
    if not (shards / "manifest.json").is_file():
        preprocess(files, MODELS / "data" / "top_regression.yaml", shards, executor="iterative")
    manifest = json.loads((shards / "manifest.json").read_text())
    print(
        {
            s: {k: e["top"].get(k) for k in ("entries_read", "filtered", "entries_out", "expert_counts")}
            for s, e in manifest["splits"].items()
        }
    )
    results = {
        name: run_variant(name, shards, work, files, args.threads) for name in args.variants.split(",")
    }
    print(table(results))
    write_json(args.json, results)


if __name__ == "__main__":
    main()
