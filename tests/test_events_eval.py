"""Event-level tagger evaluation: weighted AUC/rejection/JSD with intervals, hists, GBT baseline, the
stage (the synthetic tables: ``tests/helpers/events_tables.py``)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import beta, binomtest
from sklearn.metrics import roc_auc_score

from hepnn_coffea.evaluation import intervals as iv
from hepnn_coffea.evaluation import sculpting as sc
from hepnn_coffea.evaluation.events_eval import evaluate_events, fill_event_hists, make_event_hists
from hepnn_coffea.evaluation.observable_gbt import (
    observable_features,
    score_observable_gbt,
    train_observable_gbt,
)
from tests.helpers.events_tables import CLASSES, make_table, signal_rows, write_infer, write_shards


@pytest.fixture(scope="module")
def table() -> dict[str, np.ndarray]:
    return make_table()


# --- statistics ----------------------------------------------------------------------------------


def test_kish_n_eff() -> None:
    assert iv.kish_n_eff(np.ones(250)) == pytest.approx(250)
    assert iv.kish_n_eff(np.array([1.0, 1000.0])) == pytest.approx(1001.0**2 / (1.0 + 1e6))
    w = np.random.default_rng(3).exponential(1.0, 1000)
    assert iv.kish_n_eff(3.7 * w) == pytest.approx(w.sum() ** 2 / (w**2).sum())


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (17, 400), (399, 400)])
def test_clopper_pearson_matches_scipy(k: int, n: int) -> None:
    low, high = iv.clopper_pearson(k, n)
    tail = (1 - 0.682689492137086) / 2
    assert low == pytest.approx(beta.ppf(tail, k, n - k + 1) if k > 0 else 0.0, abs=1e-12)
    assert high == pytest.approx(beta.ppf(1 - tail, k + 1, n - k) if k < n else 1.0, abs=1e-12)
    exact = binomtest(k, n).proportion_ci(confidence_level=0.682689492137086, method="exact")
    assert (low, high) == pytest.approx((exact.low, exact.high), abs=1e-9)


def test_jensen_shannon_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    p, q = rng.exponential(1.0, 40), rng.exponential(1.0, 40)
    p[5] = 0.0
    assert sc.jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2, rel=1e-10)
    assert sc.jensen_shannon(p, p) == pytest.approx(0.0, abs=1e-15)
    assert sc.jensen_shannon([1.0, 0.0], [0.0, 3.0]) == pytest.approx(1.0)


# --- metrics on the synthetic table ----------------------------------------------------------------


@pytest.mark.parametrize("signal", ["top", "W"])
def test_weighted_auc_matches_sklearn(table, signal: str) -> None:
    disc, is_signal, weight = signal_rows(table, signal)
    expected = roc_auc_score(is_signal, disc, sample_weight=weight)
    assert sc.weighted_auc(disc, is_signal, weight) == pytest.approx(expected, abs=1e-6)
    assert sc.tagger_metrics(table, signal, n_bootstrap=20)["auc"]["value"] == pytest.approx(
        expected, abs=1e-6
    )


@pytest.mark.parametrize("efficiency", [0.3, 0.5])
def test_rejection_matches_weighted_quantile(table, efficiency: float) -> None:
    disc, is_signal, weight = signal_rows(table, "top")
    s, ws = disc[is_signal], weight[is_signal]
    order = np.argsort(s)
    fraction_above = 1.0 - np.cumsum(ws[order]) / ws.sum()  # weight fraction strictly above each sorted score
    threshold = np.interp(efficiency, fraction_above[::-1], s[order][::-1])
    b, wb = disc[~is_signal], weight[~is_signal]
    expected = wb.sum() / wb[b >= threshold].sum()
    metrics = sc.tagger_metrics(table, "top", n_bootstrap=2)
    rejection = metrics[f"rejection_at_{round(efficiency * 100)}"]
    assert rejection["value"] == pytest.approx(expected, rel=2e-3)
    assert metrics["working_points"][f"eff_s_{round(efficiency * 100)}%"]["eff_signal"] == pytest.approx(
        efficiency, abs=1e-3
    )
    n_eff = iv.kish_n_eff(wb)
    low, high = beta.ppf(
        [0.158655, 0.841345],
        [n_eff / expected, n_eff / expected + 1],
        [n_eff - n_eff / expected + 1, n_eff - n_eff / expected],
    )
    assert (rejection["low"], rejection["high"]) == pytest.approx((1 / high, 1 / low), rel=5e-3)


def test_unmatched_jets_are_left_out(table) -> None:
    matched = {k: v[table["label"] != "unmatched"] for k, v in table.items()}
    assert (table["label"] == "unmatched").sum() > 1000
    for signal in ("top", "W"):
        full = sc.tagger_metrics(table, signal, n_bootstrap=10)
        assert full == sc.tagger_metrics(matched, signal, n_bootstrap=10)
        assert full["n_signal"] == (table["label"] == signal).sum()
    # had the (top-like) unmatched jets counted as background, the (unweighted) AUC would drop
    unit = {**table, "weight": np.ones_like(table["weight"])}
    tagged = {**unit, "label": np.where(table["label"] == "unmatched", "QCD", table["label"])}
    auc = sc.tagger_metrics(unit, "top", n_bootstrap=2)["auc"]["value"]
    assert sc.tagger_metrics(tagged, "top", n_bootstrap=2)["auc"]["value"] < auc - 0.01


def test_intervals_contain_the_value_and_shrink_with_more_events(table) -> None:
    small = {k: v[::10] for k, v in table.items()}
    wide, narrow = sc.tagger_metrics(small, "top"), sc.tagger_metrics(table, "top")
    for key in ("auc", "rejection_at_50", "rejection_at_30"):
        for m in (wide, narrow):
            assert m[key]["low"] < m[key]["value"] < m[key]["high"], (key, m[key])
        assert narrow[key]["high"] - narrow[key]["low"] < 0.6 * (wide[key]["high"] - wide[key]["low"]), key
    jsd_wide, jsd_narrow = (
        wide["working_points"]["eff_s_50%"]["jsd"],
        narrow["working_points"]["eff_s_50%"]["jsd"],
    )
    assert jsd_narrow["high"] - jsd_narrow["low"] < 0.6 * (jsd_wide["high"] - jsd_wide["low"])
    assert narrow["n_eff_background"] == pytest.approx(
        iv.kish_n_eff(table["weight"][table["label"] == "QCD"])
    )


def test_jsd_matches_direct_computation_and_flags_sculpting(table) -> None:
    qcd = table["label"] == "QCD"
    disc, is_signal, weight = signal_rows(table, "top")
    metrics = sc.tagger_metrics(table, "top", n_bootstrap=20)
    wp = metrics["working_points"]["eff_s_50%"]
    passing = disc[~is_signal] >= wp["threshold"]
    mass, w = table["FatJet_msoftdrop"][qcd], weight[~is_signal]
    inside = mass < 300.0
    p, _ = np.histogram(mass[passing & inside], np.linspace(0, 300, 41), weights=w[passing & inside])
    q, _ = np.histogram(mass[~passing & inside], np.linspace(0, 300, 41), weights=w[~passing & inside])
    expected = jensenshannon(p, q, base=2) ** 2
    assert wp["jsd"]["value"] == pytest.approx(expected, rel=1e-6)
    assert metrics["inv_jsd_at_50"]["value"] == pytest.approx(1 / expected, rel=1e-6)
    assert metrics["inv_jsd_at_50"]["value"] > 50  # scores independent of the mass
    sculpting = sc.tagger_metrics(make_table(mass_dependent=True), "top", n_bootstrap=20)
    assert 1.0 <= sculpting["inv_jsd_at_50"]["value"] < 3.0
    # random cuts with the same pass fraction: the statistical limit of a decorrelated tagger;
    # the mass-independent score reaches it within a factor 3, the sculpting one stays far below
    floor = wp["inv_jsd_random_cut"]
    assert floor / 3 < metrics["inv_jsd_at_50"]["value"] < 3 * floor
    assert (
        sculpting["working_points"]["eff_s_50%"]["inv_jsd_random_cut"]
        > 10 * sculpting["inv_jsd_at_50"]["value"]
    )


# --- hists ------------------------------------------------------------------------------------------


def cell(h) -> np.ndarray:
    """Values and variances (with flow) of a hist slice, or of a single weighted sum."""
    if hasattr(h, "values"):
        return np.stack([h.values(flow=True), h.variances(flow=True)])
    return np.array([h.value, h.variance])


def test_hists_filled_in_chunks_add_up_to_one_fill(table) -> None:
    order = np.random.default_rng(5).permutation(
        len(table["weight"])
    )  # chunks see categories in other orders
    shuffled = {k: v[order] for k, v in table.items()}
    once = fill_event_hists(make_event_hists(CLASSES), table)
    parts = [
        fill_event_hists(make_event_hists(CLASSES), {k: v[s] for k, v in shuffled.items()})
        for s in (slice(0, 1000), slice(1000, None))
    ]
    summed = {k: parts[0][k] + parts[1][k] for k in once}
    assert set(once) == {"yields", "disc_top_msoftdrop", "disc_top_pt", "disc_W_msoftdrop", "disc_W_pt"}
    for name, h in once.items():
        assert [ax.name for ax in h.axes][:2] == ["process", "label"]
        assert set(h.axes["process"]) == set(summed[name].axes["process"]) == {"ttbar", "wqq", "qcd"}
        for process in h.axes["process"]:
            for label in h.axes["label"]:
                a, b = (cell(x[{"process": process, "label": label}]) for x in (h, summed[name]))
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    assert once["yields"].sum().value == pytest.approx(table["weight"].sum())
    top = once["disc_top_msoftdrop"][{"process": "ttbar", "label": "top"}].project("disc_top")
    assert top.sum(flow=False).value == pytest.approx(
        top.sum(flow=True).value
    )  # discriminants of 1 stay in range


# --- the GBT baseline and the stage -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> pathlib.Path:
    return write_shards(tmp_path_factory.mktemp("events_shards"))


def test_observable_features_guard_zero_denominators(table) -> None:
    x = observable_features(table)
    assert x.shape == (len(table["weight"]), 6) and np.isfinite(x).all()
    assert (x[table["FatJet_tau1"] == 0, 3] == 0).all()


def test_observable_gbt_separates_synthetic_classes(shards, table) -> None:
    model = train_observable_gbt(shards, seed=0)
    assert model.hepnn_classes == CLASSES
    scored = {**table, **score_observable_gbt(model, table)}
    for signal in ("top", "W"):
        assert sc.tagger_metrics(scored, signal, n_bootstrap=2)["auc"]["value"] > 0.9


def test_evaluate_events_writes_summary_and_plots(tmp_path, shards) -> None:
    from hepnn_coffea.evaluation.stages import evaluate

    small = make_table(n=4000)
    out = write_infer(tmp_path / "out", small, "tagger")
    other = write_infer(tmp_path / "other", make_table(seed=2, n=4000, mass_dependent=True), "sculpting")
    summary = evaluate_events(out, shards=shards, compare=[f"mass-dependent={other}"], reference="GBT")
    assert list(summary["taggers"]) == ["tagger", "GBT", "mass-dependent"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["taggers"]["tagger"]["top"]["auc"] == summary["taggers"]["tagger"]["top"]["auc"]
    for row in saved["taggers"].values():
        for signal in ("top", "W"):
            for key in ("auc", "rejection_at_50", "rejection_at_30", "inv_jsd_at_50"):
                assert set(row[signal][key]) == {"value", "low", "high"}
    assert set(saved["relative_to_reference"]) == {"tagger", "mass-dependent"}
    assert saved["yields"]["qcd"]["QCD"]["sum_w"] == pytest.approx(
        small["weight"][small["label"] == "QCD"].sum()
    )
    markdown = (out / "summary.md").read_text()
    assert "| tagger |" in markdown and "| GBT |" in markdown and "| mass-dependent |" in markdown
    names = [
        f"{kind}_{s}"
        for s in ("top", "W")
        for kind in (
            "roc",
            "efficiency_vs_pt",
            "efficiency_vs_msoftdrop",
            "msoftdrop_qcd",
            "discriminant",
            "rejection_vs_jsd",
        )
    ]
    assert sorted(pathlib.Path(p).stem for p in saved["plots"]) == sorted(names)
    for name in names:
        assert (out / "plots" / f"{name}.png").stat().st_size > 5000
        assert (out / "plots" / f"{name}.pdf").is_file()
    # the generic stage dispatches on counts.json's workflow
    again = evaluate(out, plots=False)
    assert again["taggers"]["tagger"]["top"]["auc"] == summary["taggers"]["tagger"]["top"]["auc"]


def _figure_texts(fig) -> set[str]:
    """Every text of a figure: labels written by mplhep, titles, legend titles."""
    return {t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))} - {""}


def test_event_plots_take_the_style_and_the_reference_ratio_panel(tmp_path, monkeypatch) -> None:
    """``style`` reaches every event-level figure; ``reference`` adds the flat-jet ROC's ratio panel."""
    import matplotlib.pyplot as plt

    from hepnn_coffea.plotting import events_plots, tagger_plots
    from hepnn_coffea.plotting.style import PlotStyle

    figures = {}

    def keep(fig, path):  # instead of writing and closing: the test reads the figures
        figures[path.stem] = fig
        return path

    monkeypatch.setattr(events_plots, "_save", keep)
    monkeypatch.setattr(tagger_plots, "_save", keep)
    out = write_infer(tmp_path / "out", make_table(n=3000), "tagger")
    other = write_infer(tmp_path / "other", make_table(seed=2, n=3000, mass_dependent=True), "sculpting")
    try:
        evaluate_events(
            out,
            compare=[f"md={other}"],
            reference="md",
            n_bootstrap=5,
            style=PlotStyle("CMS", "Simulation Preliminary", 13.6, 140),
        )
        assert len(figures) == 12
        for name, fig in figures.items():
            assert {"CMS", "Simulation Preliminary", "140 fb$^{-1}$ (13.6 TeV)"} <= _figure_texts(fig), name
        roc = figures["roc_top"]
        assert len(roc.axes) == 2 and roc.axes[1].get_ylabel() == "Ratio to ref."
        tagger, reference, unity = roc.axes[1].get_lines()  # ratios to md: md itself is 1 everywhere
        np.testing.assert_allclose(reference.get_ydata(), 1.0)
        assert np.ptp(tagger.get_ydata()) > 0.1 and list(unity.get_ydata()) == [1.0, 1.0]
        assert any("(reference)" in t for t in _figure_texts(roc))
        assert "top vs QCD, $\\epsilon_{top}$ = 50%" in _figure_texts(figures["rejection_vs_jsd_top"])
        plt.close("all")
        figures.clear()
        evaluate_events(
            out, compare=[f"md={other}"], n_bootstrap=5
        )  # the default look: no experiment, one panel
        for name, fig in figures.items():
            assert "CMS" not in _figure_texts(fig) and "Simulation" in _figure_texts(fig), name
        roc = figures["roc_top"].axes
        assert len(roc) == 1 and (roc[0].get_title(loc="left"), roc[0].get_title(loc="right")) == (
            "Simulation",
            "top vs QCD",
        )
    finally:
        plt.close("all")
