"""Short variants of nnUNetTrainerMORSE and the paper's Table 1 trainers, named like nnU-Net's own
(nnUNetTrainer_5epochs, ...); the ablation variants have none, as nnU-Net's own variants have none.

Each is the family trainer with num_epochs changed; `nnUNetTrainerMORSE_demo` is sized for the CPU demo.
"""
import random
from typing import Optional

import numpy as np
import torch

from nnunetv2_morse.trainers import family
from nnunetv2_morse.trainers.morse import nnUNetTrainerMORSE
from nnunetv2_morse.trainers.resume import ExactResume

EPOCHS = (1, 5, 10, 20, 50, 100, 250, 500)
FAMILY = (nnUNetTrainerMORSE, family.nnUNetTrainerPointRend, family.nnUNetTrainerMoE, family.nnUNetTrainerSMoE,
          family.nnUNetTrainerIAR, family.nnUNetTrainerIARMoE)


def with_schedule(base: type, name: str, num_epochs: int, iterations: int = 250, val_iterations: int = 50,
                  seed: Optional[int] = None) -> type:
    """A subclass of base named `name` that trains num_epochs of `iterations` iterations; with a seed, the random
    generators are seeded before the network is built (so trainers that share a U-Net start from the same one).
    Its checkpoints hold the random states, so that a training continued with --c repeats the uninterrupted one:
    MORSE's trainers keep them already, any other base without them gets resume.ExactResume."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        if seed is not None:
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = num_epochs
        self.num_iterations_per_epoch = iterations
        self.num_val_iterations_per_epoch = val_iterations

    bases = (base,) if issubclass(base, (nnUNetTrainerMORSE, ExactResume)) else (ExactResume, base)
    return type(name, bases, {"__init__": __init__, "__module__": __name__,
                              "__doc__": f"{base.__name__}, {num_epochs} epochs of {iterations} iterations."})


for _base in FAMILY:
    for _epochs in EPOCHS:
        _name = f"{_base.__name__}_{_epochs}epoch" + ("s" if _epochs > 1 else "")
        globals()[_name] = with_schedule(_base, _name, _epochs)

nnUNetTrainerMORSE_demo = with_schedule(nnUNetTrainerMORSE, "nnUNetTrainerMORSE_demo", 3, 40, 10)
