"""A gradient-boosted tree on six jet observables: the classical baseline of the event-level taggers.

Features: pt, msoftdrop, mass, tau21 = tau2/tau1, tau32 = tau3/tau2, nConstituents (ratios 0
where the denominator is 0). Trained on the train split of the shards (multi-class, each class
the same total weight, rows weighted by the shards' ``weight`` or ``observers/xsec_weight``)
and scored on the per-jet table of ``hepnn infer``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

#: The baseline's features (columns of :func:`observable_features`) and the jet columns they need.
GBT_FEATURES = ("pt", "msoftdrop", "mass", "tau21", "tau32", "nConstituents")
JET_COLUMNS = (
    "FatJet_pt",
    "FatJet_msoftdrop",
    "FatJet_mass",
    "FatJet_tau1",
    "FatJet_tau2",
    "FatJet_tau3",
    "FatJet_nConstituents",
)


def observable_features(columns: Mapping[str, Any], prefix: str = "") -> np.ndarray:
    """``(n, 6)`` features: pt, msoftdrop, mass, tau2/tau1, tau3/tau2, nConstituents (ratios 0 if /0)."""
    from hepnn_coffea.evaluation.baselines import _ratio

    missing = [c for c in JET_COLUMNS if prefix + c not in columns]
    if missing:
        raise ValueError(f"missing jet column(s) {[prefix + c for c in missing]} for the observable GBT")
    col = {c: np.asarray(columns[prefix + c], dtype=np.float64) for c in JET_COLUMNS}
    tau21 = _ratio(col["FatJet_tau2"], col["FatJet_tau1"])
    tau32 = _ratio(col["FatJet_tau3"], col["FatJet_tau2"])
    return np.stack(
        [
            col["FatJet_pt"],
            col["FatJet_msoftdrop"],
            col["FatJet_mass"],
            tau21,
            tau32,
            col["FatJet_nConstituents"],
        ],
        axis=1,
    )


def class_balanced_weights(label: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """Weights rescaled so every class has the same total, with mean 1 over all entries."""
    label = np.asarray(label)
    w = np.ones(len(label)) if weight is None else np.asarray(weight, dtype=np.float64).copy()
    classes = np.unique(label)
    for c in classes:
        sel = label == c
        total = w[sel].sum()
        w[sel] *= len(label) / (len(classes) * total) if total > 0 else 0.0
    return w


def train_observable_gbt(
    shards_dir: str | pathlib.Path,
    *,
    split: str = "train",
    seed: int = 0,
    weight_field: str | None = None,
    n_threads: int | None = 1,
) -> Any:
    """Fit a multi-class ``HistGradientBoostingClassifier`` on the shards' jet observables.

    Parameters
    ----------
    shards_dir
        Preprocessing output of the events workflow: ``observers/FatJet_*`` columns,
        ``label`` (class index in the order of the manifest's ``labels``) and weights.
    weight_field
        Shard field of the per-jet weights; default ``weight``, else ``observers/xsec_weight``,
        else none (unit weights). Rescaled so every class has the same total.
    split, seed, n_threads
        Training split, ``random_state``, OpenMP threads while fitting.

    Returns
    -------
    sklearn.ensemble.HistGradientBoostingClassifier
        Fitted with class-balanced weights; ``hepnn_classes`` holds the class names
        (the manifest's labels, a ``label_`` prefix removed) in label-index order.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    from hepnn_coffea.evaluation.baselines import _threads
    from hepnn_coffea.training.dataset import ShardDataset

    ds = ShardDataset(shards_dir, split, groups=[])
    fields, present = [f"observers/{c}" for c in JET_COLUMNS], ds.fields
    missing = [f for f in fields if f not in present]
    if missing or ds.target_field != "label":
        raise ValueError(
            f"{shards_dir} (split '{split}'): the observable GBT needs class labels and "
            f"the observers {missing}"
        )
    if weight_field is None:
        weight_field = next((f for f in ("weight", "observers/xsec_weight") if f in present), None)
    cols = ds.arrays(fields + ["label"] + ([weight_field] if weight_field else []))
    label = cols["label"].astype(np.int64)
    weight = class_balanced_weights(label, cols[weight_field] if weight_field else None)
    model = HistGradientBoostingClassifier(random_state=seed)
    with _threads(n_threads):
        model.fit(observable_features(cols, "observers/"), label, sample_weight=weight)
    names = [str(n).removeprefix("label_") for n in ds.manifest["labels"]]
    model.hepnn_classes = [names[int(i)] for i in model.classes_]
    return model


def score_observable_gbt(model: Any, table: Any, *, n_threads: int | None = 1) -> dict[str, np.ndarray]:
    """``score_<class>`` columns of the GBT for every row of a scores table (pyarrow table or dict)."""
    from hepnn_coffea.evaluation.baselines import _threads

    columns = _columns(table)
    with _threads(n_threads):
        probs = model.predict_proba(observable_features(columns))
    return {f"score_{c}": probs[:, i] for i, c in enumerate(model.hepnn_classes)}


# --- metrics ----------------------------------------------------------------------------------------


def _columns(table: Any) -> dict[str, np.ndarray]:
    if isinstance(table, Mapping):
        return {k: np.asarray(v) for k, v in table.items()}
    return {name: table.column(name).to_numpy() for name in table.column_names}
