"""Evaluation of hit-to-particle clustering: learned model (ONNX, per hit) vs a classical baseline.

Metrics (all computed on the calorimeter cells of a jet; tracks carry no calorimeter energy and
are only inputs/associations), by the same functions for every method:

* **energy-weighted efficiency**: ``sum_t max_p E(t & p) / sum E`` (a true cluster's energy that
  lands in its best predicted cluster), pooled over jets;
* **energy-weighted purity**: ``sum_p max_t E(t & p) / sum E``;
* **adjusted Rand index** per jet (:func:`sklearn.metrics.adjusted_rand_score` over cells),
  averaged over jets, and an energy-weighted ARI (pair counts replaced by energy products);
* **PID confusion matrix**: per true cluster above ``min_cluster_energy``, its particle type vs
  the type of its best predicted cluster;
* **cluster energy response**: ``E(best predicted cluster) / E(true cluster)`` (same clusters),
  reported as median - 1 and half the 16-84 % width.

Hits are those of ``models/data/calo_clustering.yaml`` in the same order (tracks reaching the
calorimeter, then cells above ``cell_threshold`` by descending energy): :func:`view_hits`. The
learned clustering takes the argmax slot of every hit; hits in the ``other`` slot are grouped by
their predicted cluster direction within ``other_eps`` (singletons at 0; the bench picks it on val
jets); a cluster's type is the energy-weighted vote of its hits' type probabilities.

Baseline (documented choice): **DBSCAN** (scikit-learn) on the cells in (deta, dphi) to the jet
axis with the cell energies as ``sample_weight`` (so ``min_energy`` is the energy a core needs
in its ``eps`` neighbourhood), noise cells as singletons, plus **nearest-track association**
for the type: each track is attached to the cluster of the nearest cell within ``track_radius``;
a cluster with a track is an electron if its EM fraction exceeds ``em_fraction_egamma`` else a
charged hadron; without a track a photon above that EM fraction, else a neutral hadron.

The flow follows the evaluation protocol (:mod:`hepnn_coffea.evaluation.protocol`):
:class:`HitClusteringProcessor` (hists with the axes ``process`` and ``estimator``),
:func:`summarize` (an ``EvaluationSummary`` of kind ``clustering``) and :func:`write_summary`.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from hepnn_coffea.calo.geometry import PID_CLASSES
from hepnn_coffea.calo.samples import calo_fileset, delta_phi
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
MIN_CLUSTER_ENERGY = 1.0
RATIO_EDGES = np.linspace(0.0, 2.0, 201)


def view_hits(events: Any, cell_threshold: float = 0.3) -> ak.Array:
    """Per jet, the hits of the clustering data config (same selection and order), jagged.

    Fields: ``deta``, ``dphi`` (to the jet axis; eta flipped for negative-eta jets as in the data
    config), ``energy`` (0 for tracks), ``is_track``, ``is_em``, ``particle`` (truth cluster =
    particle index in the jet), ``type`` (its ``part_type``).
    """
    keep = events["cell_E"] > cell_threshold
    order = ak.argsort(events["cell_E"][keep], axis=1, ascending=False, stable=True)
    cell = {k: events[f"cell_{k}"][keep][order] for k in ("E", "eta", "phi", "layer", "main_particle")}
    tk = events["track_reaches_calo"] > 0
    trk = {k: events[f"track_{k}"][tk] for k in ("calo_eta", "calo_phi", "particle")}
    sign = np.where(ak.to_numpy(events["jet_eta"]) >= 0, 1, -1)
    eta = ak.concatenate([trk["calo_eta"], cell["eta"]], axis=1)
    phi = ak.concatenate([trk["calo_phi"], cell["phi"]], axis=1)
    particle = ak.concatenate([trk["particle"], cell["main_particle"]], axis=1)
    return ak.zip(
        {
            "deta": (eta - events["jet_eta"]) * sign,
            "dphi": delta_phi(phi, events["jet_phi"]),
            "energy": ak.concatenate([ak.zeros_like(trk["calo_eta"]), cell["E"]], axis=1),
            "is_track": ak.concatenate(
                [ak.ones_like(trk["particle"]), ak.zeros_like(cell["main_particle"])], axis=1
            ),
            "is_em": ak.concatenate(
                [ak.zeros_like(trk["particle"]), ak.values_astype(cell["layer"] == 0, np.int64)], axis=1
            ),
            "particle": particle,
            "type": events["part_type"][particle],
        }
    )


# ------------------------------------------------------------------ metrics
def _contingency(
    true: np.ndarray, pred: np.ndarray, energy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shared energy matrix (true x pred) and the label values of its rows/columns."""
    t_vals, t_idx = np.unique(true, return_inverse=True)
    p_vals, p_idx = np.unique(pred, return_inverse=True)
    shared = np.zeros((len(t_vals), len(p_vals)))
    np.add.at(shared, (t_idx, p_idx), energy)
    return shared, t_vals, p_vals


def ari_energy_weighted(true: np.ndarray, pred: np.ndarray, energy: np.ndarray) -> float:
    """ARI with every pair of hits weighted by the product of their energies (1 if the
    clusterings agree; ~0 for unrelated ones)."""
    shared, _, _ = _contingency(true, pred, energy)
    total = shared.sum()
    if total <= 0:
        return float("nan")
    s_ij = (shared**2).sum()
    s_a, s_b = (shared.sum(1) ** 2).sum(), (shared.sum(0) ** 2).sum()
    expected = s_a * s_b / total**2
    maximum = 0.5 * (s_a + s_b)
    return 1.0 if maximum == expected else float((s_ij - expected) / (maximum - expected))


def clustering_sums(true: np.ndarray, pred: np.ndarray, energy: np.ndarray) -> dict[str, float]:
    """One jet's energy-weighted efficiency/purity numerators, total energy and ARIs (cells only:
    pass the cells' true and predicted labels and energies)."""
    from sklearn.metrics import adjusted_rand_score

    true, pred, energy = np.asarray(true), np.asarray(pred), np.asarray(energy, dtype=np.float64)
    if len(true) == 0:
        return {
            "eff_num": 0.0,
            "pur_num": 0.0,
            "energy": 0.0,
            "ari": float("nan"),
            "ari_weighted": float("nan"),
        }
    shared, _, _ = _contingency(true, pred, energy)
    return {
        "eff_num": float(shared.max(1).sum()),
        "pur_num": float(shared.max(0).sum()),
        "energy": float(energy.sum()),
        "ari": float(adjusted_rand_score(true, pred)),
        "ari_weighted": ari_energy_weighted(true, pred, energy),
    }


def cluster_energy_matches(
    true: np.ndarray, pred: np.ndarray, energy: np.ndarray, min_energy: float = MIN_CLUSTER_ENERGY
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per true cluster above ``min_energy``: its label, its energy and the energy of its best predicted
    cluster (the one sharing most energy), and the label of that predicted cluster."""
    shared, t_vals, p_vals = _contingency(
        np.asarray(true), np.asarray(pred), np.asarray(energy, dtype=np.float64)
    )
    e_true, e_pred = shared.sum(1), shared.sum(0)
    best = shared.argmax(1)
    keep = e_true > min_energy
    return t_vals[keep], np.stack([e_true[keep], e_pred[best[keep]]]), p_vals[best[keep]]


# ----------------------------------------------------------------- methods
def learned_clusters(
    pred: dict[str, np.ndarray],
    n_slots: int,
    hits: dict[str, np.ndarray],
    track_weight: float = 1.0,
    other_eps: float = 0.0,
) -> tuple[np.ndarray, dict[int, int]]:
    """One jet's predicted cluster label per hit and predicted type per cluster from the model's per-hit
    outputs (``pred``: ``pred_<label>`` arrays over the jet's hits, possibly fewer than the hits when
    the jet was truncated: the missing hits become singletons).

    Hits in the ``other`` slot are grouped by their predicted cluster direction (``pred_cluster_deta``,
    ``pred_cluster_dphi``): single-linkage within ``other_eps`` (DBSCAN, ``min_samples=1``); with
    ``other_eps = 0`` they stay singletons.
    """
    n = len(hits["energy"])
    slots = np.stack([pred[f] for f in _slot_fields(pred, n_slots)], axis=1)  # (m, K)
    m = len(slots)
    label = np.arange(n) + n_slots  # singletons
    slot = slots.argmax(1)
    inside = slot < n_slots - 1
    label[:m][inside] = slot[inside]
    rest = np.flatnonzero(~inside)
    if other_eps > 0 and len(rest) > 1:
        from sklearn.cluster import DBSCAN

        xy = np.stack([pred["pred_cluster_deta"][rest], pred["pred_cluster_dphi"][rest]], axis=1)
        groups = DBSCAN(eps=other_eps, min_samples=1).fit(xy).labels_
        first = {}
        for i, g in zip(rest, groups):  # each group takes the singleton label of its first hit
            label[i] = first.setdefault(int(g), int(label[i]))
    pid = np.stack([pred[f"pred_pid_{c}"] for c in PID_CLASSES], axis=1)
    prob = np.exp(pid - pid.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    weight = hits["energy"][:m] + track_weight * hits["is_track"][:m]
    types = {}
    for lab in np.unique(label[:m]):
        sel = label[:m] == lab
        types[int(lab)] = int((prob[sel] * weight[sel, None]).sum(0).argmax())
    for lab in label[m:]:
        types[int(lab)] = (
            PID_CLASSES.index("photon")
            if hits["is_em"][lab - n_slots]
            else PID_CLASSES.index("neutral_hadron")
        )
    return label, types


def _slot_fields(pred: dict[str, Any], n_slots: int) -> list[str]:
    fields = [f"pred_slot_{i}" for i in range(n_slots - 1)] + ["pred_slot_other"]
    missing = [f for f in fields if f not in pred]
    if missing:
        raise KeyError(f"model outputs lack {missing}; expected the slot_* labels of calo_clustering.yaml")
    return fields


@dataclass(frozen=True)
class BaselineParams:
    """DBSCAN + nearest-track association (see the module docstring)."""

    eps: float = 0.05
    min_energy: float = 1.0
    track_radius: float = 0.05
    em_fraction_egamma: float = 0.9


def baseline_clusters(
    hits: dict[str, np.ndarray], params: BaselineParams = BaselineParams()
) -> tuple[np.ndarray, dict[int, int]]:
    """One jet's baseline cluster label per hit (tracks: the cluster they are associated with, or
    their own label) and type per cluster."""
    from sklearn.cluster import DBSCAN

    n = len(hits["energy"])
    cells = np.flatnonzero(hits["is_track"] == 0)
    tracks = np.flatnonzero(hits["is_track"] != 0)
    label = np.arange(n) + n  # singletons by default
    xy = np.stack([hits["deta"], hits["dphi"]], axis=1)
    if len(cells):
        # min_samples must be an int: weights in units of min_energy, so a core needs >= min_energy around it
        db = DBSCAN(eps=params.eps, min_samples=1).fit(
            xy[cells], sample_weight=hits["energy"][cells] / params.min_energy
        )
        inside = db.labels_ >= 0
        label[cells[inside]] = db.labels_[inside]
    has_track = set()
    for t in tracks:
        if not len(cells):
            break
        d = np.hypot(*(xy[cells] - xy[t]).T)
        near = int(d.argmin())
        if d[near] < params.track_radius:
            label[t] = label[cells[near]]
            has_track.add(int(label[t]))
    types = {}
    for lab in np.unique(label):
        sel = (label == lab) & (hits["is_track"] == 0)
        e = hits["energy"][sel].sum()
        em = hits["energy"][sel & (hits["is_em"] != 0)].sum() / e if e > 0 else 0.0
        egamma = em > params.em_fraction_egamma
        if int(lab) in has_track or not sel.any():
            types[int(lab)] = PID_CLASSES.index("electron" if egamma else "charged_hadron")
        else:
            types[int(lab)] = PID_CLASSES.index("photon" if egamma else "neutral_hadron")
    return label, types


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
    baseline: BaselineParams = BaselineParams(),
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


#: Branches of a calorimeter view that :func:`view_hits` reads.
HIT_BRANCHES = (
    "cell_E",
    "cell_eta",
    "cell_phi",
    "cell_layer",
    "cell_main_particle",
    "track_reaches_calo",
    "track_calo_eta",
    "track_calo_phi",
    "track_particle",
    "jet_eta",
    "jet_phi",
    "part_type",
)


class HitClusteringProcessor(EvaluationProcessor):
    """Per chunk of calorimeter-view jets: the learned clustering through
    :class:`~hepnn_coffea.inference.tagger.OnnxTagger` (per-hit outputs; none without a ``model``)
    and the baseline; hists (axes ``process`` = sample, ``estimator`` = learned / baseline) and
    sums per sample, and ``counts`` (jets per sample)."""

    kind = "clustering"

    def __init__(
        self,
        model: str | pathlib.Path | None,
        baseline: BaselineParams = BaselineParams(),
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
    baseline: BaselineParams = BaselineParams(),
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
