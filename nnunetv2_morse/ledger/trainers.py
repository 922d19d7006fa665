"""The trainers a study trains: each named trainer with the study's schedule and seed, written as a module into the
study's work folder (on nnUNet_extTrainer) so that nnUNetv2_train, --c and nnUNetv2_predict find them by name."""
from __future__ import annotations

from nnunetv2_morse.ledger.definition import TrainingStudy

MODULE_NAME = "ledger_trainers"


def trainer_class(name: str) -> type:
    """The trainer class called name: this package's, else nnU-Net's or one on nnUNet_extTrainer (RuntimeError if
    none)."""
    from nnunetv2_morse.trainers import family, morse, short
    for module in (morse, family, short):
        if isinstance(getattr(module, name, None), type):
            return getattr(module, name)
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    return recursive_find_trainer_class_by_name(name)


def scheduled_trainer(base: str, name: str, epochs: int, iterations: int, validation_iterations: int, seed: int,
                      checkpoint_every: int) -> type:
    """base trained for epochs x iterations with the random generators seeded with seed before the network is built,
    writing checkpoint_latest.pth every checkpoint_every epochs."""
    import torch

    from nnunetv2_morse.trainers.short import with_schedule
    scheduled = with_schedule(trainer_class(base), name, epochs, iterations, validation_iterations, seed=seed)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):  # nnU-Net records these parameters by name
        scheduled.__init__(self, plans, configuration, fold, dataset_json, device)
        self.save_every = checkpoint_every

    return type(name, (scheduled,), {"__init__": __init__, "__module__": MODULE_NAME, "__doc__": scheduled.__doc__})


def trainer_module_source(study: TrainingStudy) -> str:
    """Python source defining study.nnunet_trainer(run) for every trainer and seed of the study."""
    s = study.schedule
    lines = [f'"""The trainers of study {study.name} (written by nnUNetv2_morse_study; do not edit)."""',
             "from nnunetv2_morse.ledger.trainers import scheduled_trainer", ""]
    for run in {study.nnunet_trainer(r): r for r in study.runs()}.values():
        name = study.nnunet_trainer(run)
        lines.append(f"{name} = scheduled_trainer({run.trainer!r}, {name!r}, {s.epochs}, {s.iterations_per_epoch}, "
                     f"{s.validation_iterations}, {run.seed}, {s.checkpoint_every})")
    return "\n".join(lines) + "\n"
