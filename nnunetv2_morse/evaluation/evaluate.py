"""Score prediction folders and nnU-Net cross-validations with Dice, IoU, HD95, ASSD and NSD (see `metrics`).

Console entry points: ``nnUNetv2_morse_evaluate`` (a reference and a prediction folder) and
``nnUNetv2_morse_evaluate_cv`` (every fold's ``validation/`` of a trained model against nnU-Net's
``gt_segmentations``). Both write a JSON report (per case, per-class means, foreground mean) that
``nnUNetv2_morse_compare`` reads, and print a Markdown table of the per-class means.

Nothing is scored silently wrong: every .gz file must decompress to its end (SimpleITK reads a truncated NIfTI
without an error, its missing part as background), a prediction must lie on its reference's voxel grid (shape,
spacing, and where the reader gives them origin and orientation: a flipped or reoriented prediction would be scored
voxel by voxel against a mirrored reference), and the report's "warnings" (also printed on stderr and under
the table) name classes empty in every reference and prediction, label values that dataset.json does not know and
predictions left unscored.

A progress bar counts the scored cases (on a terminal). Worker processes start only for at least
MIN_CASES_PER_WORKER cases each: every worker imports torch, MONAI and nnU-Net before its first case, which costs
more than scoring a handful of cases.
"""
import argparse
import contextlib
import gzip
import json
import multiprocessing
import os
import sys
import zlib
from collections import Counter
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nnunetv2_morse.cli import (CommandError, Fold, add_model_arguments, add_processes_argument, command_parser,
                                console_script, dataset_name, markdown_table, one_line_errors, report_stamp,
                                required_environment_folder, trained_model_folder, write_json)
from nnunetv2_morse.evaluation.metrics import (DEFAULT_EMPTY, DEFAULT_TOLERANCE_MM, EMPTY_RULES, HIGHER_IS_BETTER,
                                               IGNORE_RULE, METRIC_NAMES, METRIC_UNITS, EvaluatedClass, as_spatial,
                                               case_metrics, check_empty_convention, classes_from_dataset_json,
                                               ignore_label_from_dataset_json, label_values_from_dataset_json)

REPORT_FORMAT = "nnunetv2_morse.boundary_metrics/2"
CV_REPORT_NAME = "crossval_boundary_metrics"
SPACING_RELATIVE_TOLERANCE = 1e-3
ORIGIN_TOLERANCE_VOXELS = 0.01
DIRECTION_TOLERANCE = 1e-3
GZIP_CHUNK_BYTES = 1 << 24
MAX_NAMED = 5
MIN_CASES_PER_WORKER = 8


class EvaluationError(CommandError):
    """A problem with the inputs (missing files or cases, mismatching images), reported as one line."""


def load_json(path: str) -> dict:
    """The JSON object in path; EvaluationError if it does not exist."""
    if not os.path.isfile(path):
        raise EvaluationError(f"file not found: {path}")
    with open(path) as f:
        return json.load(f)


def label_files(folder: str, file_ending: str) -> Dict[str, str]:
    """{case identifier: path} of the files in folder ending with file_ending, sorted by identifier."""
    if not os.path.isdir(folder):
        raise EvaluationError(f"folder not found: {folder}")
    names = sorted(n for n in os.listdir(folder) if n.endswith(file_ending) and not n.startswith("."))
    return {n[:-len(file_ending)]: os.path.join(folder, n) for n in names}


def reader_class_for(dataset_json: Mapping, example_file: str):
    """nnU-Net's reader/writer class for the dataset's file_ending (or its overwrite_image_reader_writer)."""
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    return determine_reader_writer_from_dataset_json(dataset_json, example_file, verbose=False)


def check_gzip(path: str) -> None:
    """EvaluationError naming path if it ends with .gz and does not decompress to its end (truncated or corrupt).

    SimpleITK reads a truncated .nii.gz without an error, its missing part as zeros: a broken prediction would score
    as a (partly) empty one.
    """
    if not path.endswith(".gz"):
        return
    try:
        with gzip.open(path, "rb") as f:
            while f.read(GZIP_CHUNK_BYTES):
                pass
    except (OSError, EOFError, zlib.error) as error:
        raise EvaluationError(f"{path} is truncated or corrupt ({error}): write or copy it again") from error


def read_label_map(reader, path: str) -> Tuple[np.ndarray, Tuple[float, ...], Optional[Tuple[np.ndarray, np.ndarray]]]:
    """A segmentation file as an array in numpy axis order ((z, y, x): SimpleITK's x, y, z reversed; 2D files: an
    axis of one slice first), its spacing (mm, same order) and its image_geometry.

    EvaluationError naming the file if it is a broken .gz (check_gzip) or the reader fails.
    """
    check_gzip(path)
    try:
        segmentation, properties = reader.read_seg(path)
    except (RuntimeError, OSError, ValueError, EOFError, zlib.error) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise EvaluationError(f"cannot read {path}: {reason}") from error
    return segmentation[0], tuple(float(s) for s in properties["spacing"]), image_geometry(properties)


def image_geometry(properties: Mapping) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(origin (d,) in mm, direction (d, d): unit axis vectors as columns) of a file read by an nnU-Net reader (both in
    the file's own x, y, z order), None where the reader gives no geometry (PNG, TIFF)."""
    if "sitk_stuff" in properties:
        origin = np.asarray(properties["sitk_stuff"]["origin"], dtype=float)
        return origin, np.asarray(properties["sitk_stuff"]["direction"], dtype=float).reshape(origin.size, origin.size)
    if "nibabel_stuff" in properties:
        affine = np.asarray(properties["nibabel_stuff"]["original_affine"], dtype=float)
        linear = affine[:-1, :-1]
        return affine[:-1, -1], linear / np.linalg.norm(linear, axis=0)
    return None


def check_same_grid(case_id: str, reference_geometry: Optional[Tuple[np.ndarray, np.ndarray]],
                    prediction_geometry: Optional[Tuple[np.ndarray, np.ndarray]], spacing: Sequence[float]) -> None:
    """EvaluationError unless the prediction's origin is within ORIGIN_TOLERANCE_VOXELS of the smallest voxel size and
    its direction within DIRECTION_TOLERANCE of the reference's (image_geometry; nothing to check if either is None)."""
    if reference_geometry is None or prediction_geometry is None:
        return
    (reference_origin, reference_direction), (prediction_origin, prediction_direction) = (reference_geometry,
                                                                                          prediction_geometry)
    if reference_direction.shape != prediction_direction.shape or not np.allclose(
            reference_direction, prediction_direction, rtol=0, atol=DIRECTION_TOLERANCE):
        raise EvaluationError(f"case {case_id}: prediction orientation (direction {_rounded(prediction_direction)}) "
                              f"differs from the reference's ({_rounded(reference_direction)}): it would be scored "
                              f"voxel by voxel against a flipped or rotated reference; write the prediction in the "
                              f"reference's orientation (nnUNetv2_predict keeps the input image's)")
    tolerance = ORIGIN_TOLERANCE_VOXELS * min(spacing)
    if not np.allclose(reference_origin, prediction_origin, rtol=0, atol=tolerance):
        raise EvaluationError(f"case {case_id}: prediction origin {_rounded(prediction_origin)} mm differs from the "
                              f"reference's {_rounded(reference_origin)} mm by more than {tolerance:.3g} mm: it is "
                              f"not on the reference's voxel grid; write it with the reference's geometry "
                              f"(nnUNetv2_predict keeps the input image's)")


def _rounded(values: np.ndarray) -> list:
    return (np.round(values, 4) + 0.0).tolist()  # + 0.0: no -0.0


def unknown_label_values(label_map: np.ndarray, known: Sequence[int]) -> List[float]:
    """The sorted values of label_map that are not in known (ints where integral: JSON-ready)."""
    import pandas as pd

    known = {float(k) for k in known}
    unknown = sorted(float(v) for v in pd.unique(label_map.ravel()) if float(v) not in known)
    return [int(v) if v.is_integer() else v for v in unknown]


def evaluate_case(case_id: str, reference_file: str, prediction_file: str, reader_class,
                  classes: Sequence[EvaluatedClass], ignore_label: Optional[int], empty: str = DEFAULT_EMPTY,
                  known_labels: Optional[Sequence[int]] = None) -> dict:
    """{"case", "reference_file", "prediction_file", "shape", "spacing_mm", "metrics": {class: {metric: value}}}.

    shape and spacing_mm are those evaluated: a one-slice 3D image (nnU-Net's 2D) as 2D. ``empty``: the convention
    for classes empty in both (metrics.EMPTY_RULES). With ``known_labels`` (dataset.json's label values), values
    outside them are listed in "unknown_label_values" {"reference"/"prediction": [values]}, present only if any.
    """
    reader = reader_class()
    reference, reference_spacing, reference_geometry = read_label_map(reader, reference_file)
    prediction, prediction_spacing, prediction_geometry = read_label_map(reader, prediction_file)
    reference, spacing = as_spatial(reference, reference_spacing)
    prediction, prediction_spacing = as_spatial(prediction, prediction_spacing)
    if reference.shape != prediction.shape:
        raise EvaluationError(f"case {case_id}: prediction shape {prediction.shape} differs from reference shape "
                              f"{reference.shape}")
    if not np.allclose(spacing, prediction_spacing, rtol=SPACING_RELATIVE_TOLERANCE):
        raise EvaluationError(f"case {case_id}: prediction spacing {prediction_spacing} mm differs from reference "
                              f"spacing {spacing} mm")
    check_same_grid(case_id, reference_geometry, prediction_geometry, spacing)
    result = {"case": case_id, "reference_file": os.path.abspath(reference_file),
              "prediction_file": os.path.abspath(prediction_file), "shape": list(reference.shape),
              "spacing_mm": list(spacing),
              "metrics": case_metrics(reference, prediction, spacing, classes, ignore_label, empty)}
    if known_labels is not None:
        unknown = {role: unknown_label_values(label_map, known_labels)
                   for role, label_map in (("reference", reference), ("prediction", prediction))}
        unknown = {role: values for role, values in unknown.items() if values}
        if unknown:
            result["unknown_label_values"] = unknown
    return result


def worker_count(num_cases: int, num_processes: int) -> int:
    """Worker processes worth starting for num_cases: at most num_processes, each with MIN_CASES_PER_WORKER cases or
    more; 0 (score in this process) if not even two workers would be."""
    workers = min(num_processes, num_cases // MIN_CASES_PER_WORKER)
    return workers if workers >= 2 else 0


def _evaluate_case_arguments(arguments: tuple) -> dict:
    return evaluate_case(*arguments)


def evaluate_cases(case_files: Sequence[Tuple[str, str, str]], dataset_json: Mapping,
                   classes: Sequence[EvaluatedClass], num_processes: int, empty: str = DEFAULT_EMPTY) -> List[dict]:
    """evaluate_case for every (case id, reference file, prediction file), in order, with a progress bar (on a
    terminal); worker_count(len(case_files), num_processes) worker processes.

    Label values that dataset.json does not name are recorded per case (evaluate_case); build_report warns of them.
    """
    from tqdm import tqdm

    if not case_files:
        raise EvaluationError("no cases to evaluate")
    check_empty_convention(empty)
    check_gzip(case_files[0][1])  # nnU-Net picks the reader by reading this file
    reader_class = reader_class_for(dataset_json, case_files[0][1])
    arguments = [(*files, reader_class, list(classes), ignore_label_from_dataset_json(dataset_json), empty,
                  label_values_from_dataset_json(dataset_json)) for files in case_files]
    workers = worker_count(len(arguments), num_processes)
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers else contextlib.nullcontext()
    results = []
    with pool, tqdm(total=len(arguments), desc="scoring", unit="case", disable=None) as progress:
        for result in (pool.imap if workers else map)(_evaluate_case_arguments, arguments):
            results.append(result)
            progress.update()
    return results


def paired_files(reference_folder: str, prediction_folder: str, file_ending: str,
                 case_ids: Optional[Sequence[str]] = None) -> List[Tuple[str, str, str]]:
    """(case id, reference file, prediction file) for case_ids (default: every reference file), all required."""
    references = label_files(reference_folder, file_ending)
    predictions = label_files(prediction_folder, file_ending)
    case_ids = list(references) if case_ids is None else list(case_ids)
    if not case_ids:
        raise EvaluationError(f"no {file_ending} files in {reference_folder}")
    missing_references = [c for c in case_ids if c not in references]
    if missing_references:
        raise EvaluationError(f"reference folder {reference_folder} lacks {len(missing_references)} case(s): "
                              f"{', '.join(missing_references)}")
    missing_predictions = [c for c in case_ids if c not in predictions]
    if missing_predictions:
        raise EvaluationError(f"prediction folder {prediction_folder} lacks {len(missing_predictions)} of "
                              f"{len(case_ids)} case(s): {', '.join(missing_predictions)}")
    return [(c, references[c], predictions[c]) for c in case_ids]


def named(items: Sequence[str]) -> str:
    """The first MAX_NAMED items, comma-separated, with how many more there are."""
    more = len(items) - MAX_NAMED
    return ", ".join(items[:MAX_NAMED]) + (f" and {more} more" if more > 0 else "")


def unscored_files_warnings(prediction_folder: str, file_ending: str, scored_cases: Sequence[str],
                            why: str) -> List[str]:
    """A warning naming the files of prediction_folder not among scored_cases; why: e.g. "have no reference"."""
    scored = set(scored_cases)
    unscored = [c + file_ending for c in label_files(prediction_folder, file_ending) if c not in scored]
    if not unscored:
        return []
    return [f"{len(unscored)} prediction file(s) in {os.path.abspath(prediction_folder)} {why} and are not scored: "
            f"{named(unscored)}"]


def _mean_of_defined(values: Sequence[Optional[float]]) -> Optional[float]:
    """Mean of the values that are neither None nor NaN; None if there are none."""
    array = np.array(values, dtype=float)
    defined = array[~np.isnan(array)]
    return float(defined.mean()) if defined.size else None


def class_means(case_results: Sequence[dict], classes: Sequence[EvaluatedClass]
                ) -> Tuple[Dict[str, Dict[str, Optional[float]]], Dict[str, Optional[float]]]:
    """Per-class means {class: {metric: mean}} and the foreground mean {metric: mean over the classes' means}.

    Undefined values (NaN or None: --empty nan) are left out; a mean over nothing is None.
    """
    means = {c.name: {m: _mean_of_defined([r["metrics"][c.name][m] for r in case_results]) for m in METRIC_NAMES}
             for c in classes}
    foreground = {m: _mean_of_defined([means[c.name][m] for c in classes]) for m in METRIC_NAMES}
    return means, foreground


def empty_class_warnings(case_results: Sequence[dict], classes: Sequence[EvaluatedClass], empty: str) -> List[str]:
    """One warning per class that is empty in every reference and prediction, saying what the convention did."""
    warnings = []
    for c in classes:
        if any(r["metrics"][c.name]["n_ref"] or r["metrics"][c.name]["n_pred"] for r in case_results):
            continue
        consequence = ("scored as a correct absence (Dice 1, HD95 0, NSD 1) in every case, which raises the "
                       "foreground mean; --empty nan leaves it out" if empty == "one"
                       else "undefined in every case and left out of the foreground mean")
        warnings.append(f"class {c.name!r} (label(s) {', '.join(map(str, c.labels))}) is empty in every reference "
                        f"and prediction of the {len(case_results)} case(s): {consequence}; check that dataset.json "
                        "belongs to these segmentations")
    return warnings


def unknown_label_warnings(case_results: Sequence[dict]) -> List[str]:
    """A warning naming the label values outside dataset.json and the files holding them, if there are any."""
    files = {}
    for result in case_results:
        for role, values in result.get("unknown_label_values", {}).items():
            files[result[f"{role}_file"]] = values
    if not files:
        return []

    def listed(values):
        return ", ".join(map(str, values))
    all_values = sorted({v for values in files.values() for v in values})
    holding = named([f"{path} ({listed(values)})" for path, values in files.items()])
    return [f"label value(s) {listed(all_values)} not in dataset.json's labels (not scored: background for every "
            f"class) in {len(files)} file(s): {holding}"]


def _with_undefined_as_null(case_results: Sequence[dict]) -> List[dict]:
    """case_results with NaN metric values (undefined: --empty nan) as None, written as JSON null."""

    def null_if_nan(value):
        return None if isinstance(value, float) and np.isnan(value) else value
    return [{**r, "metrics": {c: {k: null_if_nan(v) for k, v in values.items()} for c, values in r["metrics"].items()}}
            for r in case_results]


def build_report(case_results: List[dict], classes: Sequence[EvaluatedClass], dataset_json: Mapping,
                 empty: str = DEFAULT_EMPTY, warnings: Sequence[str] = (), **sources) -> dict:
    """The JSON report: conventions, dataset identity, classes, warnings, per-case metrics, per-class means and
    foreground mean.

    empty: the convention the case results were computed with; warnings: the caller's, to which the report adds
    empty_class_warnings and unknown_label_warnings. sources (e.g. reference_folder, dataset) are recorded as given;
    "dataset" defaults to dataset.json's "name". The report_stamp records the versions and the time.
    """
    check_empty_convention(empty)
    means, foreground = class_means(case_results, classes)
    return {
        "format": REPORT_FORMAT,
        **report_stamp(),
        "dataset": dataset_json.get("name"),
        **sources,
        "num_cases": len(case_results),
        "metric_units": dict(METRIC_UNITS),
        "higher_is_better": dict(HIGHER_IS_BETTER),
        "empty_convention": empty,
        "empty_case_rule": EMPTY_RULES[empty],
        "dataset_labels": dict(dataset_json["labels"]),
        "ignore_label": ignore_label_from_dataset_json(dataset_json),
        "ignore_rule": IGNORE_RULE,
        "classes": {c.name: {"labels": list(c.labels), "nsd_tolerance_mm": c.tolerance_mm} for c in classes},
        "num_scored_cases": {c.name: sum(not np.isnan(r["metrics"][c.name]["Dice"]) for r in case_results)
                             for c in classes},
        "warnings": [*warnings, *empty_class_warnings(case_results, classes, empty),
                     *unknown_label_warnings(case_results)],
        "mean": means,
        "foreground_mean": foreground,
        "metric_per_case": _with_undefined_as_null(case_results),
    }


def print_warnings(program: str, warnings: Sequence[str]) -> None:
    """Each warning as one line "PROGRAM: warning: ..." on stderr."""
    for warning in warnings:
        print(f"{program}: warning: {warning}", file=sys.stderr)


def format_metric(metric: str, value: Optional[float]) -> str:
    """Dice, IoU, NSD with 4 decimals; distances (mm) with 2; undefined (None) as n/a."""
    if value is None:
        return "n/a"
    return f"{value:.2f}" if METRIC_UNITS[metric] == "mm" else f"{value:.4f}"


def markdown_summary(report: Mapping) -> str:
    """Markdown table of the report's per-class means and foreground mean, then its warnings."""
    header = ["class", "labels", "NSD tol. (mm)", *(f"{m} ({METRIC_UNITS[m]})" if METRIC_UNITS[m] else m
                                                     for m in METRIC_NAMES)]
    rows = [[name, ", ".join(str(label) for label in info["labels"]), f"{info['nsd_tolerance_mm']:g}",
             *(format_metric(m, report["mean"][name][m]) for m in METRIC_NAMES)]
            for name, info in report["classes"].items()]
    rows.append(["**foreground mean**", "", "", *(format_metric(m, report["foreground_mean"][m])
                                                  for m in METRIC_NAMES)])
    lines = [f"Mean over {report['num_cases']} case(s); NSD at the tolerance shown; {report['empty_case_rule']}.",
             "", markdown_table(header, rows, "llr" + "r" * len(METRIC_NAMES))]
    if report["warnings"]:
        lines += [""] + [f"**Warning**: {warning}" for warning in report["warnings"]]
    return "\n".join(lines) + "\n"


def predicted_cases(reference_folder: str, prediction_folder: str, file_ending: str) -> Tuple[List[str], List[str]]:
    """(reference cases with a prediction, warnings naming those without one): nnU-Net's --chill."""
    predictions = label_files(prediction_folder, file_ending)
    references = list(label_files(reference_folder, file_ending))
    unpredicted = [c + file_ending for c in references if c not in predictions]
    present = [c for c in references if c in predictions]
    if not present:
        raise EvaluationError(f"prediction folder {prediction_folder} holds none of the {len(references)} reference "
                              f"case(s) of {reference_folder}")
    if not unpredicted:
        return present, []
    return present, [f"--chill: {len(unpredicted)} reference case(s) in {os.path.abspath(reference_folder)} have no "
                     f"prediction and are not scored: {named(unpredicted)}"]


def evaluate_folders(reference_folder: str, prediction_folder: str, dataset_json: Mapping,
                     default_tolerance_mm: float = DEFAULT_TOLERANCE_MM,
                     tolerance_mm_per_class: Optional[Mapping[str, float]] = None,
                     num_processes: int = 1, empty: str = DEFAULT_EMPTY,
                     dataset_json_file: Optional[str] = None, chill: bool = False) -> dict:
    """Report (build_report) of every reference case in reference_folder against prediction_folder; with chill
    (nnU-Net's --chill) only of the reference cases that have a prediction, the others named in a warning.

    Predictions without a reference are not scored and are named in the report's warnings.
    """
    classes = classes_from_dataset_json(dataset_json, default_tolerance_mm, tolerance_mm_per_class)
    file_ending = dataset_json["file_ending"]
    case_ids, unpredicted = (predicted_cases(reference_folder, prediction_folder, file_ending) if chill
                             else (None, []))
    case_files = paired_files(reference_folder, prediction_folder, file_ending, case_ids)
    unscored = unscored_files_warnings(prediction_folder, file_ending, [c for c, *_ in case_files],
                                       f"have no reference in {os.path.abspath(reference_folder)}")
    results = evaluate_cases(case_files, dataset_json, classes, num_processes, empty)
    sources = {} if dataset_json_file is None else {"dataset_json_file": os.path.abspath(dataset_json_file)}
    return build_report(results, classes, dataset_json, empty, unpredicted + unscored,
                        reference_folder=os.path.abspath(reference_folder),
                        prediction_folder=os.path.abspath(prediction_folder), **sources)


def validation_cases(preprocessed_folder: str, fold: Fold, validation_folder: str, file_ending: str) -> List[str]:
    """A fold's validation cases: from preprocessed_folder's splits_final.json, or without that file the predictions
    present; fold "all" (trained and validated on every case): every case of its gt_segmentations."""
    if fold == "all":
        return list(label_files(os.path.join(preprocessed_folder, "gt_segmentations"), file_ending))
    splits_file = os.path.join(preprocessed_folder, "splits_final.json")
    if os.path.isfile(splits_file):
        splits = load_json(splits_file)
        if fold >= len(splits):
            raise EvaluationError(f"fold {fold} not in {splits_file} ({len(splits)} folds)")
        return list(splits[fold]["val"])
    return list(label_files(validation_folder, file_ending))


def evaluate_cross_validation(dataset: str, trainer: str, configuration: str, plans: str = "nnUNetPlans",
                              folds: Sequence[Fold] = (0, 1, 2, 3, 4),
                              default_tolerance_mm: float = DEFAULT_TOLERANCE_MM,
                              tolerance_mm_per_class: Optional[Mapping[str, float]] = None,
                              num_processes: int = 1, empty: str = DEFAULT_EMPTY) -> Tuple[dict, str]:
    """Report of all folds' validation predictions against gt_segmentations, and the model folder it belongs in.

    Cases carry their "fold"; "folds" holds each fold's prediction folder, case count and means. Files in a
    validation folder that are not among the fold's validation cases are not scored and are named in the warnings.
    """
    preprocessed_root = required_environment_folder("nnUNet_preprocessed")
    name = dataset_name(dataset)
    output_folder = trained_model_folder(name, trainer, plans, configuration)
    preprocessed = os.path.join(preprocessed_root, name)
    dataset_json_file = os.path.join(output_folder, "dataset.json")
    if not os.path.isfile(dataset_json_file):
        dataset_json_file = os.path.join(preprocessed, "dataset.json")
    dataset_json = load_json(dataset_json_file)
    file_ending = dataset_json["file_ending"]
    classes = classes_from_dataset_json(dataset_json, default_tolerance_mm, tolerance_mm_per_class)
    reference_folder = os.path.abspath(os.path.join(preprocessed, "gt_segmentations"))
    case_files, case_folds, fold_sources, unscored = [], [], {}, []
    for fold in folds:
        validation_folder = os.path.join(output_folder, f"fold_{fold}", "validation")
        if not os.path.isdir(validation_folder):
            raise EvaluationError(f"fold {fold} has no validation folder: {validation_folder}")
        cases = validation_cases(preprocessed, fold, validation_folder, file_ending)
        fold_files = paired_files(reference_folder, validation_folder, file_ending, cases)
        unscored += unscored_files_warnings(validation_folder, file_ending, cases,
                                            f"are not validation cases of fold {fold}")
        case_files += fold_files
        case_folds += [fold] * len(fold_files)
        fold_sources[str(fold)] = validation_folder
    repeated = sorted(c for c, count in Counter(c for c, *_ in case_files).items() if count > 1)
    if repeated:
        raise EvaluationError(f"case(s) validated in more than one fold: {named(repeated)}")
    results = evaluate_cases(case_files, dataset_json, classes, num_processes, empty)
    for result, fold in zip(results, case_folds):
        result["fold"] = fold
    report = build_report(results, classes, dataset_json, empty, unscored, dataset=name, trainer=trainer,
                          plans=plans, configuration=configuration, reference_folder=reference_folder)
    report["folds"] = {}
    for fold, validation_folder in fold_sources.items():
        fold_results = [r for r in results if str(r["fold"]) == fold]
        means, foreground = class_means(fold_results, classes)
        report["folds"][fold] = {"prediction_folder": validation_folder, "num_cases": len(fold_results),
                                 "mean": means, "foreground_mean": foreground}
    return report, output_folder


def parse_class_tolerances(items: Optional[Sequence[str]], parser: argparse.ArgumentParser) -> Dict[str, float]:
    """{"CLASS": mm} from ["CLASS:MM", ...]; CLASS is a dataset.json class name or a label value."""
    tolerances = {}
    for item in items or ():
        key, _, value = item.rpartition(":")
        try:
            tolerances[key] = float(value)
        except ValueError:
            parser.error(f"--tolerance-mm-per-class expects CLASS:MM, got {item!r}")
        if not key:
            parser.error(f"--tolerance-mm-per-class expects CLASS:MM, got {item!r}")
    return tolerances


def _add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """--tolerance-mm, --tolerance-mm-per-class, --empty, -np."""
    group = parser.add_argument_group("scoring")
    group.add_argument("--tolerance-mm", metavar="MM", type=float, default=DEFAULT_TOLERANCE_MM,
                       help="NSD tolerance in mm for every class")
    group.add_argument("--tolerance-mm-per-class", nargs="+", metavar="CLASS:MM",
                       help="per-class NSD tolerances overriding --tolerance-mm; CLASS is a dataset.json class "
                            "(or region) name or a label value, e.g. 1:2.0 liver:1.5")
    group.add_argument("--empty", choices=list(EMPTY_RULES), default=DEFAULT_EMPTY,
                       help="score of a class that is empty in both the reference and the prediction of a case: "
                            "'one' = Dice 1, IoU 1, HD95 0, ASSD 0, NSD 1, a correct absence (every case keeps a "
                            "score, as paired comparisons need); 'nan' = undefined, left out of the means, as in "
                            "nnU-Net's summary.json")
    add_processes_argument(group, f"scoring (workers start only for {MIN_CASES_PER_WORKER} or more cases each: each "
                                  "imports torch, MONAI and nnU-Net first)")


@console_script
def main_evaluate(argv: Optional[Sequence[str]] = None) -> None:
    """nnUNetv2_morse_evaluate REF_FOLDER PRED_FOLDER -djfile dataset.json [-o out.json] ..."""
    prog = "nnUNetv2_morse_evaluate"
    parser = command_parser(
        prog, "Dice, IoU, HD95, ASSD and NSD (mm) of every case and class of a prediction folder against a "
              "reference folder. Writes a JSON report and prints a Markdown table of the per-class means.",
        "Example:\n\n    nnUNetv2_morse_evaluate labelsTs pred -djfile dataset.json -o pred_metrics.json")
    parser.add_argument("reference_folder", help="folder with the reference segmentations")
    parser.add_argument("prediction_folder", help="folder with a prediction for every reference case")
    parser.add_argument("-djfile", metavar="FILE", required=True,
                        help="the dataset's dataset.json (labels, file_ending)")
    parser.add_argument("-o", dest="output_file", metavar="FILE",
                        help="output JSON (default: PRED_FOLDER/boundary_metrics.json)")
    parser.add_argument("--chill", action="store_true",
                        help="score only the reference cases that have a prediction (nnU-Net's --chill); the "
                             "others are named in a warning")
    _add_scoring_arguments(parser)
    args = parser.parse_args(argv)
    tolerances = parse_class_tolerances(args.tolerance_mm_per_class, parser)
    output_file = args.output_file or os.path.join(args.prediction_folder, "boundary_metrics.json")
    with one_line_errors(prog):
        report = evaluate_folders(args.reference_folder, args.prediction_folder, load_json(args.djfile),
                                  args.tolerance_mm, tolerances, args.num_processes, args.empty, args.djfile,
                                  args.chill)
    print_warnings(prog, report["warnings"])
    write_json(report, output_file)
    print(markdown_summary(report))
    print(f"Wrote {output_file}")


@console_script
def main_evaluate_cv(argv: Optional[Sequence[str]] = None) -> None:
    """nnUNetv2_morse_evaluate_cv -d DATASET -c CONFIGURATION [-tr TRAINER] [-p PLANS] [-f 0 1 2 3 4] [-o FILE] ..."""
    prog = "nnUNetv2_morse_evaluate_cv"
    parser = command_parser(
        prog, "Dice, IoU, HD95, ASSD and NSD (mm) of a trained model's cross-validation: every fold's validation/ "
              "against nnUNet_preprocessed/DATASET/gt_segmentations (each fold's cases from splits_final.json). "
              "Writes a JSON report and its Markdown table.",
        "Example:\n\n    nnUNetv2_morse_evaluate_cv -d 4 -c 3d_fullres -tr nnUNetTrainerMORSE -f 0 1 2 3 4")
    add_model_arguments(parser, checkpoint=False)
    parser.add_argument("-o", dest="output_file", metavar="FILE",
                        help=f"output JSON, and its Markdown table next to it as .md (default: {CV_REPORT_NAME}.json "
                             "in the model folder)")
    _add_scoring_arguments(parser)
    args = parser.parse_args(argv)
    tolerances = parse_class_tolerances(args.tolerance_mm_per_class, parser)
    with one_line_errors(prog):
        report, output_folder = evaluate_cross_validation(
            args.dataset, args.trainer, args.configuration, args.plans, args.folds, args.tolerance_mm, tolerances,
            args.num_processes, args.empty)
    print_warnings(prog, report["warnings"])
    title = (f"# {report['trainer']}__{report['plans']}__{report['configuration']} on {report['dataset']}: "
             f"cross-validation, folds {', '.join(report['folds'])}\n\n")
    markdown = title + markdown_summary(report)
    json_file = args.output_file or os.path.join(output_folder, CV_REPORT_NAME + ".json")
    markdown_file = os.path.splitext(json_file)[0] + ".md"
    write_json(report, json_file)
    with open(markdown_file, "w") as f:
        f.write(markdown)
    print(markdown)
    print(f"Wrote {json_file} and {markdown_file}")
