"""The folder nnU-Net's nnUNet_extTrainer points at (`nnUNetv2_morse_trainer_dir` prints it); installed as the
package nnunetv2_morse_trainers. Its modules only re-export the trainers of nnunetv2_morse.trainers, under names no
other module has: nnU-Net imports each of them as a top-level module and does not look into this __init__.py.
"""
