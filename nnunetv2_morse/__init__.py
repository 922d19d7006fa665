"""MORSE (implicit anatomical rendering with stochastic experts, MICCAI 2023) for nnU-Net v2."""
from .config import MorseConfig, MorseConfigError

__all__ = ["MorseConfig", "MorseConfigError"]
