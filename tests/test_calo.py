"""Calorimeter view: energy bookkeeping, reproducibility, helix impact, shower split, cell grid,
geometry YAML, the coffea processor against the library, and the written ROOT files."""

from __future__ import annotations

import math
import pathlib

import awkward as ak
import numpy as np
import pytest
import uproot

from hepnn_coffea.calo import (
    CaloGeometry,
    GeometryError,
    build_view,
    calorimeter_view,
    chunk_rng,
    load_geometry,
)
from hepnn_coffea.calo.geometry import CHARGED_HADRON, EM_LAYER, HAD_LAYER, PHOTON
from hepnn_coffea.calo.tracks import extrapolate, phi_shift
from hepnn_coffea.calo.view import COLLECTIONS, JET_BRANCHES, write_view

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "samples" / "topqcd_test_top.root"
GEOMETRY_YAML = ROOT / "models" / "data" / "calo_geometry.yaml"
N_JETS = 200
FILESET = {"top_test": {"files": {str(SAMPLE): "tree"}, "metadata": {"sample": "top", "split": "test"}}}


@pytest.fixture(scope="module")
def jets() -> ak.Array:
    return uproot.open(SAMPLE)["tree"].arrays(entry_stop=N_JETS)


@pytest.fixture(scope="module")
def view(jets: ak.Array) -> dict:
    return build_view(jets, CaloGeometry(), chunk_rng(7, str(SAMPLE), 0, N_JETS))


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, dict]:
    """The view of one bundled file (500 jets, two 250-jet chunks) through processor.Runner (iterative)."""
    out = tmp_path_factory.mktemp("calo")
    return out, calorimeter_view(FILESET, out, seed=3, executor="iterative", chunksize=250)


def _flat(a: ak.Array) -> np.ndarray:
    return ak.to_numpy(ak.flatten(a, axis=1))


def test_energy_conservation_per_particle_and_cell(view: dict) -> None:
    part, cell, contrib = view["part"], view["cell"], view["contrib"]
    n_part = ak.num(part["energy"], axis=1)
    offsets = np.r_[0, np.cumsum(n_part)][:-1]
    # chunk-global particle index of every contribution
    global_part = _flat(contrib["particle"] + offsets)
    energy = _flat(contrib["energy"])
    kept = np.bincount(global_part, weights=energy, minlength=int(ak.sum(n_part)))
    deposited, below = _flat(part["deposited_energy"]), _flat(part["below_threshold_energy"])
    np.testing.assert_allclose(kept + below, deposited, rtol=1e-9, atol=1e-12)
    assert below.sum() > 0  # the threshold does drop something
    # per cell and per jet: E - noise == sum of its contributions
    n_cell = ak.num(cell["E"], axis=1)
    cell_offsets = np.r_[0, np.cumsum(n_cell)][:-1]
    global_cell = _flat(contrib["cell"] + cell_offsets)
    per_cell = np.bincount(global_cell, weights=energy, minlength=int(ak.sum(n_cell)))
    np.testing.assert_allclose(_flat(cell["E"] - cell["noise"]), per_cell, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        ak.to_numpy(ak.sum(cell["E"] - cell["noise"], axis=1)),
        ak.to_numpy(ak.sum(contrib["energy"], axis=1)),
        rtol=1e-9,
    )
    # contributions are unique (cell, particle) pairs and the main particle is the largest contributor
    pairs = global_cell * 10**6 + global_part
    assert len(np.unique(pairs)) == len(pairs)
    largest = np.zeros(len(per_cell))
    np.maximum.at(largest, global_cell, energy)
    main = _flat(cell["main_particle"] + offsets)
    main_energy = dict(zip(zip(global_cell.tolist(), global_part.tolist()), energy.tolist()))
    assert all(main_energy[(c, p)] == largest[c] for c, p in enumerate(main.tolist()))


def test_energy_bookkeeping_of_the_manifest(staged: tuple[pathlib.Path, dict]) -> None:
    _, manifest = staged
    c = manifest["counts"]
    assert c["jets"] == 500 and len(manifest["chunks"]) == 2
    assert c["energy_deposited"] == pytest.approx(c["energy_kept"] + c["energy_below_threshold"], rel=1e-9)
    assert c["energy_measured"] == pytest.approx(c["energy_kept"] + c["energy_noise"], rel=1e-9)
    assert c["energy_deposited"] == pytest.approx(c["energy_expected"], rel=0.01)
    assert 0.9 * c["energy_in"] < c["energy_expected"] <= c["energy_in"]
    for key in ("jets", "particles", "cells", "contributions"):
        assert c[key] == sum(r[key] for r in manifest["chunks"])


def test_reproducible_with_the_same_seed_and_different_with_another(jets: ak.Array, view: dict) -> None:
    again = build_view(jets, CaloGeometry(), chunk_rng(7, str(SAMPLE), 0, N_JETS))
    other = build_view(jets, CaloGeometry(), chunk_rng(8, str(SAMPLE), 0, N_JETS))
    for name in COLLECTIONS:
        for field in view[name]:
            assert ak.array_equal(view[name][field], again[name][field], equal_nan=True), (name, field)
    assert not ak.array_equal(view["cell"]["E"], other["cell"]["E"])
    assert not ak.array_equal(view["part"]["deposited_energy"], other["part"]["deposited_energy"])
    # the tracks do not depend on the seed
    assert ak.array_equal(view["track"]["calo_phi"], other["track"]["calo_phi"], equal_nan=True)


def test_written_files_are_identical_for_the_same_seed_with_any_executor(
    staged: tuple[pathlib.Path, dict], tmp_path: pathlib.Path
) -> None:
    out, manifest = staged
    again = calorimeter_view(FILESET, tmp_path / "again", seed=3, mode="dask", workers=1, chunksize=250)
    other = calorimeter_view(FILESET, tmp_path / "other", seed=4, executor="iterative", chunksize=250)
    assert again["counts"] == manifest["counts"]
    assert other["counts"]["energy_measured"] != manifest["counts"]["energy_measured"]
    for record in manifest["chunks"]:
        a = uproot.open(out / record["output"])["tree"].arrays()
        b = uproot.open(tmp_path / "again" / record["output"])["tree"].arrays()
        c = uproot.open(tmp_path / "other" / record["output"])["tree"].arrays()
        assert all(ak.array_equal(a[k], b[k], equal_nan=True) for k in a.fields)
        assert not ak.array_equal(a["cell_E"], c["cell_E"])


def test_neutral_particles_go_straight() -> None:
    rng = np.random.default_rng(0)
    px, py, pz = rng.normal(0, 5, (3, 50))
    eta, phi, z, reaches = extrapolate(px, py, pz, np.zeros(50), 1.5, 3.8)
    pt = np.hypot(px, py)
    assert reaches.all()
    np.testing.assert_allclose(phi, np.arctan2(py, px), atol=1e-12)
    np.testing.assert_allclose(z, 1.5 * pz / pt, rtol=1e-12)
    np.testing.assert_allclose(eta, np.arcsinh(pz / pt), rtol=1e-12)


def test_helix_phi_shift_flips_with_charge_and_scales_with_inverse_pt() -> None:
    radius, b_field = 1.5, 3.8
    pts = np.array([1.0, 2.0, 5.0, 10.0, 50.0, 200.0])
    phi0, pz = 0.4, 3.0
    px, py = pts * math.cos(phi0), pts * math.sin(phi0)
    shifts = {}
    for q in (+1, -1):
        eta, phi, z, reaches = extrapolate(px, py, np.full(6, pz), np.full(6, q), radius, b_field)
        assert reaches.all()
        shifts[q] = phi - phi0
        np.testing.assert_allclose(shifts[q], phi_shift(pts, np.full(6, q), radius, b_field), atol=1e-12)
        # the impact point lies on the particle's circle: radius pT/(0.3 B), centre to the right (q > 0)
        r_c = pts / (0.3 * b_field)
        centre = r_c * np.array([np.cos(phi0 - q * math.pi / 2), np.sin(phi0 - q * math.pi / 2)])[:, None]
        point = radius * np.array([np.cos(phi), np.sin(phi)])
        np.testing.assert_allclose(np.hypot(*(point - centre)), r_c, rtol=1e-9)
        # z follows the arc length, not the chord
        np.testing.assert_allclose(z, 2 * r_c * np.arcsin(radius / (2 * r_c)) * pz / pts, rtol=1e-12)
    assert (shifts[+1] < 0).all() and (shifts[-1] > 0).all()
    np.testing.assert_allclose(shifts[+1], -shifts[-1], atol=1e-12)
    # ~ 1/pT: 0.15 B r / pT at high pT
    np.testing.assert_allclose(shifts[-1][-3:], 0.3 * b_field * radius / (2 * pts[-3:]), rtol=2e-3)
    np.testing.assert_allclose(shifts[-1][3] / shifts[-1][5], 20.0, rtol=2e-3)


def test_loopers_are_flagged_without_an_impact(view: dict) -> None:
    geo = CaloGeometry()
    eta, phi, z, reaches = extrapolate(np.array([0.5, 0.9]), np.zeros(2), np.ones(2), np.ones(2), 1.5, 3.8)
    assert reaches.tolist() == [False, True]
    assert np.isnan(phi[0]) and np.isnan(eta[0]) and not np.isnan(phi[1])
    track = view["track"]
    pt, flag = _flat(track["pt"]), _flat(track["reaches_calo"])
    assert (flag == (pt > geo.curl_pt)).all() and (~flag).any()
    assert np.isnan(_flat(track["calo_phi"])[~flag]).all()
    assert (pt > geo.track_pt_min).all()
    part = view["part"]
    looper = ~_flat(part["reaches_calo"])
    assert (_flat(part["deposited_energy"])[looper] == 0).all()


def test_photons_deposit_in_em_and_charged_hadrons_in_both_layers(view: dict) -> None:
    part, cell, contrib = view["part"], view["cell"], view["contrib"]
    ptype, dep = _flat(part["type"]), _flat(part["deposited_energy"])
    dep_em = _flat(part["deposited_em_energy"])
    photon, hadron = (ptype == PHOTON) & (dep > 0), (ptype == CHARGED_HADRON) & (dep > 0)
    assert dep_em[photon].sum() / dep[photon].sum() > 0.95
    assert 0.1 < dep_em[hadron].sum() / dep[hadron].sum() < 0.6
    # in the cells: layers seen by each particle's kept contributions
    contrib_layer = _flat(cell["layer"][contrib["cell"]])
    contrib_type = _flat(part["type"][contrib["particle"]])
    energy = _flat(contrib["energy"])
    photon_e = energy[contrib_type == PHOTON]
    assert photon_e[contrib_layer[contrib_type == PHOTON] == EM_LAYER].sum() / photon_e.sum() > 0.95
    hadron_layers = contrib_layer[contrib_type == CHARGED_HADRON]
    assert (hadron_layers == EM_LAYER).any() and (hadron_layers == HAD_LAYER).any()
    hadron_e = energy[contrib_type == CHARGED_HADRON]
    assert 0.2 < hadron_e[hadron_layers == HAD_LAYER].sum() / hadron_e.sum() < 0.9


def test_cells_lie_on_their_layer_grid(view: dict) -> None:
    geo = CaloGeometry()
    cell = view["cell"]
    layer = _flat(cell["layer"])
    eta, phi, x, y, z = (_flat(cell[k]) for k in ("eta", "phi", "x", "y", "z"))
    for lay, size in ((EM_LAYER, 0.025), (HAD_LAYER, 0.1)):
        sel = layer == lay
        assert sel.any()
        u = eta[sel] / size - 0.5
        np.testing.assert_allclose(u, np.round(u), atol=1e-9)
        v = (phi[sel] + math.pi) / geo.cell_phi(lay) - 0.5
        np.testing.assert_allclose(v, np.round(v), atol=1e-9)
        np.testing.assert_allclose(np.hypot(x[sel], y[sel]), geo.radius(lay), rtol=1e-12)
        np.testing.assert_allclose(z[sel], geo.radius(lay) * np.sinh(eta[sel]), rtol=1e-12)
    assert geo.cell_phi(EM_LAYER) == pytest.approx(0.025, rel=0.01)
    # no duplicated cell in a jet
    jet = np.repeat(np.arange(len(cell["E"])), ak.to_numpy(ak.num(cell["E"], axis=1)))
    cells = np.stack([jet, layer, np.round(eta * 1000), np.round(phi * 1000)], axis=1)
    assert len(np.unique(cells, axis=0)) == len(cells)


def test_geometry_yaml_round_trip_and_unknown_key(tmp_path: pathlib.Path) -> None:
    assert load_geometry(GEOMETRY_YAML) == CaloGeometry()
    geo = CaloGeometry(b_field=2.0, em_cell_eta=0.05, em_window=7)
    assert load_geometry(geo.to_yaml(tmp_path / "g.yaml")) == geo
    (tmp_path / "bad.yaml").write_text("b_field: 3.8\nem_radiuss: 1.5\n")
    with pytest.raises(GeometryError, match="em_radiuss"):
        load_geometry(tmp_path / "bad.yaml")
    with pytest.raises(GeometryError, match="em_window"):
        CaloGeometry.from_dict({"em_window": 4})
    with pytest.raises(GeometryError, match="had_noise"):
        load_geometry({"had_noise": "high"})


def test_runner_output_equals_the_library_called_directly(
    staged: tuple[pathlib.Path, dict], tmp_path: pathlib.Path
) -> None:
    out, manifest = staged
    record = manifest["chunks"][1]
    assert record["file"] == str(SAMPLE) and (record["entry_start"], record["entry_stop"]) == (250, 500)
    events = uproot.open(SAMPLE)["tree"].arrays(entry_start=250, entry_stop=500)
    direct = build_view(events, load_geometry(manifest["geometry"]), chunk_rng(3, str(SAMPLE), 250, 500))
    write_view(tmp_path / "direct.root", direct)
    a = uproot.open(out / record["output"])["tree"].arrays()
    b = uproot.open(tmp_path / "direct.root")["tree"].arrays()
    assert a.fields == b.fields
    for k in a.fields:
        assert ak.array_equal(a[k], b[k], equal_nan=True), k


def test_root_file_has_the_documented_branches(staged: tuple[pathlib.Path, dict]) -> None:
    out, manifest = staged
    record = manifest["chunks"][0]
    tree = uproot.open(out / record["output"])["tree"]
    assert tree.classname.startswith("TTree")
    assert tree.num_entries == record["entry_stop"] - record["entry_start"]
    expected = {b for names in manifest["branches"].values() for b in names}
    assert {
        "contrib_cell",
        "contrib_particle",
        "contrib_energy",
        "part_deposited_energy",
        "part_below_threshold_energy",
        "cell_E",
        "track_calo_phi",
        "event_no",
        "label_Tbqq",
    } <= expected
    assert expected | {"ntrack", "ncell", "ncontrib", "npart"} == set(tree.keys())
    assert set(JET_BRANCHES) <= set(tree.keys())
    arrays = tree.arrays()
    assert ak.all(ak.num(arrays["cell_E"], axis=1) == arrays["ncell"])
    assert int(ak.sum(arrays["ncell"])) == record["cells"]
    assert ak.all(arrays["contrib_cell"] < arrays["ncell"])
    assert ak.all(arrays["contrib_particle"] < arrays["npart"])
    source = uproot.open(SAMPLE)["tree"].arrays(["event_no", "jet_pt"], entry_stop=record["entry_stop"])
    assert ak.array_equal(arrays["event_no"], source["event_no"])
    # float32 file: bookkeeping still closes to float32 precision
    per_jet = ak.sum(arrays["cell_E"] - arrays["cell_noise"], axis=1)
    np.testing.assert_allclose(per_jet, ak.sum(arrays["contrib_energy"], axis=1), rtol=1e-4)
