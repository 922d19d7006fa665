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

    Channels last: forward(features (B, P, F), coarse (B, P, K), coords (B, P, D)) -> point logits (B, P, K). Each
    layer is one nn.Linear over the concatenated input (the state dict's layout), applied as a sum over its parts
    (PointHead.linear_of_parts), so the inputs are never concatenated.
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
        self.register_buffer("region_outputs_flag", torch.tensor(False))
        self.region_outputs = False

    @staticmethod
    def linear_of_parts(layer: nn.Linear, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """layer(torch.cat(parts, dim=-1)), (..., out_features), without the concatenation: each part (..., C_i)
        meets its own column slice of the weight (a view), so no concatenated copy of the inputs is made."""
        out, start = None, 0
        for part in parts:
            width = part.shape[-1]
            term = F.linear(part, layer.weight[:, start:start + width], layer.bias if out is None else None)
            out = term if out is None else out + term
            start += width
        return out

    def set_region_outputs(self, enabled: bool) -> None:
        """Sigmoid region outputs instead of softmax classes; kept in the state dict as a buffer."""
        self.region_outputs_flag.fill_(enabled)
        self.region_outputs = enabled

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.region_outputs = bool(self.region_outputs_flag)

    def forward(self, features: torch.Tensor, coarse: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        parts = [features]
        if self.positional_encoding is not None:
            parts.insert(0, self.positional_encoding(coords).to(features.dtype))
        for layer in self.layers:
            parts = [F.relu(self.linear_of_parts(layer, [*parts, coarse]))]
        return self.linear_of_parts(self.predictor, [*parts, coarse])


def point_labels(target: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Labels (B, P) read from target (B, 1, *S) at coords (B, P, D): the label of the voxel containing each point."""
    return sample_at_points(target, coords, mode="nearest")[:, 0].long()


def rendering_loss(point_logits: torch.Tensor, coords: torch.Tensor, target: torch.Tensor,
                   ignore_label: Optional[int] = None, regions: bool = False) -> torch.Tensor:
    """L_rend of point_logits (B, K, P) against nnU-Net's full-resolution target at coords (B, P, D).

    Labels, target (B, 1, *S): cross-entropy, points on ignore_label left out. Regions, target (B, R, *S) or, with an
    ignore label, (B, R + 1, *S) whose last channel is nnU-Net's ignore mask: binary cross-entropy per region,
    ignored points left out. A batch whose points are all ignored gives 0.
    """
    if not regions:
        labels = point_labels(target, coords)
        if ignore_label is not None and not (labels != ignore_label).any():
            return point_logits.sum() * 0.0
        return F.cross_entropy(point_logits.float(), labels, ignore_index=-100 if ignore_label is None else ignore_label)
    at_points = sample_at_points(target, coords, mode="nearest").float()
    if ignore_label is None:
        return F.binary_cross_entropy_with_logits(point_logits.float(), at_points)
    weight = (1 - at_points[:, -1:]).expand_as(point_logits)
    if weight.sum() == 0:
        return point_logits.sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(point_logits.float(), at_points[:, :-1], weight=weight, reduction="sum")
    return loss / weight.sum()


def selectable_voxels(target: torch.Tensor, ignore_label: Optional[int], regions: bool) -> Optional[torch.Tensor]:
    """(B, 1, *S) bool: voxels whose label counts (not ignored), or None without an ignore label."""
    if ignore_label is None:
        return None
    return target[:, -1:] == 0 if regions else target != ignore_label
