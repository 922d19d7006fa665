"""Adaptive weight adjustment (AWA, paper eq. 4) of the rendering loss."""
from __future__ import annotations

from .config import MorseConfig


def awa_weight(iteration: int, total_iterations: int, config: MorseConfig) -> float:
    """lambda_t for the 0-based global iteration t of T = total_iterations.

    'linear': lambda_rend * 1{t > T/2} * (t - T/2) / T (eq. 4; reaches lambda_rend / 2 at t = T);
    'step': lambda_rend for t > T/2, else 0; 'off': lambda_rend throughout.
    """
    if total_iterations < 1:
        raise ValueError(f"total_iterations must be >= 1, got {total_iterations}")
    half = total_iterations / 2
    if config.awa == "off":
        return config.rend_loss_weight
    if iteration <= half:
        return 0.0
    if config.awa == "step":
        return config.rend_loss_weight
    return config.rend_loss_weight * (iteration - half) / total_iterations
