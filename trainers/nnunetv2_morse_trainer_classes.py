"""Every MORSE trainer (nnunetv2_morse.trainers: morse, family, short), re-exported for nnU-Net's trainer lookup.

The lookup finds the very class objects of the package, so `nnUNetTrainerMORSE` found by nnU-Net is the
`nnunetv2_morse.trainers.morse.nnUNetTrainerMORSE` of any other import.
"""
from nnunetv2_morse.trainers import trainer_classes

globals().update(trainer_classes())
