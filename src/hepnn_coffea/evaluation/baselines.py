"""Classical top-tagging baselines on jet observables, trained and scored on the shards.

The features are the jet-substructure observables of the top-tagging tutorial
(jet mass, soft-drop mass, N-subjettiness ratios, multiplicity, mean constituent pT),
built from the shards' ``observers/*`` columns, so a baseline sees exactly the jets
(selection, splits) the networks see. The data config must list the observers
named in :data:`REQUIRED_OBSERVERS` (for the default :data:`JET_OBSERVABLES`)::

    observers: [jet_pt, jet_mass, jet_sdmass, jet_tau1, jet_tau2, jet_tau3, jet_nparticles, ...]

Scores are the probability of class 0 (the signal, as in :func:`.stages.evaluate`),
and :func:`score_baseline` returns the same metrics as ``evaluate``'s ``from_table``.
"""

from __future__ import annotations

import contextlib
import pathlib
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hepnn_coffea.evaluation.roc import roc_from_scores

__all__ = [
    "JET_OBSERVABLES",
    "OBSERVABLES",
    "REQUIRED_OBSERVERS",
    "KINDS",
    "WORKING_POINTS",
    "required_observers",
    "baseline_features",
    "load_observers",
    "make_baseline",
    "train_baseline",
    "score_baseline",
    "save_baseline",
    "load_baseline",
]

#: Signal efficiencies of the ``rejection_at_*`` metrics (as ``classifier_metrics.WORKING_POINTS``).
WORKING_POINTS = (0.3, 0.5)
OBSERVER_PREFIX = "observers/"
KINDS = ("logistic", "gbt")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` where ``den > 0``, else 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


#: Observable name -> (observers it needs, function of those columns).
OBSERVABLES: dict[str, tuple[tuple[str, ...], Callable[..., np.ndarray]]] = {
    "mass": (("jet_mass",), lambda m: m),
    "sdmass": (("jet_sdmass",), lambda m: m),
    "tau32": (("jet_tau3", "jet_tau2"), _ratio),
    "tau21": (("jet_tau2", "jet_tau1"), _ratio),
    "multiplicity": (("jet_nparticles",), lambda n: n),
    "mean_pt": (("jet_pt", "jet_nparticles"), _ratio),
}

#: Default baseline features: m_jet, m_SD, tau3/tau2, tau2/tau1, N_constituents, <pT> = pT_jet / N.
JET_OBSERVABLES: tuple[str, ...] = ("mass", "sdmass", "tau32", "tau21", "multiplicity", "mean_pt")


def required_observers(observables: Sequence[str] = JET_OBSERVABLES) -> list[str]:
    """Observer columns (in first-use order) that ``observables`` are computed from."""
    unknown = [o for o in observables if o not in OBSERVABLES]
    if unknown:
        raise ValueError(f"unknown jet observable(s) {unknown}; choose from {sorted(OBSERVABLES)}")
    names: list[str] = []
    for o in observables:
        names += [n for n in OBSERVABLES[o][0] if n not in names]
    return names


#: Observers needed by the default :data:`JET_OBSERVABLES`.
REQUIRED_OBSERVERS: tuple[str, ...] = tuple(required_observers())


def _missing_message(missing: Sequence[str], where: str) -> str:
    return (
        f"{where}: missing observer(s) {list(missing)} needed by the jet-observable baselines; "
        "add them to the data config's 'observers' and re-run preprocessing"
    )


def baseline_features(
    columns: Mapping[str, np.ndarray], observables: Sequence[str] = JET_OBSERVABLES
) -> np.ndarray:
    """Build the ``(n, k)`` feature matrix of ``observables`` from observer columns.

    Parameters
    ----------
    columns : mapping of str to numpy.ndarray
        Observer columns, keyed ``jet_mass`` or ``observers/jet_mass``.
    observables : sequence of str, default JET_OBSERVABLES
        Names from :data:`OBSERVABLES`, one feature column each, in order.

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``(n, len(observables))``.

    Raises
    ------
    ValueError
        Naming the missing observers when ``columns`` lacks some.
    """
    cols = {k[len(OBSERVER_PREFIX) :] if k.startswith(OBSERVER_PREFIX) else k: v for k, v in columns.items()}
    missing = [n for n in required_observers(observables) if n not in cols]
    if missing:
        raise ValueError(_missing_message(missing, "observer columns"))
    feats = [
        np.asarray(OBSERVABLES[o][1](*(cols[n] for n in OBSERVABLES[o][0])), dtype=np.float64)
        for o in observables
    ]
    return np.stack(feats, axis=1) if feats else np.zeros((0, 0))


def load_observers(
    shard_dir: str | pathlib.Path, split: str, observables: Sequence[str] = JET_OBSERVABLES
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Features, labels and weights (or None) of one split of a preprocessing output.

    Raises
    ------
    ValueError
        Naming the missing observers when the shards lack some, or when the
        shards hold regression targets instead of class labels.
    """
    from hepnn_coffea.training.dataset import ShardDataset

    ds = ShardDataset(shard_dir, split, groups=[])
    fields = set(ds.fields)
    needed = required_observers(observables)
    missing = [n for n in needed if OBSERVER_PREFIX + n not in fields]
    if missing:
        raise ValueError(_missing_message(missing, f"{shard_dir} (split '{split}')"))
    if ds.target_field != "label":
        raise ValueError(f"{shard_dir}: shards hold regression targets; baselines need class labels")
    extra = ["label"] + (["weight"] if ds.has_weight else [])
    cols = ds.arrays([OBSERVER_PREFIX + n for n in needed] + extra)
    x = baseline_features(cols, observables)
    return x, cols["label"].astype(np.int64), cols.get("weight")


def _threads(n_threads: int | None) -> contextlib.AbstractContextManager[Any]:
    """Context limiting OpenMP/BLAS thread pools to ``n_threads`` (no limit for None)."""
    if n_threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(n_threads))


def make_baseline(kind: str, seed: int = 0) -> Any:
    """An unfitted sklearn ``Pipeline``: ``"logistic"`` (scaler + logistic regression) or ``"gbt"``."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logistic":
        clf = LogisticRegression(max_iter=1000, random_state=seed)
        return Pipeline([("scale", StandardScaler()), ("clf", clf)])
    if kind == "gbt":
        return Pipeline([("clf", HistGradientBoostingClassifier(random_state=seed))])
    raise ValueError(f"unknown baseline kind {kind!r}; choose one of {list(KINDS)}")


def train_baseline(
    shard_dir: str | pathlib.Path,
    kind: str = "logistic",
    seed: int = 0,
    *,
    split: str = "train",
    observables: Sequence[str] = JET_OBSERVABLES,
    n_threads: int | None = 1,
) -> Any:
    """Fit a baseline on one split (default ``train``) of a preprocessing output.

    Parameters
    ----------
    shard_dir
        A preprocessing output folder (holding ``manifest.json``).
    kind
        ``"logistic"`` or ``"gbt"`` (``HistGradientBoostingClassifier``).
    seed
        ``random_state`` of the classifier.
    split, observables
        Training split and feature list.
    n_threads
        OpenMP/BLAS threads while fitting (``None``: the libraries' default). The
        default 1 avoids OpenMP oversubscription, which on a loaded machine made the
        GBT fit on the bundled samples 100x slower; raise it for millions of jets.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Fitted; ``observables`` is stored as its ``hepnn_observables`` attribute.
    """
    model = make_baseline(kind, seed)
    x, y, w = load_observers(shard_dir, split, observables)
    if len(np.unique(y)) < 2:
        raise ValueError(f"{shard_dir}: split '{split}' holds a single class; cannot train a classifier")
    with _threads(n_threads):
        model.fit(x, y, **({"clf__sample_weight": w} if w is not None else {}))
    model.hepnn_observables = tuple(observables)
    model.hepnn_kind = kind
    return model


def score_baseline(
    model: Any, shard_dir: str | pathlib.Path, split: str = "test", *, n_threads: int | None = 1
) -> dict[str, Any]:
    """Score one split with a fitted baseline; metrics as ``evaluate``'s ``from_table``.

    ``n_threads`` limits OpenMP/BLAS threads while predicting (see :func:`train_baseline`).

    Returns
    -------
    dict
        ``score`` (probability of class 0, the signal), ``is_signal``, ``weight``
        (or None), ``roc`` (:class:`~hepnn_coffea.evaluation.roc.Roc`), ``n_jets``,
        ``n_signal``, and the metrics ``auc``, ``accuracy``, ``rejection_at_30``,
        ``rejection_at_50``.
    """
    observables = getattr(model, "hepnn_observables", JET_OBSERVABLES)
    x, y, w = load_observers(shard_dir, split, observables)
    with _threads(n_threads):
        probs = model.predict_proba(x)
    classes = list(model.classes_)
    if 0 not in classes:
        raise ValueError("the baseline was not trained with class 0 (signal)")
    score = probs[:, classes.index(0)]
    is_signal = y == 0
    roc = roc_from_scores(score, is_signal, w)
    predicted = np.asarray(classes)[probs.argmax(axis=1)]
    out: dict[str, Any] = {
        "score": score,
        "is_signal": is_signal,
        "weight": w,
        "roc": roc,
        "n_jets": int(len(score)),
        "n_signal": int(is_signal.sum()),
        "auc": roc.auc,
        "accuracy": float(np.average(predicted == y, weights=w)),
    }
    out.update({f"rejection_at_{int(e * 100)}": roc.rejection_at(e) for e in WORKING_POINTS})
    return out


def save_baseline(model: Any, path: str | pathlib.Path) -> pathlib.Path:
    """Pickle a fitted baseline to ``path`` (written atomically)."""
    from hepnn_coffea.processing.shards import atomic_write_bytes

    path = pathlib.Path(path)
    atomic_write_bytes(path, lambda f: pickle.dump(model, f))
    return path


def load_baseline(path: str | pathlib.Path) -> Any:
    """Load a baseline written by :func:`save_baseline` (pickle: trusted files only)."""
    with pathlib.Path(path).open("rb") as f:
        return pickle.load(f)
