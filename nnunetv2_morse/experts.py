"""Point features for the rendering head: the (stochastic) mixture of experts of paper sec. 2.1, evaluated at points.

Each decoder stage's features are interpolated at the points and go through that stage's expert MLP; a gate
reads all expert features and gives one weight per expert and point (softmax over experts); the weighted sum goes
through a fusion MLP to the coarse feature x_out. Nothing is computed at full patch resolution.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn


def point_mlp(in_channels: int, hidden: Sequence[int], out_channels: int) -> nn.Sequential:
    """Linear layers over points (channels last), ReLU between: (B, P, in) -> (B, P, out)."""
    widths = [in_channels, *hidden]
    layers: List[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(widths[-1], out_channels))
    return nn.Sequential(*layers)


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


class PointMixtureOfExperts(nn.Module):
    """Mixture of experts over decoder stages at points: list of N (B, P, C_i) -> x_out (B, P, C).

    drop_prob > 0 makes it stochastic in training (SMoE); in eval every expert is used. Dropped experts get gate
    weight 0 and zero features in the gate input, and the softmax renormalises over the kept ones.
    """

    def __init__(self, in_channels: Sequence[int], feature_channels: int, expert_hidden: Sequence[int],
                 gate_hidden: Sequence[int], fusion_hidden: Sequence[int], drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob
        self.experts = nn.ModuleList(point_mlp(c, expert_hidden, feature_channels) for c in in_channels)
        self.gate = point_mlp(len(in_channels) * feature_channels, gate_hidden, len(in_channels))
        self.fusion = point_mlp(feature_channels, fusion_hidden, feature_channels)
        self.out_channels = feature_channels

    def gate_weights(self, expert_features: torch.Tensor, kept: Optional[torch.Tensor]) -> torch.Tensor:
        """expert_features (B, P, N, C), kept (B, N) or None -> weights (B, P, N) summing to 1 over N."""
        if kept is not None:
            expert_features = expert_features * kept[:, None, :, None].to(expert_features.dtype)
        logits = self.gate(expert_features.flatten(2))
        if kept is not None:
            logits = logits.masked_fill(~kept[:, None, :], float("-inf"))
        return logits.softmax(dim=-1)

    def forward(self, stage_features: Sequence[torch.Tensor]) -> torch.Tensor:
        expert_features = torch.stack([e(f) for e, f in zip(self.experts, stage_features)], dim=2)
        kept = None
        if self.training and self.drop_prob > 0:
            kept = draw_kept_experts(expert_features.shape[0], expert_features.shape[2], self.drop_prob,
                                     expert_features.device)
        weights = self.gate_weights(expert_features, kept)
        return self.fusion((weights[..., None] * expert_features).sum(dim=2))


class PointMultiscaleFeatures(nn.Module):
    """PointRend's fine-grained features: the stages' point features concatenated, (B, P, sum C_i)."""

    def __init__(self, in_channels: Sequence[int]):
        super().__init__()
        self.out_channels = sum(in_channels)

    def forward(self, stage_features: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(stage_features), dim=-1)
