"""Synthetic event-level tagger outputs (``test_events_eval``, ``test_evaluation_protocol``): jet
observables of top, W and QCD jets, ``scores.parquet``-like tables, infer folders and shards."""

from __future__ import annotations

import json
import pathlib
import pickle

import numpy as np

from hepnn_coffea.evaluation.events_eval import fill_event_hists, make_event_hists

CLASSES = ["top", "W", "QCD"]
#: QCD pT-hat slices: (sample, weight per jet), four orders of magnitude.
QCD_SLICES = (
    ("qcd_250to400", 1000.0),
    ("qcd_400to600", 100.0),
    ("qcd_600to800", 10.0),
    ("qcd_800toInf", 1.0),
)


def jet_observables(rng: np.random.Generator, kind: str, n: int) -> dict[str, np.ndarray]:
    """Separable jet observables: top (m ~ 172, low tau32), W (m ~ 80, low tau21), QCD (falling mass)."""
    mass_centre = {"top": 172.0, "W": 80.0, "unmatched": 110.0}
    msd = rng.normal(mass_centre[kind], 12.0, n) if kind in mass_centre else rng.gamma(2.0, 25.0, n)
    tau21 = rng.normal({"W": 0.3, "top": 0.55}.get(kind, 0.7), 0.08, n)
    tau32 = rng.normal({"top": 0.45}.get(kind, 0.8), 0.08, n)
    tau1 = rng.uniform(0.1, 0.4, n)
    tau1[:3] = 0.0  # the ratios must survive zero denominators
    return {
        "FatJet_pt": 300.0 + rng.exponential(200.0, n),
        "FatJet_eta": rng.uniform(-2.4, 2.4, n),
        "FatJet_msoftdrop": np.clip(msd, 0.0, None),
        "FatJet_mass": np.clip(msd, 0.0, None) + rng.exponential(8.0, n),
        "FatJet_tau1": tau1,
        "FatJet_tau2": tau1 * tau21,
        "FatJet_tau3": tau1 * tau21 * tau32,
        "FatJet_nConstituents": rng.poisson({"top": 80, "W": 50}.get(kind, 40), n).astype(np.int32),
    }


def make_table(seed: int = 0, n: int = 30_000, mass_dependent: bool = False) -> dict[str, np.ndarray]:
    """A synthetic scores.parquet table: softmax of Gaussian logits (+1 for the true class).

    ``mass_dependent``: the QCD jets' top and W logits are steep functions of the soft-drop
    mass instead (a fully sculpting tagger). Unmatched ttbar jets score like top jets.
    """
    rng = np.random.default_rng(seed)
    parts = [
        ("ttbar_400toInf", "ttbar", "top", n, 0.05),
        ("ttbar_400toInf", "ttbar", "unmatched", n // 3, 0.05),
        ("wqq", "wqq", "W", n, 0.3),
    ]
    parts += [(sample, "qcd", "QCD", n, w) for sample, w in QCD_SLICES]
    cols: dict[str, list[np.ndarray]] = {}
    for sample, process, label, size, weight in parts:
        jets = jet_observables(rng, label, size)
        logits = rng.normal(0.0, 1.0, (size, 3))
        logits[:, CLASSES.index(label if label != "unmatched" else "top")] += 1.0
        if mass_dependent and label == "QCD":
            logits[:, 0] = (jets["FatJet_msoftdrop"] - 120.0) / 5.0
            logits[:, 1] = -np.abs(jets["FatJet_msoftdrop"] - 80.0) / 5.0
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        rows = {
            "sample": np.full(size, sample),
            "process": np.full(size, process),
            "run": np.ones(size, np.int64),
            "event": rng.integers(0, 10**6, size),
            "luminosityBlock": np.ones(size, np.int64),
            "fatjet_index": np.zeros(size, np.int64),
            "label": np.full(size, label),
            "weight": weight * rng.uniform(0.9, 1.1, size),
            **jets,
            **{f"score_{c}": probs[:, i].astype(np.float32) for i, c in enumerate(CLASSES)},
        }
        for k, v in rows.items():
            cols.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in cols.items()}


def write_infer(folder: pathlib.Path, columns: dict[str, np.ndarray], model: str) -> pathlib.Path:
    """An events-workflow infer folder: scores.parquet, counts.json, hists.pkl (filled in two chunks)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), folder / "scores.parquet")
    half = len(columns["weight"]) // 2
    chunks = [{k: v[:half] for k, v in columns.items()}, {k: v[half:] for k, v in columns.items()}]
    hists = [fill_event_hists(make_event_hists(CLASSES), c) for c in chunks]
    with (folder / "hists.pkl").open("wb") as f:
        pickle.dump({k: hists[0][k] + hists[1][k] for k in hists[0]}, f)
    info = {
        "task": "classification",
        "workflow": "events",
        "classes": CLASSES,
        "model": f"/models/{model}.onnx",
        "counts": {"jets": half * 2},
    }
    (folder / "counts.json").write_text(json.dumps(info))
    return folder


def write_shards(folder: pathlib.Path, seed: int = 1, n: int = 3000) -> pathlib.Path:
    """A minimal shard folder (train split only) with observers, label (index in CLASSES) and weight.

    The shards are padded ``.npy`` structured arrays (format ``hepnn_coffea.shards/1``, still read).
    """
    rng = np.random.default_rng(seed)
    names = ["label", "weight"] + [f"observers/{k}" for k in jet_observables(rng, "QCD", 1)]
    splits: dict[str, dict] = {"train": {}}
    for index, (cls, weight) in enumerate((("top", 0.05), ("W", 0.3), ("QCD", 100.0))):
        jets = jet_observables(rng, cls, n)
        records = np.empty(n, dtype=[(k, np.int64 if k == "label" else np.float32) for k in names])
        records["label"], records["weight"] = index, weight * rng.uniform(0.5, 2.0, n)
        for k, v in jets.items():
            records[f"observers/{k}"] = v
        name = f"train/{cls}/chunk-0000000000-{n:010d}.npy"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(folder / name, records, allow_pickle=False)
        splits["train"][cls] = {"shards": [{"path": name}]}
    manifest = {
        "inputs": {},
        "labels": [f"label_{c}" for c in CLASSES],
        "label_type": "simple",
        "splits": splits,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def signal_rows(columns: dict[str, np.ndarray], signal: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Discriminant, is-signal and weight of the jets labelled ``signal`` or QCD, computed directly."""
    keep = np.isin(columns["label"], [signal, "QCD"])
    s = columns[f"score_{signal}"].astype(np.float64)[keep]
    disc = s / (s + columns["score_QCD"].astype(np.float64)[keep])
    return disc, columns["label"][keep] == signal, columns["weight"][keep]
