"""Intervals of the evaluation numbers: toy coverage studies, Clopper-Pearson with Kish n_eff, comparisons.

Integer Clopper-Pearson cases against ``scipy.stats.binomtest`` and the basic Kish identities are
in ``tests/test_events_eval.py``; here: real-valued (Kish) counts, arrays, and whether the
quoted 68% intervals cover the truth at the nominal rate in seeded toy studies (bootstrap AUC, and
the generic bootstrap interval of the regression / per-point metrics).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta, norm

from hepnn_coffea.evaluation import classifier_metrics as cm
from hepnn_coffea.evaluation import intervals as iv
from hepnn_coffea.evaluation import sculpting as sc

ONE_SIGMA = iv.ONE_SIGMA


def gaussian_toy(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` signal scores ~ N(shift, 1) and ``n`` background ~ N(0, 1): true AUC = Phi(shift / sqrt 2)."""
    score = np.concatenate([rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, n)])
    return score, np.arange(2 * n) < n


def coverage_tolerance(n_toys: int) -> float:
    """Three binomial standard deviations of a coverage measured with ``n_toys`` toys."""
    return 3 * np.sqrt(ONE_SIGMA * (1 - ONE_SIGMA) / n_toys)


@pytest.mark.parametrize("weighted", [False, True])
def test_bootstrap_auc_interval_covers_the_true_auc_at_the_nominal_rate(weighted: bool) -> None:
    """200 seeded toys of 2 x 300 jets: the 68% bootstrap interval holds the true AUC in 68 +- 10% of them."""
    shift, n, n_toys = 1.2, 300, 200
    truth = norm.cdf(shift / np.sqrt(2))
    rng = np.random.default_rng(2024)
    covered, widths = 0, []
    for toy in range(n_toys):
        score, is_signal = gaussian_toy(rng, n, shift)
        # weights independent of the score (as cross sections): the weighted AUC estimates the same truth
        weight = rng.uniform(0.2, 3.0, 2 * n) if weighted else np.ones(2 * n)
        auc = sc.auc_interval(score, is_signal, weight, n_bootstrap=60, seed=toy)
        covered += auc["low"] <= truth <= auc["high"]
        widths.append(auc["high"] - auc["low"])
    coverage = covered / n_toys
    assert abs(coverage - ONE_SIGMA) < coverage_tolerance(n_toys), coverage
    # the width is twice the statistical error of the AUC (Hanley-McNeil 1982: 0.018 for these toys)
    q1, q2 = truth / (2 - truth), 2 * truth**2 / (1 + truth)
    hanley_mcneil = np.sqrt((truth * (1 - truth) + (n - 1) * (q1 - truth**2 + q2 - truth**2)) / n**2)
    assert np.mean(widths) == pytest.approx(2 * hanley_mcneil, rel=0.15)


def test_too_narrow_an_interval_fails_the_coverage_check() -> None:
    """The coverage check has power: half the bootstrap spread covers far less than 68%."""
    shift, n, n_toys = 1.2, 300, 100
    truth = norm.cdf(shift / np.sqrt(2))
    rng = np.random.default_rng(7)
    covered = 0
    for toy in range(n_toys):
        score, is_signal = gaussian_toy(rng, n, shift)
        auc = sc.auc_interval(score, is_signal, np.ones(2 * n), n_bootstrap=60, seed=toy)
        half = 0.5 * (auc["high"] - auc["value"])
        covered += abs(auc["value"] - truth) <= half
    assert covered / n_toys < ONE_SIGMA - coverage_tolerance(n_toys)


def test_clopper_pearson_with_real_valued_counts_and_arrays() -> None:
    k, n = np.array([0.0, 2.5, 37.2, 80.0]), np.array([10.0, 10.0, 80.0, 80.0])
    low, high = iv.clopper_pearson(k, n)
    tail = (1 - ONE_SIGMA) / 2
    np.testing.assert_allclose(low[1:], beta.ppf(tail, k[1:], n[1:] - k[1:] + 1), rtol=1e-12)
    np.testing.assert_allclose(high[:3], beta.ppf(1 - tail, k[:3] + 1, n[:3] - k[:3]), rtol=1e-12)
    assert low[0] == 0.0 and high[3] == 1.0
    assert np.all(np.isnan(iv.clopper_pearson(np.array([0.0]), np.array([0.0]))))


def test_weighted_efficiency_uses_the_kish_effective_count() -> None:
    rng = np.random.default_rng(1)
    w = rng.exponential(1.0, 400)
    passed = rng.random(400) < 0.2
    n_eff = iv.kish_n_eff(w)
    assert n_eff < 400  # unequal weights: fewer effective entries
    eff = iv.efficiency_interval(w[passed].sum(), w.sum(), n_eff)
    low, high = iv.clopper_pearson(eff["value"] * n_eff, n_eff)
    assert (eff["low"], eff["high"]) == pytest.approx((float(low), float(high)))
    # a common scale of the weights changes nothing; unit weights give the plain binomial interval
    scaled = iv.efficiency_interval(7 * w[passed].sum(), 7 * w.sum(), iv.kish_n_eff(7 * w))
    assert scaled == pytest.approx(eff)
    plain = iv.efficiency_interval(float(passed.sum()), 400.0, iv.kish_n_eff(np.ones(400)))
    assert (plain["low"], plain["high"]) == pytest.approx(
        tuple(map(float, iv.clopper_pearson(passed.sum(), 400)))
    )


def test_weighted_efficiency_interval_covers_at_least_the_nominal_rate() -> None:
    """Clopper-Pearson with Kish n_eff on weighted toys: conservative (>= 68%), not wildly so."""
    rng = np.random.default_rng(11)
    true_eff, n, n_toys = 0.1, 300, 300
    covered = 0
    for _ in range(n_toys):
        w = rng.exponential(1.0, n)  # weights independent of passing: the weighted efficiency is true_eff
        passed = rng.random(n) < true_eff
        eff = iv.efficiency_interval(w[passed].sum(), w.sum(), iv.kish_n_eff(w))
        covered += eff["low"] <= true_eff <= eff["high"]
    coverage = covered / n_toys
    assert ONE_SIGMA - coverage_tolerance(n_toys) < coverage < 0.9, coverage


def test_rejection_interval_inverts_the_efficiency_bounds() -> None:
    eff = iv.efficiency_interval(5.0, 500.0, 500.0)
    rej = iv.rejection_interval(eff)
    assert rej["value"] == pytest.approx(100.0)
    assert rej["low"] == pytest.approx(1 / eff["high"]) and rej["high"] == pytest.approx(1 / eff["low"])
    none_pass = iv.rejection_interval(iv.efficiency_interval(0.0, 500.0, 500.0))
    assert none_pass["value"] is None and none_pass["high"] is None and none_pass["low"] > 100
    assert iv.format_interval(none_pass).startswith("> ")


def test_paired_comparison_is_narrower_than_the_two_intervals() -> None:
    rng = np.random.default_rng(5)
    score, is_signal = gaussian_toy(rng, 500, 1.2)
    better = score + np.where(is_signal, 0.3, 0.0) + rng.normal(0, 0.2, len(score))  # correlated, better
    w = np.ones(len(score))
    same = cm.paired_comparison(score, score, is_signal, w, n_bootstrap=30)
    assert same["auc_difference"]["value"] == 0 and same["auc_difference"]["high"] == pytest.approx(0.0)
    assert same["rejection_ratio_at_50"]["value"] == pytest.approx(1.0)
    cmp = cm.paired_comparison(better, score, is_signal, w, n_bootstrap=60)
    a, b = (sc.auc_interval(s, is_signal, w, n_bootstrap=60) for s in (better, score))
    paired_error = cmp["auc_difference"]["high"] - cmp["auc_difference"]["value"]
    assert cmp["auc_difference"]["value"] == pytest.approx(a["value"] - b["value"])
    assert paired_error < 0.7 * np.hypot(a["high"] - a["value"], b["high"] - b["value"])
    assert cmp["auc_significance"] > 3 and cmp["rejection_ratio_at_50"]["value"] > 1


def test_align_rows_matches_permuted_tables_and_refuses_ambiguity() -> None:
    rng = np.random.default_rng(0)
    ref = {"event_no": np.arange(50), "jet_pt": rng.normal(600, 20, 50), "sample": np.array(["a", "b"] * 25)}
    perm = rng.permutation(50)
    other = {k: v[perm] for k, v in ref.items()}
    index = cm.align_rows(ref, other, ["sample", "event_no", "jet_pt"])
    np.testing.assert_array_equal(other["jet_pt"][index], ref["jet_pt"])
    assert cm.align_rows(ref, other, ["missing"]) is None
    other["event_no"] = other["event_no"].copy()
    other["event_no"][0] += 1000  # a different jet
    assert cm.align_rows(ref, other, ["event_no"]) is None
    dup = {"event_no": np.zeros(50, dtype=int)}
    assert cm.align_rows(dup, dup, ["event_no"]) is None


def test_hist_and_table_metrics_agree_within_their_intervals() -> None:
    """Weighted toy jets filled into the evaluation ``score`` hist: the binned numbers agree with the exact
    ones."""
    from hepnn_coffea.evaluation.processor import make_histograms

    rng = np.random.default_rng(9)
    n = 3000
    raw, is_signal = gaussian_toy(rng, n, 2.0)
    score = 1 / (1 + np.exp(-raw + 1.0))  # in (0, 1), as a softmax output
    score[:300] = 1.0  # saturated scores (10% of the signal) land in the overflow bin: they must still count
    weight = np.where(is_signal, 1.0, rng.choice([0.5, 2.0, 8.0], 2 * n))
    hists = make_histograms(["sig", "bkg"], (10, 0, 300), (10, 0, 1000), "m", "pt")
    truth = np.where(is_signal, "sig", "bkg")
    for output, s in (("sig", score), ("bkg", 1 - score)):
        hists["score"].fill(process="toy", truth=truth, output=output, score=s, weight=weight)
    table = cm.table_metrics(score, is_signal, weight, (score >= 0.5) == is_signal, n_bootstrap=50)
    binned = cm.hist_metrics(hists["score"], ["sig", "bkg"], n_bootstrap=50)
    for key in ("auc", "accuracy", "rejection_at_30", "rejection_at_50"):
        t, h = table[key], binned[key]
        half_width = 0.5 * (t["high"] - t["low"])
        assert abs(t["value"] - h["value"]) < half_width, key
        assert h["low"] <= h["value"] <= h["high"], key
    assert table["n_eff_background"] == pytest.approx(binned["n_eff_background"])
    # the bin-level Poisson replicas estimate the same spread as the jet-level bootstrap
    spreads = [m["auc"]["high"] - m["auc"]["value"] for m in (table, binned)]
    assert spreads[1] == pytest.approx(spreads[0], rel=0.35)


def half_iqr68(x: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Half the 16-84% interquantile range (weighted: of the weighted empirical distribution)."""
    if weight is None:
        q16, q84 = np.quantile(x, [0.16, 0.84])
    else:  # inverted CDF (numpy >= 2 only has np.quantile(weights=...))
        order = np.argsort(x)
        cdf = np.cumsum(weight[order]) / weight.sum()
        q16, q84 = x[order][np.minimum(np.searchsorted(cdf, [0.16, 0.84]), len(x) - 1)]
    return float(q84 - q16) / 2


@pytest.mark.parametrize("weighted", [False, True])
def test_bootstrap_interval_covers_the_true_resolution_at_the_nominal_rate(weighted: bool) -> None:
    """200 seeded toys of 400 Gaussian residuals: the interval holds the true 68%/2 width in 68 +- 10% of
    them."""
    sigma, n, n_toys = 0.1, 400, 200
    truth = sigma * norm.ppf(0.84)  # half the 16-84% range of N(0, sigma)
    rng = np.random.default_rng(11)
    covered, widths = 0, []
    for toy in range(n_toys):
        x = rng.normal(0.0, sigma, n)
        weight = rng.uniform(0.2, 3.0, n) if weighted else None
        res = iv.bootstrap_interval(half_iqr68, [x], weight, n=60, seed=toy)
        covered += res["low"] <= truth <= res["high"]
        widths.append(res["high"] - res["low"])
    coverage = covered / n_toys
    assert abs(coverage - ONE_SIGMA) < coverage_tolerance(n_toys), coverage
    # asymptotic error of the half-IQR (quantile covariances p (1 - p') / (n f f')):
    # sqrt(0.16 * 0.68 / (2 n)) / f
    expected = sigma * np.sqrt(0.16 * 0.68 / 2) / norm.pdf(norm.ppf(0.84)) / np.sqrt(n)
    n_eff = (
        n if not weighted else n * 1.6**2 / (1.6**2 + 2.8**2 / 12)
    )  # Kish: n (E w)^2 / E w^2, w ~ U(0.2, 3)
    assert np.mean(widths) == pytest.approx(2 * expected * np.sqrt(n / n_eff), rel=0.15)


def test_bootstrap_interval_of_a_mean_is_seeded_and_carries_the_weights() -> None:
    """The interval of a mean matches sigma/sqrt(n); weights travel with their entries; mappings give one
    per key."""
    rng = np.random.default_rng(5)
    x = rng.normal(3.0, 2.0, 2000)
    plain = iv.bootstrap_interval(np.mean, [x], n=200, seed=1)
    assert plain == iv.bootstrap_interval(np.mean, [x], n=200, seed=1)
    assert plain != iv.bootstrap_interval(np.mean, [x], n=200, seed=2)
    assert plain["value"] == pytest.approx(x.mean())
    assert 0.5 * (plain["high"] - plain["low"]) == pytest.approx(x.std() / np.sqrt(len(x)), rel=0.2)
    # half the entries weigh 0: the weighted mean and its spread are those of the other half
    weight = np.where(np.arange(len(x)) % 2 == 0, 1.0, 0.0)
    both = iv.bootstrap_interval(
        lambda a, w: {"mean": np.average(a, weights=w), "nan": np.nan}, [x], weight, n=200, seed=1
    )
    half = x[::2]
    assert both["mean"]["value"] == pytest.approx(half.mean())
    assert 0.5 * (both["mean"]["high"] - both["mean"]["low"]) == pytest.approx(
        half.std() / np.sqrt(len(half)), rel=0.2
    )
    assert both["nan"] == {"value": None, "low": None, "high": None}
    assert iv.bootstrap_interval(np.mean, [x], n=1) == iv.interval(x.mean(), x.mean(), x.mean())
    with pytest.raises(ValueError, match="different lengths"):
        iv.bootstrap_interval(np.average, [x], weight[:10])
    assert iv.format_interval(iv.interval(1.5, np.nan, np.nan)) == "1.5 (no interval)"
    # a statistic that cannot be negative: with floor=0 its lower bound stops at 0, the upper one stays
    symmetric = np.concatenate([x[:50], -x[:50]])  # mean exactly 0
    free, floored = (
        iv.bootstrap_interval(lambda a: abs(a.mean()), [symmetric], n=100, seed=3, floor=f)
        for f in (None, 0.0)
    )
    assert free["low"] < 0 and floored["low"] == 0.0 and floored["high"] == free["high"] > 0
    named = iv.bootstrap_interval(
        lambda a: {"width": abs(a.mean()), "mean": a.mean()}, [symmetric], n=100, seed=3, floor={"width": 0.0}
    )
    assert named["width"]["low"] == 0.0 and named["mean"]["low"] < 0
