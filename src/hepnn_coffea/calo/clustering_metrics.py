"""Metrics of a hit-to-particle clustering, the same functions for every method.

All are computed on the calorimeter cells of a jet (tracks carry no calorimeter energy and
are only inputs/associations):

* **energy-weighted efficiency**: ``sum_t max_p E(t & p) / sum E`` (a true cluster's energy that
  lands in its best predicted cluster), pooled over jets;
* **energy-weighted purity**: ``sum_p max_t E(t & p) / sum E``;
* **adjusted Rand index** per jet (:func:`sklearn.metrics.adjusted_rand_score` over cells),
  averaged over jets, and an energy-weighted ARI (pair counts replaced by energy products);
* **PID confusion matrix**: per true cluster above ``min_cluster_energy``, its particle type vs
  the type of its best predicted cluster;
* **cluster energy response**: ``E(best predicted cluster) / E(true cluster)`` (same clusters),
  reported as median - 1 and half the 16-84 % width.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ari_energy_weighted", "cluster_energy_matches", "clustering_sums"]

#: true clusters below this energy [GeV] are left out of the PID and energy-response matches
MIN_CLUSTER_ENERGY = 1.0


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
