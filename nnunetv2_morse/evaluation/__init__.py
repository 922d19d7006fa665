"""Boundary-aware evaluation: Dice, IoU, HD95, ASSD and NSD per case and class, and paired model comparisons.

`metrics` computes the numbers (MONAI's surface metrics, in mm from the image spacing), `evaluate` scores prediction
folders and nnU-Net cross-validations (`nnUNetv2_morse_evaluate`, `nnUNetv2_morse_evaluate_cv`), `compare` compares
models case by case (`nnUNetv2_morse_compare`) with the paired statistics of `statistics` (bootstrap interval of the
mean difference, Wilcoxon signed-rank p, Benjamini-Hochberg adjustment).
"""
