"""Point sampling and selection for any number of spatial dimensions (2D and 3D alike).

Point coordinates are continuous, in [0, 1] along each spatial axis, ordered like the tensor's spatial axes
(coords[..., 0] runs along dim 2 of a (B, C, *S) tensor). Voxel i of an axis of size s spans [i / s, (i + 1) / s)
and has its centre at (i + 0.5) / s. Positions and interpolation weights are computed in float32 whatever the dtype
of the values read (also under autocast): a bf16 position is up to half a voxel off at a 512-voxel side.
"""
from __future__ import annotations

import itertools
import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F


def voxel_positions(coords: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """coords (B, P, D) in voxel units, float32: coord * size, so voxel i spans [i, i + 1)."""
    return coords.float() * torch.tensor(list(spatial_shape), dtype=torch.float32, device=coords.device)


def flat_index(index: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Row-major flat indices (...) of integer voxel indices (..., D)."""
    strides = [math.prod(spatial_shape[d + 1:]) for d in range(len(spatial_shape))]
    return (index * torch.tensor(strides, device=index.device)).sum(-1)


def nearest_voxels(coords: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Row-major flat indices (B, P) of the voxels containing coords (B, P, D): floor(coord * size), clamped."""
    last = torch.tensor(list(spatial_shape), device=coords.device) - 1
    return flat_index(voxel_positions(coords, spatial_shape).floor().long().clamp(min=0).minimum(last), spatial_shape)


def linear_corners(coords: torch.Tensor, spatial_shape: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The 2^D voxels around each point of coords (B, P, D) and their D-linear weights, float32.

    Returns row-major flat indices (B, P, 2^D) and weights (B, P, 2^D) summing to 1, corners in row-major order of
    their offsets in {0, 1}^D. Indices are clamped to the grid, so points beyond the outermost centres read the
    border voxel, as grid_sample(padding_mode="border", align_corners=False) does. At each point the corner of
    largest weight is nearest_voxels' voxel.
    """
    dims = len(spatial_shape)
    position = voxel_positions(coords, spatial_shape) - 0.5  # voxel centres at integers
    lower = position.floor()
    upper_weight = (position - lower)[..., None, :]  # (B, P, 1, D)
    offsets = torch.tensor(list(itertools.product((0, 1), repeat=dims)), device=coords.device)  # (2^D, D)
    last = torch.tensor(list(spatial_shape), device=coords.device) - 1
    index = (lower.long()[..., None, :] + offsets).clamp(min=0).minimum(last)
    weight = torch.where(offsets.bool(), upper_weight, 1 - upper_weight).prod(-1)
    return flat_index(index, spatial_shape), weight


def gather_at_voxels(values: torch.Tensor, flat_indices: torch.Tensor) -> torch.Tensor:
    """values (B, C, *S) at row-major flat indices (B, Q): (B, C, Q), exactly, in values' dtype."""
    index = flat_indices[:, None, :].expand(-1, values.shape[1], -1)
    return values.flatten(2).gather(2, index)


class PointSampler:
    """Reads maps (B, C, *S) of any resolution S at the same points coords (B, P, D): one sampler serves every
    decoder stage, computing each resolution's corners once.

    voxel_indices (B, P) with voxel_grid: the points are the centres of these row-major voxels of a grid of shape
    voxel_grid (inference), and maps of that shape are read there by flat index, exactly.
    """

    def __init__(self, coords: torch.Tensor, voxel_indices: Optional[torch.Tensor] = None,
                 voxel_grid: Optional[Sequence[int]] = None):
        if coords.ndim != 3:
            raise ValueError(f"coords must be (B, P, D), got shape {tuple(coords.shape)}")
        self.coords = coords
        self.corners: Dict[Tuple[int, ...], Tuple[torch.Tensor, torch.Tensor]] = {}
        if voxel_indices is not None:
            if voxel_grid is None:
                raise ValueError("voxel_indices need voxel_grid, the spatial shape they index")
            ones = torch.ones(*voxel_indices.shape, 1, device=coords.device)
            self.corners[tuple(voxel_grid)] = (voxel_indices[..., None], ones)

    def check(self, values: torch.Tensor) -> Tuple[int, ...]:
        """The spatial shape of values (B, C, *S), which must have one axis per coordinate component."""
        if values.ndim != self.coords.shape[-1] + 2:
            raise ValueError(f"values has {values.ndim - 2} spatial dims but coords has {self.coords.shape[-1]} "
                             "components")
        return tuple(values.shape[2:])

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """D-linear interpolation (bilinear in 2D, trilinear in 3D) of values (B, C, *S): (B, C, P), values' dtype.

        The corners' values are weighted and summed in float32. A map with no more voxels than corners to read (the
        coarse decoder stages, many channels) is made channels-last once and read row by row, gather and weighting
        in one embedding_bag; a larger one is gathered where it lies, which costs no copy of the map.
        """
        shape = self.check(values)
        if shape not in self.corners:
            self.corners[shape] = linear_corners(self.coords, shape)
        index, weight = self.corners[shape]
        batch, channels = values.shape[:2]
        num_points, num_corners = index.shape[1:]
        num_voxels = math.prod(shape)
        if num_voxels <= num_points * num_corners:
            rows = values.flatten(2).transpose(1, 2).reshape(batch * num_voxels, channels).float().contiguous()
            offsets = torch.arange(batch, device=index.device)[:, None, None] * num_voxels
            with torch.autocast(values.device.type, enabled=False):
                read = F.embedding_bag((index + offsets).view(-1, num_corners), rows,
                                       per_sample_weights=weight.view(-1, num_corners), mode="sum")
            return read.view(batch, num_points, channels).transpose(1, 2).to(values.dtype)
        corner_major = index.transpose(1, 2).reshape(batch, num_corners * num_points)  # sums run over contiguous P
        corners = gather_at_voxels(values, corner_major).view(batch, channels, num_corners, num_points)
        return (corners * weight.transpose(1, 2)[:, None]).sum(2).to(values.dtype)

    def nearest(self, values: torch.Tensor) -> torch.Tensor:
        """values (B, C, *S) at the voxels containing the points (e.g. labels): (B, C, P), exactly."""
        return gather_at_voxels(values, nearest_voxels(self.coords, self.check(values)))


def sample_at_points(values: torch.Tensor, coords: torch.Tensor, mode: str = "linear") -> torch.Tensor:
    """Values (B, C, *S) at coords (B, P, D), D = len(S): (B, C, P).

    mode 'linear' interpolates (bilinear in 2D, trilinear in 3D); 'nearest' reads the containing voxel (labels).
    """
    if mode not in ("linear", "nearest"):
        raise ValueError(f"mode={mode!r} is invalid: allowed 'linear' or 'nearest'")
    sampler = PointSampler(coords)
    return sampler(values) if mode == "linear" else sampler.nearest(values)


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

    Draws int(oversample_ratio * num_points) uniform candidates, scores them on the interpolated logits, keeps the
    int(importance_ratio * num_points) most uncertain of them first, and fills the rest with fresh uniform points.
    Candidates in a voxel where selectable (B, 1, *S) is False (e.g. ignore-label voxels; the voxel labels are read
    from, nearest_voxels') are never taken as uncertain ones.
    """
    batch, dims = coarse_logits.shape[0], coarse_logits.ndim - 2
    device = coarse_logits.device
    num_candidates = max(int(oversample_ratio * num_points), num_points)
    num_uncertain = int(importance_ratio * num_points)
    candidates = torch.rand(batch, num_candidates, dims, device=device, generator=generator)
    sampler = PointSampler(candidates)
    scores = uncertainty(sampler(coarse_logits.detach()), regions)
    if selectable is not None:
        allowed = sampler.nearest(selectable)[:, 0].bool()
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
