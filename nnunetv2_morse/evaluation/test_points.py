"""Inference time and quality of a trained MORSE model against N_test, the voxels re-predicted per patch
(``nnUNetv2_morse_test_points``).

For each count, the fold's validation cases are predicted from nnUNet_raw the way nnUNetv2_predict does it (same
predictor, sliding window, Gaussian weighting, mirroring, export), timed, and scored against gt_segmentations with
the boundary metrics of `evaluate`. Count 0 is the coarse U-Net output, i.e. the head switched off. One untimed
prediction of the first case at the largest count comes first, so that no count carries the warm-up (first
convolutions, memory pools). Writes test_points.md and test_points.json (and the predictions, one folder per count).
"""
import math
import os
import sys
import tempfile
import time
from typing import List, Optional, Sequence

from nnunetv2_morse.cli import (DEFAULT_CHECKPOINT, DEFAULT_PLANS, Fold, add_device_argument, add_model_arguments,
                                add_processes_argument, command_parser, console_script, dataset_name, markdown_table,
                                morse_network, one_line_errors, report_stamp, required_environment_folder,
                                resolve_device, trained_model_folder, trained_predictor, write_json)
from nnunetv2_morse.evaluation.evaluate import (DEFAULT_TOLERANCE_MM, EvaluationError, build_report, evaluate_cases,
                                                load_json, paired_files, validation_cases)
from nnunetv2_morse.evaluation.metrics import DEFAULT_EMPTY, EMPTY_RULES, classes_from_dataset_json

SUMMARY_METRICS = ("Dice", "HD95", "NSD")
# default counts besides 0: the model's own N_test times these factors
DEFAULT_COUNT_FACTORS = (0.25, 0.5, 1, 2, 4, 16)


def default_counts(model_count: int, patch_voxels: int) -> List[int]:
    """0 (the coarse output) and the model's own N_test times DEFAULT_COUNT_FACTORS, at most the patch's voxels."""
    multiples = {min(max(1, round(model_count * factor)), patch_voxels) for factor in DEFAULT_COUNT_FACTORS}
    return sorted({0, model_count, *multiples})


def sweep_test_points(dataset: str, trainer: str, configuration: str, fold: Fold, counts: Optional[Sequence[int]],
                      output_folder: str, plans: str = DEFAULT_PLANS, checkpoint: str = DEFAULT_CHECKPOINT,
                      device: str = "auto", use_mirroring: bool = True, num_processes: int = 2,
                      tolerance_mm: float = DEFAULT_TOLERANCE_MM, empty: str = DEFAULT_EMPTY) -> dict:
    """Predicts and scores the fold's validation cases at every count (None: default_counts) with the empty-class
    convention empty ("one" or "nan", as nnUNetv2_morse_evaluate's --empty); returns the JSON report
    {"rows": [...], ...}."""
    from nnunetv2.utilities.utils import create_lists_from_splitted_dataset_folder

    if counts is not None and (not counts or any(c < 0 for c in counts)):
        raise EvaluationError(f"--counts needs integers >= 0, got {list(counts)}")
    raw = required_environment_folder("nnUNet_raw")
    preprocessed = os.path.join(required_environment_folder("nnUNet_preprocessed"), dataset_name(dataset))
    folder = trained_model_folder(dataset, trainer, plans, configuration)
    torch_device = resolve_device(device)
    predictor = trained_predictor(folder, fold, checkpoint, torch_device, use_mirroring)
    network = morse_network(predictor)
    dataset_json = load_json(os.path.join(folder, "dataset.json"))
    file_ending = dataset_json["file_ending"]
    cases = sorted(validation_cases(preprocessed, fold, os.path.join(folder, f"fold_{fold}", "validation"),
                                    file_ending))
    inputs = create_lists_from_splitted_dataset_folder(
        os.path.join(raw, os.path.basename(preprocessed), "imagesTr"), file_ending, cases)
    patch = list(predictor.configuration_manager.patch_size)
    patch_voxels = math.prod(patch)
    model_count = network.config.test_points_for(patch)
    counts = list(counts) if counts is not None else default_counts(model_count, patch_voxels)
    classes = classes_from_dataset_json(dataset_json, tolerance_mm)
    reference_folder = os.path.join(preprocessed, "gt_segmentations")

    def predict(count: int, folder: str, case_inputs: Sequence[Sequence[str]]) -> float:
        """Seconds to predict case_inputs into folder at N_test = count."""
        network.set_num_test_points(count)
        start = time.perf_counter()
        predictor.predict_from_files(case_inputs, folder, save_probabilities=False, overwrite=True,
                                     num_processes_preprocessing=num_processes,
                                     num_processes_segmentation_export=num_processes)
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory() as warm_up_folder:
        print(f"warm-up: {cases[0]} at N_test {max(counts)}, not timed", file=sys.stderr, flush=True)
        predict(max(counts), warm_up_folder, inputs[:1])
    rows = []
    for count in counts:
        predictions = os.path.join(output_folder, f"ntest_{count}")
        seconds = predict(count, predictions, inputs)
        results = evaluate_cases(paired_files(reference_folder, predictions, file_ending, cases), dataset_json,
                                 classes, num_processes, empty)
        report = build_report(results, classes, dataset_json, empty, prediction_folder=predictions)
        write_json(report, os.path.join(predictions, "boundary_metrics.json"))
        rows.append({"num_test_points": count, "seconds": seconds, "seconds_per_case": seconds / len(cases),
                     "foreground_mean": report["foreground_mean"], "mean": report["mean"]})
        print(f"N_test {count}: {seconds:.1f} s, " + ", ".join(
            f"{m} {report['foreground_mean'][m]:.4f}" for m in SUMMARY_METRICS), flush=True)
    network.set_num_test_points(None)
    return {**report_stamp(), "dataset": os.path.basename(preprocessed), "trainer": trainer,
            "configuration": configuration, "plans": plans, "fold": fold, "checkpoint": checkpoint, "cases": cases,
            "patch_size": patch, "patch_voxels": patch_voxels, "model_num_test_points": model_count,
            "device": str(torch_device), "mirroring": use_mirroring, "warm_up": f"{cases[0]} at N_test {max(counts)}",
            "rows": rows}


def markdown_summary(result: dict) -> str:
    """One row per N_test: share of the patch, time and ratio to the coarse output, foreground-mean metrics."""
    rows = result["rows"]
    base = next((r for r in rows if r["num_test_points"] == 0), rows[0])
    title = (f"{result['trainer']} ({result['configuration']}, fold {result['fold']}, {len(result['cases'])} "
             f"validation cases, patch {result['patch_size']}, {result['device']}, mirroring "
             f"{'on' if result['mirroring'] else 'off'}); time = prediction wall time incl. export, after an untimed "
             f"warm-up; ratio against N_test {base['num_test_points']}"
             f"{' (coarse)' if base['num_test_points'] == 0 else ''}")
    table = [[f"{r['num_test_points']}" + (" (model's)" if r["num_test_points"] == result["model_num_test_points"]
                                           else ""),
              f"{r['num_test_points'] / result['patch_voxels']:.2%}", f"{r['seconds_per_case']:.2f}",
              f"{r['seconds'] / base['seconds']:.2f}", f"{r['foreground_mean']['Dice']:.4f}",
              f"{r['foreground_mean']['HD95']:.2f}", f"{r['foreground_mean']['NSD']:.4f}"] for r in rows]
    return title + "\n\n" + markdown_table(["N_test", "share of patch", "s / case", "time ratio", "Dice",
                                            "HD95 (mm)", "NSD"], table, "rrrrrrr") + "\n"


@console_script
def main(argv: Optional[Sequence[str]] = None) -> None:
    prog = "nnUNetv2_morse_test_points"
    parser = command_parser(
        prog, "Inference time and quality of a trained MORSE model against N_test, the voxels its head re-predicts "
              "per patch. For each count, the fold's validation cases are predicted as nnUNetv2_predict does it, "
              "timed after one untimed warm-up, and scored against gt_segmentations with nnUNetv2_morse_evaluate's "
              "metrics; count 0 is the coarse U-Net output (head off). Writes test_points.json, test_points.md and "
              "one prediction folder per count.",
        "Example:\n\n    nnUNetv2_morse_test_points -d 4 -c 3d_fullres -tr nnUNetTrainerMORSE -f 0 "
        "--counts 0 1024 4096")
    add_model_arguments(parser, trainer_default="nnUNetTrainerMORSE", multiple_folds=False)
    parser.add_argument("--counts", type=int, nargs="+", metavar="N",
                        help="N_test values; 0 = coarse output (head off) (default: 0 and the model's own N_test "
                             f"times {' '.join(f'{f:g}' for f in DEFAULT_COUNT_FACTORS)}, at most the patch's voxels)")
    parser.add_argument("-o", dest="output_folder", metavar="FOLDER",
                        help="output folder (default: the model folder's fold_F/test_points)")
    add_device_argument(parser)
    parser.add_argument("--disable_tta", action="store_true", help="no mirroring, as in nnUNetv2_predict")
    add_processes_argument(parser, "preprocessing, export and scoring")
    parser.add_argument("--tolerance-mm", metavar="MM", type=float, default=DEFAULT_TOLERANCE_MM,
                        help="NSD tolerance")
    parser.add_argument("--empty", choices=list(EMPTY_RULES), default=DEFAULT_EMPTY,
                        help="score of a class empty in both reference and prediction, as nnUNetv2_morse_evaluate's "
                             "--empty: 'one' = a correct absence, 'nan' = undefined, left out of the means")
    args = parser.parse_args(argv)
    if args.counts is not None and any(count < 0 for count in args.counts):
        parser.error(f"--counts needs integers >= 0 (0 = coarse output), got {args.counts}")
    with one_line_errors(prog):
        output_folder = args.output_folder or os.path.join(
            trained_model_folder(args.dataset, args.trainer, args.plans, args.configuration), f"fold_{args.fold}",
            "test_points")
        result = sweep_test_points(args.dataset, args.trainer, args.configuration, args.fold, args.counts,
                                   output_folder, args.plans, args.checkpoint, args.device, not args.disable_tta,
                                   args.num_processes, args.tolerance_mm, args.empty)
    table = markdown_summary(result)
    write_json(result, os.path.join(output_folder, "test_points.json"))
    with open(os.path.join(output_folder, "test_points.md"), "w") as f:
        f.write(table)
    print("\n" + table + f"\nWrote {os.path.join(output_folder, 'test_points.md')} and test_points.json")


if __name__ == "__main__":
    main()
