"""Helpers of the regression tests (``test_regression``, ``test_regression_config``): the bundled top
jets and ``models/data/top_regression.yaml``'s cut flow in plain numpy."""

from __future__ import annotations

import awkward as ak
import numpy as np
import uproot

from tests.conftest import ROOT, SAMPLES

REGRESSION = ROOT / "models" / "data" / "top_regression.yaml"


def _top_arrays(split: str = "train") -> ak.Array:
    """The bundled top sample; flat branches index like numpy arrays."""
    with uproot.open(SAMPLES / f"topqcd_{split}_top.root") as f:
        return f["tree"].arrays()


def _flat(a: ak.Array) -> dict[str, np.ndarray]:
    return {k: ak.to_numpy(a[k]) for k in a.fields if a[k].ndim == 1}


def _expected_cutflow(a: ak.Array) -> tuple[np.ndarray, dict[str, int]]:
    """top_regression.yaml's selection and filters in plain numpy."""
    a = _flat(a)
    keep = (a["label_Tbqq"] == 1) & (a["jet_nparticles"] > 0)
    ratio = np.hypot(a["aux_truth_px"], a["aux_truth_py"]) / a["jet_pt"]
    match = (ratio >= 0.7) & (ratio < 1.5)
    removed = {"truth_match": int((keep & ~match).sum())}
    keep &= match
    many = a["jet_nparticles"] >= 10
    removed["min_constituents"] = int((keep & ~many).sum())
    return keep & many, removed
