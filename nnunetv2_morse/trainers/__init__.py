"""nnU-Net trainers for MORSE. nnU-Net finds them when the project's top-level trainers/ folder (installed as the
package nnunetv2_morse_trainers) is in the nnUNet_extTrainer environment variable:

    export nnUNet_extTrainer=$(nnUNetv2_morse_trainer_dir)

The classes are defined here (morse, family, short) and only re-exported there: nnU-Net imports every module of an
nnUNet_extTrainer folder as a top-level module and removes it from sys.modules afterwards, so this folder itself
would collide with any module named morse, family or short and make second copies of its classes.
"""
import importlib
import os
import pkgutil
import sys
from typing import Dict

from nnunetv2_morse.cli import console_script

TRAINER_MODULE = "nnunetv2_morse_trainer_classes"
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# installed from a wheel: site-packages/nnunetv2_morse_trainers; a checkout or an editable install: <checkout>/trainers
_CANDIDATES = (os.path.join(_ROOT, "nnunetv2_morse_trainers"), os.path.join(_ROOT, "trainers"))
TRAINER_DIR = next((folder for folder in _CANDIDATES if os.path.isfile(os.path.join(folder, TRAINER_MODULE + ".py"))),
                   _CANDIDATES[0])


def trainer_classes() -> Dict[str, type]:
    """Every nnUNetTrainer subclass defined in this package's modules, by class name."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    return {name: obj for module in modules for name, obj in vars(module).items()
            if isinstance(obj, type) and issubclass(obj, nnUNetTrainer) and obj.__module__ == module.__name__}


@console_script
def print_trainer_dir() -> None:
    """The console script nnUNetv2_morse_trainer_dir: prints TRAINER_DIR, or exits with a one-line error."""
    if not os.path.isfile(os.path.join(TRAINER_DIR, TRAINER_MODULE + ".py")):
        sys.exit(f"error: {TRAINER_DIR} holds no {TRAINER_MODULE}.py: reinstall nnunetv2-morse from a wheel or a "
                 f"checkout (pip install <wheel or checkout>, or pip install -e <checkout>)")
    print(TRAINER_DIR)
