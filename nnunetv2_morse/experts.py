"""Point features for the rendering head: the (stochastic) mixture of experts of paper sec. 2.1, and PointRend's
multi-scale features.

Point-wise mixture (default): each decoder stage's features are interpolated at the points and go through that
stage's expert MLP; a gate reads all expert features and gives one weight per expert and point (softmax over
experts); the weighted sum goes through a fusion MLP to the coarse feature x_out. Nothing is computed at full patch
resolution. Dense mixture (the paper's, 2D only): expert MLPs at each stage's resolution, upsampled to the patch,
a gate of 3x3 convolutions over all of them, fusion, and x_out read at the points.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def mlp(make_layer: Callable[[int, int], nn.Module], in_channels: int, hidden: Sequence[int],
        out_channels: int) -> nn.Sequential:
    """make_layer(in, out) layers of widths in -> *hidden -> out with ReLU between.

    With nn.Linear: a point MLP, channels last, (B, P, in) -> (B, P, out); with conv1x1/conv3x3: a dense one.
    """
    widths = [in_channels, *hidden]
    layers: List[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [make_layer(a, b), nn.ReLU(inplace=True)]
    layers.append(make_layer(widths[-1], out_channels))
    return nn.Sequential(*layers)


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


def draw_kept_experts(batch: int, num_experts: int, drop_prob: float, device: torch.device,
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Bool mask (B, N) of kept experts: each expert dropped with probability drop_prob, per sample.

    A sample whose experts are all dropped keeps one, chosen uniformly, so every expert is dropped with probability
    drop_prob - drop_prob**N / N.
    """
    kept = torch.rand(batch, num_experts, device=device, generator=generator) >= drop_prob
    rescue = torch.randint(num_experts, (batch,), device=device, generator=generator)
    none_kept = ~kept.any(dim=1)
    kept[none_kept, rescue[none_kept]] = True
    return kept


def gate_softmax(logits: torch.Tensor, kept: Optional[torch.Tensor], expert_dim: int) -> torch.Tensor:
    """Softmax over experts (along expert_dim) with the dropped ones (kept (B, N) False) at weight 0."""
    if kept is not None:
        shape = [1] * logits.ndim
        shape[0], shape[expert_dim] = kept.shape
        logits = logits.masked_fill(~kept.view(shape), float("-inf"))
    return logits.softmax(dim=expert_dim)


def draw_kept_if_training(module: nn.Module, batch: int, num_experts: int, device) -> Optional[torch.Tensor]:
    if module.training and module.drop_prob > 0:
        return draw_kept_experts(batch, num_experts, module.drop_prob, device)
    return None


class PointMixtureOfExperts(nn.Module):
    """Mixture of experts over decoder stages at points: list of N (B, P, C_i) -> x_out (B, P, C).

    drop_prob > 0 makes it stochastic in training (SMoE); in eval every expert is used. Dropped experts get gate
    weight 0 and zero features in the gate input, and the softmax renormalises over the kept ones.
    """

    def __init__(self, in_channels: Sequence[int], feature_channels: int, expert_hidden: Sequence[int],
                 gate_hidden: Sequence[int], fusion_hidden: Sequence[int], drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob
        self.experts = nn.ModuleList(mlp(nn.Linear, c, expert_hidden, feature_channels) for c in in_channels)
        self.gate = mlp(nn.Linear, len(in_channels) * feature_channels, gate_hidden, len(in_channels))
        self.fusion = mlp(nn.Linear, feature_channels, fusion_hidden, feature_channels)
        self.out_channels = feature_channels

    def gate_weights(self, expert_features: torch.Tensor, kept: Optional[torch.Tensor]) -> torch.Tensor:
        """expert_features (B, P, N, C), kept (B, N) or None -> weights (B, P, N) summing to 1 over N."""
        if kept is not None:
            expert_features = expert_features * kept[:, None, :, None].to(expert_features.dtype)
        return gate_softmax(self.gate(expert_features.flatten(2)), kept, expert_dim=2)

    def forward(self, stage_features: Sequence[torch.Tensor]) -> torch.Tensor:
        expert_features = torch.stack([e(f) for e, f in zip(self.experts, stage_features)], dim=2)
        kept = draw_kept_if_training(self, expert_features.shape[0], expert_features.shape[2], expert_features.device)
        weights = self.gate_weights(expert_features, kept)
        return self.fusion((weights[..., None] * expert_features).sum(dim=2))


class DenseMixtureOfExperts(nn.Module):
    """The paper's mixture of experts at full patch resolution (2D): stage features (B, C_i, *S_i) -> x_out (B, C, *S).

    Expert MLPs (1x1 convolutions) run at each stage's resolution and are upsampled bilinearly to the patch; the gate
    is 3x3 convolutions over all N expert maps; dropping and renormalisation as in PointMixtureOfExperts.
    """

    def __init__(self, in_channels: Sequence[int], feature_channels: int, expert_hidden: Sequence[int],
                 gate_hidden: Sequence[int], fusion_hidden: Sequence[int], drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob
        self.experts = nn.ModuleList(mlp(conv1x1, c, expert_hidden, feature_channels) for c in in_channels)
        self.gate = mlp(conv3x3, len(in_channels) * feature_channels, gate_hidden, len(in_channels))
        self.fusion = mlp(conv1x1, feature_channels, fusion_hidden, feature_channels)
        self.out_channels = feature_channels

    def forward(self, stage_features: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        expert_maps = torch.stack([F.interpolate(e(f), size=list(size), mode="bilinear", align_corners=False)
                                   for e, f in zip(self.experts, stage_features)], dim=1)  # (B, N, C, *S)
        kept = draw_kept_if_training(self, expert_maps.shape[0], expert_maps.shape[1], expert_maps.device)
        weights = self.gate_weights(expert_maps, kept)
        return self.fusion((weights[:, :, None] * expert_maps).sum(dim=1))

    def gate_weights(self, expert_maps: torch.Tensor, kept: Optional[torch.Tensor]) -> torch.Tensor:
        """expert_maps (B, N, C, *S), kept (B, N) or None -> weights (B, N, *S) summing to 1 over N."""
        if kept is not None:
            expert_maps = expert_maps * kept[:, :, None, None, None].to(expert_maps.dtype)
        return gate_softmax(self.gate(expert_maps.flatten(1, 2)), kept, expert_dim=1)


class PointMultiscaleFeatures(nn.Module):
    """PointRend's fine-grained features: the stages' point features concatenated, (B, P, sum C_i)."""

    def __init__(self, in_channels: Sequence[int]):
        super().__init__()
        self.out_channels = sum(in_channels)

    def forward(self, stage_features: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(stage_features), dim=-1)
