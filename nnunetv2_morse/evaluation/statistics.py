"""Paired statistics of two models scored on the same cases: the numbers behind ``nnUNetv2_morse_compare``.

- difference = model - baseline, per case;
- the two-sided Wilcoxon signed-rank p-value (``scipy.stats.wilcoxon``, zero differences dropped, exact for small
  samples); all differences zero: p = 1 with a note; fewer than 6 non-zero differences: a note that p < 0.05
  cannot be reached (the exact p is at least 2 / 2^k for k non-zero differences);
- the 95% confidence interval of the mean difference: BCa bootstrap (``scipy.stats.bootstrap``, 9999 resamples,
  seed 0, so the same cases give the same interval);
- ``adjusted_p_values``: Benjamini-Hochberg false-discovery-rate control (``scipy.stats.false_discovery_control``)
  over a family of p-values, e.g. every class and metric of one model.

scipy is imported by the functions, not with the module, so that commands importing it answer ``--help`` at once.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np

CONFIDENCE_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
MIN_NONZERO_FOR_P_BELOW_0_05 = 6


def wilcoxon_p_value(differences: np.ndarray) -> Tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (zeros dropped) and a note ("" if none)."""
    from scipy.stats import wilcoxon

    nonzero = int(np.count_nonzero(differences))
    if nonzero == 0:
        return 1.0, f"all {differences.size} paired differences are zero: p set to 1"
    p_value = float(wilcoxon(differences, zero_method="wilcox", alternative="two-sided").pvalue)
    if nonzero < MIN_NONZERO_FOR_P_BELOW_0_05:
        return p_value, (f"only {nonzero} non-zero paired difference(s): exact p >= {2 / 2 ** nonzero:.3g}, "
                         "p < 0.05 unattainable")
    return p_value, ""


def mean_difference_interval(differences: np.ndarray) -> Tuple[Optional[float], Optional[float]]:
    """CONFIDENCE_LEVEL BCa bootstrap interval of the mean of differences (n,); (None, None) for fewer than 2 cases,
    (d, d) if every difference is d."""
    from scipy.stats import bootstrap

    if differences.size < 2:
        return None, None
    if np.ptp(differences) == 0:
        return float(differences[0]), float(differences[0])
    interval = bootstrap((differences,), np.mean, confidence_level=CONFIDENCE_LEVEL, n_resamples=BOOTSTRAP_RESAMPLES,
                         method="BCa", random_state=np.random.default_rng(BOOTSTRAP_SEED)).confidence_interval
    return float(interval.low), float(interval.high)


def paired_statistics(baseline: np.ndarray, model: np.ndarray) -> dict:
    """Statistics of one metric of two models on the same n cases, baseline and model (n,) in the same case order.

    Returns n; baseline and model mean and median; mean and median difference (model - baseline) with the bootstrap
    interval of the mean, mean_difference_ci [low, high] (null for one case); the Wilcoxon p_value, its note and
    num_nonzero_differences; the differences themselves.
    """
    baseline, model = np.asarray(baseline, dtype=float), np.asarray(model, dtype=float)
    if baseline.shape != model.shape or baseline.ndim != 1 or baseline.size == 0:
        raise ValueError(f"paired statistics need two equally long, non-empty series, got shapes {baseline.shape} "
                         f"and {model.shape}")
    differences = model - baseline
    p_value, note = wilcoxon_p_value(differences)
    return {"n": int(differences.size),
            "baseline_mean": float(np.mean(baseline)), "baseline_median": float(np.median(baseline)),
            "model_mean": float(np.mean(model)), "model_median": float(np.median(model)),
            "mean_difference": float(np.mean(differences)), "median_difference": float(np.median(differences)),
            "mean_difference_ci": list(mean_difference_interval(differences)),
            "num_nonzero_differences": int(np.count_nonzero(differences)), "p_value": p_value, "note": note,
            "differences": differences.tolist()}


def adjusted_p_values(p_values: Sequence[float]) -> List[float]:
    """Benjamini-Hochberg adjusted p-values of one family of tests, in the given order."""
    from scipy.stats import false_discovery_control

    if not len(p_values):
        return []
    return [float(p) for p in false_discovery_control(np.asarray(p_values, dtype=float), method="bh")]
