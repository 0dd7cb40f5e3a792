"""Hit-to-particle clustering of calorimeter-view jets in a coffea processor (thin: the logic is in
:mod:`hepnn_coffea.calo.clustering_eval`).

The learned clustering comes from an ONNX file exported from ``models/calo/clustering.yaml`` and
runs through :class:`hepnn_coffea.OnnxTagger` (per-hit outputs); the DBSCAN + nearest-track
baseline runs beside it; hists are filled per sample, and the summary (``summary.json``,
``summary.md``, ``plots/``) is written by the evaluation protocol every flow shares::

    python processors/hit_clustering.py calo_view/ clustering.onnx -o eval/ [--split test]
"""

from __future__ import annotations

import argparse
import pathlib

from hepnn_coffea.calo.clustering_eval import (
    BaselineParams,
    HitClusteringProcessor,
    run_clustering_evaluation,
    summarize,
)
from hepnn_coffea.evaluation.protocol import write_summary

__all__ = ["HitClusteringProcessor", "main"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="learned vs baseline hit clustering on a calorimeter view")
    ap.add_argument("view", type=pathlib.Path, help="output folder of hepnn_coffea.calo.calorimeter_view")
    ap.add_argument("model", type=pathlib.Path, help="ONNX export of a hit_clustering run")
    ap.add_argument("-o", "--out", type=pathlib.Path, default=pathlib.Path("clustering_eval"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--eps", type=float, default=BaselineParams.eps)
    ap.add_argument(
        "--other-eps",
        type=float,
        default=0.02,
        help="grouping radius of the hits in the model's other slot by predicted cluster direction "
        "(0: singletons; 0.02 chosen on val jets by bench/studies/calo_clustering.py)",
    )
    ap.add_argument("--plots", action="store_true")
    args = ap.parse_args(argv)
    result = run_clustering_evaluation(
        args.view,
        args.model,
        split=args.split,
        baseline=BaselineParams(eps=args.eps),
        other_eps=args.other_eps,
    )
    summary = summarize(result)

    def figures() -> list[pathlib.Path]:
        from hepnn_coffea.calo.clustering_plots import plot_clustering

        return plot_clustering(result, args.out / "plots")

    write_summary(summary, args.out, plots=figures if args.plots else None)
    print(summary.markdown(), end="")


if __name__ == "__main__":
    main()
