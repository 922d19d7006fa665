"""nnU-Net trainers for MORSE. nnU-Net finds them when this folder is in the nnUNet_extTrainer environment variable:

    export nnUNet_extTrainer=$(nnUNetv2_morse_trainer_dir)
"""
import os

TRAINER_DIR = os.path.dirname(os.path.abspath(__file__))


def print_trainer_dir() -> None:
    print(TRAINER_DIR)
