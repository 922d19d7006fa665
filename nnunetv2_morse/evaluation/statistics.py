"""Paired statistics of two models scored on the same cases: the numbers behind ``nnUNetv2_morse_compare`` and the
ledger's RESULTS.md (``nnUNetv2_morse_results``).

- difference = model - baseline, per case; cases missing (NaN) on either side are left out pairwise;
- reports scored with ``--empty nan`` leave a class undefined (NaN) where the reference and that side's prediction
  both lack it: ``pair_undefined`` gives the undefined side of a pair whose other side has a value (it predicted
  the class, wrongly) the score of a correct absence, so the false positive counts against the side that made it,
  and leaves pairs undefined on both sides out; ``paired_foreground_means`` averages, per case, the classes with a
  value on both sides, so that both sides average the same classes;
- the two-sided Wilcoxon signed-rank p-value: zero differences dropped, the non-zero ones ranked by size (ties
  share their mean rank), and p read from the statistic's exact distribution over all 2^k sign assignments of
  those ranks, up to EXACT_SIGNED_RANK_LIMIT of them, from the normal approximation with tie correction above
  (``wilcoxon_p_value``; scipy's ``wilcoxon`` switches to the approximation as soon as one difference is zero or
  two tie, and head-off scoring gives many zeros, HD95 on a voxel grid many ties); all
  differences zero: p = 1 with a note; fewer than 6 non-zero differences: a note that p < 0.05 cannot be reached
  (the exact p is at least 2 / 2^k for k non-zero differences); the direction the ranks point
  (the sign of the positive minus the negative rank sum), which can differ from the mean's when a few large
  differences outweigh many small ones of the other sign;
- the 95% confidence interval of the mean difference: BCa bootstrap (``scipy.stats.bootstrap``, 9999 resamples,
  seed 0, so the same cases give the same interval), the percentile bootstrap where BCa is undefined, and the
  method used is recorded;
- cases that are not independent (slices of one volume) can be grouped into independent units: the interval then
  resamples whole units (the mean over the cases of the resampled units, scipy.stats.bootstrap on the units' sums
  and case counts, paired), and the signed-rank test and its direction take one difference per unit, the mean over
  its cases, so that a unit of k near-identical cases counts once, not k times;
- with fewer than 10 independent cases or units there is no interval: a bootstrap over a handful of them gives
  intervals that are too narrow, read as more certain than they are;
- ``adjusted_p_values``: Benjamini-Hochberg false-discovery-rate control (``scipy.stats.false_discovery_control``)
  over a family of p-values, e.g. every class and metric of one model.

scipy is imported by the functions, not with the module, so that commands importing it answer ``--help`` at once.
"""
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

CONFIDENCE_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
MIN_NONZERO_FOR_P_BELOW_0_05 = 6
EXACT_SIGNED_RANK_LIMIT = 200
MIN_UNITS_FOR_INTERVAL = 10


@dataclass(frozen=True)
class Summary:
    """Mean and median of one side's finite values, and how many there are."""
    mean: float
    median: float
    count: int


@dataclass(frozen=True)
class PairedDifference:
    """model - baseline over the cases finite on both sides: count, and the units they fall into (units: count
    where each case is its own; nonzero: the units whose mean difference is not 0), mean and median difference over
    the cases, the mean's confidence interval low / high (NaN with fewer than MIN_UNITS_FOR_INTERVAL units) and its
    method (interval: "BCa", "percentile", "equal" or "none"), the Wilcoxon p over the units (NaN without pairs), its
    note ("" if none) and rank_sign (signed_rank_direction of the units: +1, -1 or 0)."""
    count: int
    units: int
    nonzero: int
    mean: float
    median: float
    low: float
    high: float
    p_value: float
    interval: str
    note: str
    rank_sign: int


def pair_undefined(baseline: np.ndarray, model: np.ndarray, correct_absence: float) -> Tuple[np.ndarray, np.ndarray]:
    """baseline and model (n,) of one class and metric scored with --empty nan, with each value undefined (NaN) on
    one side only set to correct_absence (the metric's score of a correct absence, metrics.CORRECT_ABSENCE); values
    undefined on both sides stay NaN."""
    baseline, model = np.asarray(baseline, dtype=float), np.asarray(model, dtype=float)
    return (np.where(np.isnan(baseline) & np.isfinite(model), correct_absence, baseline),
            np.where(np.isnan(model) & np.isfinite(baseline), correct_absence, model))


def paired_foreground_means(baseline: np.ndarray, model: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(n,) per-case means of baseline and model (k classes, n cases) over the classes with a value on both sides of
    the pair (after pair_undefined), so that both sides average the same classes; NaN where there is none."""
    baseline, model = np.asarray(baseline, dtype=float), np.asarray(model, dtype=float)
    both = np.isfinite(baseline) & np.isfinite(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a case without such a class: NaN
        return (np.nanmean(np.where(both, baseline, np.nan), axis=0),
                np.nanmean(np.where(both, model, np.nan), axis=0))


def summary(values: np.ndarray) -> Summary:
    """Summary of the finite entries of values (n,)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Summary(float("nan"), float("nan"), 0)
    return Summary(float(np.mean(finite)), float(np.median(finite)), int(finite.size))


def wilcoxon_p_value(differences: np.ndarray) -> Tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (n,) and a note ("" if none): zeros dropped,
    ties given their mean rank; for k <= EXACT_SIGNED_RANK_LIMIT non-zero differences exact, p = P(|T - E T| >=
    |t - E T|) for the positive rank sum T over the 2^k equally likely sign assignments (a subset-sum recursion
    over the doubled, integer ranks, O(k^3)), above it scipy's normal approximation with tie correction."""
    from scipy.stats import rankdata, wilcoxon

    nonzero = differences[differences != 0]
    if nonzero.size == 0:
        return 1.0, f"all {differences.size} paired differences are zero: p set to 1"
    if nonzero.size > EXACT_SIGNED_RANK_LIMIT:
        return float(wilcoxon(nonzero, method="approx").pvalue), ""
    doubled_ranks = np.rint(2 * rankdata(np.abs(nonzero))).astype(np.int64)
    total = int(doubled_ranks.sum())
    probabilities = np.zeros(total + 1)
    probabilities[0] = 1.0
    for rank in doubled_ranks:
        probabilities[rank:] = 0.5 * probabilities[rank:] + 0.5 * probabilities[:-rank].copy()
        probabilities[:rank] *= 0.5
    observed = int(doubled_ranks[nonzero > 0].sum())
    distance = np.abs(2 * np.arange(total + 1) - total)
    p_value = float(min(1.0, probabilities[distance >= abs(2 * observed - total)].sum()))
    if nonzero.size < MIN_NONZERO_FOR_P_BELOW_0_05:
        return p_value, (f"only {nonzero.size} non-zero paired difference(s): exact p >= {2 / 2 ** nonzero.size:.3g}, "
                         "p < 0.05 unattainable")
    return p_value, ""


def signed_rank_direction(differences: np.ndarray) -> int:
    """+1, -1 or 0: the sign of the Wilcoxon signed-rank sum of differences (n,) (ranks of |d| over the non-zero
    ones, ties averaged, positive minus negative): the direction in which the Wilcoxon test finds a shift."""
    from scipy.stats import rankdata

    nonzero = differences[differences != 0]
    return int(np.sign(np.sum(np.sign(nonzero) * rankdata(np.abs(nonzero))))) if nonzero.size else 0


def ranks_oppose(difference: float, rank_sign: int) -> bool:
    """Whether the signed ranks (rank_sign: signed_rank_direction) point against a non-zero difference: a few large
    differences one way against many small ones the other."""
    if difference == 0:
        raise ValueError("the signed ranks can only oppose a non-zero difference")
    return rank_sign == (-1 if difference > 0 else 1)


def unit_sums(differences: np.ndarray, units: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """(sums, counts), each (u,): the differences (n,) summed per unit (units (n,): a label per case, None: each case
    its own unit), in the order of the units' first cases."""
    if units is None:
        return differences, np.ones(differences.shape)
    labels, first, index = np.unique(units, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty(labels.size, dtype=int)
    rank[order] = np.arange(labels.size)
    return (np.bincount(rank[index], weights=differences, minlength=labels.size),
            np.bincount(rank[index], minlength=labels.size).astype(float))


def _pooled_mean(sums: np.ndarray, counts: np.ndarray, axis: int = -1) -> np.ndarray:
    """The mean over the cases of units given by their sums and case counts (..., u): (...)."""
    return np.sum(sums, axis=axis) / np.sum(counts, axis=axis)


def mean_confidence_interval(differences: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                             seed: int = BOOTSTRAP_SEED, units: Optional[np.ndarray] = None
                             ) -> Tuple[float, float, str]:
    """(low, high, method) of the CONFIDENCE_LEVEL interval of the mean of differences (n,): scipy.stats.bootstrap's
    BCa interval ("percentile" where BCa is undefined), reproducible by seed, resampling the cases, or whole units
    where units (n,) labels them (unit_sums); fewer than MIN_UNITS_FOR_INTERVAL cases or units, or no finite
    interval: NaN, "none" (a bootstrap over a handful of them gives intervals that are too narrow); equal differences
    give the point itself ("equal")."""
    return _interval_of_unit_sums(*unit_sums(differences, units), units is not None, resamples, seed)


def _interval_of_unit_sums(sums: np.ndarray, counts: np.ndarray, grouped: bool, resamples: int, seed: int
                           ) -> Tuple[float, float, str]:
    """mean_confidence_interval from unit_sums' sums and case counts (u,); grouped: the units are labelled clusters,
    else each is one case and sums are the differences themselves."""
    from scipy.stats import bootstrap

    if sums.size < MIN_UNITS_FOR_INTERVAL:
        return float("nan"), float("nan"), "none"
    unit_means = sums / counts
    if np.ptp(unit_means) == 0:
        return float(unit_means[0]), float(unit_means[0]), "equal"
    data, statistic = ((sums, counts), _pooled_mean) if grouped else ((sums,), np.mean)
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interval = bootstrap(data, statistic, n_resamples=resamples, confidence_level=CONFIDENCE_LEVEL,
                                 paired=grouped, method=method,
                                 random_state=np.random.default_rng(seed)).confidence_interval
        if np.isfinite(interval.low) and np.isfinite(interval.high):
            return float(interval.low), float(interval.high), method
    return float("nan"), float("nan"), "none"


def paired_difference(baseline: np.ndarray, model: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED, units: Optional[np.ndarray] = None) -> PairedDifference:
    """Statistics of model - baseline, both (n,) in the same case order, over the cases finite on both sides;
    units (n,): each case's unit where the cases are not independent (module doc), None: each case its own."""
    both = np.isfinite(baseline) & np.isfinite(model)
    differences = model[both] - baseline[both]
    if differences.size == 0:
        nan = float("nan")
        return PairedDifference(0, 0, 0, nan, nan, nan, nan, nan, "none", "no case is scored on both sides", 0)
    kept = None if units is None else np.asarray(units)[both]
    sums, counts = unit_sums(differences, kept)
    low, high, interval = _interval_of_unit_sums(sums, counts, kept is not None, resamples, seed)
    unit_means = sums / counts
    p_value, note = wilcoxon_p_value(unit_means)
    return PairedDifference(int(differences.size), int(unit_means.size), int(np.count_nonzero(unit_means)),
                            float(np.mean(differences)), float(np.median(differences)), low, high, p_value, interval,
                            note, signed_rank_direction(unit_means))


def paired_statistics(baseline: np.ndarray, model: np.ndarray, units: Optional[np.ndarray] = None) -> dict:
    """Statistics of one metric of two models on the same n cases, baseline and model (n,) in the same case order,
    over the cases finite on both sides; units (n,): each case's independent unit (paired_difference), None: each
    case its own.

    Returns n (of them) and num_units (the units they fall into); baseline and model mean and median; mean and
    median difference (model - baseline) with the bootstrap interval of the mean, mean_difference_ci [low, high]
    (nulls with fewer than MIN_UNITS_FOR_INTERVAL units) and its method; the Wilcoxon p_value over the units, its
    note, num_nonzero_differences (of the units' mean differences) and signed_rank_direction (+1, -1 or 0: where the
    ranks point, which a few large differences can make the opposite of the mean's sign); the per-case differences.
    """
    baseline, model = np.asarray(baseline, dtype=float), np.asarray(model, dtype=float)
    if baseline.shape != model.shape or baseline.ndim != 1 or baseline.size == 0:
        raise ValueError(f"paired statistics need two equally long, non-empty series, got shapes {baseline.shape} "
                         f"and {model.shape}")
    difference = paired_difference(baseline, model, units=units)
    both = np.isfinite(baseline) & np.isfinite(model)
    baseline_summary, model_summary = summary(baseline[both]), summary(model[both])
    interval = [None, None] if difference.interval == "none" else [difference.low, difference.high]
    return {"n": difference.count, "num_units": difference.units,
            "baseline_mean": baseline_summary.mean, "baseline_median": baseline_summary.median,
            "model_mean": model_summary.mean, "model_median": model_summary.median,
            "mean_difference": difference.mean, "median_difference": difference.median,
            "mean_difference_ci": interval, "mean_difference_ci_method": difference.interval,
            "num_nonzero_differences": difference.nonzero, "p_value": difference.p_value, "note": difference.note,
            "signed_rank_direction": difference.rank_sign,
            "differences": (model[both] - baseline[both]).tolist()}


def adjusted_p_values(p_values: Sequence[float]) -> List[float]:
    """Benjamini-Hochberg adjusted p-values of one family of tests, in the given order, over the finite ones; NaN
    stays NaN."""
    from scipy.stats import false_discovery_control

    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full(p_values.shape, np.nan)
    finite = np.isfinite(p_values)
    if finite.any():
        adjusted[finite] = false_discovery_control(p_values[finite], method="bh")
    return [float(p) for p in adjusted]
