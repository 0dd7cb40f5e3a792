"""Evaluation of hit-to-particle clustering: learned model (ONNX, per hit) vs a classical baseline.

The pieces live in their own modules and are re-exported here: the hits of a jet
(:mod:`~hepnn_coffea.calo.clustering_hits`: :func:`view_hits`), the metrics, computed by the same
functions for every method (:mod:`~hepnn_coffea.calo.clustering_metrics`: energy-weighted
efficiency and purity, adjusted Rand indices, PID confusion, cluster energy response) and the two
methods (:mod:`~hepnn_coffea.calo.clustering_methods`: the learned clustering and the DBSCAN +
nearest-track baseline). :func:`evaluate_jets` runs both on a chunk of jets.

The flow follows the evaluation protocol (:mod:`hepnn_coffea.evaluation.protocol`):
:class:`HitClusteringProcessor` (hists with the axes ``process`` and ``estimator``),
:func:`summarize` (an ``EvaluationSummary`` of kind ``clustering``) and :func:`write_summary`.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from hepnn_coffea.calo.clustering_hits import HIT_BRANCHES, view_hits
from hepnn_coffea.calo.clustering_methods import (
    DEFAULT_BASELINE,
    BaselineParams,
    baseline_clusters,
    learned_clusters,
)
from hepnn_coffea.calo.clustering_metrics import (
    MIN_CLUSTER_ENERGY,
    ari_energy_weighted,
    cluster_energy_matches,
    clustering_sums,
)
from hepnn_coffea.calo.geometry import PID_CLASSES
from hepnn_coffea.calo.samples import calo_fileset
from hepnn_coffea.evaluation import protocol
from hepnn_coffea.evaluation.protocol import (
    METHOD_AXIS,
    SAMPLE_AXIS,
    Block,
    EvaluationProcessor,
    EvaluationSummary,
    Table,
    method_axis,
    render_markdown,
    sample_axis,
)
from hepnn_coffea.processing.processor import ChunkInfo

__all__ = [
    "BaselineParams",
    "HitClusteringProcessor",
    "ari_energy_weighted",
    "baseline_clusters",
    "cluster_energy_matches",
    "clustering_report",
    "clustering_sums",
    "learned_clusters",
    "run_clustering_evaluation",
    "summarize",
    "to_markdown",
    "view_hits",
    "write_summary",
]

METHODS = ("learned", "baseline")
RATIO_EDGES = np.linspace(0.0, 2.0, 201)


# ------------------------------------------------------------- processor
def _hists() -> dict[str, Any]:
    import hist

    sample, method = sample_axis(), method_axis(METHODS)
    unit = {"name": "value"}
    return {
        "efficiency": hist.Hist(
            sample, method, hist.axis.Regular(50, 0, 1, label="jet efficiency (energy-weighted)", **unit)
        ),
        "purity": hist.Hist(
            sample, method, hist.axis.Regular(50, 0, 1, label="jet purity (energy-weighted)", **unit)
        ),
        "ari": hist.Hist(
            sample, method, hist.axis.Regular(50, -0.2, 1, label="jet adjusted Rand index", **unit)
        ),
        "energy_ratio": hist.Hist(
            sample, method, hist.axis.Variable(RATIO_EDGES, label="E(matched) / E(true cluster)", **unit)
        ),
        "pid": hist.Hist(
            sample,
            method,
            hist.axis.Integer(0, len(PID_CLASSES), name="true", label="true type"),
            hist.axis.Integer(0, len(PID_CLASSES), name="pred", label="predicted type"),
        ),
    }


def _new_sums() -> dict[str, float]:
    return {"eff_num": 0.0, "pur_num": 0.0, "energy": 0.0, "ari": 0.0, "ari_weighted": 0.0, "jets": 0.0}


def evaluate_jets(
    hits: ak.Array,
    preds: ak.Array | None,
    sample: str,
    n_slots: int,
    baseline: BaselineParams = DEFAULT_BASELINE,
    out: dict[str, Any] | None = None,
    min_cluster_energy: float = MIN_CLUSTER_ENERGY,
    other_eps: float = 0.0,
) -> dict[str, Any]:
    """Fill hists and sums for a chunk of jets (``preds``: the tagger's jagged outputs; ``None``
    evaluates the baseline only; ``other_eps``: see :func:`learned_clusters`)."""
    out = out if out is not None else {"hists": _hists(), "sums": {}}
    h = out["hists"]
    hit_np = {f: ak.to_list(hits[f]) for f in hits.fields}
    pred_np = {f: ak.to_list(preds[f]) for f in preds.fields} if preds is not None else None
    methods = METHODS if preds is not None else ("baseline",)
    for j in range(len(hits)):
        jet = {f: np.asarray(v[j]) for f, v in hit_np.items()}
        if not len(jet["energy"]):
            continue
        for method in methods:
            if method == "learned":
                label, types = learned_clusters(
                    {f: np.asarray(v[j]) for f, v in pred_np.items()}, n_slots, jet, other_eps=other_eps
                )
            else:
                label, types = baseline_clusters(jet, baseline)
            cells = jet["is_track"] == 0
            s = clustering_sums(jet["particle"][cells], label[cells], jet["energy"][cells])
            sums = out["sums"].setdefault(sample, {}).setdefault(method, _new_sums())
            for k in ("eff_num", "pur_num", "energy"):
                sums[k] += s[k]
            sums["ari"] += s["ari"]
            sums["ari_weighted"] += s["ari_weighted"]
            sums["jets"] += 1
            h["efficiency"].fill(process=sample, estimator=method, value=s["eff_num"] / s["energy"])
            h["purity"].fill(process=sample, estimator=method, value=s["pur_num"] / s["energy"])
            h["ari"].fill(process=sample, estimator=method, value=s["ari"])
            t_lab, energies, p_lab = cluster_energy_matches(
                jet["particle"][cells], label[cells], jet["energy"][cells], min_cluster_energy
            )
            if len(t_lab):
                ratio = np.minimum(energies[1] / energies[0], 1.999)
                h["energy_ratio"].fill(process=sample, estimator=method, value=ratio)
                true_type = np.asarray([jet["type"][np.flatnonzero(jet["particle"] == t)[0]] for t in t_lab])
                ok = true_type < len(PID_CLASSES)
                h["pid"].fill(
                    process=sample,
                    estimator=method,
                    true=true_type[ok],
                    pred=np.asarray([types[int(p)] for p in p_lab])[ok],
                )
    return out


class HitClusteringProcessor(EvaluationProcessor):
    """Per chunk of calorimeter-view jets: the learned clustering through
    :class:`~hepnn_coffea.inference.tagger.OnnxTagger` (per-hit outputs; none without a ``model``)
    and the baseline; hists (axes ``process`` = sample, ``estimator`` = learned / baseline) and
    sums per sample, and ``counts`` (jets per sample)."""

    kind = "clustering"

    def __init__(
        self,
        model: str | pathlib.Path | None,
        baseline: BaselineParams = DEFAULT_BASELINE,
        cell_threshold: float = 0.3,
        batch_size: int = 64,
        other_eps: float = 0.0,
    ) -> None:
        from hepnn_coffea.inference.tagger import OnnxTagger

        self.tagger = OnnxTagger(model, batch_size=batch_size) if model is not None else None
        self.n_slots = (
            sum(f.startswith("pred_slot_") for f in self.tagger.output_fields) if self.tagger else 0
        )
        self.baseline = baseline
        self.cell_threshold = cell_threshold
        self.other_eps = float(other_eps)

    def columns(self) -> list[str]:
        return sorted(set(HIT_BRANCHES) | set(self.tagger.columns() if self.tagger is not None else ()))

    def process_chunk(self, events: Any, chunk: ChunkInfo) -> dict[str, Any]:
        sample = self.sample(chunk)
        jets = events[ak.num(events["cell_E"], axis=1) > 0]  # the data config's test_time_selection
        hits = view_hits(jets, self.cell_threshold)
        preds = self.tagger(jets) if self.tagger is not None else None
        out = evaluate_jets(hits, preds, sample, self.n_slots, self.baseline, other_eps=self.other_eps)
        return {**out, "counts": {sample: {"jets": len(events), "jets_with_cells": len(jets)}}}


def run_clustering_evaluation(
    view_dir: str | pathlib.Path,
    model: str | pathlib.Path | None,
    *,
    split: str = "test",
    baseline: BaselineParams = DEFAULT_BASELINE,
    executor: str = "iterative",
    workers: int = 1,
    chunksize: int = 1000,
    other_eps: float = 0.0,
) -> dict[str, Any]:
    """Run :class:`HitClusteringProcessor` over a calorimeter view's split through ``processor.Runner``."""
    from hepnn_coffea.processing.runner import run_processor

    proc = HitClusteringProcessor(model, baseline, other_eps=other_eps)
    return run_processor(
        calo_fileset(view_dir, split), proc, executor=executor, workers=workers, chunksize=chunksize
    )


# ---------------------------------------------------------------- summary
def _quantile(h: Any, q: float) -> float:
    counts = h.values()
    cdf = np.cumsum(counts) / max(counts.sum(), 1e-12)
    return float(np.interp(q, cdf, RATIO_EDGES[1:]))


def summarize(result: dict[str, Any]) -> EvaluationSummary:
    """Table per sample (and ``all``) and method: efficiency, purity, ARI, energy response, PID.

    Returns the :class:`~hepnn_coffea.evaluation.protocol.EvaluationSummary` (kind ``clustering``)
    ``{sample: {method: row}}``; its Markdown is :func:`clustering_report`.
    """
    h = result["hists"]
    table: dict[str, Any] = {}
    samples = sorted(result["sums"])
    for sample in [*samples, "all"]:
        for method in METHODS:
            rows = [result["sums"][s].get(method) for s in (samples if sample == "all" else [sample])]
            rows = [r for r in rows if r]
            if not rows:
                continue
            tot = {k: sum(r[k] for r in rows) for k in rows[0]}
            sel = {METHOD_AXIS: method} if sample == "all" else {SAMPLE_AXIS: sample, METHOD_AXIS: method}
            ratio = (
                h["energy_ratio"][sel]
                if sample != "all"
                else h["energy_ratio"][{METHOD_AXIS: method}][sum, :]
            )
            pid = (
                h["pid"][sel].values()
                if sample != "all"
                else h["pid"][{METHOD_AXIS: method}][sum, :, :].values()
            )
            q16, q50, q84 = (_quantile(ratio, q) for q in (0.16, 0.5, 0.84))
            table.setdefault(sample, {})[method] = {
                "jets": int(tot["jets"]),
                "efficiency": tot["eff_num"] / tot["energy"],
                "purity": tot["pur_num"] / tot["energy"],
                "ari": tot["ari"] / tot["jets"],
                "ari_weighted": tot["ari_weighted"] / tot["jets"],
                "energy_bias": q50 - 1,
                "energy_resolution": (q84 - q16) / 2,
                "pid_accuracy": float(np.trace(pid) / max(pid.sum(), 1)),
                "pid_confusion": pid.astype(int).tolist(),
            }
    return EvaluationSummary(table, kind="clustering", report=clustering_report)


#: Metrics of the clustering table, in order.
REPORT_COLUMNS = (
    "efficiency",
    "purity",
    "ari",
    "ari_weighted",
    "energy_bias",
    "energy_resolution",
    "pid_accuracy",
)


def clustering_report(table: Mapping[str, Any]) -> list[Block]:
    """The report of ``summary.md``: one row per sample and method (the ``plots`` entry left out)."""
    rows = [
        [sample, method, row["jets"], *(row[c] for c in REPORT_COLUMNS)]
        for sample, methods in table.items()
        if sample != "plots"
        for method, row in methods.items()
    ]
    return [Table(["sample", "method", "jets", *REPORT_COLUMNS], rows, float_format=".3f")]


def to_markdown(table: Mapping[str, Any]) -> str:
    """The Markdown table of :func:`summarize` (no newline at the end)."""
    return render_markdown(clustering_report(table)).rstrip("\n")


def write_summary(table: Mapping[str, Any], out_dir: str | pathlib.Path) -> EvaluationSummary:
    """``summary.json`` and ``summary.md`` of a :func:`summarize` table in ``out_dir``
    (:func:`hepnn_coffea.evaluation.protocol.write_summary`)."""
    if not isinstance(table, EvaluationSummary):
        table = EvaluationSummary(table, kind="clustering", report=clustering_report)
    return protocol.write_summary(table, out_dir)
