"""Point heads: the PointRend MLP and the IAR head (Fourier positional encoding + the same MLP), and L_rend."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .encoding import FourierPositionalEncoding
from .points import sample_at_points


class PointHead(nn.Module):
    """Point MLP over [psi(p) (IAR only), features(p)], with the coarse logits re-concatenated before every layer.

    Channels last: forward(features (B, P, F), coarse (B, P, K), coords (B, P, D)) -> point logits (B, P, K).
    """

    def __init__(self, feature_channels: int, num_classes: int, hidden: Sequence[int],
                 positional_encoding: Optional[FourierPositionalEncoding] = None):
        super().__init__()
        self.positional_encoding = positional_encoding
        width = feature_channels + (positional_encoding.out_channels if positional_encoding is not None else 0)
        self.layers = nn.ModuleList()
        for h in hidden:
            self.layers.append(nn.Linear(width + num_classes, h))
            width = h
        self.predictor = nn.Linear(width + num_classes, num_classes)

    def forward(self, features: torch.Tensor, coarse: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        x = features
        if self.positional_encoding is not None:
            x = torch.cat((self.positional_encoding(coords).to(features.dtype), x), dim=-1)
        for layer in self.layers:
            x = F.relu(layer(torch.cat((x, coarse), dim=-1)))
        return self.predictor(torch.cat((x, coarse), dim=-1))


def point_labels(target: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Labels (B, P) read from target (B, 1, *S) at coords (B, P, D) by nearest-neighbour lookup."""
    return sample_at_points(target.float(), coords, mode="nearest")[:, 0].round().long()


def rendering_loss(point_logits: torch.Tensor, coords: torch.Tensor, target: torch.Tensor,
                   ignore_label: Optional[int] = None) -> torch.Tensor:
    """L_rend: cross-entropy of point_logits (B, K, P) against the labels at coords; ignore_label is left out."""
    labels = point_labels(target, coords)
    ignore_index = -100 if ignore_label is None else ignore_label
    if ignore_label is not None and not (labels != ignore_label).any():
        return point_logits.sum() * 0.0
    return F.cross_entropy(point_logits.float(), labels, ignore_index=ignore_index)
