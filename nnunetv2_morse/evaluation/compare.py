"""Paired, per-case comparison of models' metric reports against a baseline (``nnUNetv2_morse_compare``).

Reads two or more JSON reports of ``nnUNetv2_morse_evaluate`` / ``nnUNetv2_morse_evaluate_cv`` (the first is the
baseline), pairs cases by identifier and, per other model, class and metric, reports means, medians, the mean and
median paired difference (model - baseline) with a bootstrap confidence interval of the mean, and a two-sided
Wilcoxon signed-rank p-value, raw and Benjamini-Hochberg adjusted (see `statistics`). Writes PREFIX.json, PREFIX.md
and PREFIX.png (paired differences per class, one panel per metric).

Sign convention: difference = model - baseline. Dice, IoU, NSD: higher is better, a positive difference favours the
model. HD95, ASSD (mm): lower is better, a negative difference favours the model.

The adjusted p-values control the false-discovery rate over one model's family of tests: every class, the per-case
foreground mean, and metric.

Cases are taken as independent unless groups say otherwise (``--groups``: case id -> group, e.g. the patient of each
scan, or the validation slab of each Colin27 slice): the intervals then resample whole groups and the signed-rank
tests rank one mean difference per group (``statistics.paired_difference``), so that k near-identical cases of one
group count once, not k times.

Reports are comparable only if scored alike: different NSD tolerances or empty-class conventions (``--empty``) are
refused; different reference folders or datasets, and reports too old to record these, are warned about (stderr, the
JSON's "warnings" and the Markdown).

Reports scored with ``--empty nan`` leave a class undefined where the reference and the prediction both lack it.
They are paired as RESULTS.md pairs them (``statistics.pair_undefined``): a class undefined on one side only (the
other predicted it, wrongly) gets the score of a correct absence on the undefined side, so the false positive counts
against the side that made it; a class undefined on both sides is left out of that pair, so n can differ between
classes; the per-case foreground mean averages the classes with a value on both sides.
"""
import contextlib
import json
import os
import textwrap
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from nnunetv2_morse.cli import (CommandError, command_parser, console_script, markdown_table, one_line_errors,
                                report_stamp, write_json)
from nnunetv2_morse.evaluation.evaluate import format_metric, print_warnings
from nnunetv2_morse.evaluation.metrics import CORRECT_ABSENCE, HIGHER_IS_BETTER, METRIC_NAMES, METRIC_UNITS
from nnunetv2_morse.evaluation.statistics import (BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE_LEVEL,
                                                  EXACT_SIGNED_RANK_LIMIT, MIN_NONZERO_FOR_P_BELOW_0_05,
                                                  MIN_UNITS_FOR_INTERVAL, adjusted_p_values, pair_undefined, paired_foreground_means,
                                                  paired_statistics, ranks_oppose, wilcoxon_p_value)

__all__ = ["ComparisonError", "compare_reports", "differences_table", "load_groups", "load_report", "markdown_report",
           "main", "paired_case_values", "paired_statistics", "plot_differences", "wilcoxon_p_value",
           "MIN_NONZERO_FOR_P_BELOW_0_05"]

COMPARISON_FORMAT = "nnunetv2_morse.comparison/4"
FIGURE_METRICS = ("Dice", "HD95", "ASSD", "NSD")
FOREGROUND_MEAN = "foreground mean"
MODEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
JITTER_SEED = 0  # the strip plots' jitter: the same figure on every render of the same data
TEST_DESCRIPTION = (f"two-sided Wilcoxon signed-rank test (zero differences dropped, ties given their mean rank, "
                    f"exact up to {EXACT_SIGNED_RANK_LIMIT} non-zero differences, normal approximation above; all "
                    f"differences zero: p = 1); p (BH): Benjamini-Hochberg adjusted over each model's classes, "
                    f"foreground mean and {len(METRIC_NAMES)} metrics; CI: {CONFIDENCE_LEVEL:.0%} BCa bootstrap "
                    f"interval of the mean difference (scipy.stats.bootstrap, {BOOTSTRAP_RESAMPLES} resamples, seed "
                    f"{BOOTSTRAP_SEED}; "
                    "marked (percentile) where BCa is undefined)")
# what a report records about how it was scored, and what it is called in messages
EMPTY_PAIRING = ("--empty nan: a class undefined on one side of a pair only (the other side predicted it where the "
                 "reference has none) scores as a correct absence on the undefined side ("
                 + ", ".join(f"{metric} {score:g}" for metric, score in CORRECT_ABSENCE.items())
                 + "), so the false positive counts against the side that made it; a class undefined on both sides "
                   "is left out of that pair (n counts the pairs kept); the foreground mean of a case averages the "
                   "classes with a value on both sides")
SCORING_FIELDS = {"empty_convention": "empty-class convention (--empty)", "reference_folder": "reference folder",
                  "dataset_labels": "dataset.json labels"}


class ComparisonError(CommandError):
    """Reports that cannot be paired (missing cases or classes, malformed files), reported as one line."""


def _load_json(path: str, what: str):
    """The JSON content of path; ComparisonError if there is no such file (what: its kind) or it is not JSON."""
    if not os.path.isfile(path):
        raise ComparisonError(f"{what} not found: {path}")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ComparisonError(f"{path} is not valid JSON ({error})") from error


def load_report(path: str) -> dict:
    """A metric report written by nnUNetv2_morse_evaluate(_cv); ComparisonError if it is not one."""
    report = _load_json(path, "file")
    if not isinstance(report, dict) or "metric_per_case" not in report or "classes" not in report:
        raise ComparisonError(f"{path} is not a report of nnUNetv2_morse_evaluate(_cv) (no metric_per_case)")
    return report


def load_groups(path: str) -> Dict[str, str]:
    """The groups file of ``--groups``: a JSON object {case id: group name or integer}, groups as strings (1 and "1"
    are one group); ComparisonError if it is not one."""
    groups = _load_json(path, "groups file")
    if not isinstance(groups, dict) or not groups:
        raise ComparisonError(f"{path} is not a groups file: give a JSON object mapping each case id to its group, "
                              'e.g. {"case_001": "patient_01", "case_002": "patient_01"}')
    bad = [case for case, group in groups.items() if isinstance(group, bool) or not isinstance(group, (str, int))]
    if bad:
        raise ComparisonError(f"{path}: the group of a case must be a name or an integer, not that of "
                              f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
    return {case: str(group) for case, group in groups.items()}


def case_values(report: Mapping, classes: Sequence[str], case_ids: Sequence[str]) -> Dict[str, Dict[str, np.ndarray]]:
    """{class: {metric: (n_cases,) values in case_ids order}}, NaN where a report scored with --empty nan leaves the
    class undefined (null); ComparisonError for any other value that is not a finite number."""
    by_case = {entry["case"]: entry["metrics"] for entry in report["metric_per_case"]}
    try:
        values = {c: {m: np.array([by_case[case][c][m] for case in case_ids], dtype=float) for m in METRIC_NAMES}
                  for c in classes}
    except (KeyError, TypeError, ValueError) as error:
        raise ComparisonError(f"malformed metric_per_case entry ({type(error).__name__}: {error})") from error
    undefined_allowed = report.get("empty_convention") == "nan"
    for c in classes:
        for m in METRIC_NAMES:
            wrong = np.isinf(values[c][m]) if undefined_allowed else ~np.isfinite(values[c][m])
            if wrong.any():
                bad = [case for case, is_wrong in zip(case_ids, wrong) if is_wrong]
                undefined = "" if undefined_allowed else " (only a report scored with --empty nan may leave one null)"
                raise ComparisonError(f"non-finite {m} of class {c} in case(s): {', '.join(bad)}{undefined}")
    return values


def paired_case_values(baseline: Mapping[str, Mapping[str, np.ndarray]], model: Mapping[str, Mapping[str, np.ndarray]],
                       empty_nan: bool) -> Dict[str, Dict[str, tuple]]:
    """{class: {metric: (baseline (n,), model (n,))}} of case_values, plus the per-case FOREGROUND_MEAN over the
    classes with a value on both sides; empty_nan: the reports were scored with --empty nan, and a value undefined on
    one side only is given the score of a correct absence (module docstring)."""
    pairs = {c: {m: (pair_undefined(baseline[c][m], model[c][m], CORRECT_ABSENCE[m]) if empty_nan
                     else (baseline[c][m], model[c][m])) for m in METRIC_NAMES} for c in baseline}
    pairs[FOREGROUND_MEAN] = {m: paired_foreground_means(np.array([pairs[c][m][0] for c in baseline]),
                                                         np.array([pairs[c][m][1] for c in baseline]))
                              for m in METRIC_NAMES}
    return pairs


def _undefined_as_null(statistics: dict) -> dict:
    """statistics with NaN numbers (a class scored on no case of both sides) as None, written as JSON null."""
    return {key: None if isinstance(value, float) and np.isnan(value) else value for key, value in statistics.items()}


def _left_out(cases: Sequence[str], baseline: np.ndarray, model: np.ndarray) -> List[str]:
    """The cases (n,) without a value on both sides of baseline and model (n,): left out of the pair's statistics."""
    return [case for case, kept in zip(cases, np.isfinite(baseline) & np.isfinite(model)) if not kept]


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


def _case_units(cases: Sequence[str], groups: Optional[Mapping[str, str]]) -> Optional[np.ndarray]:
    """(n,) the group of each case, None without groups; ComparisonError naming the cases the groups lack."""
    if groups is None:
        return None
    ungrouped = [case for case in cases if case not in groups]
    if ungrouped:
        raise ComparisonError(f"the groups give no group for {len(ungrouped)} of the {len(cases)} case(s): "
                              f"{', '.join(ungrouped[:10])}{' ...' if len(ungrouped) > 10 else ''}; give every case "
                              "a group (a case that shares none with another is its own group)")
    return np.array([groups[case] for case in cases])


def compare_reports(reports: Sequence[Mapping], names: Sequence[str], sources: Sequence[str],
                    groups: Optional[Mapping[str, str]] = None, groups_source: Optional[str] = None) -> dict:
    """The comparison of reports[1:] with reports[0] (the baseline); groups: {case id: group} where cases are not
    independent (load_groups; None: every case its own), groups_source: the file they came from; see the module
    docstring."""
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
    units = _case_units(cases, groups)
    num_groups = None if units is None else len(set(units.tolist()))
    if (num_groups or len(cases)) < MIN_UNITS_FOR_INTERVAL:
        counted = (f"{len(cases)} paired cases" if num_groups is None
                   else f"{num_groups} groups of the {len(cases)} paired cases")
        warnings.append(f"only {counted}: no confidence intervals, which need at least {MIN_UNITS_FOR_INTERVAL}"
                        f"{'' if num_groups is None else ' groups'} (a bootstrap over fewer gives intervals that are "
                        "too narrow)")
    classes = list(reports[0]["classes"])
    conventions = sorted({report["empty_convention"] for report in reports if report.get("empty_convention")})
    if len(conventions) > 1:
        raise ComparisonError(f"the reports were scored with different --empty conventions ({', '.join(conventions)}):"
                              " evaluate them all with the same --empty")
    empty_nan = conventions == ["nan"]
    baseline_values = case_values(reports[0], classes, cases)
    comparisons = {}
    for report, name in zip(reports[1:], names[1:]):
        pairs = paired_case_values(baseline_values, case_values(report, classes, cases), empty_nan)
        comparisons[name] = {c: {m: {**paired_statistics(*pairs[c][m], units),
                                     "left_out_cases": _left_out(cases, *pairs[c][m])} for m in METRIC_NAMES}
                             for c in pairs}
        family = [statistics for per_metric in comparisons[name].values() for statistics in per_metric.values()]
        for statistics, adjusted in zip(family, adjusted_p_values([s["p_value"] for s in family])):
            statistics["p_value_bh"] = adjusted
        comparisons[name] = {c: {m: _undefined_as_null(statistics) for m, statistics in per_metric.items()}
                             for c, per_metric in comparisons[name].items()}
    return {"format": COMPARISON_FORMAT, **report_stamp(), "baseline": baseline_name,
            "models": {name: os.path.abspath(source) for name, source in zip(names, sources)},
            "num_cases": len(cases), "cases": cases, "classes": classes + [FOREGROUND_MEAN],
            "groups": None if units is None else {
                "source": groups_source and os.path.abspath(groups_source), "num_groups": num_groups,
                "of_case": dict(zip(cases, units.tolist()))},
            "difference": "model - baseline", "higher_is_better": dict(HIGHER_IS_BETTER),
            "metric_units": dict(METRIC_UNITS), "test": TEST_DESCRIPTION, "confidence_level": CONFIDENCE_LEVEL,
            "empty_convention": conventions[0] if conventions else None,
            "empty_pairing": EMPTY_PAIRING if empty_nan else None, "warnings": warnings,
            "comparisons": comparisons}


def _favoured(statistics: Mapping, metric: str, model: str, baseline: str) -> str:
    """The model whose mean the mean paired difference favours, "-" for no difference; "mixed" naming both where the
    Wilcoxon signed ranks (and so its p) point the other way."""
    difference = statistics["mean_difference"]
    if difference is None or difference == 0:
        return "-"
    by_mean, other = (model, baseline) if (difference > 0) == HIGHER_IS_BETTER[metric] else (baseline, model)
    if ranks_oppose(difference, statistics["signed_rank_direction"]):
        return f"mixed: the mean favours {by_mean}, the signed ranks {other}"
    return by_mean


def markdown_report(comparison: Mapping) -> str:
    """Markdown: conventions, then per model a table of class x metric statistics."""
    baseline = comparison["baseline"]
    groups = comparison.get("groups")
    grouped = ("" if not groups else
               f" in {groups['num_groups']} groups{' (' + groups['source'] + ')' if groups['source'] else ''}: the "
               "intervals resample whole groups and p ranks one mean difference per group")
    lines = [f"# Paired comparison with baseline {baseline}", "",
             f"{comparison['num_cases']} paired cases{grouped}. Difference = model - baseline. Dice, IoU, NSD: "
             "higher is better (positive difference favours the model); HD95, ASSD (mm): lower is better (negative "
             f"difference favours the model). p: {comparison['test']}.", ""]
    if comparison.get("empty_pairing"):
        lines += [f"Pairing under {comparison['empty_pairing']}.", ""]
    if comparison["warnings"]:
        lines += [f"**Warning**: {warning}" for warning in comparison["warnings"]] + [""]
    for model, per_class in comparison["comparisons"].items():
        header = ["class", "metric", "n", f"{baseline} mean", f"{model} mean", f"{baseline} median",
                  f"{model} median", "mean diff", "95% CI", "median diff", "p", "p (BH)", "favours", "note"]
        rows = []
        for class_name, per_metric in per_class.items():
            for metric, s in per_metric.items():
                unit = f" ({METRIC_UNITS[metric]})" if METRIC_UNITS[metric] else ""
                interval = ("[" + ", ".join(format_metric(metric, v) for v in s["mean_difference_ci"]) + "]"
                            + (" (percentile)" if s["mean_difference_ci_method"] == "percentile" else ""))
                count = str(s["n"]) if not groups else f"{s['n']} in {s['num_units']} groups"
                rows.append([class_name, metric + unit, count,
                             *(format_metric(metric, s[k]) for k in ("baseline_mean", "model_mean", "baseline_median",
                                                               "model_median", "mean_difference")),
                             interval, format_metric(metric, s["median_difference"]), _p_text(s["p_value"]),
                             _p_text(s["p_value_bh"]), _favoured(s, metric, model, baseline), s["note"]])
        lines += [f"## {model} vs {baseline}", "", markdown_table(header, rows, "llrrrrrrrrrrll"), ""]
    return "\n".join(lines)


def _p_text(p_value: Optional[float]) -> str:
    """A p-value with 3 significant digits; None (no case scored on both sides) as n/a."""
    return "n/a" if p_value is None else f"{p_value:.3g}"


def differences_table(comparison: Mapping):
    """The paired differences as a long pandas table: one row per model, class, metric and case paired, columns
    "model", "class", "metric", "case" (its id; its index among the pairs where the comparison names no cases) and
    "difference"."""
    import pandas as pd

    def paired_cases(statistics: Mapping) -> Sequence[Union[str, int]]:
        if "cases" not in comparison:
            return range(len(statistics["differences"]))
        left_out = set(statistics.get("left_out_cases", ()))
        return [case for case in comparison["cases"] if case not in left_out]

    return pd.DataFrame([{"model": model, "class": class_name, "metric": metric, "case": case, "difference": value}
                         for model, per_class in comparison["comparisons"].items()
                         for class_name, per_metric in per_class.items()
                         for metric, statistics in per_metric.items()
                         for case, value in zip(paired_cases(statistics), statistics["differences"], strict=True)],
                        columns=["model", "class", "metric", "case", "difference"])


@contextlib.contextmanager
def seeded_global_random_state(seed: int) -> Iterator[None]:
    """numpy's global generator seeded with seed inside the block, and the caller's state restored after it."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def plot_differences(comparison: Mapping, path: str) -> None:
    """PNG of the per-case paired differences: one panel per FIGURE_METRICS entry, box and points per class/model;
    comparison["num_cases"] is one number, or one per model ({model: n})."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.patches import Patch

    baseline = comparison["baseline"]
    models = list(comparison["comparisons"])
    classes = [c for c in comparison["classes"] if c != FOREGROUND_MEAN]
    palette = {model: MODEL_COLOURS[i % len(MODEL_COLOURS)] for i, model in enumerate(models)}
    table = differences_table(comparison)
    difference_label = textwrap.fill(f"{models[0] if len(models) == 1 else 'model'} - {baseline}", 60)
    width = float(np.clip(3.0 + 1.1 * len(classes) * len(models), 11.0, 28.0))
    figure, axes = plt.subplots(2, 2, figsize=(width, 9.0), squeeze=False)
    long_labels = len(classes) > 4 or max(len(c) for c in classes) > 12
    for axis, metric in zip(axes.flat, FIGURE_METRICS):
        data = table[table["metric"] == metric]
        placement = {"data": data, "x": "class", "y": "difference", "hue": "model", "order": classes,
                     "hue_order": models, "palette": palette, "ax": axis, "legend": False}
        sns.boxplot(**placement, showfliers=False, boxprops={"alpha": 0.3}, linewidth=1.2)
        with seeded_global_random_state(JITTER_SEED):  # seaborn draws the jitter from numpy's global generator
            sns.stripplot(**placement, dodge=True, size=4, alpha=0.8, jitter=0.2, zorder=3)
        axis.axhline(0.0, color="black", linewidth=1.0, linestyle="--", zorder=1)
        direction = "higher is better" if HIGHER_IS_BETTER[metric] else "lower is better"
        unit = f" ({METRIC_UNITS[metric]})" if METRIC_UNITS[metric] else ""
        axis.set_title(f"{metric}: {direction}\n{difference_label}", fontsize=11)
        axis.set_xlabel("")
        axis.set_ylabel(f"difference in {metric}{unit}")
        if long_labels:
            plt.setp(axis.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(f"Per-case paired differences vs {baseline} ({_cases_text(comparison['num_cases'], models)}; "
                    "boxes: quartiles, whiskers: 1.5 IQR, dashed: no difference)", fontsize=13)
    if len(models) > 1:
        figure.legend(handles=[Patch(facecolor=palette[m], alpha=0.6, label=m) for m in models],
                      loc="lower center", ncol=len(models), fontsize=10, frameon=False)
    figure.tight_layout(rect=(0, 0.04 if len(models) > 1 else 0, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _cases_text(num_cases: Union[int, Mapping[str, int]], models: Sequence[str]) -> str:
    """'90 cases', or per model where their numbers differ: '90 cases: A; 30: B'."""
    counts = num_cases if isinstance(num_cases, Mapping) else dict.fromkeys(models, num_cases)
    if len(set(counts.values())) == 1:
        return f"{next(iter(counts.values()))} cases"
    return "; ".join(f"{n}{' cases' if i == 0 else ''}: {model}" for i, (model, n) in enumerate(counts.items()))


@console_script
def main(argv: Optional[Sequence[str]] = None) -> None:
    """nnUNetv2_morse_compare BASELINE.json MODEL.json [...] [--names ...] [-o PREFIX]"""
    prog = "nnUNetv2_morse_compare"
    parser = command_parser(
        prog, "Paired per-case comparison of metric reports (nnUNetv2_morse_evaluate / _evaluate_cv) with the first "
              "one, the baseline: means, medians, mean paired difference (model - baseline) with its bootstrap "
              "confidence interval, and Wilcoxon signed-rank p-values, raw and Benjamini-Hochberg adjusted, per "
              "class and metric. Reports scored with --empty nan: a class undefined on one side of a pair only "
              "scores as a correct absence there, one undefined on both sides is left out of that pair. Writes "
              "PREFIX.json, PREFIX.md and PREFIX.png.",
        "Example:\n\n    nnUNetv2_morse_compare nnUNetTrainer/crossval_boundary_metrics.json "
        "MORSE/crossval_boundary_metrics.json --names nnUNet MORSE -o mvb")
    parser.add_argument("reports", nargs="+", help="metric JSON files; the first is the baseline")
    parser.add_argument("--names", nargs="+", help="one name per report (default: each report's parent folder)")
    parser.add_argument("--groups", metavar="GROUPS.json",
                        help="JSON object mapping every case id to its group, where cases are not independent (scans "
                             "of one patient; nnUNetv2_morse_make_colin27 writes case_groups.json for slices of one "
                             "volume): the confidence intervals then resample whole groups and the Wilcoxon tests "
                             "rank one mean difference per group (default: every case its own group)")
    parser.add_argument("-o", dest="output_prefix", metavar="PREFIX", default="comparison",
                        help="output path without extension")
    args = parser.parse_args(argv)
    if len(args.reports) < 2:
        parser.error("give at least two reports: the baseline first, then one or more models")
    names = args.names or [os.path.basename(os.path.dirname(os.path.abspath(r))) for r in args.reports]
    if len(names) != len(args.reports):
        parser.error(f"--names gives {len(names)} name(s) for {len(args.reports)} report(s)")
    with one_line_errors(prog, (ComparisonError,)):
        groups = None if args.groups is None else load_groups(args.groups)
        comparison = compare_reports([load_report(r) for r in args.reports], names, args.reports, groups,
                                     args.groups)
    print_warnings(prog, comparison["warnings"])
    write_json(comparison, args.output_prefix + ".json")
    markdown = markdown_report(comparison)
    with open(args.output_prefix + ".md", "w") as f:
        f.write(markdown)
    plot_differences(comparison, args.output_prefix + ".png")
    print(markdown)
    print(f"Wrote {args.output_prefix}.json, .md and .png")
