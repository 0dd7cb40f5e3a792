"""Focused-track samples (JetPointNet workflow) on hand-made inputs: one jet through the sample
builder and an empty chunk, the baselines and metrics on hand-made numbers, and the seeded
bootstrap intervals of the per-point summary (the bundled jets: ``test_calo_pointnet.py``)."""

from __future__ import annotations

import re

import awkward as ak
import numpy as np
import pytest

from hepnn_coffea.calo.per_point_eval import (
    cone_baseline,
    metrics,
    per_point_summary,
    response_baseline,
    response_calibration,
    subtraction_baseline,
    sum_cell_predictions,
)
from hepnn_coffea.calo.samples import CELL, FOCUS, OTHER, build_samples


def test_empty_chunk_and_hand_made_jet() -> None:
    # one jet, two tracks 0.1 apart in phi, three cells; track 1 is below pt_min
    view = ak.Array(
        {
            "track_px": [[10.0, 1.0]],
            "track_py": [[0.0, 0.0]],
            "track_pz": [[0.0, 0.0]],
            "track_pt": [[10.0, 1.0]],
            "track_eta": [[0.0, 0.0]],
            "track_phi": [[0.0, 0.1]],
            "track_charge": [[1, -1]],
            "track_particle": [[0, 2]],
            "track_calo_eta": [[0.0, 0.0]],
            "track_calo_phi": [[0.0, 0.1]],
            "track_calo_x": [[1.5, 1.49]],
            "track_calo_y": [[0.0, 0.15]],
            "track_calo_z": [[0.0, 0.0]],
            "track_reaches_calo": [[True, True]],
            "cell_eta": [[0.01, 0.0, 0.0]],
            "cell_phi": [[0.0, 0.15, 0.5]],
            "cell_layer": [[0, 1, 0]],
            "cell_x": [[1.5, 2.0, 1.3]],
            "cell_y": [[0.0, 0.3, 0.7]],
            "cell_z": [[0.0, 0.0, 0.0]],
            "cell_E": [[5.0, 3.0, 2.0]],
            "contrib_cell": [[0, 0, 1, 2]],
            "contrib_particle": [[0, 1, 1, 0]],
            "contrib_energy": [[4.0, 1.0, 3.0, 2.0]],
            "part_deposited_energy": [[6.5, 4.0, 0.5]],
            "part_expected_energy": [[7.0, 4.0, 0.6]],
            "part_type": [[3, 2, 3]],
            "event_no": [7],
            "jet_pt": [30.0],
        }
    )
    out = build_samples(view, pt_min=2.0)
    assert out["counts"] == {
        "tracks": 2,
        "focused_tracks": 1,
        "samples": 1,
        "dropped_few_cells": 0,
        "points": 4,
        "cells_in_cones": 2,
    }
    pts = {k: ak.to_list(v[0]) for k, v in out["point"].items()}
    assert pts["type"] == [FOCUS, CELL, OTHER, CELL] and pts["index"] == [0, 0, 1, 1]
    assert pts["label"] == [-1.0, 4.0, -1.0, 0.0]
    assert out["label_sum"][0] == 4.0 and out["cone_energy"][0] == 8.0
    assert out["focus_deposited_energy"][0] == 6.5 and out["event_no"][0] == 7
    empty = build_samples(view[:0])
    assert empty["counts"]["samples"] == 0 and len(empty["point"]["e"]) == 0


def test_baselines_on_a_hand_made_example() -> None:
    pt = np.array([2.0, 3.0, 4.0, 12.0, 15.0, 30.0])
    p = np.array([2.0, 3.0, 4.0, 12.0, 15.0, 30.0])
    true = np.array([1.0, 1.5, 3.0, 6.0, 9.0, 24.0])  # responses 0.5, 0.5, 0.75 | 0.5, 0.6 | 0.8
    cal = response_calibration(pt, p, true, pt_edges=[1, 10, 20, 100], min_entries=2)
    assert cal["response"] == [0.5, pytest.approx(0.55), 0.55] and cal["entries"] == [3, 2, 1]
    assert cal["overall"] == pytest.approx(0.55)  # the 1-entry bin takes the overall median
    np.testing.assert_allclose(
        response_baseline([5.0, 11.0, 50.0, 500.0], [10.0, 10.0, 10.0, 10.0], cal), [5.0, 5.5, 5.5, 5.5]
    )
    np.testing.assert_array_equal(cone_baseline([1.0, 2.0]), [1.0, 2.0])
    # cone minus the expected response of the other tracks (type 2), never below 0
    e = ak.Array([[10.0, 4.0, 6.0, 3.0], [5.0, 20.0]])
    kind = ak.Array([[FOCUS, OTHER, CELL, OTHER], [FOCUS, OTHER]])
    np.testing.assert_allclose(subtraction_baseline([12.0, 3.0], e, kind, 0.5), [12.0 - 3.5, 0.0])
    # per-track sums use only the kept cell points
    pred = ak.Array([[9.0, 1.0, 2.0], [], [0.5]])
    types = ak.Array([[FOCUS, CELL, CELL, CELL], [CELL], [OTHER, CELL]])
    np.testing.assert_allclose(sum_cell_predictions(pred, types), [3.0, 0.0, 0.0])
    m = metrics(np.array([1.1, 0.9, 2.0]), np.array([1.0, 1.0, 1.0]))
    assert m["mape"] == pytest.approx(0.4) and m["bias"] == pytest.approx(0.1) and m["n"] == 3
    table = {
        "true": np.array([1.0, 2.0, 0.1]),
        "focus_pt": np.array([3.0, 30.0, 3.0]),
        "pred_a": np.array([1.5, 2.0, 5.0]),
    }
    rows = per_point_summary(table, ["a"], pt_edges=[1, 10, 100], min_true=0.5)
    assert [r["n"] for r in rows] == [1, 1, 2] and rows[0]["a_mape"]["value"] == pytest.approx(0.5)
    assert rows[-1]["pt_bin"] == "all" and rows[-1]["a_mape"]["value"] == pytest.approx(0.25)
    # one track: every replica is that track, a zero-width interval; two tracks (|rel| 0.5 and 0): replica
    # MAPEs 0, 0.25, 0.5 with probabilities 1/4, 1/2, 1/4, a spread of 0.25 / sqrt(2)
    assert rows[0]["a_mape"]["low"] == rows[0]["a_mape"]["high"] == pytest.approx(0.5)
    assert rows[-1]["a_mape"]["high"] - 0.25 == pytest.approx(0.25 / np.sqrt(2), abs=0.03)
    assert set(rows[-1]["a_bias"]) == {"value", "low", "high"}


def test_per_point_summary_intervals_and_markdown() -> None:
    """Seeded bootstrap intervals per pT bin that shrink like 1/sqrt(n); Markdown prints
    ``value +high -low``."""
    from hepnn_coffea.calo.per_point_eval import summary_markdown

    rng = np.random.default_rng(3)
    n = 4000
    true = rng.uniform(1.0, 20.0, n)
    pt = np.where(np.arange(n) < 400, 3.0, 30.0)  # 400 tracks in the first bin, 3600 in the second
    table = {"true": true, "focus_pt": pt, "pred_a": true * (1 + rng.normal(0.0, 0.2, n))}
    rows = per_point_summary(table, ["a"], pt_edges=[1, 10, 100], n_bootstrap=60, seed=1)
    assert rows == per_point_summary(table, ["a"], pt_edges=[1, 10, 100], n_bootstrap=60, seed=1)  # seeded
    widths = []
    for row in rows[:2]:
        res = row["a_resolution"]  # truth: half the 16-84% range of N(0, 0.2)
        assert res["low"] <= res["value"] <= res["high"]
        assert abs(res["value"] - 0.2 * 0.9945) < 3 * (res["high"] - res["low"])
        widths.append(res["high"] - res["low"])
    assert widths[0] / widths[1] == pytest.approx(3.0, rel=0.35)  # sqrt(3600 / 400)
    md = summary_markdown(rows, ["a"])
    interval = r"\d\.\d+ \+\d\.\d+ -\d\.\d+"
    assert re.search(rf"\| all \| 4000 \| {interval} / {interval} \|", md), md
