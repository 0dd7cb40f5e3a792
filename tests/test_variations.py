"""Systematic variations in the evaluation pass: config, perturbations, nominal unchanged, direct
recomputation."""

from __future__ import annotations

import json
import pickle

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot

from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.config.variations_config import (
    ConstituentLayout,
    Variation,
    load_variations,
    parse_variation_option,
)
from hepnn_coffea.evaluation.stages import infer
from hepnn_coffea.evaluation.variations import chunk_rng, vary_constituents
from tests.conftest import SAMPLES

CARTESIAN = ConstituentLayout("pxpypze", "part_")
POLAR = ConstituentLayout("ptetaphim", "PFCand_")


def _test_fileset() -> dict:
    fileset = json.loads((SAMPLES / "fileset.json").read_text())
    fileset = {k: v for k, v in fileset.items() if v["metadata"]["split"] == "test"}
    for v in fileset.values():
        v["files"] = {str(SAMPLES / f): t for f, t in v["files"].items()}
    return fileset


def _columns(path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    return {n: table.column(n).to_numpy(zero_copy_only=False) for n in table.column_names}


# --- config -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "section, message",
    [
        (
            {"define": {"x": {"type": "scal", "factor": 1.0}}},
            "variations.define.x.type: 'scal' .*did you mean 'scale'",
        ),
        ({"define": {"x": {"type": "scale"}}}, r"variations.define.x.factor: missing"),
        (
            {"define": {"x": {"type": "scale", "factor": 1.0, "sigma": 0.1}}},
            r"define.x.sigma: not a parameter",
        ),
        ({"define": {"x": {"type": "scale", "factor": "big"}}}, r"define.x.factor: expected a number"),
        ({"define": {"x": {"type": "drop", "fraction": 1.0}}}, r"define.x.fraction: must be in \[0, 1\)"),
        ({"define": {"x": {"type": "smear", "sigma": 0.1, "particles": "charge"}}}, "did you mean 'charged'"),
        (
            {"define": {"x": {"type": "weight", "expression": "__import__('os')"}}},
            r"define.x.expression: .*not allowed",
        ),
        ({"define": {"nominal": {"type": "scale", "factor": 1.0}}}, "not 'nominal'"),
        ({"seeed": 1}, "variations.seeed: unknown key; did you mean 'seed'"),
        ({"report": {"pt_edges": [600, 500]}}, "variations.report.pt_edges: must increase"),
        ({"constituents": {"kinematics": "xyz"}}, "variations.constituents.kinematics"),
    ],
)
def test_config_errors_name_the_key(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_variations({"variations": section})


@pytest.mark.parametrize("name", ["topqcd", "nanoaod"])
def test_shipped_examples_load(name: str) -> None:
    config = load_variations(SAMPLES.parents[1] / "docs" / "variations" / f"{name}.yaml")
    assert len(config.define) == 7 and config.seed == 1


def test_command_line_variation_and_round_trip() -> None:
    name, spec = parse_variation_option("w:weight:expression=1 + 0.002 * (jet_pt - 600),samples=qcd|top")
    assert (name, spec) == (
        "w",
        {"type": "weight", "expression": "1 + 0.002 * (jet_pt - 600)", "samples": ["qcd", "top"]},
    )
    config = load_variations({"seed": 3, "define": {name: spec, "up": {"type": "scale", "factor": 1.01}}})
    assert config.names == ["nominal", "w", "up"]
    assert load_variations(config.to_dict()) == config


# --- the perturbations --------------------------------------------------------------------------------


def _constituents(seed: int = 0, n_jets: int = 50) -> dict[str, ak.Array]:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 30, n_jets)
    n = counts.sum()
    pt, eta, phi = rng.exponential(10.0, n) + 0.5, rng.normal(0, 1, n), rng.uniform(-np.pi, np.pi, n)
    mass = np.where(rng.random(n) < 0.5, 0.1396, 0.0)
    p = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)])
    energy = np.sqrt((p**2).sum(0) + mass**2)
    charge = rng.choice([-1.0, 0.0, 1.0], n)
    jag = lambda x: ak.unflatten(x.astype(np.float32), counts)  # noqa: E731
    return {
        "part_px": jag(p[0]),
        "part_py": jag(p[1]),
        "part_pz": jag(p[2]),
        "part_energy": jag(energy),
        "part_charge": jag(charge),
        "PFCand_pt": jag(pt),
        "PFCand_eta": jag(eta),
        "PFCand_phi": jag(phi),
        "PFCand_mass": jag(mass),
        "PFCand_charge": jag(charge),
        "jet_pt": np.full(n_jets, 600.0),
    }


def _flat(a: ak.Array) -> np.ndarray:
    return ak.to_numpy(ak.flatten(a)).astype(np.float64)


@pytest.mark.parametrize("layout", [CARTESIAN, POLAR])
def test_scale_one_is_exact_and_scale_acts_on_the_chosen_particles(layout: ConstituentLayout) -> None:
    fields = _constituents()
    rng = np.random.default_rng(0)
    same = vary_constituents(fields, Variation("one", "scale", factor=1.0, particles="charged"), layout, rng)
    for name in layout.momentum:
        assert ak.all(same[name] == fields[name])
    up = vary_constituents(fields, Variation("up", "scale", factor=1.02, particles="neutral"), layout, rng)
    neutral = _flat(fields[layout.charge_branch]) == 0
    scaled = layout.momentum if layout.kinematics == "pxpypze" else (layout.momentum[0], layout.momentum[3])
    for name in layout.momentum:
        ratio = _flat(up[name])[neutral] / np.where(_flat(fields[name]) == 0, 1, _flat(fields[name]))[neutral]
        expected = 1.02 if name in scaled else 1.0
        np.testing.assert_allclose(ratio[_flat(fields[name])[neutral] != 0], expected, rtol=1e-6)
        np.testing.assert_array_equal(_flat(up[name])[~neutral], _flat(fields[name])[~neutral])
    assert up["jet_pt"] is fields["jet_pt"]


def test_smearing_rotates_and_drop_thins_every_constituent_branch() -> None:
    fields = _constituents(1)
    rng = chunk_rng(1, "smear", "file.root", 0, 50)
    smeared = vary_constituents(fields, Variation("smear", "smear", sigma=0.05), CARTESIAN, rng)
    p = lambda f: np.sqrt(sum(_flat(f[k]) ** 2 for k in ("part_px", "part_py", "part_pz")))  # noqa: E731
    np.testing.assert_allclose(p(smeared), p(fields), rtol=1e-5)  # |p| and E kept: a rotation
    np.testing.assert_array_equal(_flat(smeared["part_energy"]), _flat(fields["part_energy"]))
    eta = lambda f: np.arcsinh(_flat(f["part_pz"]) / np.hypot(_flat(f["part_px"]), _flat(f["part_py"])))  # noqa: E731
    assert 0.04 < np.std(eta(smeared) - eta(fields)) < 0.06
    polar = vary_constituents(
        fields, Variation("smear", "smear", sigma=0.05), POLAR, chunk_rng(1, "s", "f", 0, 50)
    )
    cosh = lambda f: _flat(f["PFCand_pt"]) * np.cosh(_flat(f["PFCand_eta"]))  # noqa: E731
    np.testing.assert_allclose(cosh(polar), cosh(fields), rtol=1e-5)
    assert np.all(np.abs(_flat(polar["PFCand_phi"])) <= np.pi)
    drop = Variation("drop", "drop", fraction=0.3, particles="charged")
    thin = vary_constituents(fields, drop, CARTESIAN, chunk_rng(1, "drop", "file.root", 0, 50))
    again = vary_constituents(fields, drop, CARTESIAN, chunk_rng(1, "drop", "file.root", 0, 50))
    other = vary_constituents(fields, drop, CARTESIAN, chunk_rng(1, "drop", "file.root", 50, 100))
    n_charged = (_flat(fields["part_charge"]) != 0).sum()
    lost = len(_flat(fields["part_px"])) - len(_flat(thin["part_px"]))
    assert 0.2 * n_charged < lost < 0.4 * n_charged
    assert (
        _flat(thin["part_charge"]) != 0
    ).sum() == n_charged - lost  # only charged ones, every part_ branch
    assert ak.all(ak.num(thin["part_energy"]) == ak.num(thin["part_charge"]))
    assert ak.all(thin["part_px"] == again["part_px"]) and not ak.all(
        ak.num(other["part_px"]) == ak.num(thin["part_px"])
    )
    assert ak.all(thin["PFCand_pt"] == fields["PFCand_pt"])  # another prefix: untouched


# --- the evaluation pass ------------------------------------------------------------------------------

VARIATIONS = {
    "seed": 5,
    "report": {"background_efficiencies": [0.05, 0.2], "pt_edges": [550, 580, 610, 650]},
    "define": {
        "unity": {"type": "scale", "factor": 1.0, "particles": "charged"},
        "charged_up": {"type": "scale", "factor": 1.05, "particles": "charged"},
        "smear": {"type": "smear", "sigma": 0.02},
        "drop": {"type": "drop", "fraction": 0.1},
        "qcd_pt_weight": {"type": "weight", "expression": "1 + 0.01 * (jet_pt - 600)", "samples": ["qcd"]},
    },
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, onnx_model):
    out = tmp_path_factory.mktemp("variations")
    infer(onnx_model, _test_fileset(), out / "plain", executor="iterative", chunksize=300)
    infer(
        onnx_model,
        _test_fileset(),
        out / "varied",
        executor="iterative",
        chunksize=300,
        variations=VARIATIONS,
    )
    return out


def test_nominal_outputs_are_unchanged(runs) -> None:
    plain, varied = runs / "plain", runs / "varied"
    assert (plain / "scores.parquet").read_bytes() == (varied / "scores.parquet").read_bytes()
    with (plain / "hists.pkl").open("rb") as f, (varied / "hists.pkl").open("rb") as g:
        a, b = pickle.load(f), pickle.load(g)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    with (varied / "hists_variations.pkl").open("rb") as f:
        full = pickle.load(f)
    assert list(full["score"].axes["variation"]) == [
        "nominal",
        "unity",
        "charged_up",
        "smear",
        "drop",
        "qcd_pt_weight",
    ]
    assert full["score"][{"variation": "nominal"}] == a["score"]


def test_unity_scale_and_weight_variation_reuse_the_nominal(runs) -> None:
    nominal = _columns(runs / "varied" / "scores.parquet")
    table = _columns(runs / "varied" / "variations.parquet")
    for name in ("unity", "qcd_pt_weight"):
        rows = {k: v[table["variation"] == name] for k, v in table.items()}
        for key in ("sample", "event_no", "jet_pt", "score_jet_isTop", "score_jet_isQCD"):
            np.testing.assert_array_equal(rows[key], nominal[key])
    rows = {k: v[table["variation"] == "qcd_pt_weight"] for k, v in table.items()}
    qcd = rows["sample"] == "qcd"
    np.testing.assert_allclose(rows["weight"][qcd], 1 + 0.01 * (rows["jet_pt"][qcd] - 600), rtol=1e-6)
    np.testing.assert_array_equal(rows["weight"][~qcd], nominal["weight"][~qcd])
    with (runs / "varied" / "hists_variations.pkl").open("rb") as f:
        h = pickle.load(f)["score"]
    np.testing.assert_array_equal(
        h[{"variation": "unity"}].values(flow=True), h[{"variation": "nominal"}].values(flow=True)
    )
    assert not np.array_equal(h[{"variation": "drop"}].values(), h[{"variation": "nominal"}].values())


def test_shifted_pass_equals_direct_recomputation(runs, onnx_model) -> None:
    from hepnn_coffea import OnnxTagger

    tagger = OnnxTagger(onnx_model)
    table = _columns(runs / "varied" / "variations.parquet")
    rows = {k: v[table["variation"] == "charged_up"] for k, v in table.items()}
    for sample in ("top", "qcd"):
        events = uproot.open(SAMPLES / f"topqcd_test_{sample}.root")["tree"].arrays(
            tagger.columns() + ["part_charge", "event_no"]
        )
        for name in ("part_px", "part_py", "part_pz", "part_energy"):
            events[name] = ak.where(events.part_charge != 0, events[name] * 1.05, events[name])
        direct = tagger(events).score_jet_isTop.to_numpy()
        mine = rows["sample"] == sample
        key_d = np.lexsort((ak.to_numpy(events.jet_pt), ak.to_numpy(events.event_no)))
        key_m = np.lexsort((rows["jet_pt"][mine], rows["event_no"][mine]))
        np.testing.assert_allclose(rows["score_jet_isTop"][mine][key_m], direct[key_d], rtol=1e-5, atol=1e-6)
    nominal = _columns(runs / "varied" / "scores.parquet")
    assert np.abs(rows["score_jet_isTop"] - nominal["score_jet_isTop"]).max() > 1e-4  # the shift is seen


def test_report_table_and_plot(runs) -> None:
    report = json.loads((runs / "varied" / "variations.json").read_text())
    assert report["variations"] == ["unity", "charged_up", "smear", "drop", "qcd_pt_weight"]
    point = report["discriminants"]["jet_isTop"]["working_points"]["eff_b_5%"]
    assert [b["bin"] for b in point["bins"]] == ["all", "550-580", "580-610", "610-650"]
    for b in point["bins"]:
        assert b["shifts"]["unity"]["delta_eff_signal"] == 0.0 and b["shifts"]["unity"]["rel_rejection"] in (
            0.0,
            None,
        )
        iv = b["nominal"]["eff_signal"]
        assert iv["low"] <= iv["value"] <= iv["high"]
    everything = point["bins"][0]
    nominal = _columns(runs / "varied" / "scores.parquet")
    top = nominal["jet_isTop"] == 1
    assert everything["nominal"]["eff_signal"]["value"] == pytest.approx(
        np.mean(nominal["score_jet_isTop"][top] >= point["threshold"])
    )
    assert everything["shifts"]["drop"]["delta_eff_signal"] != 0.0
    text = (runs / "varied" / "variations.md").read_text()
    assert "| all | unity |" in text and "charged_up" in text
    png = runs / "varied" / "plots" / "variations_jet_isTop.png"
    assert png.stat().st_size > 20_000 and png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"


def test_dask_and_runner_give_the_same_variations(runs, onnx_model, tmp_path) -> None:
    config = {"seed": 5, "define": {k: VARIATIONS["define"][k] for k in ("smear", "drop")}}
    infer(onnx_model, _test_fileset(), tmp_path, mode="dask", workers=1, chunksize=300, variations=config)
    a, b = _columns(runs / "varied" / "variations.parquet"), _columns(tmp_path / "variations.parquet")
    for name in ("smear", "drop"):
        ra = {k: v[a["variation"] == name] for k, v in a.items()}
        rb = {k: v[b["variation"] == name] for k, v in b.items()}
        oa = np.lexsort((ra["jet_pt"], ra["event_no"], ra["sample"]))
        ob = np.lexsort((rb["jet_pt"], rb["event_no"], rb["sample"]))
        np.testing.assert_array_equal(ra["score_jet_isTop"][oa], rb["score_jet_isTop"][ob])


def test_cli_variation_options(onnx_model, tmp_path) -> None:
    from hepnn_coffea.cli import main

    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps(_test_fileset()))
    out = tmp_path / "out"
    assert (
        main(
            [
                "infer",
                str(onnx_model),
                "--fileset",
                str(fileset),
                "-o",
                str(out),
                "--executor",
                "iterative",
                "--variation",
                "up:scale:factor=1.02",
                "--variation-seed",
                "2",
            ]
        )
        == 0
    )
    assert json.loads((out / "counts.json").read_text())["variations"]["seed"] == 2
    assert main(["variations", str(out), "--background-efficiency", "0.1", "--no-plots"]) == 0
    assert list(
        json.loads((out / "variations.json").read_text())["discriminants"]["jet_isTop"]["working_points"]
    ) == ["eff_b_10%"]
    assert (
        main(
            [
                "infer",
                str(onnx_model),
                "--fileset",
                str(fileset),
                "-o",
                str(out),
                "--executor",
                "iterative",
                "--variation",
                "up:scale:factr=1.02",
            ]
        )
        == 2
    )
