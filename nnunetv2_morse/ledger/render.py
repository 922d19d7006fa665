"""Renders RESULTS.md and its figures, the README's verdict block and each benchmark report's Markdown from the
ledger alone: every study's definition and run records, the per-case metric reports of every finished fold, the
training curves, and the benchmark reports.

    nnUNetv2_morse_results                  # results/ -> RESULTS.md, figures/*.png, README.md's verdict, benchmark_*.md
    nnUNetv2_morse_results -i results -o RESULTS.md --readme README.md
    nnUNetv2_morse_results --check          # writes nothing; exit status 1 if anything it renders is stale

Per study and comparison: mean and median per trainer of Dice, HD95, ASSD and NSD per class and for the per-case
foreground mean, the paired per-case difference (model - baseline) with a bootstrap 95% confidence interval, the
Wilcoxon signed-rank p and the Benjamini-Hochberg p over classes x metrics, beside the noise floor (the same trainer
with another seed); MORSE models with the head on against off; learning curves; the benchmarks' cost ratios.
"""
from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nnunetv2_morse.cli import (command_parser, console_script, integer_at_least, markdown_table, one_line_errors,
                                relative_to_here)
from nnunetv2_morse.evaluation import statistics
from nnunetv2_morse.evaluation.metrics import CORRECT_ABSENCE, image_diagonal_mm
from nnunetv2_morse.ledger.datasets import resampling_units
from nnunetv2_morse.ledger.definition import (BenchmarkStudy, DatasetDefinition, Run, StudyError, TrainingStudy,
                                              find_studies, load_study, recorded_identity_mismatch)
from nnunetv2_morse.ledger.gpu import CUDA_TESTS_FOLDER, CUDA_TESTS_SUMMARY
from nnunetv2_morse.ledger.records import read_json, read_text, write_text
from nnunetv2_morse.ledger.run import (CURVES_FILE, HEAD_OFF_FILE, METRICS_FILE, RECORD_FILE, expected_files,
                                      median_epoch_seconds)

PROG = "nnUNetv2_morse_results"

METRICS = ("Dice", "HD95", "ASSD", "NSD")
DISTANCES = ("HD95", "ASSD")
HIGHER_IS_BETTER = {"Dice": True, "HD95": False, "ASSD": False, "NSD": True}
FOREGROUND_MEAN = "foreground mean"
CONVENTION_KEYS = ("classes", "empty_case_rule", "ignore_label", "empty_convention", "tolerance_mm")
FIGURES_FOLDER = "figures"
LEVELLING_SHARE = 0.2
LEVELLED_OFF = 0.01
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f")


class ComparisonRefused(StudyError):
    """Two sides that cannot be paired as they stand (other cases, classes or scoring conventions)."""


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: a trainer at a seed, scored refined or with the head off, over its finished folds.
    values[case][class][metric] (NaN where the report has none); missed_or_spurious[case]: the classes missed or
    predicted where absent (missed_or_spurious_classes); geometry[case]: (shape, spacing in mm) of its image (None
    where the report does not say)."""
    label: str
    folds: Tuple[int, ...]
    case_folds: Mapping[str, int]
    classes: Tuple[str, ...]
    conventions: Mapping[str, Any]
    values: Mapping[str, Mapping[str, Mapping[str, float]]]
    missed_or_spurious: Mapping[str, Optional[FrozenSet[str]]]
    geometry: Mapping[str, Optional[Tuple[Tuple[int, ...], Tuple[float, ...]]]]

    def array(self, cases: Sequence[str], class_name: str, metric: str) -> np.ndarray:
        """(len(cases),) values of one class (NaN where the report has none)."""
        return np.array([self.values[c][class_name][metric] for c in cases], dtype=float)


def paired_class_values(baseline: Arm, model: Arm, cases: Sequence[str], class_name: str, metric: str
                        ) -> Tuple[np.ndarray, np.ndarray]:
    """(len(cases),) baseline and model values of one class; under --empty nan, a value undefined on one side only is
    given the score of a correct absence (statistics.pair_undefined) and pairs undefined on both sides stay NaN."""
    b, m = baseline.array(cases, class_name, metric), model.array(cases, class_name, metric)
    if baseline.conventions.get("empty_convention") == "nan":
        return statistics.pair_undefined(b, m, CORRECT_ABSENCE[metric])
    return b, m


def paired_foreground_means(baseline: Arm, model: Arm, cases: Sequence[str], metric: str
                            ) -> Tuple[np.ndarray, np.ndarray]:
    """(len(cases),) per-case means over the classes with a value on both sides of the pair (paired_class_values,
    statistics.paired_foreground_means)."""
    pairs = [paired_class_values(baseline, model, cases, k, metric) for k in baseline.classes]
    return statistics.paired_foreground_means(np.array([pair[0] for pair in pairs]).reshape(len(pairs), -1),
                                              np.array([pair[1] for pair in pairs]).reshape(len(pairs), -1))


def _value(value: Any) -> float:
    return float("nan") if value is None else float(value)


def missed_or_spurious_classes(metrics: Mapping[str, Mapping[str, Any]], classes: Sequence[str]
                               ) -> Optional[FrozenSet[str]]:
    """The classes of one case's report entry empty in exactly one of reference and prediction (missed, or predicted
    where absent: Dice and NSD 0, HD95 and ASSD the image's diagonal); None if the entry has no voxel counts."""
    counts = [metrics.get(c, {}) for c in classes]
    if not all("n_ref" in c and "n_pred" in c for c in counts):
        return None
    return frozenset(name for name, c in zip(classes, counts) if (c["n_ref"] == 0) != (c["n_pred"] == 0))


def arm_label(trainer: str, seed: int, head_off: bool = False) -> str:
    return f"{trainer} seed {seed}" + (" head off" if head_off else "")


def load_arm(study: TrainingStudy, trainer: str, seed: int, head_off: bool = False) -> Optional[Arm]:
    """The arm from the finished runs' reports (a run counts once its run.json exists); None if none finished."""
    label = arm_label(trainer, seed, head_off)
    folds, case_folds, values, classes, conventions = [], {}, {}, (), None
    missed_or_spurious, geometry = {}, {}
    for fold in study.folds:
        folder = os.path.join(study.folder, Run(trainer, seed, fold).folder)
        if not os.path.isfile(os.path.join(folder, RECORD_FILE)):
            continue
        report = read_json(os.path.join(folder, HEAD_OFF_FILE if head_off else METRICS_FILE))
        fold_conventions = {key: report[key] for key in CONVENTION_KEYS if key in report}
        if conventions is None:
            conventions, classes = fold_conventions, tuple(report["classes"])
        elif fold_conventions != conventions:
            differing = next(k for k in CONVENTION_KEYS if fold_conventions.get(k) != conventions.get(k))
            raise ComparisonRefused(f"{label}: fold {fold}'s report has another '{differing}' than fold {folds[0]}'s")
        for entry in report["metric_per_case"]:
            case = entry["case"]
            if case in case_folds:
                raise ComparisonRefused(f"{label}: case {case} is validated in fold {case_folds[case]} and {fold}")
            case_folds[case] = fold
            values[case] = {c: {m: _value(entry["metrics"].get(c, {}).get(m)) for m in METRICS} for c in classes}
            missed_or_spurious[case] = missed_or_spurious_classes(entry["metrics"], classes)
            geometry[case] = ((tuple(entry["shape"]), tuple(entry["spacing_mm"]))
                              if "shape" in entry and "spacing_mm" in entry else None)
        folds.append(fold)
    if not folds:
        return None
    return Arm(label, tuple(folds), case_folds, classes, conventions, values, missed_or_spurious, geometry)


@dataclass(frozen=True)
class Row:
    """One class and metric of a paired comparison."""
    class_name: str
    metric: str
    baseline: Any
    model: Any
    difference: Any
    p_adjusted: float


@dataclass(frozen=True)
class Paired:
    """model against baseline over the cases of the folds both have finished; rows per class (and foreground mean)
    and metric, BH-corrected over all of them; differences[class][metric] for the figure;
    missed_or_spurious_counts: each side's number of class-case pairs missed or predicted where absent (None where
    its reports do not say); unit_name and num_units: the independent units the cases fall into (ledger.datasets.
    resampling_units), which the intervals resample and the signed-rank tests rank (None, num_cases: each case its
    own)."""
    baseline: str
    model: str
    folds: Tuple[int, ...]
    num_cases: int
    rows: Tuple[Row, ...]
    differences: Mapping[str, Mapping[str, List[float]]]
    missed_or_spurious_counts: Tuple[Optional[int], Optional[int]]
    unit_name: Optional[str]
    num_units: int

    def row(self, class_name: str, metric: str) -> Row:
        return next(r for r in self.rows if r.class_name == class_name and r.metric == metric)


def compare_arms(baseline: Arm, model: Arm, resamples: int, dataset: Optional[DatasetDefinition] = None) -> Paired:
    """Paired statistics of model - baseline, over the independent units of the study's dataset where its cases are
    not independent (ledger.datasets.resampling_units); ComparisonRefused if the two cannot be paired."""
    for key in CONVENTION_KEYS:
        if baseline.conventions.get(key) != model.conventions.get(key):
            raise ComparisonRefused(f"{model.label} and {baseline.label} were scored with different '{key}'")
    folds = tuple(f for f in baseline.folds if f in model.folds)
    cases = [c for c, f in baseline.case_folds.items() if f in folds]
    model_cases = {c for c, f in model.case_folds.items() if f in folds}
    if set(cases) != model_cases:
        different = sorted(set(cases) ^ model_cases)
        raise ComparisonRefused(f"{model.label} and {baseline.label} validate different cases in folds "
                                f"{_list(folds)} ({len(different)}, e.g. {different[0]})")
    moved = [c for c in cases if model.case_folds[c] != baseline.case_folds[c]]
    if moved:
        raise ComparisonRefused(f"{model.label} and {baseline.label} validate {moved[0]} in different folds "
                                f"({model.case_folds[moved[0]]} and {baseline.case_folds[moved[0]]}): their splits "
                                "differ")
    try:
        grouping = None if dataset is None else resampling_units(dataset, {c: baseline.case_folds[c] for c in cases})
    except ValueError as error:
        raise ComparisonRefused(f"{model.label} and {baseline.label}: {error}") from error
    unit_name, units = (None, None) if grouping is None else (grouping[0], np.array([grouping[1][c] for c in cases]))
    rows, differences = [], {}
    for class_name in (*baseline.classes, FOREGROUND_MEAN):
        differences[class_name] = {}
        for metric in METRICS:
            b, m = (paired_foreground_means(baseline, model, cases, metric) if class_name == FOREGROUND_MEAN
                    else paired_class_values(baseline, model, cases, class_name, metric))
            both = np.isfinite(b) & np.isfinite(m)
            differences[class_name][metric] = (m[both] - b[both]).tolist()
            rows.append((class_name, metric, statistics.summary(b[both]), statistics.summary(m[both]),
                         statistics.paired_difference(b, m, resamples, units=units)))
    adjusted = statistics.adjusted_p_values([r[4].p_value for r in rows])
    return Paired(baseline.label, model.label, folds, len(cases),
                  tuple(Row(*r, float(p)) for r, p in zip(rows, adjusted)), differences,
                  (_count_missed_or_spurious(baseline, cases), _count_missed_or_spurious(model, cases)),
                  unit_name, len(cases) if units is None else len(set(units.tolist())))


def _count_missed_or_spurious(arm: Arm, cases: Sequence[str]) -> Optional[int]:
    found = [arm.missed_or_spurious[c] for c in cases]
    return None if any(f is None for f in found) else sum(len(f) for f in found)


MISSED_OR_SPURIOUS = "class-case pairs with the class missed or predicted where absent"


def failure_counts(paired: Paired) -> str:
    """'11 of <baseline>, 8 of <model>': each side's class-case pairs missed or predicted where absent; '' where the
    reports do not say."""
    baseline, model = paired.missed_or_spurious_counts
    if baseline is None or model is None:
        return ""
    return f"{baseline} of {paired.baseline}, {model} of {paired.model}"


def detection_failures(paired: Paired) -> str:
    """'<MISSED_OR_SPURIOUS>: <failure_counts>', or '' where the reports do not say."""
    counts = failure_counts(paired)
    return f"{MISSED_OR_SPURIOUS}: {counts}" if counts else ""


def scoring_text(arm: Arm) -> str:
    """The NSD tolerance(s), voxel spacing(s) and image diagonal(s) of an arm's reports (the HD95 and ASSD of a class
    missed or predicted where absent), and whether the tolerance is below the spacing."""
    tolerances = sorted({c.get("nsd_tolerance_mm") for c in arm.conventions.get("classes", {}).values()} - {None})
    known = [g for g in arm.geometry.values() if g is not None]
    spacings = sorted({spacing for _, spacing in known})
    diagonals = sorted(image_diagonal_mm(shape, spacing) for shape, spacing in known)
    parts = [f"NSD tolerance {' / '.join(f'{t:g}' for t in tolerances)} mm" if tolerances else "NSD tolerance –"]
    if spacings:
        parts.append("voxel spacing " + " / ".join(" x ".join(f"{v:g}" for v in spacing) for spacing in spacings)
                     + " mm")
        if tolerances and max(tolerances) < min(min(spacing) for spacing in spacings):
            parts[0] += " (below the voxel spacing: NSD counts the boundary voxels that lie on the other boundary)"
    if diagonals:
        span = (f"{diagonals[0]:.1f}" if round(diagonals[0], 1) == round(diagonals[-1], 1)
                else f"{diagonals[0]:.1f}-{diagonals[-1]:.1f}")
        parts.append(f"image diagonal {span} mm (the HD95 and ASSD of a class missed or predicted where absent)")
    return "; ".join(parts)


def finished_curves(study: TrainingStudy, trainer: str, seed: int) -> Dict[int, dict]:
    """{fold: its curves.json} of the trainer's finished runs at seed."""
    found = {}
    for fold in study.folds:
        folder = os.path.join(study.folder, Run(trainer, seed, fold).folder)
        if os.path.isfile(os.path.join(folder, RECORD_FILE)):
            found[fold] = read_json(os.path.join(folder, CURVES_FILE))
    return found


def ema_curves(curves: Mapping[int, dict]) -> Dict[int, List[float]]:
    """{fold: pseudo-Dice (EMA) per epoch, missing epochs left out} of finished_curves."""
    return {fold: [v for v in c.get("ema_fg_dice", []) if v is not None] for fold, c in curves.items()}


def mean_ema_change(curves: Dict[int, List[float]]) -> Optional[float]:
    """The mean over the folds of ema_curves of the pseudo-Dice (EMA) change over the last LEVELLING_SHARE of
    epochs; None if no fold has a curve."""
    changes = []
    for ema in curves.values():
        if ema:
            back = max(1, round(LEVELLING_SHARE * len(ema)))
            changes.append(ema[-1] - ema[max(0, len(ema) - 1 - back)])
    return float(np.mean(changes)) if changes else None


def has_not_levelled_off(change: Optional[float]) -> bool:
    """Whether a mean_ema_change says the schedule may be too short: above LEVELLED_OFF."""
    return change is not None and change > LEVELLED_OFF


def _list(numbers: Sequence[int]) -> str:
    return ", ".join(map(str, numbers))


def _number(metric: str, value: float, signed: bool = False) -> str:
    """The value to 2 decimals (HD95, ASSD: mm) or 4; a signed one that would read as 0 there, in 2 significant
    digits, so that no interval bound hides its side of 0."""
    if not np.isfinite(value):
        return "–"
    digits = 2 if metric in DISTANCES else 4
    if signed and value != 0 and round(value, digits) == 0:
        return f"{value:+.1e}"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.3g}"


def _wilcoxon(d: Any) -> str:
    """p, with the smallest p its number of nonzero differences k can reach (2 / 2^k) when that is above 0.05."""
    if d.count and not d.nonzero:
        return "1 (all differences 0)"
    reachable = 2.0 / 2 ** d.nonzero if d.nonzero else float("nan")
    return _p(d.p_value) + (f" (min {reachable:.2g})" if reachable > 0.05 else "")


def _difference(metric: str, d: Any) -> str:
    """'+0.0123 [-0.0010, +0.0250]'."""
    interval = (f" [{_number(metric, d.low, True)}, {_number(metric, d.high, True)}]"
                + (" (percentile)" if d.interval == "percentile" else "") if np.isfinite(d.low) else "")
    return _number(metric, d.mean, True) + interval


def _mean_median(metric: str, s: Any) -> str:
    return f"{_number(metric, s.mean)} / {_number(metric, s.median)}"


def count_text(count: int, units: int, unit_name: Optional[str], noun: str = "") -> str:
    """'142 <noun>', and ' in 24 slabs' where the cases fall into fewer independent units."""
    head = f"{count} {noun}" if noun else str(count)
    return (head if unit_name is None or units == count
            else f"{head} in {units} {unit_name}{'' if units == 1 else 's'}")


def paired_count_text(paired: Paired, noun: str) -> str:
    """count_text of a comparison's cases: '142 <noun> in 24 slabs'."""
    return count_text(paired.num_cases, paired.num_units, paired.unit_name, noun)


def _noise(noise: Optional[Paired], class_name: str, metric: str) -> str:
    if noise is None:
        return "–"
    d = noise.row(class_name, metric).difference
    return f"{_difference(metric, d)} (n {count_text(d.count, d.units, noise.unit_name)})"


def _metric_label(metric: str) -> str:
    better = "higher" if HIGHER_IS_BETTER[metric] else "lower"
    return f"{metric}{' (mm)' if metric in DISTANCES else ''}, {better} is better"


def paired_table(pairs: Sequence[Tuple[str, Paired, Optional[Paired], Optional[Paired]]],
                 class_names: Sequence[str], key: str, with_noise: bool = True) -> List[str]:
    """Markdown table, one row per (entry, class, metric); each entry is (name, paired, noise of the baseline,
    noise of the model); key names the first column ('model' or 'class')."""
    noise_header, noise_rule = (" noise: baseline | noise: model |", " ---: | ---: |") if with_noise else ("", "")
    lines = [f"| {key} | metric | baseline mean / median | model mean / median | n | model − baseline [95% CI] | "
             "p | p (BH) |" + noise_header, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |" + noise_rule]
    for name, paired, baseline_noise, model_noise in pairs:
        for class_name in class_names:
            for metric in METRICS:
                r = paired.row(class_name, metric)
                noise = (f" {_noise(baseline_noise, class_name, metric)} | {_noise(model_noise, class_name, metric)} |"
                         if with_noise else "")
                lines.append(f"| {name if key == 'model' else class_name} | {metric} | "
                             f"{_mean_median(metric, r.baseline)} | {_mean_median(metric, r.model)} | "
                             f"{count_text(r.difference.count, r.difference.units, paired.unit_name)} | "
                             f"{_difference(metric, r.difference)} | "
                             f"{_wilcoxon(r.difference)} | {_p(r.p_adjusted)} |" + noise)
    return lines


class StudyRenderer:
    """The Markdown section of one training study, and its figures as drawings to make (render() draws nothing);
    every arm, paired comparison and noise floor is computed once."""

    def __init__(self, study: TrainingStudy, figures: str, markdown_folder: str, resamples: int):
        self.study, self.figures, self.markdown_folder, self.resamples = study, figures, markdown_folder, resamples
        self.drawings: List[Callable[[], None]] = []
        self.arms: Dict[Tuple[str, int, bool], Optional[Arm]] = {}
        self.pairs: Dict[Tuple[str, str], Paired] = {}
        self.noises: Dict[str, Optional[Paired]] = {}
        self.head_pairs: Dict[str, Optional[Paired]] = {}
        self.run_curves: Dict[Tuple[str, int], Dict[int, dict]] = {}
        self.run_records: Dict[Run, dict] = {}
        self.shown_folder = os.path.relpath(os.path.abspath(study.folder), markdown_folder)

    def arm(self, trainer: str, seed: int, head_off: bool = False) -> Optional[Arm]:
        key = (trainer, seed, head_off)
        if key not in self.arms:
            self.arms[key] = load_arm(self.study, trainer, seed, head_off)
        return self.arms[key]

    def curves(self, trainer: str, seed: int) -> Dict[int, dict]:
        """finished_curves of the trainer at seed."""
        if (trainer, seed) not in self.run_curves:
            self.run_curves[trainer, seed] = finished_curves(self.study, trainer, seed)
        return self.run_curves[trainer, seed]

    def ema_change(self, trainer: str, seed: int, folds: Optional[Sequence[int]] = None) -> Optional[float]:
        """mean_ema_change of the trainer's finished folds at seed (of those in folds, if given)."""
        curves = self.curves(trainer, seed)
        return mean_ema_change(ema_curves({f: c for f, c in curves.items() if folds is None or f in folds}))

    def noise(self, trainer: str) -> Optional[Paired]:
        """The trainer at its first other seed against the comparison seed, or None."""
        if trainer not in self.noises:
            others = [s for s in self.study.seeds_of(trainer) if s != self.study.seed]
            reference = self.arm(trainer, self.study.seed)
            other = self.arm(trainer, others[0]) if others else None
            self.noises[trainer] = (None if reference is None or other is None
                                    else compare_arms(reference, other, self.resamples, self.study.dataset))
        return self.noises[trainer]

    def paired(self, baseline: str, model: str) -> Paired:
        """model against baseline at the comparison seed (both must have finished folds); ComparisonRefused if they
        cannot be paired."""
        if (baseline, model) not in self.pairs:
            self.pairs[baseline, model] = compare_arms(self.arm(baseline, self.study.seed),
                                                       self.arm(model, self.study.seed), self.resamples,
                                                       self.study.dataset)
        return self.pairs[baseline, model]

    def head_on_off(self, trainer: str) -> Optional[Paired]:
        """trainer with its head on against the same models with it off (N_test 0) at the comparison seed; None if
        either has no finished fold; ComparisonRefused if they cannot be paired."""
        if trainer not in self.head_pairs:
            on, off = self.arm(trainer, self.study.seed), self.arm(trainer, self.study.seed, head_off=True)
            self.head_pairs[trainer] = (None if on is None or off is None
                                        else compare_arms(off, on, self.resamples, self.study.dataset))
        return self.head_pairs[trainer]

    @property
    def head_off_heading(self) -> str:
        return f"### {self.study.head_off_title}, seed {self.study.seed}"

    @property
    def heading(self) -> str:
        return f"## {self.study.title} (`{self.shown_folder}`)"

    def figure_link(self, name: str, caption: str) -> str:
        path = os.path.join(self.figures, name)
        return f"![{caption}]({os.path.relpath(path, self.markdown_folder)})"

    def render(self) -> List[str]:
        study = self.study
        lines = [self.heading, ""]
        if study.description:
            lines += [study.description, ""]
        lines += self.definition_table(self.records()) + [""] + self.runs_table() + [""]
        for index, comparison in enumerate(study.comparisons):
            lines += self.comparison(index, comparison.title, comparison.baseline, comparison.models)
        if study.head_off:
            lines += self.head_off_section()
        return lines

    def records(self) -> List[dict]:
        """The run records of the finished runs; StudyError for one recorded under another definition or without
        one of its files (a study whose head_off list grew after the run, a file lost)."""
        found = []
        for run in self.study.runs():
            folder = os.path.join(self.study.folder, run.folder)
            path = os.path.join(folder, RECORD_FILE)
            if os.path.isfile(path):
                missing = [f for f in expected_files(self.study, run) if not os.path.isfile(os.path.join(folder, f))]
                if missing:
                    raise StudyError(f"{folder} has its {RECORD_FILE} but no {missing[0]}: run nnUNetv2_morse_study "
                                     f"{self.study.folder} to score the run again (its trained model is kept in the "
                                     "work folder), or remove that run folder")
                found.append(self.record(run))
                mismatch = recorded_identity_mismatch(found[-1].get("identity", {}), self.study)
                if mismatch:
                    raise StudyError(f"{path} was recorded with another '{mismatch}' than its study.json says: "
                                     "restore the definition, or move the study's runs/ folder away")
        return found

    def record(self, run: Run) -> dict:
        """The run's record (RECORD_FILE) of a finished run."""
        if run not in self.run_records:
            self.run_records[run] = read_json(os.path.join(self.study.folder, run.folder, RECORD_FILE))
        return self.run_records[run]

    def definition_table(self, recorded: Sequence[dict]) -> List[str]:
        study, s = self.study, self.study.schedule
        versions = sorted({", ".join(f"{k} {v}" for k, v in r["versions"].items() if v)
                           + (f" (package commit {r['package_commit']})" if r.get("package_commit") else "")
                           for r in recorded})
        machines = sorted({machine_text(r["machine"]) for r in recorded})
        devices = sorted({r["device"] for r in recorded})
        rows = [("dataset", f"builder `{study.dataset.builder}`, id {study.dataset.id}, arguments "
                            f"`{study.dataset.arguments_json}`"),
                ("configuration", f"{study.configuration} (nnUNetPlans)"),
                ("folds", _list(study.folds)),
                ("schedule", f"{s.epochs} epochs x {s.iterations_per_epoch} iterations ({s.validation_iterations} "
                             "validation iterations per epoch)"),
                ("seeds", f"comparisons at seed {study.seed}; noise floor from seed(s) "
                          f"{_list([x for x in study.seeds if x != study.seed]) or 'none'}"),
                ("environment", ", ".join(f"`{k}={v}`" for k, v in study.environment) or "–"),
                ("device", f"defined {study.device}; trained on {', '.join(devices) or '–'}"),
                ("trainings finished", f"{len(recorded)} of {len(study.runs())}"),
                ("scoring", self.scoring()),
                ("versions", "; ".join(versions) or "–"),
                ("machines", "; ".join(machines) or "–"),
                ("how the schedule was chosen", study.sizing or "–")]
        return ["| | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows]

    def scoring(self) -> str:
        """scoring_text of the first trainer with a finished fold at the comparison seed, '–' without one."""
        for trainer, _ in self.study.trainers:
            try:
                arm = self.arm(trainer, self.study.seed)
            except ComparisonRefused:
                continue
            if arm is not None:
                return scoring_text(arm)
        return "–"

    def runs_table(self) -> List[str]:
        lines = [f"| trainer | seed | folds finished | wall time per training (min, median [range]) | median epoch "
                 f"(s) | epochs | final pseudo-Dice (EMA, mean over folds) | its change over the last "
                 f"{LEVELLING_SHARE:.0%} of epochs |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
        unlevelled = []
        compared = {trainer for c in self.study.comparisons for trainer in (c.baseline, *c.models)}
        for trainer, seeds in self.study.trainers:
            for seed in seeds:
                raw_curves = self.curves(trainer, seed)
                curves, epoch = ema_curves(raw_curves), median_epoch_seconds(raw_curves)
                walls = [self.record(Run(trainer, seed, fold))["wall_seconds"] for fold in curves]
                minutes = [seconds / 60 for seconds in walls if seconds is not None]
                finals = [ema[-1] for ema in curves.values() if ema]
                change = mean_ema_change(curves)
                wall = (f"{np.median(minutes):.1f} [{min(minutes):.1f}, {max(minutes):.1f}]" if minutes else "–")
                lines.append(f"| {trainer} | {seed} | {_list(list(curves)) or 'none'} | {wall} | "
                             f"{'–' if epoch is None else f'{epoch:.1f}'} | "
                             f"{_list(sorted({len(ema) for ema in curves.values()})) or '–'} | "
                             f"{_number('Dice', np.mean(finals) if finals else np.nan)} | "
                             f"{_number('Dice', np.nan if change is None else change, True)} |")
                if trainer in compared and has_not_levelled_off(change):
                    unlevelled.append(f"- **{trainer} (seed {seed}) has not levelled off**: its pseudo-Dice (EMA) still "
                                      f"rose by {change:+.4f} over the last {LEVELLING_SHARE:.0%} of epochs (more "
                                      f"than {LEVELLED_OFF}); the schedule may be too short for its comparisons.")
        return lines + [""] + unlevelled

    def comparison(self, index: int, title: str, baseline: str, models: Sequence[str]) -> List[str]:
        lines = [f"### {title}", ""]
        base_arm = self.arm(baseline, self.study.seed)
        entries, notes = [], []
        for model in models:
            model_arm = self.arm(model, self.study.seed)
            if base_arm is None or model_arm is None:
                notes.append(f"{model} vs {baseline}: not yet run (no finished fold of "
                             f"{baseline if base_arm is None else model} at seed {self.study.seed}).")
                continue
            try:
                entries.append((model, self.paired(baseline, model), self.noise(baseline), self.noise(model)))
            except ComparisonRefused as refusal:
                notes.append(f"{model} vs {baseline}: **not compared**: {refusal}.")
        lines += [f"- {n}" for n in notes] + ([""] if notes else [])
        if not entries:
            return lines
        lines += self.paired_sections(entries, f"baseline {baseline} (seed {self.study.seed})")
        slug = f"{self.study.name}_{index + 1}"
        self.drawings += [partial(self.plot_differences, entries, baseline, slug + "_differences.png"),
                          partial(self.plot_curves, [baseline] + [e[0] for e in entries], slug + "_curves.png")]
        lines += [self.figure_link(slug + "_differences.png", f"{title}: paired differences"), "",
                  self.figure_link(slug + "_curves.png", f"{title}: learning curves"), ""]
        return lines

    def paired_sections(self, entries: Sequence[tuple], baseline_text: str, with_noise: bool = True) -> List[str]:
        lines = []
        for name, paired, *noises in entries:
            folds = paired.folds
            preliminary = "" if len(folds) == len(self.study.folds) else " (**preliminary**: not all folds finished)"
            lines.append(f"- {name}: {paired_count_text(paired, 'cases')} of folds {_list(folds)} paired with the "
                         f"{baseline_text}{preliminary}.")
            counted = [(pair, failure_counts(pair)) for pair in (paired, *noises) if pair is not None]
            lines += [f"  - {MISSED_OR_SPURIOUS if pair is paired else 'seed to seed'}: {counts} "
                      f"({paired_count_text(pair, 'cases')})" for pair, counts in counted if counts]
        lines += ["", "Foreground mean (per case, the mean over the classes scored on both sides):", ""]
        lines += paired_table(entries, [FOREGROUND_MEAN], "model", with_noise) + [""]
        for name, paired, baseline_noise, model_noise in entries:
            classes = [r.class_name for r in paired.rows if r.metric == METRICS[0]]
            lines += [f"<details><summary>{name}: per class</summary>", ""]
            lines += paired_table([(name, paired, baseline_noise, model_noise)], classes, "class", with_noise)
            lines += ["", "</details>", ""]
        return lines

    def head_off_section(self) -> List[str]:
        lines = [self.head_off_heading, "",
                 "The same models, paired per case: here the 'baseline' is the model with its head off and the "
                 "difference is head on − head off, so it isolates the rendering head from what its loss did to the "
                 "U-Net.", ""]
        entries = []
        for trainer in self.study.head_off:
            try:
                paired = self.head_on_off(trainer)
            except ComparisonRefused as refusal:
                lines.append(f"- {trainer}: **not compared**: {refusal}.")
                continue
            if paired is None:
                lines.append(f"- {trainer}: not yet run.")
            else:
                entries.append((trainer, paired, None, None))
        if entries:
            lines += self.paired_sections(entries, "same model with its head off", with_noise=False)
            name = f"{self.study.name}_head_off.png"
            self.drawings.append(partial(self.plot_differences, entries, "head off", name))
            lines += [self.figure_link(name, "head on - head off"), ""]
        return lines + [""]

    def plot_differences(self, entries: Sequence[tuple], baseline: str, name: str) -> None:
        """compare.plot_differences on the pairs' per-case differences (missing values left out)."""
        from nnunetv2_morse.evaluation.compare import plot_differences
        first = entries[0][1]
        classes = [r.class_name for r in first.rows if r.metric == METRICS[0] and r.class_name != FOREGROUND_MEAN]
        comparison = {"baseline": baseline, "num_cases": {model: paired.num_cases for model, paired, _, _ in entries},
                      "classes": classes + [FOREGROUND_MEAN],
                      "comparisons": {model: {c: {m: {"differences": paired.differences[c][m]} for m in METRICS}
                                              for c in classes} for model, paired, _, _ in entries}}
        os.makedirs(self.figures, exist_ok=True)
        plot_differences(comparison, os.path.join(self.figures, name))

    def plot_curves(self, trainers: Sequence[str], name: str) -> None:
        """pseudo-Dice (EMA), train and validation loss, rendering loss and lambda_t per epoch; one line per run,
        colour per trainer, dashed for seeds other than the comparison seed."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D

        figure, axes = plt.subplots(2, 2, figsize=(13, 9))
        panels = (("ema_fg_dice", "pseudo-Dice (EMA)"), ("train_losses", "train loss"),
                  ("val_losses", "validation loss"), ("rend_losses", "rendering loss L_rend (dotted: lambda_t)"))
        handles = []
        for index, trainer in enumerate(trainers):
            colour = COLOURS[index % len(COLOURS)]
            handles.append(Line2D([], [], color=colour, label=trainer))
            for seed in self.study.seeds_of(trainer):
                for curves in self.curves(trainer, seed).values():
                    style = "-" if seed == self.study.seed else "--"
                    for axis, (key, _) in zip(axes.flat, panels):
                        values = np.array([np.nan if v is None else v for v in curves.get(key, [])], dtype=float)
                        axis.plot(np.arange(values.size), values, style, color=colour, alpha=0.6, linewidth=1,
                                  marker="." if values.size < 20 else None)
                    weights = np.array(curves.get("awa_weights", []), dtype=float)
                    if weights.size:
                        axes.flat[3].plot(np.arange(weights.size), weights, ":", color=colour, alpha=0.6)
        for axis, (_, title) in zip(axes.flat, panels):
            axis.set_title(title)
            axis.set_xlabel("epoch")
            axis.grid(alpha=0.3)
        figure.legend(handles=handles + [Line2D([], [], color="black", linestyle="--",
                                                label="another seed")],
                      loc="lower center", ncol=min(len(handles) + 1, 5), frameon=False)
        figure.suptitle(f"{self.study.title}: learning curves (one line per fold)")
        figure.tight_layout(rect=(0, 0.05, 1, 1))
        os.makedirs(self.figures, exist_ok=True)
        figure.savefig(os.path.join(self.figures, name), dpi=100)
        plt.close(figure)


COST_KEYS = ("step_s", "peak_memory_mb", "saved_for_backward_mb", "inference_s")


def machine_text(machine: Mapping[str, Any]) -> str:
    """'platform, CPU model (torch's CPU capability), N CPUs, GPU' of a run record's machine, each part where
    recorded."""
    cpu = str(machine.get("cpu") or "") + (f" ({machine['torch_cpu_capability']})"
                                           if machine.get("torch_cpu_capability") else "")
    return ", ".join(part for part in (machine["platform"], cpu.strip(), f"{machine['cpu_count']} CPUs",
                                       machine.get("gpu")) if part)


def cost_tables(rows: List[dict]) -> List[str]:
    """One plan's benchmark rows: the first trainer's values and every other's ratios to them (each a range over the
    rounds, row_ratios), table_notes (each trainer's spread between its rounds, a caveat), the budgets, and each
    N_test sweep."""
    from nnunetv2_morse.benchmark import BUDGET_HEADING, over_budget, ratio_range, row_ratios, table_notes

    base = rows[0]
    values = [[base["trainer"], f"{base['step_s']:.3f} s", f"{base['peak_memory_mb']:.0f} MiB",
               f"{base['saved_for_backward_mb']:.0f} MiB", f"{base['inference_s']:.3f} s"]]
    values += [[row["trainer"], *(ratio_range(row_ratios(row, base, key)) for key in COST_KEYS)] for row in rows[1:]]
    lines = [markdown_table(["trainer", "step", "peak memory", "saved for backward", "inference / case"], values,
                            "lrrrr")]
    notes = table_notes(rows)
    lines += ["", notes] if notes else []
    budget = over_budget(rows, base["trainer"])
    lines += ["", f"{BUDGET_HEADING}: "
              + ("all met." if not budget else "; ".join(budget) + "."), ""]
    sweeps = [[row["trainer"], t["num_test_points"], f"{t['ratio']:.3f}x",
               f"{t['head_gflop']:.1f} / {t['unet_gflop']:.1f} ({t['head_gflop'] / t['unet_gflop']:.1%})"]
              for row in rows for t in row.get("test_points_sweep") or []]
    if sweeps:
        lines += ["One patch's eval forward at several N_test against the coarse U-Net forward:", "",
                  markdown_table(["trainer", "N_test", "time ratio", "head GFLOP / U-Net GFLOP"], sweeps, "lrrr"), ""]
    return lines


# a benchmark study's run record and its reports by the path of their JSON file (recorded_benchmark)
RecordedBenchmark = Tuple[dict, Dict[str, dict]]


def recorded_benchmark(study: BenchmarkStudy) -> Optional[RecordedBenchmark]:
    """The study's run record and the benchmark reports it lists, by the path of their JSON file, in order; None
    where it is not yet measured."""
    record_file = os.path.join(study.folder, RECORD_FILE)
    if not os.path.isfile(record_file):
        return None
    record = read_json(record_file)
    paths = [os.path.join(study.folder, name) for name in record["files"] if name.endswith(".json")]
    return record, {path: read_json(path) for path in paths}


def benchmark_tables(recorded: Optional[RecordedBenchmark]) -> Dict[str, str]:
    """The Markdown beside each recorded benchmark report (recorded_benchmark; None: not yet measured), by its path:
    benchmark_markdown of the report."""
    from nnunetv2_morse.benchmark import benchmark_markdown

    tables = {}
    for path, report in (recorded[1] if recorded else {}).items():
        try:
            tables[os.path.splitext(path)[0] + ".md"] = benchmark_markdown(report)
        except (KeyError, TypeError, StopIteration) as error:
            raise StudyError(f"{path} is not a complete benchmark report ({type(error).__name__}: {error}): run its "
                             "study again") from None
    return tables


def cost_section(study: BenchmarkStudy, recorded: Optional[RecordedBenchmark], markdown_folder: str) -> List[str]:
    """The benchmark tables of one benchmark study (recorded: recorded_benchmark), one per plan measured, as ratios
    against their first trainer."""
    lines = [f"### {study.title}", ""] + ([study.description, ""] if study.description else [])
    if recorded is None:
        command = ("nnUNetv2_morse_gpu_evidence" if study.device == "cuda"
                   else f"nnUNetv2_morse_study {os.path.relpath(os.path.abspath(study.folder), markdown_folder)}")
        return lines + [f"Not yet measured: `{command}`.", ""]
    record, reports = recorded
    lines += [f"`{record['commands'][0]['command']}`; {machine_text(record['machine'])}; "
              f"recorded {record['recorded']}.", ""]
    for report in reports.values():
        for plan, rows in report["plans"].items():
            lines += [report["headers"][plan], ""] + cost_tables(rows)
    return lines


def cuda_tests_section(results_folder: str) -> List[str]:
    path = os.path.join(results_folder, CUDA_TESTS_FOLDER, CUDA_TESTS_SUMMARY)
    lines = ["### tests/test_cuda.py on a CUDA GPU", ""]
    if not os.path.isfile(path):
        return lines + ["Not yet run: `nnUNetv2_morse_gpu_evidence` on a machine with a CUDA GPU.", ""]
    summary = read_json(path)
    counts = ", ".join(f"{summary[k]} {k}" for k in ("passed", "failed", "errors", "skipped"))
    return lines + [f"{counts} on {summary['machine']['gpu']} (`{summary['command']}`, {summary['recorded']}; "
                    f"JUnit XML: `{os.path.join(CUDA_TESTS_FOLDER, summary['junit'])}`).", ""]


COST_INTRO = ("Each table gives the first trainer's step, peak memory, memory saved for backward and inference time, "
              "and every other trainer's ratios to them on the same plan. Where a benchmark ran several rounds, times "
              "are the fastest round's (a shared machine only adds time) and the step, peak memory and inference "
              "ratios are ranges over the rounds, each round's trainers against each other (times vary by several "
              "percent between identical rounds on a shared machine, the peak memory by a few); a table recorded "
              "before the benchmark kept each round's memory gives the first round's, and its budget line says so. "
              "On the CPU, peak memory is the peak RSS above the process's RSS with every trainer module imported, "
              "before the network is built; a table measured before that says so in its budget line.")

HEADER = """# Results

Rendered by `nnUNetv2_morse_results` from the ledger in `{results}/` alone: each study's definition (`study.json`),
the per-case metric reports of every finished fold, the training curves, the run records and the benchmark tables.
Do not edit this file: rerun the command. How the studies are defined, run, resumed and sized:
[{results}/README.md]({results}/README.md).

How to read the tables. Cases are pooled over the folds that both sides of a comparison have finished (n = the number
of pairs). A class absent from the reference and from one side's prediction has no value on that side (NaN): where the
other side predicted it, wrongly, the side without a value gets the score of a correct absence
({absence}), so the false positive counts against the side that made it; a pair without a value on
either side is left out. A model's mean and median are over the pairs of its comparison, so the same model can show
slightly different ones in two comparisons. A class missed, or predicted where the reference has none, scores Dice and
NSD 0 and HD95 and ASSD the image's diagonal (the study's scoring row gives it): a few such class-case pairs move the
HD95 and ASSD means by millimetres, so each comparison counts them per side; the medians are hardly moved by
them while they are few. The per-case foreground mean averages the classes with a value on both sides. The difference
is model − baseline: for Dice and NSD higher is better, so a positive difference favours the model; for HD95 and ASSD
(mm) lower is better, so a negative one does. The 95% confidence interval of the mean difference is
scipy.stats.bootstrap's (BCa, {resamples} resamples, seed 0). p is the two-sided Wilcoxon signed-rank test
(zero differences dropped, ties given their mean rank, exact over all sign assignments of the ranks up to
{exact_limit} non-zero differences, the normal approximation above; all differences zero: p = 1); p (BH) is p corrected with
Benjamini-Hochberg (scipy.stats.false_discovery_control) over the classes, the foreground mean and the four metrics of
one model against its baseline. Where a study's cases are slices of one volume, neighbouring slices are nearly
the same image, so they are not independent: there the interval resamples, and the signed-rank test ranks, whole
validation slabs (the runs of consecutive slices that one fold validates; n says "142 in 24 slabs"), each slab's
difference the mean over its slices, so that a slab counts once however many slices it has. With fewer than 10 slabs
(one fold), or fewer than 10 cases where the cases are independent volumes, there is no interval, a bootstrap over so
few being too narrow. Slabs of one volume still share its
anatomy, so even these intervals lean narrow. Both take the trained models as fixed: they leave out
how much a model changes when trained again. The noise columns measure that: the same trainer trained with another
seed minus the comparison seed, paired the same way; a difference inside the noise floor is not evidence.
"""


@dataclass(frozen=True)
class RenderedLedger:
    """RESULTS.md's text and what it was rendered from: the studies, each training study's renderer by folder (its
    arms, paired comparisons and noise floors, computed once, and its figures to draw), each benchmark study's
    recorded_benchmark by folder; and the Markdown of each benchmark report by its path (benchmark_tables)."""
    text: str
    studies: Tuple[Any, ...]
    renderers: Mapping[str, StudyRenderer]
    benchmarks: Mapping[str, Optional[RecordedBenchmark]]
    tables: Mapping[str, str]

    def write(self, output: str) -> None:
        """Draws the figures into results_folder/figures, writes the text to output and the benchmark tables that
        differ from their rendering."""
        for renderer in self.renderers.values():
            for drawing in renderer.drawings:
                drawing()
        write_text(self.text, output)
        for path in self.stale_tables():
            write_text(self.tables[path], path)

    def stale_tables(self) -> List[str]:
        """The benchmark tables whose file is missing or differs from their rendering."""
        return [path for path, text in self.tables.items() if not os.path.isfile(path) or read_text(path) != text]


def render_ledger(results_folder: str, output: str, resamples: int) -> RenderedLedger:
    """RESULTS.md as it would be written to output, in memory; no figure drawn yet."""
    markdown_folder = os.path.dirname(os.path.abspath(output))
    figures = os.path.join(results_folder, FIGURES_FOLDER)
    display = os.path.relpath(os.path.abspath(results_folder), markdown_folder)
    absence = ", ".join(f"{metric} {CORRECT_ABSENCE[metric]:g}" for metric in METRICS)
    lines = HEADER.format(results=display, resamples=resamples, absence=absence,
                          exact_limit=statistics.EXACT_SIGNED_RANK_LIMIT).splitlines() + [""]
    folders = find_studies(results_folder)
    if not folders:
        raise StudyError(f"no study.json under {results_folder}: give the ledger folder (-i)")
    studies = [load_study(folder) for folder in folders]
    cost = [s for s in studies if isinstance(s, BenchmarkStudy)]
    renderers = {}
    for study in studies:
        if isinstance(study, TrainingStudy):
            renderers[study.folder] = StudyRenderer(study, figures, markdown_folder, resamples)
            lines += renderers[study.folder].render()
    benchmarks = {study.folder: recorded_benchmark(study) for study in cost}
    lines += (["## Cost", "", COST_INTRO, ""]
              + [line for study in cost for line in cost_section(study, benchmarks[study.folder], markdown_folder)])
    lines += cuda_tests_section(results_folder)
    tables = {path: text for recorded in benchmarks.values() for path, text in benchmark_tables(recorded).items()}
    return RenderedLedger(re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n", tuple(studies), renderers,
                          benchmarks, tables)


def render_results(results_folder: str, output: str, resamples: int) -> List[str]:
    """Writes output (RESULTS.md), results_folder/figures/*.png and the benchmark tables; returns the studies
    rendered."""
    rendered = render_ledger(results_folder, output, resamples)
    rendered.write(output)
    return [s.name for s in rendered.studies]


@console_script
def main(argv: Optional[Sequence[str]] = None) -> None:
    from nnunetv2_morse.ledger.verdict import default_readme, shown_path, stale_documents, write_documents

    parser = command_parser(PROG, __doc__.split("\n\n")[0])
    parser.add_argument("-i", dest="results", metavar="FOLDER", default="results",
                        help="the ledger folder (holding the studies)")
    parser.add_argument("-o", dest="output", metavar="FILE",
                        help="the Markdown file (default: RESULTS.md beside the ledger folder)")
    parser.add_argument("--readme", metavar="FILE",
                        help="the README whose verdict block (between its verdict markers) is rendered from the "
                             "ledger, the rest left as it is (default: README.md beside the ledger folder if it has "
                             "the markers, else none)")
    parser.add_argument("--resamples", metavar="N", type=integer_at_least(1), default=9999,
                        help="bootstrap resamples per confidence interval")
    parser.add_argument("--check", action="store_true",
                        help="write nothing: render in memory and say which of RESULTS.md, the benchmark tables' "
                             "Markdown and the README's verdict differ from what the ledger renders (exit status 1 "
                             "if any; figures are not compared)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.results):
        parser.error(f"-i {args.results}: no such folder{relative_to_here(args.results)}")
    root = os.path.dirname(os.path.abspath(args.results))
    output = args.output or os.path.join(root, "RESULTS.md")
    readme = args.readme or default_readme(args.results)
    verdict = f", the verdict in {shown_path(readme)}" if readme else ""
    with one_line_errors(PROG, (StudyError,)):
        if not args.check:
            studies = write_documents(args.results, output, readme, args.resamples)
            print(f"Wrote {output} ({len(studies)} studies), {os.path.join(args.results, FIGURES_FOLDER)}/{verdict} "
                  "and the benchmark tables' Markdown")
            return
        stale = stale_documents(args.results, output, readme, args.resamples)
    ledger = f"{args.results.rstrip('/')}/"
    if stale:
        command = shlex.join([PROG] + [a for a in (sys.argv[1:] if argv is None else argv) if a != "--check"])
        sys.exit("\n".join(f"{what} is out of date with {ledger}: run {command}" for what in stale))
    print(f"{shown_path(output)}{verdict} and the benchmark tables' Markdown are up to date with {ledger}")


if __name__ == "__main__":
    main()
