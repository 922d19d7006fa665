"""Paired per-case statistics: the mean paired difference with a bootstrap confidence interval, the Wilcoxon
signed-rank p (evaluation.compare's, zeros dropped, all-zero differences p = 1) and the Benjamini-Hochberg correction
over a family of p-values. Missing values (NaN) are left out pairwise."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
from scipy.stats import bootstrap, false_discovery_control

from nnunetv2_morse.evaluation.compare import wilcoxon_p_value

CONFIDENCE_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Summary:
    """Mean and median of one side's finite values, and how many there are."""
    mean: float
    median: float
    count: int


@dataclass(frozen=True)
class PairedDifference:
    """model - baseline over the cases finite on both sides: count (of them nonzero differ), mean and median
    difference, the mean's confidence interval (NaN with fewer than 2 pairs) and how it was found (interval), Wilcoxon
    p (NaN without pairs)."""
    count: int
    nonzero: int
    mean: float
    median: float
    low: float
    high: float
    p_value: float
    interval: str


def summary(values: np.ndarray) -> Summary:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Summary(float("nan"), float("nan"), 0)
    return Summary(float(np.mean(finite)), float(np.median(finite)), int(finite.size))


def mean_confidence_interval(differences: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                             seed: int = BOOTSTRAP_SEED) -> Tuple[float, float, str]:
    """(low, high, method): scipy.stats.bootstrap's BCa interval of the mean ("percentile" where BCa is undefined),
    reproducible by seed; equal differences give the point itself ("equal"); fewer than 2, none (NaN, "none")."""
    if differences.size < 2:
        return float("nan"), float("nan"), "none"
    if np.all(differences == differences[0]):
        return float(differences[0]), float(differences[0]), "equal"
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interval = bootstrap((differences,), np.mean, n_resamples=resamples, confidence_level=CONFIDENCE_LEVEL,
                                 method=method, rng=np.random.default_rng(seed)).confidence_interval
        if np.isfinite(interval.low) and np.isfinite(interval.high):
            return float(interval.low), float(interval.high), method
    return float("nan"), float("nan"), "none"


def paired_difference(baseline: np.ndarray, model: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> PairedDifference:
    """Statistics of model - baseline (same case order) over the cases finite on both sides."""
    both = np.isfinite(baseline) & np.isfinite(model)
    differences = model[both] - baseline[both]
    if differences.size == 0:
        return PairedDifference(0, 0, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), "none")
    low, high, interval = mean_confidence_interval(differences, resamples, seed)
    p_value, _ = wilcoxon_p_value(differences)
    return PairedDifference(int(differences.size), int(np.count_nonzero(differences)), float(np.mean(differences)),
                            float(np.median(differences)), low, high, p_value, interval)


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """scipy.stats.false_discovery_control (BH) over the finite p-values; NaN stays NaN."""
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full(p_values.shape, np.nan)
    finite = np.isfinite(p_values)
    if finite.any():
        adjusted[finite] = false_discovery_control(p_values[finite], method="bh")
    return adjusted
