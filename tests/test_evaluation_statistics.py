"""nnunetv2_morse.evaluation.statistics on samples with known answers and against independent numpy computations."""
import itertools

import numpy as np
import pytest

import scipy.stats

from nnunetv2_morse.evaluation.statistics import (EXACT_SIGNED_RANK_LIMIT, MIN_UNITS_FOR_INTERVAL, adjusted_p_values,
                                                  mean_confidence_interval, paired_difference, paired_statistics,
                                                  ranks_oppose, unit_sums, wilcoxon_p_value)


def benjamini_hochberg(p_values):
    """Benjamini-Hochberg adjusted p-values, written out: p_(i) m / i, made monotone from the largest down."""
    p_values = np.asarray(p_values, dtype=float)
    order = np.argsort(p_values)
    scaled = p_values[order] * len(p_values) / np.arange(1, len(p_values) + 1)
    monotone = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty_like(p_values)
    adjusted[order] = np.minimum(monotone, 1.0)
    return adjusted


def test_adjusted_p_values_are_benjamini_hochberg():
    p_values = [0.001, 0.2, 0.04, 0.03, 0.9, 0.012, 1.0, 0.049]
    assert adjusted_p_values(p_values) == pytest.approx(benjamini_hochberg(p_values))
    assert adjusted_p_values([0.01, 0.02]) == pytest.approx([0.02, 0.02])
    assert adjusted_p_values([]) == []


def signed_rank_p_by_enumeration(differences):
    """Two-sided signed-rank p, written out: zeros dropped, mean ranks for ties, every one of the 2^k sign
    assignments of the ranks counted whose positive rank sum lies at least as far from its mean as the observed."""
    nonzero = differences[differences != 0]
    ranks = scipy.stats.rankdata(np.abs(nonzero))
    observed = abs(ranks[nonzero > 0].sum() - ranks.sum() / 2)
    sums = np.array([ranks[np.array(signs, bool)].sum() for signs in itertools.product((0, 1), repeat=ranks.size)])
    return np.mean(np.abs(sums - ranks.sum() / 2) >= observed - 1e-9)


def test_the_signed_rank_p_is_exact_with_zero_and_tied_differences():
    """scipy.stats.wilcoxon switches to its normal approximation as soon as one difference is zero or two tie; head-off
    scoring gives many zeros and HD95 on a voxel grid many ties."""
    one_of_twenty = np.array([0.0] * 19 + [0.3])  # scipy: 0.317; the exact p of one non-zero difference is 1
    assert wilcoxon_p_value(one_of_twenty)[0] == 1.0
    rng = np.random.default_rng(8)
    continuous = rng.normal(0.4, 1.0, 12)
    with_zeros = np.concatenate([continuous, np.zeros(5)])
    assert wilcoxon_p_value(with_zeros)[0] == pytest.approx(scipy.stats.wilcoxon(continuous, method="exact").pvalue)
    tied = np.concatenate([np.round(rng.normal(0.5, 1.0, 11), 1), [0.0, 0.0]])
    assert len(np.unique(np.abs(tied[tied != 0]))) < 11
    assert wilcoxon_p_value(tied)[0] == pytest.approx(signed_rank_p_by_enumeration(tied))
    same_sign = np.array([0.1, 0.2, 0.2, 0.3, 0.4, 0.0])  # the most extreme of 2^5 assignments, either side
    assert wilcoxon_p_value(same_sign) == (pytest.approx(2 / 32), "only 5 non-zero paired difference(s): exact p >= "
                                                                   "0.0625, p < 0.05 unattainable")
    many = np.concatenate([rng.normal(0.1, 1.0, EXACT_SIGNED_RANK_LIMIT + 1), np.zeros(3)])
    assert wilcoxon_p_value(many)[0] == pytest.approx(scipy.stats.wilcoxon(many[many != 0], method="approx").pvalue)


def test_interval_of_the_mean_difference():
    differences = np.random.default_rng(3).normal(0.05, 0.1, 30)
    low, high, method = mean_confidence_interval(differences)
    assert low < differences.mean() < high and method == "BCa"
    assert mean_confidence_interval(differences) == (low, high, method)  # fixed seed: the same cases, the same interval
    # an independent percentile bootstrap (numpy, many resamples) agrees with the BCa interval to a fraction of it
    rng = np.random.default_rng(7)
    means = differences[rng.integers(0, differences.size, (40000, differences.size))].mean(axis=1)
    percentile = np.percentile(means, [2.5, 97.5])
    assert np.abs(np.array([low, high]) - percentile).max() < 0.15 * (high - low)
    # the half-width of a 95% interval of a mean is about 1.96 standard errors
    standard_error = differences.std(ddof=1) / np.sqrt(differences.size)
    assert (high - low) / 2 == pytest.approx(1.96 * standard_error, rel=0.15)


def test_degenerate_samples():
    assert np.isnan(mean_confidence_interval(np.array([0.3]))[:2]).all()
    assert mean_confidence_interval(np.array([0.3]))[2] == "none"
    assert mean_confidence_interval(np.full(10, 0.25)) == (0.25, 0.25, "equal")
    single = paired_statistics(np.array([0.5]), np.array([0.75]))
    assert single["mean_difference_ci"] == [None, None] and single["n"] == 1
    assert single["mean_difference_ci_method"] == "none"
    same = paired_statistics(np.full(10, 0.5), np.full(10, 0.5))
    assert same["p_value"] == 1.0 and same["mean_difference_ci"] == [0.0, 0.0] and "all 10" in same["note"]
    with pytest.raises(ValueError, match="equally long, non-empty"):
        paired_statistics(np.zeros(3), np.zeros(4))


def test_fewer_than_ten_independent_cases_get_no_interval():
    """A bootstrap over a handful of cases is too narrow: like slabs, independent cases need MIN_UNITS_FOR_INTERVAL."""
    differences = np.random.default_rng(11).normal(0.05, 0.1, MIN_UNITS_FOR_INTERVAL)
    assert mean_confidence_interval(differences[:-1], 999)[2] == "none"
    low, high, method = mean_confidence_interval(differences, 999)
    assert method == "BCa" and low < differences.mean() < high
    few = paired_statistics(np.zeros(MIN_UNITS_FOR_INTERVAL - 1), differences[:-1])
    assert few["mean_difference_ci"] == [None, None] and few["p_value"] < 1


def test_paired_statistics_known_values():
    baseline = np.array([0.70, 0.80, 0.60, 0.90, 0.75, 0.65, 0.85, 0.72, 0.68, 0.77])
    model = baseline + np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10])
    statistics = paired_statistics(baseline, model)
    assert statistics["mean_difference"] == pytest.approx(0.055)
    assert statistics["median_difference"] == pytest.approx(0.055)
    assert statistics["model_mean"] - statistics["baseline_mean"] == pytest.approx(0.055)
    assert statistics["p_value"] == pytest.approx(2 / 2 ** 10)  # exact: all 10 differences positive
    low, high = statistics["mean_difference_ci"]
    assert 0.01 < low < 0.055 < high < 0.1 and statistics["differences"] == pytest.approx(model - baseline)


def test_percentile_interval_where_bca_is_undefined(monkeypatch):
    bootstrap = scipy.stats.bootstrap

    def bca_undefined(*args, method, **kwargs):
        result = bootstrap(*args, method=method, **kwargs)
        if method == "BCa":
            result.confidence_interval = type(result.confidence_interval)(np.nan, np.nan)
        return result

    monkeypatch.setattr(scipy.stats, "bootstrap", bca_undefined)
    differences = np.random.default_rng(5).normal(0.1, 0.1, 20)
    low, high, method = mean_confidence_interval(differences, 999)
    assert method == "percentile" and low < differences.mean() < high


def test_missing_values_are_left_out_pairwise():
    baseline = np.array([0.5, np.nan, 0.7, 0.8, 0.6, 0.4, 0.3])
    model = np.array([0.6, 0.9, np.nan, 0.8, 0.7, 0.5, 0.5])
    statistics = paired_statistics(baseline, model)
    assert statistics["n"] == 5 and statistics["num_nonzero_differences"] == 4
    assert statistics["signed_rank_direction"] == 1
    assert statistics["mean_difference"] == pytest.approx(np.mean([0.1, 0.0, 0.1, 0.1, 0.2]))
    assert statistics["baseline_mean"] == pytest.approx(np.mean([0.5, 0.8, 0.6, 0.4, 0.3]))
    assert statistics["differences"] == pytest.approx([0.1, 0.0, 0.1, 0.1, 0.2])


def test_the_favours_column_says_mixed_where_the_mean_and_the_signed_ranks_disagree():
    """50 cases a little worse and 10 much better: the mean favours the model, the ranks (and the small p) the
    baseline."""
    from nnunetv2_morse.evaluation.compare import _favoured

    differences = np.concatenate([np.full(50, -0.01) - np.arange(50) * 1e-4, np.full(10, 1.0) + np.arange(10) * 1e-3])
    statistics = paired_statistics(np.zeros(60), differences)
    assert statistics["mean_difference"] > 0 and statistics["signed_rank_direction"] == -1
    assert _favoured(statistics, "Dice", "MORSE", "base") == "mixed: the mean favours MORSE, the signed ranks base"
    assert _favoured(statistics, "HD95", "MORSE", "base") == "mixed: the mean favours base, the signed ranks MORSE"
    agreeing = paired_statistics(np.zeros(60), np.abs(differences))
    assert _favoured(agreeing, "Dice", "MORSE", "base") == "MORSE"
    assert _favoured(agreeing, "HD95", "MORSE", "base") == "base"


@pytest.mark.parametrize("difference, rank_sign, oppose", [(0.3, -1, True), (0.3, 1, False), (0.3, 0, False),
                                                           (-0.3, 1, True), (-0.3, -1, False), (-0.3, 0, False)])
def test_ranks_oppose_only_a_difference_of_the_other_sign(difference, rank_sign, oppose):
    assert ranks_oppose(difference, rank_sign) is oppose
    with pytest.raises(ValueError, match="non-zero difference"):
        ranks_oppose(0.0, rank_sign)


def test_a_unit_of_identical_cases_counts_once():
    """Each of 24 differences copied into a unit of 6 cases: the units' interval and signed-rank p are the 24
    differences' own; taken as 144 independent cases, the interval would be about sqrt(6) times narrower."""
    differences = np.random.default_rng(4).normal(0.01, 0.05, 24)
    copies, units = np.repeat(differences, 6), np.repeat(np.arange(24)[::-1], 6)
    alone = paired_difference(np.zeros(24), differences, 999)
    grouped = paired_difference(np.zeros(144), copies, 999, units=units)
    assert (grouped.count, grouped.units, grouped.nonzero, alone.units) == (144, 24, 24, 24)
    assert (grouped.low, grouped.high) == pytest.approx((alone.low, alone.high), rel=1e-9)
    assert grouped.p_value == pytest.approx(scipy.stats.wilcoxon(differences).pvalue)
    assert (grouped.mean, grouped.rank_sign) == (pytest.approx(np.mean(differences)), alone.rank_sign)
    naive = paired_difference(np.zeros(144), copies, 999)
    assert (naive.high - naive.low) < 0.6 * (grouped.high - grouped.low)


def test_units_pool_their_cases_by_sum_and_count():
    sums, counts = unit_sums(np.array([1.0, 2.0, 4.0, 8.0]), np.array(["b", "a", "b", "c"]))
    assert sums.tolist() == [5.0, 2.0, 8.0] and counts.tolist() == [2.0, 1.0, 1.0]
    low, high, method = mean_confidence_interval(np.array([0.1, 0.3, 0.2]), 99, units=np.array([0, 0, 0]))
    assert np.isnan(low) and np.isnan(high) and method == "none"  # one unit: no interval


def cluster_bca_by_hand(sums, counts, resamples=40000, seed=123):
    """A BCa interval of sum(sums) / sum(counts) resampling whole units (u,), written out: bootstrap draws of units,
    bias correction z0 from them, acceleration from the leave-one-unit-out jackknife."""
    from scipy.stats import norm

    observed = sums.sum() / counts.sum()
    draws = np.random.default_rng(seed).integers(0, sums.size, (resamples, sums.size))
    replicates = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    z0 = norm.ppf(np.mean(replicates < observed))
    jackknife = (sums.sum() - sums) / (counts.sum() - counts)
    spread = jackknife.mean() - jackknife
    acceleration = np.sum(spread ** 3) / (6 * np.sum(spread ** 2) ** 1.5)
    z = norm.ppf([0.025, 0.975])
    levels = norm.cdf(z0 + (z0 + z) / (1 - acceleration * (z0 + z)))
    return tuple(np.quantile(replicates, levels))


def test_units_of_unequal_size_are_resampled_whole_and_pooled_by_case():
    """20 slabs of 9 or 1 cases, the large ones around +0.05, the single ones around -0.05: the interval is the
    cluster bootstrap of the case mean (about +0.04), not of the mean of slab means (about 0) nor of the cases."""
    rng = np.random.default_rng(6)
    sizes = np.tile([9, 1], 10)
    units = np.repeat(np.arange(20), sizes)
    differences = np.where(np.repeat(sizes, sizes) == 9, 0.05, -0.05) + rng.normal(0, 0.03, units.size)
    sums, counts = unit_sums(differences, units)
    low, high, method = mean_confidence_interval(differences, 9999, units=units)
    expected = cluster_bca_by_hand(sums, counts)
    assert method == "BCa" and low < np.mean(differences) < high
    assert (low, high) == pytest.approx(expected, abs=0.1 * (expected[1] - expected[0]))
    alone = mean_confidence_interval(differences, 9999)
    assert alone[1] - alone[0] < 0.85 * (high - low)


def test_the_signed_ranks_and_p_are_taken_over_the_units():
    """One slab of 10 small negative differences, 3 slabs of one positive each: case by case the ranks point down
    (55 against 36), slab by slab up; a NaN case leaves its slab, whose other cases still count."""
    differences = np.array([-0.01 - 0.001 * i for i in range(10)] + [0.02, 0.03, 0.04, np.nan])
    units = np.array([0] * 10 + [1, 2, 3, 3])
    by_unit = paired_difference(np.zeros(14), differences, 99, units=units)
    by_case = paired_difference(np.zeros(14), differences, 99)
    assert (by_case.rank_sign, by_unit.rank_sign) == (-1, 1)
    assert (by_unit.count, by_unit.units, by_unit.nonzero) == (13, 4, 4)
    slab_means = np.array([np.mean(differences[:10]), 0.02, 0.03, 0.04])
    assert by_unit.p_value == pytest.approx(scipy.stats.wilcoxon(slab_means).pvalue)
    assert np.isnan(by_unit.low) and by_unit.interval == "none"  # 4 units: too few for an interval


def test_units_with_one_mean_give_that_mean_as_the_interval():
    assert mean_confidence_interval(np.tile([0.1, 0.3], 12), 99, units=np.repeat(np.arange(12), 2)) == (
        pytest.approx(0.2), pytest.approx(0.2), "equal")
