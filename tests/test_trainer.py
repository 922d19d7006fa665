"""nnUNetTrainerMORSE's own hooks on hand-made plans: gradient clipping, checkpoint writing, configuration checks."""
import dataclasses

import pytest
import torch

from nnunetv2_morse.config import MorseConfigError
from nnunetv2_morse.trainers.morse import nnUNetTrainerMORSE
from plans import DATASET_JSON, SMALL, trainer_plans
from workspace import nnunet_environment


def small_trainer_class(**config_changes):
    """A MORSE trainer named nnUNetTrainerMORSE_small whose configuration is SMALL with config_changes."""
    config = dataclasses.replace(SMALL, **config_changes)
    return type("nnUNetTrainerMORSE_small", (nnUNetTrainerMORSE,), {"morse_config": config})


def test_dense_gate_in_3d_is_refused_at_construction(tmp_path):
    with nnunet_environment(tmp_path), pytest.raises(MorseConfigError, match="MorseConfig.gate='dense'.*in 3D"):
        small_trainer_class(gate="dense")(trainer_plans(3), "cfg", 0, DATASET_JSON, torch.device("cpu"))
