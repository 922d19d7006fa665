"""Fourier positional encoding of point coordinates (paper eq. 3)."""
from __future__ import annotations

import math

import torch
from torch import nn


class FourierPositionalEncoding(nn.Module):
    """psi(p) = [sin(2 pi B p), cos(2 pi B p)] with p = 2 * coords - 1 in [-1, 1]^D.

    B (num_frequencies, D) is trainable, drawn from N(0, std^2). Always computed in float32, also under autocast,
    so that large frequencies or coordinates cannot overflow fp16.
    """

    def __init__(self, spatial_dims: int, num_frequencies: int = 128, std: float = 1.0):
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(num_frequencies, spatial_dims) * std)

    @property
    def out_channels(self) -> int:
        return 2 * self.frequencies.shape[0]

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (B, P, D) in [0, 1] -> encoding (B, P, 2L), float32."""
        with torch.autocast(device_type=coords.device.type, enabled=False):
            centred = coords.float() * 2 - 1
            phase = (2 * math.pi) * centred @ self.frequencies.float().t()
            return torch.cat((phase.sin(), phase.cos()), dim=-1)
