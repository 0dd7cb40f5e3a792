"""Event-level helpers: NanoEvents from flat branches, fat-jet generator matching, event splits."""

from __future__ import annotations

import json
import math
import warnings

import awkward as ak
import numpy as np
import pytest
import uproot
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from hepnn_coffea.events.genmatch import REASONS, MatchReason, match_fatjets
from hepnn_coffea.events.nanoevents import to_nanoevents
from hepnn_coffea.events.split import SPLITS, event_split
from tests.conftest import SAMPLES

FILESET = json.loads((SAMPLES / "nanosim_fileset.json").read_text())
DATASETS = sorted(FILESET)
MATCH_FIELDS = ("top", "W", "w_from_top", "reason")
IS_LAST_COPY, FROM_HARD_PROCESS = 13, 8  # statusFlags bits


def _path(dataset: str):
    (name,) = FILESET[dataset]["files"]
    return SAMPLES / name


def _branches(dataset: str, counters: bool = True) -> dict[str, ak.Array]:
    with uproot.open(_path(dataset)) as f:
        arrays = f["Events"].arrays(how=dict)
    if not counters:
        collections = {k.split("_", 1)[0] for k in arrays if "_" in k}
        arrays = {k: v for k, v in arrays.items() if not (k.startswith("n") and k[1:] in collections)}
    return arrays


@pytest.fixture(scope="module")
def samples() -> dict[str, ak.Array]:
    return {d: to_nanoevents(b := _branches(d), len(b["event"])) for d in DATASETS}


# ---------------------------------------------------------------- reference: explicit Python loop


def _reference_event(jet_eta, jet_phi, gen, dr: float) -> list[dict]:
    """Match one event's jets by hand: mother indices walked explicitly, Delta R computed by hand."""
    pdg, mother, flags = gen["pdgId"], gen["genPartIdxMother"], gen["statusFlags"]
    n = len(pdg)
    children = [[k for k in range(n) if mother[k] == i] for i in range(n)]

    def distinct_parent(i: int) -> int:
        m = mother[i]
        while m >= 0 and pdg[m] == pdg[i]:
            m = mother[m]
        return m

    def has_bit(i: int, bit: int) -> bool:
        return bool((flags[i] >> bit) & 1)

    def d_r(eta: float, phi: float, k: int) -> float:
        dphi = phi - gen["phi"][k]
        while dphi > math.pi:
            dphi -= 2 * math.pi
        while dphi <= -math.pi:
            dphi += 2 * math.pi
        return math.sqrt((eta - gen["eta"][k]) ** 2 + dphi**2)

    ws = []
    for i in range(n):
        if abs(pdg[i]) != 24 or not has_bit(i, IS_LAST_COPY):
            continue
        quarks = [k for k in children[i] if 1 <= abs(pdg[k]) <= 5]
        top = distinct_parent(i)
        if top >= 0 and not (abs(pdg[top]) == 6 and has_bit(top, IS_LAST_COPY)):
            top = -1
        ws.append(
            {
                "w": i,
                "products": children[i],
                "quarks": quarks,
                "top": top,
                "bs": [k for k in children[top] if abs(pdg[k]) == 5] if top >= 0 else [],
                "hadronic": len(quarks) == 2,
                "leptonic": any(11 <= abs(pdg[k]) <= 16 for k in children[i]),
            }
        )
    partons = []
    for k in range(n):
        parent = distinct_parent(k)
        from_top_or_w = parent >= 0 and abs(pdg[parent]) in (6, 24)
        if (1 <= abs(pdg[k]) <= 5 or pdg[k] == 21) and has_bit(k, FROM_HARD_PROCESS) and not from_top_or_w:
            partons.append(k)

    out = []
    for eta, phi in zip(jet_eta, jet_phi):
        top = w_full = w_full_from_top = top_partial = w_partial = leptonic = False
        dr_top = dr_w = math.inf
        for w in ws:
            n_quarks_in = sum(d_r(eta, phi, k) < dr for k in w["quarks"])
            w_near = d_r(eta, phi, w["w"]) < dr or any(d_r(eta, phi, k) < dr for k in w["products"])
            has_top = w["top"] >= 0
            b_in = any(d_r(eta, phi, k) < dr for k in w["bs"])
            top_near = has_top and (d_r(eta, phi, w["top"]) < dr or b_in or w_near)
            if w["hadronic"]:
                dr_w = min(dr_w, d_r(eta, phi, w["w"]))
                if has_top:
                    dr_top = min(dr_top, d_r(eta, phi, w["top"]))
                if n_quarks_in == 2:
                    w_full = True
                    w_full_from_top |= has_top
                    top |= has_top and b_in
                top_partial |= top_near
                w_partial |= w_near
            if w["leptonic"] and (w_near or top_near):
                leptonic = True
        other = any(d_r(eta, phi, k) < dr for k in partons)
        if top or w_full:
            reason = 0
        else:
            reason = next(
                code
                for flag, code in ((top_partial, 1), (w_partial, 2), (leptonic, 3), (other, 4), (True, 5))
                if flag
            )
        out.append(
            {
                "top": top,
                "W": w_full and not top,
                "w_from_top": w_full_from_top and not top,
                "reason": reason,
                "dr_top": dr_top,
                "dr_w": dr_w,
            }
        )
    return out


@pytest.mark.parametrize("dataset", DATASETS)
def test_match_equals_python_loop(samples, dataset) -> None:
    events = samples[dataset]
    matched = match_fatjets(events.FatJet, events.GenPart)
    assert ak.to_list(ak.num(matched)) == ak.to_list(ak.num(events.FatJet))
    raw = _branches(dataset)
    gen_fields = ("pdgId", "genPartIdxMother", "statusFlags", "eta", "phi")
    gen = {f: ak.to_list(raw[f"GenPart_{f}"]) for f in gen_fields}
    jet_eta, jet_phi = ak.to_list(raw["FatJet_eta"]), ak.to_list(raw["FatJet_phi"])
    got = ak.to_list(matched)
    for i in range(len(events)):
        expected = _reference_event(jet_eta[i], jet_phi[i], {f: gen[f][i] for f in gen_fields}, 0.8)
        assert len(got[i]) == len(expected)
        for jet_got, jet_expected in zip(got[i], expected):
            got_flags = {f: jet_got[f] for f in MATCH_FIELDS}
            assert got_flags == {f: jet_expected[f] for f in MATCH_FIELDS}, (dataset, i)
            for f in ("dr_top", "dr_w"):
                assert jet_got[f] == pytest.approx(jet_expected[f], abs=1e-9), (dataset, i, f)
    if dataset.startswith("qcd"):
        assert set(ak.flatten(matched.reason).tolist()) <= {MatchReason.OTHER_PARTON, MatchReason.NO_PARTON}


def test_match_counts_are_not_trivial(samples) -> None:
    counts = {"top": 0, "W": 0, "w_from_top": 0}
    reasons = np.zeros(len(REASONS), dtype=int)
    for events in samples.values():
        high_pt = ak.flatten(match_fatjets(events.FatJet, events.GenPart)[events.FatJet.pt > 300])
        for field in counts:
            counts[field] += int(ak.sum(high_pt[field]))
        reasons += np.bincount(ak.to_numpy(high_pt.reason), minlength=len(REASONS))
    assert counts["top"] >= 150 and counts["W"] >= 150 and 0 < counts["w_from_top"] < counts["W"], counts
    assert np.all(reasons > 0), dict(zip(REASONS.values(), reasons))  # every reason occurs
    assert reasons[0] == counts["top"] + counts["W"]


def test_match_survives_event_selection_and_empty_events(samples) -> None:
    events = samples["ttbar_400toInf"]
    keep = np.arange(len(events)) % 3 == 1
    full = match_fatjets(events.FatJet, events.GenPart)
    assert ak.to_list(match_fatjets(events[keep].FatJet, events[keep].GenPart)) == ak.to_list(full[keep])
    # events without jets, without generator particles, or both
    branches = {
        "FatJet_eta": ak.Array([[0.1], [], [], [0.3, -1.0]]),
        "FatJet_phi": ak.Array([[0.2], [], [], [3.1, 0.0]]),
        "FatJet_pt": ak.Array([[400.0], [], [], [500.0, 310.0]]),
        "FatJet_mass": ak.Array([[90.0], [], [], [170.0, 20.0]]),
    }
    branches.update(
        run=np.ones(4, np.uint32),
        luminosityBlock=np.ones(4, np.uint32),
        event=np.arange(1, 5, dtype=np.uint64),
    )
    gen = _branches("ttbar_400toInf")
    for name in (k for k in gen if k.startswith("GenPart_")):  # event 0: no GenPart; 1: no jets; 2: neither
        first, nothing = gen[name][:1], gen[name][:1, :0]
        branches[name] = ak.concatenate([nothing, first, nothing, first])
    synthetic = to_nanoevents(branches, 4)
    matched = match_fatjets(synthetic.FatJet, synthetic.GenPart)
    assert ak.to_list(ak.num(matched)) == [1, 0, 0, 2]
    assert matched.reason[0].tolist() == [MatchReason.NO_PARTON] and not matched.top[0][0]
    assert matched.dr_top[0].tolist() == [math.inf]
    with pytest.raises(ValueError, match="dr"):
        match_fatjets(synthetic.FatJet, synthetic.GenPart, dr=0)


# ---------------------------------------------------------------------------------- event split

FRACTIONS = {"train": 0.6, "val": 0.15, "test": 0.25}


def _synthetic_ids(n: int = 100_000):
    rng = np.random.default_rng(1)
    return (
        rng.integers(1, 4, n).astype(np.uint32),
        rng.integers(1, 50, n).astype(np.uint32),
        np.tile(np.arange(1, n // 10 + 1, dtype=np.uint64), 10),
    )  # event numbers repeat


def test_split_is_deterministic_and_seeded() -> None:
    ids = _synthetic_ids(20_000)
    first = event_split(*ids, FRACTIONS)
    np.testing.assert_array_equal(first, event_split(*(a.copy() for a in ids), dict(FRACTIONS)))
    assert first.dtype == np.int8 and first.shape == (20_000,)
    other_seed = event_split(*ids, FRACTIONS, seed=1)
    assert 0.3 < np.mean(first != other_seed) < 0.7
    swapped = event_split(ids[1], ids[0], ids[2], FRACTIONS)  # the hash is not symmetric in its inputs
    assert np.mean(first != swapped) > 0.3


@pytest.mark.parametrize("fractions", [FRACTIONS, {"train": 0.5, "test": 0.5}, {"val": 1.0}])
def test_split_fractions_within_binomial_tolerance(fractions) -> None:
    ids = _synthetic_ids()
    split = event_split(*ids, fractions, seed=7)
    n = len(split)
    for index, name in enumerate(SPLITS):
        p = fractions.get(name, 0.0)
        count = int(np.sum(split == index))
        assert abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p)), (name, count, n * p)


def test_jets_of_one_event_share_the_split(samples) -> None:
    assert len(samples) >= 3  # the loop below runs over the bundled signal and background samples
    for events in samples.values():
        event_level = event_split(events.run, events.luminosityBlock, events.event, FRACTIONS)
        ids = [
            ak.to_numpy(ak.flatten(ak.broadcast_arrays(events[k], events.FatJet.pt)[0]))
            for k in ("run", "luminosityBlock", "event")
        ]
        jet_level = event_split(*ids, FRACTIONS)
        np.testing.assert_array_equal(jet_level, np.repeat(event_level, ak.to_numpy(ak.num(events.FatJet))))
        per_event: dict[tuple[int, int, int], set[int]] = {}
        for run, lumi, event, split in zip(*ids, jet_level):
            per_event.setdefault((int(run), int(lumi), int(event)), set()).add(int(split))
        assert len(per_event) > 100 and all(len(s) == 1 for s in per_event.values())
        assert len(np.unique(event_level)) == 3


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ({"train": 0.5, "valid": 0.5}, "'valid'"),
        ({"train": 1.2, "test": -0.2}, "'test'"),
        ({"train": 0.8, "val": float("nan"), "test": 0.2}, "'val'"),
        ({"train": 0.5, "val": 0.2, "test": 0.2}, "sum to 1"),
        ({}, "sum to 1"),
    ],
)
def test_split_rejects_bad_fractions(fractions, message) -> None:
    with pytest.raises(ValueError, match=message):
        event_split(np.ones(3, np.uint32), np.ones(3, np.uint32), np.arange(3), fractions)


# --------------------------------------------------------------------------------- to_nanoevents


@pytest.mark.parametrize("dataset", ["ttbar_400toInf", "qcd_800toInf"])
def test_to_nanoevents_with_and_without_counters(dataset) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reference = NanoEventsFactory.from_root(
            {str(_path(dataset)): "Events"}, schemaclass=NanoAODSchema, mode="eager"
        ).events()
    with_counters, without = _branches(dataset), _branches(dataset, counters=False)
    assert "nGenPart" in with_counters and "nGenPart" not in without and "nFatJetPFCand" not in without
    n = len(with_counters["event"])
    for branches in (with_counters, without):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the cross-reference noise is silenced inside
            events = to_nanoevents(branches, n)
        assert ak.to_list(events.GenPart.children.pdgId) == ak.to_list(reference.GenPart.children.pdgId)
        parents = events.GenPart.distinctParent.pdgId
        assert ak.to_list(parents) == ak.to_list(reference.GenPart.distinctParent.pdgId)
        assert ak.to_list(events.FatJet.pt) == ak.to_list(reference.FatJet.pt)
        assert ak.to_list(events.FatJetPFCand.pfCandIdx) == ak.to_list(reference.FatJetPFCand.pfCandIdx)
        assert ak.to_list(match_fatjets(events.FatJet, events.GenPart)) == ak.to_list(
            match_fatjets(reference.FatJet, reference.GenPart)
        )
    sliced = to_nanoevents({k: v[5:] for k, v in without.items()}, n - 5)  # offsets not starting at 0
    assert ak.to_list(sliced.GenPart.children.pdgId) == ak.to_list(reference.GenPart.children.pdgId[5:])


def test_to_nanoevents_rejects_inconsistent_branches() -> None:
    branches = _branches("wqq", counters=False)
    n = len(branches["event"])
    with pytest.raises(ValueError, match="n_events"):
        to_nanoevents(branches, n + 1)
    broken = dict(branches, GenPart_pt=branches["GenPart_pt"][:, :1])
    with pytest.raises(ValueError, match="GenPart"):
        to_nanoevents(broken, n)
