"""Point sampling and selection for any number of spatial dimensions (2D and 3D alike).

Point coordinates are continuous, in [0, 1] along each spatial axis, ordered like the tensor's spatial axes
(coords[..., 0] runs along dim 2 of a (B, C, *S) tensor). Voxel i of an axis of size s has its centre at
(i + 0.5) / s, which is where grid_sample with align_corners=False reads it exactly.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def sample_at_points(values: torch.Tensor, coords: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Interpolate values (B, C, *S) at coords (B, P, D), D = len(S) in {2, 3}; returns (B, C, P).

    mode 'bilinear' is linear in every axis (trilinear in 3D); 'nearest' is for labels.
    """
    batch, num_points, dims = coords.shape
    if values.ndim != dims + 2:
        raise ValueError(f"values has {values.ndim - 2} spatial dims but coords has {dims} components")
    grid = (coords.flip(-1) * 2 - 1).to(values.dtype)
    grid = grid.reshape(batch, num_points, *([1] * (dims - 1)), dims)
    out = F.grid_sample(values, grid, mode=mode, padding_mode="border", align_corners=False)
    return out.reshape(batch, values.shape[1], num_points)


def uncertainty(logits: torch.Tensor, regions: bool = False) -> torch.Tensor:
    """Uncertainty over dim 1: (B, K, ...) -> (B, ...); 0 is most uncertain, larger is more uncertain.

    Softmax outputs: second-largest minus largest logit (the paper's). Region outputs (independent sigmoids, nnU-Net's
    region-based training): -|logit| of the most uncertain region.
    """
    if regions:
        return -logits.abs().amin(dim=1)
    top2 = logits.topk(2, dim=1).values
    return top2[:, 1] - top2[:, 0]


def sample_training_points(coarse_logits: torch.Tensor, num_points: int, oversample_ratio: float,
                           importance_ratio: float, regions: bool = False, selectable: Optional[torch.Tensor] = None,
                           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Training points for coarse_logits (B, K, *S): coords (B, num_points, D).

    Draws int(oversample_ratio * num_points) uniform candidates, keeps the int(importance_ratio * num_points) most
    uncertain of them first, and fills the rest with fresh uniform points. Candidates where selectable (B, 1, *S)
    is False (e.g. ignore-label voxels) are never taken as uncertain ones.
    """
    batch, dims = coarse_logits.shape[0], coarse_logits.ndim - 2
    device = coarse_logits.device
    num_candidates = max(int(oversample_ratio * num_points), num_points)
    num_uncertain = int(importance_ratio * num_points)
    candidates = torch.rand(batch, num_candidates, dims, device=device, generator=generator)
    scores = uncertainty(sample_at_points(coarse_logits.detach(), candidates), regions)
    if selectable is not None:
        allowed = sample_at_points(selectable.float(), candidates, mode="nearest")[:, 0] > 0.5
        scores = scores.masked_fill(~allowed, float("-inf"))
    chosen = scores.topk(num_uncertain, dim=1).indices
    uncertain_points = candidates.gather(1, chosen[..., None].expand(-1, -1, dims))
    uniform_points = torch.rand(batch, num_points - num_uncertain, dims, device=device, generator=generator)
    return torch.cat((uncertain_points, uniform_points), dim=1)


def select_uncertain_voxels(coarse_logits: torch.Tensor, num_points: int, regions: bool = False) -> torch.Tensor:
    """Flat indices (B, P) of the P = min(num_points, voxels) most uncertain voxels of coarse_logits (B, K, *S)."""
    scores = uncertainty(coarse_logits, regions).flatten(1)
    return scores.topk(min(num_points, scores.shape[1]), dim=1).indices


def voxel_centres(flat_indices: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Continuous coords (B, P, D) of the centres of the voxels with these row-major flat indices (B, P)."""
    components = []
    remainder = flat_indices
    for size in reversed(spatial_shape):
        components.append(remainder % size)
        remainder = torch.div(remainder, size, rounding_mode="floor")
    index = torch.stack(components[::-1], dim=-1)
    sizes = torch.tensor(list(spatial_shape), device=flat_indices.device, dtype=torch.float32)
    return (index.float() + 0.5) / sizes


def write_point_logits(logits: torch.Tensor, flat_indices: torch.Tensor, point_logits: torch.Tensor) -> torch.Tensor:
    """A copy of logits (B, K, *S) with point_logits (B, K, P) written at flat_indices (B, P)."""
    batch, classes = logits.shape[:2]
    index = flat_indices[:, None, :].expand(-1, classes, -1)
    flat = logits.reshape(batch, classes, -1).scatter(2, index, point_logits.to(logits.dtype))
    return flat.view_as(logits)
