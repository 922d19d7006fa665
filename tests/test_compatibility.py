"""MORSE models in nnU-Net's model-selection and ensembling tools, next to stock nnUNetTrainer models."""
import json
import os
import random
import textwrap

import numpy as np
import pytest
import torch

from nnunetv2.evaluation.find_best_configuration import find_best_configuration
from nnunetv2.run.run_training import get_trainer_from_args
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from workspace import prepare_dataset, workspace_with_trainers

DATASET_ID = 963
TRAINERS = textwrap.dedent('''
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2_morse.trainers.morse import nnUNetTrainerMORSE


    def tiny(base):
        class Tiny(base):
            def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
                super().__init__(plans, configuration, fold, dataset_json, device)
                self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 1, 2, 1
        Tiny.__name__ = Tiny.__qualname__ = base.__name__ + "_tiny"
        return Tiny


    nnUNetTrainer_tiny = tiny(nnUNetTrainer)
    nnUNetTrainerMORSE_tiny = tiny(nnUNetTrainerMORSE)
''')


@pytest.fixture(scope="module")
def five_folds(tmp_path_factory):
    """Both trainers, five folds each, validated with probabilities saved (as `nnUNetv2_train ... --npz`)."""
    with workspace_with_trainers(tmp_path_factory.mktemp("compat"), "morse_compat_test_trainers", TRAINERS) as root:
        prepare_dataset(root, DATASET_ID, dim=2, num_training=5, num_test=1, seed=5)
        os.environ["nnUNet_def_n_proc"] = "1"
        for name in ("nnUNetTrainer_tiny", "nnUNetTrainerMORSE_tiny"):
            for fold in range(5):
                torch.manual_seed(fold)
                np.random.seed(fold)
                random.seed(fold)
                trainer = get_trainer_from_args(str(DATASET_ID), "2d", fold, name, device=torch.device("cpu"))
                trainer.run_training()
                trainer.perform_actual_validation(save_probabilities=True)
        yield root
        os.environ.pop("nnUNet_def_n_proc", None)


def test_find_best_configuration_with_morse_and_stock_ensembles(five_folds):
    models = [{"plans": "nnUNetPlans", "configuration": "2d", "trainer": t}
              for t in ("nnUNetTrainerMORSE_tiny", "nnUNetTrainer_tiny")]
    find_best_configuration(DATASET_ID, models, allow_ensembling=True, num_processes=1, overwrite=True)
    dataset_results = five_folds / "results" / f"Dataset{DATASET_ID}_MorseSynthetic"
    with open(dataset_results / "inference_information.json") as f:
        info = json.load(f)
    names = set(info["all_results"])
    assert any("nnUNetTrainerMORSE_tiny" in n and "ensemble" not in n for n in names)
    ensembles = [n for n in names if n.startswith("ensemble")]
    assert ensembles and all("nnUNetTrainerMORSE_tiny" in n and "nnUNetTrainer_tiny" in n for n in ensembles)
    assert all(np.isfinite(v) for v in info["all_results"].values())
    crossval = dataset_results / "nnUNetTrainerMORSE_tiny__nnUNetPlans__2d" / "crossval_results_folds_0_1_2_3_4"
    with open(crossval / "summary.json") as f:
        assert np.isfinite(json.load(f)["foreground_mean"]["Dice"])


def test_missing_ext_trainer_folder_is_named_in_the_error(monkeypatch):
    monkeypatch.setenv("nnUNet_extTrainer", "/does/not/exist")
    with pytest.raises(RuntimeError, match="nnUNet_extTrainer=/does/not/exist"):
        recursive_find_trainer_class_by_name("nnUNetTrainerMORSE")
