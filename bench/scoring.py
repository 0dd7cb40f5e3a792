"""Scoring trained networks on a fixed test subset of shards (:mod:`bench.studies.finetune`).

A training subset of a shard folder, the seeded test subset every run is scored on, torch scores
with jets batched by multiplicity, and the AUC / background rejection of a discriminant.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from typing import Any

import numpy as np


def subset_shards(shards: pathlib.Path, out: pathlib.Path, n_jets: int) -> pathlib.Path:
    """``out``: ``shards`` with the train split cut to the first ``n_jets / 2`` rows of each class.

    Parameters
    ----------
    shards
        The full shard folder (val and test are linked, not copied).
    out
        The subset folder (returned as is if it already has a manifest).
    n_jets
        Training jets kept (half from the first shard of each class).

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    from hepnn_coffea.processing.shards import open_shard

    if (out / "manifest.json").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((shards / "manifest.json").read_text())
    for sample, entry in manifest["splits"]["train"].items():
        first = entry["shards"][0]
        rows = open_shard(shards / first["path"]).to_records()[
            : n_jets // 2
        ]  # written as a padded .npy shard
        path = f"train/{sample}/subset-{n_jets // 2}.npy"
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        np.save(out / path, np.ascontiguousarray(rows), allow_pickle=False)
        counts = np.bincount(np.asarray(rows["label"]), minlength=len(manifest["labels"])).tolist()
        entry["shards"] = [
            {**first, "path": path, "entries": len(rows), "entry_stop": len(rows), "label_counts": counts}
        ]
    for name in ("val", "test"):
        os.symlink(shards / name, out / name)
    for name in ("data_config.yaml", "standardization.json"):
        shutil.copyfile(shards / name, out / name)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def test_subset(shards: pathlib.Path, n: int) -> tuple[Any, np.ndarray]:
    """The test ShardDataset (ParticleNet's groups plus ``event_no``) and its fixed seeded ``n`` rows.

    Parameters
    ----------
    shards
        Shard folder.
    n
        Test rows kept (seed 0).

    Returns
    -------
    tuple
        The dataset and a copy of its row indices.
    """
    from hepnn_coffea.training.dataset import ShardDataset

    ds = ShardDataset(shards, "test", ["pf_points", "pf_features", "pf_mask"])
    ds.carry(["observers/event_no"])
    ds.keep_subset(n, 0)
    return ds, ds.rows.copy()


def score(net: Any, ds: Any, rows: np.ndarray, batch: int = 256) -> np.ndarray:
    """Softmax of ``net`` on ``rows``, jets batched by multiplicity, each batch cut to its longest jet.

    Parameters
    ----------
    net
        The ParticleNet (eval mode is set here).
    ds
        Test ShardDataset.
    rows
        Rows to score.
    batch
        Jets per forward pass.

    Returns
    -------
    numpy.ndarray
        ``(len(rows), n_classes)`` probabilities in the order of ``rows``.
    """
    import torch

    order = rows[np.argsort(ds.lengths("pf_mask")[rows], kind="stable")]
    out = {}
    net.eval()
    with torch.no_grad():
        for i in range(0, len(order), batch):
            part = order[i : i + batch]
            data = ds.gather(part)
            length = max(int(ds.lengths("pf_mask")[part].max()), net.core.min_length)
            inputs = [torch.from_numpy(data[g][..., :length]) for g in net.input_groups]
            out.update(zip(part.tolist(), torch.softmax(net(*inputs), dim=1).numpy()))
    return np.stack([out[r] for r in rows.tolist()])


def metrics(disc: np.ndarray, is_signal: np.ndarray) -> dict[str, Any]:
    """AUC (bootstrap interval) and 1/eps_B at 30% and 50% signal efficiency (Clopper-Pearson).

    Parameters
    ----------
    disc
        Discriminant (higher = more signal-like).
    is_signal
        Truth.

    Returns
    -------
    dict
        Counts and the three metrics as interval dicts.
    """
    from hepnn_coffea.evaluation.classifier_metrics import table_metrics

    full = table_metrics(disc, is_signal, np.ones(len(disc)), efficiencies=(0.3, 0.5))
    return {
        "n_signal": int(is_signal.sum()),
        "n_background": int((~is_signal).sum()),
        "auc": full["auc"],
        "rejection_at_30": full["rejection_at_30"],
        "rejection_at_50": full["rejection_at_50"],
    }
