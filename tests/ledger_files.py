"""Hand-made ledger files for the ledger's tests: study.json, per-case reports, curves and run records."""
import json
import os

import numpy as np

from nnunetv2_morse.ledger.definition import load_study
from nnunetv2_morse.ledger.run import CURVES_FILE, HEAD_OFF_FILE, METRICS_FILE, RECORD_FILE

METRICS = ("Dice", "HD95", "ASSD", "NSD")
EMPTY_CASE_RULE = "reference and prediction empty: NaN"


def write_json(data, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)


def study_definition(**fields):
    """A valid training study: synthetic 2D data, nnUNetTrainer and MORSE at seeds 0 and 1, folds 0 and 1."""
    definition = {
        "title": "Test study",
        "dataset": {"builder": "synthetic", "id": 961, "arguments": {"dim": 2, "num_training": 6, "num_test": 0}},
        "configuration": "2d",
        "folds": [0, 1],
        "schedule": {"epochs": 2, "iterations_per_epoch": 3, "validation_iterations": 1},
        "trainers": {"nnUNetTrainer": [0, 1], "nnUNetTrainerMORSE": [0, 1]},
        "head_off": ["nnUNetTrainerMORSE"],
        "comparisons": [{"title": "MORSE vs nnU-Net", "baseline": "nnUNetTrainer", "models": ["nnUNetTrainerMORSE"]}],
    }
    definition.update(fields)
    return definition


def write_study(folder, **fields):
    write_json(study_definition(**fields), os.path.join(folder, "study.json"))
    return load_study(str(folder))


def report(values, empty_case_rule=EMPTY_CASE_RULE, empty_convention=None, geometry=None):
    """An nnUNetv2_morse_evaluate report of {case: {class: {metric: value or None}}} (with empty_convention if given;
    geometry: (shape, spacing_mm) of every case, if given)."""
    classes = sorted({c for case in values.values() for c in case})
    where = {"shape": list(geometry[0]), "spacing_mm": list(geometry[1])} if geometry else {}
    return {"format": "nnunetv2_morse.boundary_metrics/1", "empty_case_rule": empty_case_rule,
            "classes": {c: {"labels": [i + 1], "nsd_tolerance_mm": 1.0} for i, c in enumerate(classes)},
            "metric_per_case": [{"case": case, **where, "metrics": metrics} for case, metrics in values.items()],
            **({"empty_convention": empty_convention} if empty_convention else {})}


def write_finished_run(study, trainer, seed, fold, values, head_off_values=None, wall_seconds=600.0,
                       ema=(0.5, 0.6, 0.7), empty_case_rule=EMPTY_CASE_RULE, empty_convention=None,
                       epoch_seconds=(20.0, 30.0, 24.0), geometry=None):
    """The ledger files of a finished run, run.json last; its epochs take epoch_seconds, one after the other."""
    folder = os.path.join(study.folder, "runs", trainer, f"seed{seed}", f"fold_{fold}")
    starts = 1.7e9 + np.concatenate([[0.0], np.cumsum(epoch_seconds)[:-1] + 0.5])
    write_json(report(values, empty_case_rule, empty_convention, geometry), os.path.join(folder, METRICS_FILE))
    if head_off_values is not None:
        write_json(report(head_off_values, empty_case_rule, empty_convention, geometry),
                   os.path.join(folder, HEAD_OFF_FILE))
    write_json({"ema_fg_dice": list(ema), "mean_fg_dice": list(ema), "train_losses": [1.0, 0.8, 0.7],
                "val_losses": [0.9, 0.8, 0.75], "epoch_start_timestamps": list(starts),
                "epoch_end_timestamps": list(starts + np.asarray(epoch_seconds))}, os.path.join(folder, CURVES_FILE))
    write_json({"identity": study.identity(), "trainer": trainer, "seed": seed, "fold": fold, "device": "cpu",
                "wall_seconds": wall_seconds, "versions": {"torch": "2.x", "nnunetv2": "2.8.1"},
                "package_commit": "abc", "machine": {"platform": "Linux", "cpu_count": 2, "gpu": None}},
               os.path.join(folder, RECORD_FILE))
    return folder
