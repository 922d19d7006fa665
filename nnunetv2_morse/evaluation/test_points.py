"""Inference time and quality of a trained MORSE model against N_test, the voxels re-predicted per patch.

    nnUNetv2_morse_test_points -d 930 -c 3d_fullres -tr nnUNetTrainerMORSE -f 0 --counts 0 4096 16384 65536

For each count, the fold's validation cases are predicted from nnUNet_raw the way nnUNetv2_predict does it (same
predictor, sliding window, Gaussian weighting, mirroring, export), timed, and scored against gt_segmentations with
the boundary metrics of `evaluate`. Count 0 is the coarse U-Net output, i.e. the head switched off. Writes
test_points.md and test_points.json (and the predictions, one folder per count) to -o.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Optional, Sequence

import numpy as np

from nnunetv2_morse.evaluation.evaluate import (DEFAULT_TOLERANCE_MM, EvaluationError, build_report, evaluate_cases,
                                                load_json, model_folder, paired_files, write_json)
from nnunetv2_morse.evaluation.metrics import classes_from_dataset_json

SUMMARY_METRICS = ("Dice", "HD95", "NSD")


def sweep_test_points(dataset: str, trainer: str, configuration: str, fold: int, counts: Sequence[int],
                      output_folder: str, plans: str = "nnUNetPlans", checkpoint: str = "checkpoint_final.pth",
                      device: str = "cuda", use_mirroring: bool = True, num_processes: int = 2,
                      tolerance_mm: float = DEFAULT_TOLERANCE_MM) -> dict:
    """Predicts and scores the fold's validation cases at every count; returns {"rows": [...], ...}."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
    from nnunetv2.utilities.utils import create_lists_from_splitted_dataset_folder

    from nnunetv2_morse.network import MorseNetwork
    from nnunetv2_morse.trainers.morse import unwrap_network

    if not counts or any(c < 0 for c in counts):
        raise EvaluationError(f"--counts needs integers >= 0, got {list(counts)}")
    dataset_name = _dataset_name(dataset)
    folder = model_folder(dataset_name, trainer, plans, configuration)
    if not os.path.isfile(os.path.join(folder, f"fold_{fold}", checkpoint)):
        raise EvaluationError(f"no {checkpoint} in {os.path.join(folder, f'fold_{fold}')}")
    preprocessed = os.path.join(nnUNet_preprocessed.get(), dataset_name)
    splits = load_json(os.path.join(preprocessed, "splits_final.json"))
    cases = sorted(splits[fold]["val"])
    dataset_json = load_json(os.path.join(folder, "dataset.json"))
    file_ending = dataset_json["file_ending"]
    inputs = create_lists_from_splitted_dataset_folder(os.path.join(nnUNet_raw.get(), dataset_name, "imagesTr"),
                                                       file_ending, cases)

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=use_mirroring,
                                perform_everything_on_device=device == "cuda", device=torch.device(device),
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(folder, (fold,), checkpoint)
    network = unwrap_network(predictor.network)
    if not isinstance(network, MorseNetwork):
        raise EvaluationError(f"{trainer} is not a MORSE trainer: its network has no point head to sweep")
    classes = classes_from_dataset_json(dataset_json, tolerance_mm)
    reference_folder = os.path.join(preprocessed, "gt_segmentations")
    rows = []
    for count in counts:
        network.set_num_test_points(count)
        predictions = os.path.join(output_folder, f"ntest_{count}")
        start = time.perf_counter()
        predictor.predict_from_files(inputs, predictions, save_probabilities=False, overwrite=True,
                                     num_processes_preprocessing=num_processes,
                                     num_processes_segmentation_export=num_processes)
        seconds = time.perf_counter() - start
        results = evaluate_cases(paired_files(reference_folder, predictions, file_ending, cases), dataset_json,
                                 classes, num_processes)
        report = build_report(results, classes, dataset_json, prediction_folder=predictions)
        write_json(report, os.path.join(predictions, "boundary_metrics.json"))
        rows.append({"num_test_points": count, "seconds": seconds, "seconds_per_case": seconds / len(cases),
                     "foreground_mean": report["foreground_mean"], "mean": report["mean"]})
        print(f"N_test {count}: {seconds:.1f} s, " + ", ".join(
            f"{m} {report['foreground_mean'][m]:.4f}" for m in SUMMARY_METRICS), flush=True)
    patch = predictor.configuration_manager.patch_size
    return {"dataset": dataset_name, "trainer": trainer, "configuration": configuration, "fold": fold,
            "checkpoint": checkpoint, "cases": cases, "patch_size": list(patch),
            "patch_voxels": int(np.prod(patch)), "device": device, "mirroring": use_mirroring,
            "torch": torch.__version__, "rows": rows}


def markdown_table(result: dict) -> str:
    """One row per N_test: share of the patch, time and ratio to the coarse output, foreground-mean metrics."""
    rows = result["rows"]
    base = next((r for r in rows if r["num_test_points"] == 0), rows[0])
    lines = [f"{result['trainer']} ({result['configuration']}, fold {result['fold']}, {len(result['cases'])} "
             f"validation cases, patch {result['patch_size']}, {result['device']}, mirroring "
             f"{'on' if result['mirroring'] else 'off'}); time = prediction wall time incl. export; "
             f"ratio against N_test {base['num_test_points']}{' (coarse)' if base['num_test_points'] == 0 else ''}",
             "", "| N_test | share of patch | s / case | time ratio | Dice | HD95 (mm) | NSD |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        m = r["foreground_mean"]
        lines.append(f"| {r['num_test_points']} | {r['num_test_points'] / result['patch_voxels']:.2%} | "
                     f"{r['seconds_per_case']:.2f} | {r['seconds'] / base['seconds']:.2f} | {m['Dice']:.4f} | "
                     f"{m['HD95']:.2f} | {m['NSD']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="nnUNetv2_morse_test_points", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("-d", dest="dataset", required=True, help="dataset name or ID")
    parser.add_argument("-c", dest="configuration", required=True)
    parser.add_argument("-tr", dest="trainer", required=True, help="a MORSE trainer, e.g. nnUNetTrainerMORSE")
    parser.add_argument("-p", dest="plans", default="nnUNetPlans")
    parser.add_argument("-f", dest="fold", type=int, default=0)
    parser.add_argument("-chk", dest="checkpoint", default="checkpoint_final.pth")
    parser.add_argument("--counts", type=int, nargs="+", default=[0, 4096, 8192, 16384, 32768, 65536],
                        help="N_test values; 0 = coarse output (head off)")
    parser.add_argument("-o", dest="output_folder", default=None,
                        help="default: the model folder's fold_F/test_points")
    parser.add_argument("-device", default="cuda", choices=("cuda", "cpu", "mps"))
    parser.add_argument("--disable_tta", action="store_true", help="no mirroring, as in nnUNetv2_predict")
    parser.add_argument("-np", type=int, default=2, help="processes for preprocessing, export and scoring")
    parser.add_argument("--tolerance-mm", type=float, default=DEFAULT_TOLERANCE_MM, help="NSD tolerance")
    args = parser.parse_args(argv)
    if any(count < 0 for count in args.counts):
        parser.error(f"--counts needs integers >= 0 (0 = coarse output), got {args.counts}")
    try:
        output_folder = args.output_folder or os.path.join(
            model_folder(_dataset_name(args.dataset), args.trainer, args.plans, args.configuration),
            f"fold_{args.fold}", "test_points")
        result = sweep_test_points(args.dataset, args.trainer, args.configuration, args.fold, args.counts,
                                   output_folder, args.plans, args.checkpoint, args.device, not args.disable_tta,
                                   args.np, args.tolerance_mm)
    except (EvaluationError, ValueError) as error:
        sys.exit(f"nnUNetv2_morse_test_points: error: {error}")
    table = markdown_table(result)
    os.makedirs(output_folder, exist_ok=True)
    with open(os.path.join(output_folder, "test_points.md"), "w") as f:
        f.write(table)
    with open(os.path.join(output_folder, "test_points.json"), "w") as f:
        json.dump(result, f, indent=2)
    print("\n" + table + f"\nWrote {os.path.join(output_folder, 'test_points.md')} and test_points.json")


def _dataset_name(dataset: str) -> str:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    try:
        return maybe_convert_to_dataset_name(dataset)
    except RuntimeError as error:
        raise EvaluationError(str(error).splitlines()[0]) from None


if __name__ == "__main__":
    main()
