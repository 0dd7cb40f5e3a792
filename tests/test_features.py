"""Feature values against a direct numpy computation on the same jets."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from hepnn_coffea.config import DataConfig
from hepnn_coffea.features import compute_features, pad_jagged
from tests.conftest import SAMPLES, TOP_KIN, TOPQCD, needs_shared

L = 128


def numpy_reference(arrays: ak.Array) -> dict[str, np.ndarray]:
    """The ParT 'kin' features with plain numpy loops over jets (the slow, obvious way)."""
    n = len(arrays)
    feats = np.zeros((n, 7, L), np.float32)
    vectors = np.zeros((n, 4, L), np.float32)
    mask = np.zeros((n, 1, L), np.float32)
    for i in range(n):
        px, py, pz, e = (np.asarray(arrays[f"part_{c}"][i], np.float64) for c in ("px", "py", "pz", "energy"))
        jet_eta, jet_phi = float(arrays.jet_eta[i]), float(arrays.jet_phi[i])
        jet_pt, jet_e = float(arrays.jet_pt[i]), float(arrays.jet_energy[i])
        pt = np.hypot(px, py)
        eta = np.arcsinh(pz / pt)
        phi = np.arctan2(py, px)
        deta = (eta - jet_eta) * (1 if jet_eta >= 0 else -1)
        dphi = (phi - jet_phi + np.pi) % (2 * np.pi) - np.pi
        dr = np.hypot(eta - jet_eta, dphi)
        columns = [
            (np.log(pt) - 1.7) * 0.7,
            (np.log(e) - 2.0) * 0.7,
            (np.log(pt / jet_pt) + 4.7) * 0.7,
            (np.log(e / jet_e) + 4.7) * 0.7,
            (dr - 0.2) * 4.0,
            deta,
            dphi,
        ]
        k = len(pt)
        wrap = np.arange(L) % k
        for c, col in enumerate(columns):
            col = np.clip(col, -5, 5) if c < 5 else col
            feats[i, c] = col[wrap]
        for c, col in enumerate((px, py, pz, e)):
            vectors[i, c] = col[wrap]
        mask[i, 0, : min(k, L)] = 1
    return {"pf_features": feats, "pf_vectors": vectors, "pf_mask": mask}


@pytest.mark.parametrize(
    "path",
    [SAMPLES / "topqcd_test_top.root", pytest.param(TOPQCD / "test_qcd_0.root", marks=needs_shared)],
    ids=["bundled-ttree", "shared-rntuple"],
)
def test_features_match_numpy(path) -> None:
    cfg = DataConfig.from_yaml(TOP_KIN)
    arrays = uproot.open(path)["tree"].arrays(cfg.required_branches(), entry_stop=300)
    batch = compute_features(arrays, cfg)
    expected = numpy_reference(arrays)
    assert batch.inputs["pf_features"].dtype == np.float32
    for group, ref in expected.items():
        np.testing.assert_allclose(batch.inputs[group], ref, atol=2e-5, rtol=1e-5, err_msg=group)
    assert batch.counts == {
        "entries_in": 300,
        "entries_selected": 300,
        "rejected_labels": 0,
        "entries_out": 300,
    }
    np.testing.assert_array_equal(batch.labels, np.where(ak.to_numpy(arrays.label_Tbqq), 0, 1))
    np.testing.assert_array_equal(batch.observers["jet_sdmass"], ak.to_numpy(arrays.jet_sdmass))


def test_pad_modes() -> None:
    a = ak.Array([[1.0, 2.0, 3.0], [], [4.0], [5.0, 6.0, 7.0, 8.0, 9.0]])
    np.testing.assert_array_equal(
        pad_jagged(a, 4, pad_value=-1), [[1, 2, 3, -1], [-1, -1, -1, -1], [4, -1, -1, -1], [5, 6, 7, 8]]
    )
    np.testing.assert_array_equal(
        pad_jagged(a, 4, pad_value=-1, mode="wrap"),
        [[1, 2, 3, 1], [-1, -1, -1, -1], [4, 4, 4, 4], [5, 6, 7, 8]],
    )


def test_selection_nan_and_label_checks_are_counted() -> None:
    raw = {
        "selection": "jet_pt > 10",
        "new_variables": {"part_logx": "np.log(part_x)", "is_a": "lab_a * 1", "is_b": "lab_b * 1"},
        "inputs": {"g": {"length": 3, "vars": [["part_logx", None]]}},
        "labels": {"type": "simple", "value": ["is_a", "is_b"]},
        "observers": ["jet_pt"],
    }
    cfg = DataConfig.from_dict(raw)
    events = ak.Array(
        {
            "jet_pt": [5.0, 20.0, 30.0, 40.0],
            "part_x": [[1.0], [0.0, 1.0], [-1.0, np.e], [1.0]],
            "lab_a": [True, True, False, True],
            "lab_b": [False, False, True, True],
        }
    )
    batch = compute_features(events, cfg)
    # entry 0 fails the selection, entry 3 has two labels set
    assert batch.counts["entries_selected"] == 3 and batch.counts["rejected_labels"] == 1
    assert batch.counts["entries_out"] == 2
    # log(0) = -inf and log(-1) = nan become 0 and are counted
    assert batch.counts["nonfinite_part_logx"] == 2
    np.testing.assert_allclose(batch.inputs["g"][:, 0], [[0, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(batch.labels, [0, 1])
    np.testing.assert_array_equal(batch.observers["jet_pt"], [20.0, 30.0])


def test_regression_targets_from_custom_labels() -> None:
    raw = {
        "inputs": {"jet": {"vars": [["jet_pt", 500, 0.01]]}},
        "labels": {"type": "custom", "value": {"target_pt": "np.hypot(aux_px, aux_py)"}},
    }
    cfg = DataConfig.from_dict(raw)
    events = ak.Array({"jet_pt": [600.0, 400.0], "aux_px": [3.0, 0.0], "aux_py": [4.0, 1.0]})
    batch = compute_features(events, cfg)
    np.testing.assert_allclose(batch.inputs["jet"], [[1.0], [-1.0]])
    np.testing.assert_allclose(batch.labels, [[5.0], [1.0]])
