"""Paired, per-case comparison of models' metric reports against a baseline (``nnUNetv2_morse_compare``).

Reads two or more JSON reports of ``nnUNetv2_morse_evaluate`` / ``nnUNetv2_morse_evaluate_cv`` (the first is the
baseline), pairs cases by identifier and, per other model, class and metric, reports means, medians, the mean and
median paired difference (model - baseline) and a two-sided Wilcoxon signed-rank p-value. Writes PREFIX.json,
PREFIX.md and PREFIX.png (paired differences per class, one panel per metric).

Sign convention: difference = model - baseline. Dice, IoU, NSD: higher is better, a positive difference favours the
model. HD95, ASSD (mm): lower is better, a negative difference favours the model.

p-values: ``scipy.stats.wilcoxon`` (two-sided, zero differences dropped, exact distribution for small samples).
All differences zero: p = 1 (no evidence of a difference), with a note. Fewer than 6 non-zero differences: the exact
p is reported with a note that p < 0.05 cannot be reached (its minimum is 2 / 2^k for k non-zero differences).
p-values are not corrected for multiple comparisons.

Reports are comparable only if scored alike: different NSD tolerances or empty-class conventions (``--empty``) are
refused; different reference folders or datasets, and reports too old to record these, are warned about (stderr, the
JSON's "warnings" and the Markdown).
"""
import argparse
import json
import os
import sys
import textwrap
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy.stats import wilcoxon

from nnunetv2_morse.evaluation.evaluate import print_warnings
from nnunetv2_morse.evaluation.metrics import HIGHER_IS_BETTER, METRIC_NAMES, METRIC_UNITS

COMPARISON_FORMAT = "nnunetv2_morse.comparison/1"
FIGURE_METRICS = ("Dice", "HD95", "ASSD", "NSD")
FOREGROUND_MEAN = "foreground mean"
MIN_NONZERO_FOR_P_BELOW_0_05 = 6
MODEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
# what a report records about how it was scored, and what it is called in messages
SCORING_FIELDS = {"empty_convention": "empty-class convention (--empty)", "reference_folder": "reference folder",
                  "dataset_labels": "dataset.json labels"}


class ComparisonError(Exception):
    """Reports that cannot be paired (missing cases or classes, malformed files), reported as one line."""


def load_report(path: str) -> dict:
    """A metric report written by nnUNetv2_morse_evaluate(_cv); ComparisonError if it is not one."""
    if not os.path.isfile(path):
        raise ComparisonError(f"file not found: {path}")
    with open(path) as f:
        try:
            report = json.load(f)
        except json.JSONDecodeError as error:
            raise ComparisonError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(report, dict) or "metric_per_case" not in report or "classes" not in report:
        raise ComparisonError(f"{path} is not a report of nnUNetv2_morse_evaluate(_cv) (no metric_per_case)")
    return report


def case_values(report: Mapping, classes: Sequence[str], case_ids: Sequence[str]) -> Dict[str, Dict[str, np.ndarray]]:
    """{class: {metric: (n_cases,) values in case_ids order}}, plus the per-case mean over classes (FOREGROUND_MEAN)."""
    by_case = {entry["case"]: entry["metrics"] for entry in report["metric_per_case"]}
    try:
        values = {c: {m: np.array([by_case[case][c][m] for case in case_ids], dtype=float) for m in METRIC_NAMES}
                  for c in classes}
    except (KeyError, TypeError, ValueError) as error:
        raise ComparisonError(f"malformed metric_per_case entry ({type(error).__name__}: {error})") from error
    for c in classes:
        for m in METRIC_NAMES:
            if not np.all(np.isfinite(values[c][m])):
                bad = [case for case, v in zip(case_ids, values[c][m]) if not np.isfinite(v)]
                if report.get("empty_convention") == "nan":
                    raise ComparisonError(f"{m} of class {c} is undefined (--empty nan: empty in reference and "
                                          f"prediction) in case(s): {', '.join(bad)}; paired tests need a score in "
                                          "every case: evaluate with --empty one")
                raise ComparisonError(f"non-finite {m} of class {c} in case(s): {', '.join(bad)}")
    values[FOREGROUND_MEAN] = {m: np.mean([values[c][m] for c in classes], axis=0) for m in METRIC_NAMES}
    return values


def wilcoxon_p_value(differences: np.ndarray) -> Tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (zeros dropped) and a note ("" if none)."""
    nonzero = int(np.count_nonzero(differences))
    if nonzero == 0:
        return 1.0, f"all {differences.size} paired differences are zero: p set to 1"
    p_value = float(wilcoxon(differences, zero_method="wilcox", alternative="two-sided").pvalue)
    if nonzero < MIN_NONZERO_FOR_P_BELOW_0_05:
        return p_value, (f"only {nonzero} non-zero paired difference(s): exact p >= {2 / 2 ** nonzero:.3g}, "
                         "p < 0.05 unattainable")
    return p_value, ""


def paired_statistics(baseline: np.ndarray, model: np.ndarray) -> dict:
    """Means, medians, mean/median difference (model - baseline), Wilcoxon p and note of one class and metric."""
    differences = model - baseline
    p_value, note = wilcoxon_p_value(differences)
    return {"baseline_mean": float(np.mean(baseline)), "baseline_median": float(np.median(baseline)),
            "model_mean": float(np.mean(model)), "model_median": float(np.median(model)),
            "mean_difference": float(np.mean(differences)), "median_difference": float(np.median(differences)),
            "num_nonzero_differences": int(np.count_nonzero(differences)), "p_value": p_value, "note": note,
            "differences": differences.tolist()}


def _check_pairable(baseline: Mapping, model: Mapping, baseline_name: str, name: str) -> None:
    """ComparisonError naming the cases or classes that model and baseline do not share."""
    baseline_cases = [e["case"] for e in baseline["metric_per_case"]]
    model_cases = {e["case"] for e in model["metric_per_case"]}
    missing = [c for c in baseline_cases if c not in model_cases]
    extra = sorted(model_cases - set(baseline_cases))
    if missing:
        raise ComparisonError(f"{name} lacks {len(missing)} case(s) of baseline {baseline_name}: {', '.join(missing)}")
    if extra:
        raise ComparisonError(f"{name} has {len(extra)} case(s) that baseline {baseline_name} lacks: "
                              f"{', '.join(extra)}")
    missing_classes = [c for c in baseline["classes"] if c not in model["classes"]]
    if missing_classes:
        raise ComparisonError(f"{name} lacks class(es) of baseline {baseline_name}: {', '.join(missing_classes)}")


def _check_scored_alike(baseline: Mapping, model: Mapping, baseline_name: str, name: str) -> List[str]:
    """ComparisonError if NSD tolerances or empty-class conventions differ; warnings for different reference
    folders or datasets."""
    tolerances = [(c, info["nsd_tolerance_mm"], model["classes"][c]["nsd_tolerance_mm"])
                  for c, info in baseline["classes"].items() if c in model["classes"]]
    differing = [f"{c} {base:g} vs {other:g} mm" for c, base, other in tolerances if base != other]
    if differing:
        raise ComparisonError(f"{name} and baseline {baseline_name} use different NSD tolerances "
                              f"({', '.join(differing)}): evaluate both with the same --tolerance-mm and "
                              "--tolerance-mm-per-class")
    conventions = (baseline.get("empty_convention"), model.get("empty_convention"))
    if None not in conventions and conventions[0] != conventions[1]:
        raise ComparisonError(f"{name} was scored with --empty {conventions[1]}, baseline {baseline_name} with "
                              f"--empty {conventions[0]}: evaluate both with the same --empty")
    warnings = []
    for field, description in (("reference_folder", "reference folders"), ("dataset", "datasets"),
                               ("dataset_labels", "dataset.json labels")):
        values = (baseline.get(field), model.get(field))
        if None not in values and values[0] != values[1]:
            warnings.append(f"{name} and baseline {baseline_name} were scored with different {description}: "
                            f"{json.dumps(values[1])} vs {json.dumps(values[0])}")
    return warnings


def _unrecorded_scoring_warnings(report: Mapping, name: str) -> List[str]:
    """A warning if report lacks what SCORING_FIELDS checks (a report of an older version)."""
    missing = [description for field, description in SCORING_FIELDS.items() if field not in report]
    if not missing:
        return []
    return [f"report {name} does not record its {', '.join(missing)} (an older version's report): cannot check that "
            "it was scored like the others; evaluate it again to check"]


def compare_reports(reports: Sequence[Mapping], names: Sequence[str], sources: Sequence[str]) -> dict:
    """The comparison of reports[1:] with reports[0] (the baseline); see the module docstring."""
    if len(reports) < 2:
        raise ComparisonError("need at least two reports: a baseline and one model")
    if len(set(names)) != len(names):
        raise ComparisonError(f"model names must be unique (give them with --names), got {', '.join(names)}")
    baseline_name = names[0]
    warnings = [w for report, name in zip(reports, names) for w in _unrecorded_scoring_warnings(report, name)]
    for report, name in zip(reports[1:], names[1:]):
        _check_pairable(reports[0], report, baseline_name, name)
        warnings += _check_scored_alike(reports[0], report, baseline_name, name)
    cases = [e["case"] for e in reports[0]["metric_per_case"]]
    classes = list(reports[0]["classes"])
    baseline_values = case_values(reports[0], classes, cases)
    comparisons = {}
    for report, name in zip(reports[1:], names[1:]):
        model_values = case_values(report, classes, cases)
        comparisons[name] = {c: {m: paired_statistics(baseline_values[c][m], model_values[c][m])
                                 for m in METRIC_NAMES} for c in baseline_values}
    return {"format": COMPARISON_FORMAT, "baseline": baseline_name,
            "models": {name: os.path.abspath(source) for name, source in zip(names, sources)},
            "num_cases": len(cases), "cases": cases, "classes": classes + [FOREGROUND_MEAN],
            "difference": "model - baseline", "higher_is_better": dict(HIGHER_IS_BETTER),
            "metric_units": dict(METRIC_UNITS),
            "test": "two-sided Wilcoxon signed-rank test (scipy.stats.wilcoxon, zero differences dropped); "
                    "all differences zero: p = 1; not corrected for multiple comparisons",
            "empty_convention": reports[0].get("empty_convention"), "warnings": warnings,
            "comparisons": comparisons}


def _favoured(statistics: Mapping, metric: str, model: str, baseline: str) -> str:
    """The model whose mean the mean paired difference favours, "-" for no difference."""
    difference = statistics["mean_difference"]
    if difference == 0:
        return "-"
    return model if (difference > 0) == HIGHER_IS_BETTER[metric] else baseline


def _number(metric: str, value: float) -> str:
    """Distances (mm) with 2 decimals, the others with 4."""
    return f"{value:.2f}" if METRIC_UNITS[metric] == "mm" else f"{value:.4f}"


def markdown_report(comparison: Mapping) -> str:
    """Markdown: conventions, then per model a table of class x metric statistics."""
    baseline = comparison["baseline"]
    lines = [f"# Paired comparison with baseline {baseline}", "",
             f"{comparison['num_cases']} paired cases. Difference = model - baseline. Dice, IoU, NSD: higher is "
             "better (positive difference favours the model); HD95, ASSD (mm): lower is better (negative difference "
             f"favours the model). p: {comparison['test']}.", ""]
    if comparison["warnings"]:
        lines += [f"**Warning**: {warning}" for warning in comparison["warnings"]] + [""]
    for model, per_class in comparison["comparisons"].items():
        lines += [f"## {model} vs {baseline}", "",
                  f"| class | metric | {baseline} mean | {model} mean | {baseline} median | {model} median | "
                  f"mean diff | median diff | p | favours | note |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
        for class_name, per_metric in per_class.items():
            for metric, s in per_metric.items():
                numbers = " | ".join(_number(metric, s[k]) for k in ("baseline_mean", "model_mean", "baseline_median",
                                                                      "model_median", "mean_difference",
                                                                      "median_difference"))
                unit = f" ({METRIC_UNITS[metric]})" if METRIC_UNITS[metric] else ""
                lines.append(f"| {class_name} | {metric}{unit} | {numbers} | {s['p_value']:.3g} | "
                             f"{_favoured(s, metric, model, baseline)} | {s['note']} |")
        lines.append("")
    return "\n".join(lines)


def plot_differences(comparison: Mapping, path: str) -> None:
    """PNG of the per-case paired differences: one panel per FIGURE_METRICS entry, box and points per class/model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    baseline = comparison["baseline"]
    models = list(comparison["comparisons"])
    classes = [c for c in comparison["classes"] if c != FOREGROUND_MEAN]
    colours = [MODEL_COLOURS[i % len(MODEL_COLOURS)] for i in range(len(models))]
    difference_label = textwrap.fill(f"{models[0] if len(models) == 1 else 'model'} - {baseline}", 60)
    slot = 0.8 / len(models)
    width = float(np.clip(3.0 + 1.1 * len(classes) * len(models), 11.0, 28.0))
    figure, axes = plt.subplots(2, 2, figsize=(width, 9.0), squeeze=False)
    jitter = np.random.default_rng(0)
    long_labels = len(classes) > 4 or max(len(c) for c in classes) > 12
    for axis, metric in zip(axes.flat, FIGURE_METRICS):
        for index, (model, colour) in enumerate(zip(models, colours)):
            positions = np.arange(len(classes)) + (index - (len(models) - 1) / 2) * slot
            data = [comparison["comparisons"][model][c][metric]["differences"] for c in classes]
            axis.boxplot(data, positions=positions, widths=slot * 0.7, showfliers=False, patch_artist=True,
                         boxprops={"facecolor": colour, "alpha": 0.25, "edgecolor": colour},
                         medianprops={"color": colour, "linewidth": 2},
                         whiskerprops={"color": colour}, capprops={"color": colour})
            for position, values in zip(positions, data):
                offsets = jitter.uniform(-slot * 0.25, slot * 0.25, len(values))
                axis.scatter(position + offsets, values, s=14, color=colour, alpha=0.8, zorder=3)
        axis.axhline(0.0, color="black", linewidth=1.0, linestyle="--", zorder=1)
        direction = "higher is better" if HIGHER_IS_BETTER[metric] else "lower is better"
        unit = f" ({METRIC_UNITS[metric]})" if METRIC_UNITS[metric] else ""
        axis.set_title(f"{metric}: {direction}\n{difference_label}", fontsize=11)
        axis.set_ylabel(f"difference in {metric}{unit}")
        axis.set_xticks(np.arange(len(classes)))
        axis.set_xticklabels(classes, rotation=30 if long_labels else 0, ha="right" if long_labels else "center")
        axis.set_xlim(-0.6, len(classes) - 0.4)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(f"Per-case paired differences vs {baseline} ({comparison['num_cases']} cases; "
                    "boxes: quartiles, whiskers: 1.5 IQR, dashed: no difference)", fontsize=13)
    if len(models) > 1:
        figure.legend(handles=[Patch(facecolor=c, alpha=0.6, label=m) for m, c in zip(models, colours)],
                      loc="lower center", ncol=len(models), fontsize=10, frameon=False)
    figure.tight_layout(rect=(0, 0.04 if len(models) > 1 else 0, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """nnUNetv2_morse_compare BASELINE.json MODEL.json [...] [--names ...] [-o PREFIX]"""
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_morse_compare",
        description="Paired per-case comparison of metric reports (nnUNetv2_morse_evaluate / _evaluate_cv) with the "
                    "first one, the baseline: means, medians, mean paired difference (model - baseline) and "
                    "Wilcoxon signed-rank p-values per class and metric. Writes PREFIX.json, PREFIX.md, PREFIX.png.")
    parser.add_argument("reports", nargs="+", help="metric JSON files; the first is the baseline")
    parser.add_argument("--names", nargs="+", help="one name per report (default: each report's parent folder)")
    parser.add_argument("-o", dest="output_prefix", default="comparison",
                        help="output path without extension (default: ./comparison)")
    args = parser.parse_args(argv)
    if len(args.reports) < 2:
        parser.error("give at least two reports: the baseline first, then one or more models")
    names = args.names or [os.path.basename(os.path.dirname(os.path.abspath(r))) for r in args.reports]
    if len(names) != len(args.reports):
        parser.error(f"--names gives {len(names)} name(s) for {len(args.reports)} report(s)")
    try:
        comparison = compare_reports([load_report(r) for r in args.reports], names, args.reports)
    except ComparisonError as error:
        sys.exit(f"nnUNetv2_morse_compare: error: {error}")
    print_warnings("nnUNetv2_morse_compare", comparison["warnings"])
    os.makedirs(os.path.dirname(os.path.abspath(args.output_prefix)), exist_ok=True)
    with open(args.output_prefix + ".json", "w") as f:
        json.dump(comparison, f, indent=2, allow_nan=False)
    markdown = markdown_report(comparison)
    with open(args.output_prefix + ".md", "w") as f:
        f.write(markdown)
    plot_differences(comparison, args.output_prefix + ".png")
    print(markdown)
    print(f"Wrote {args.output_prefix}.json, .md and .png")
