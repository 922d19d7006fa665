"""MorseConfig: every setting of a MORSE variant, with the paper's defaults, validated at construction."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

POINT_FEATURES = ("moe", "multiscale")
HEADS = ("iar", "pointrend")
AWA_MODES = ("linear", "step", "off")
HEAD_TRAINING = ("decoupled", "scaled")
GATES = ("pointwise", "dense")

PAPER_NUM_EXPERTS = {2: 5, 3: 3}
# N_test by default: a share of the patch's voxels (docs/cpu-measurements.md, 'Choosing N_test'). 3D: the paper's density (8192 points
# in 96^3 patches); 2D: the paper's 8192 points at nnU-Net's usual 512x512 patch. Both were the best share in our
# sweeps; re-predicting more voxels (the paper's 12.5% in 2D, or a fixed count in small patches) lost NSD.
DEFAULT_TEST_POINT_SHARE = {2: 8192 / 512 ** 2, 3: 8192 / 96 ** 3}
# N_p by default: the paper's density (2048 points in its 256x256 2D and 96^3 3D patches), at most the paper's 2048,
# so that the head's share of a training step does not grow as the patch shrinks (docs/cpu-measurements.md, Cost).
DEFAULT_TRAINING_POINT_SHARE = {2: 2048 / 256 ** 2, 3: 2048 / 96 ** 3}
MAX_DEFAULT_TRAINING_POINTS = 2048
# The paper's point-module widths (sec. 3: MLPs [256, 256], expert features 256; L = 128 as in the authors' code).
# The defaults are a quarter of them: the head's FLOPs stay about 2% of a 2D U-Net's (docs/cpu-measurements.md, Cost).
PAPER_WIDTHS = dict(feature_channels=256, expert_hidden=(256, 256), gate_hidden=(256, 256, 256),
                    fusion_hidden=(256, 256), head_hidden=(256, 256, 256), num_frequencies=128)


class MorseConfigError(ValueError):
    """A MorseConfig field holds a value outside its allowed range."""


def _check(condition: bool, field: str, value, allowed: str) -> None:
    if not condition:
        raise MorseConfigError(f"MorseConfig.{field}={value!r} is invalid: allowed {allowed}")


def share_of_patch(shares: dict, spatial_shape: Sequence[int]) -> int:
    """At least one point: shares[number of spatial dims] of the voxels of a patch of spatial_shape."""
    return max(1, round(shares[len(spatial_shape)] * math.prod(spatial_shape)))


def _check_widths(field: str, value) -> None:
    _check(isinstance(value, tuple) and len(value) > 0 and all(isinstance(v, int) and v > 0 for v in value),
           field, value, "a non-empty tuple of positive ints")


@dataclass(frozen=True)
class MorseConfig:
    """One MORSE variant. Defaults are the paper's (MICCAI 2023, sec. 2 and 3) but for the cost: point modules a
    quarter of the paper's widths (64 channels, L = 32 frequencies; PAPER_WIDTHS are the paper's) and N_p a share of
    the patch. MorseConfig(num_points=2048, **PAPER_WIDTHS) is the paper's configuration.

    point_features: 'moe' (mixture of experts over the last N decoder stages, sec. 2.1) or 'multiscale'
        (those stages' features concatenated, as PointRend).
    head: 'iar' (Fourier positional encoding + point MLP, sec. 2.2) or 'pointrend' (point MLP alone).
    gate: 'pointwise' evaluates the experts, gate and fusion at the points only (any dimension); 'dense' is the
        paper's full-resolution mixture with a 3x3-convolution gate (2D only: N x C channels at every pixel).
    expert_drop_prob: alpha, the Bernoulli probability of dropping each expert per sample in training; 0 gives a
        dense mixture of experts.
    num_experts: N, the number of decoder stages used; None takes the paper's (5 in 2D, 3 in 3D) capped at the
        number of decoder stages the plan has.
    num_points / oversample_ratio / importance_ratio: N_p, k_p and rho of the training point selection; num_points
        None takes a share of the patch's voxels, at most 2048: 3.125% in 2D (2048 at 256x256, 512 at 128x128),
        0.23% in 3D (2048 at 96^3, 256 at 48^3).
    num_test_points: N_test, the points re-predicted per patch at inference; None takes a share of the patch's
        voxels: 3.125% in 2D (8192 at 512x512), 0.93% in 3D (8192 at 96^3, 19418 at 128^3).
    rend_loss_weight / awa: lambda_rend and its schedule: 'linear' (eq. 4), 'step' (lambda_rend from T/2 on) or
        'off' (lambda_rend from the start).
    head_training: 'decoupled' trains the point modules at full weight on L_rend while lambda_t scales only the
        gradient that flows back into the U-Net; 'scaled' multiplies the whole L_rend by lambda_t (the paper's
        L_total). See docs/method.md, "Design decisions".
    """

    point_features: str = "moe"
    head: str = "iar"
    gate: str = "pointwise"
    expert_drop_prob: float = 0.7
    num_experts: Optional[int] = None
    feature_channels: int = 64
    expert_hidden: Tuple[int, ...] = (64, 64)
    gate_hidden: Tuple[int, ...] = (64, 64, 64)
    fusion_hidden: Tuple[int, ...] = (64, 64)
    head_hidden: Tuple[int, ...] = (64, 64, 64)
    num_frequencies: int = 32
    frequency_std: float = 1.0
    num_points: Optional[int] = None
    oversample_ratio: float = 3.0
    importance_ratio: float = 0.75
    num_test_points: Optional[int] = None
    rend_loss_weight: float = 0.1
    awa: str = "linear"
    head_training: str = "decoupled"

    def __post_init__(self):
        _check(self.point_features in POINT_FEATURES, "point_features", self.point_features, f"one of {POINT_FEATURES}")
        _check(self.head in HEADS, "head", self.head, f"one of {HEADS}")
        _check(self.gate in GATES, "gate", self.gate, f"one of {GATES}")
        _check(isinstance(self.expert_drop_prob, (int, float)) and 0 <= self.expert_drop_prob < 1,
               "expert_drop_prob", self.expert_drop_prob, "[0, 1)")
        _check(self.num_experts is None or (isinstance(self.num_experts, int) and self.num_experts >= 1),
               "num_experts", self.num_experts, "None or an int >= 1")
        _check(isinstance(self.feature_channels, int) and self.feature_channels >= 1,
               "feature_channels", self.feature_channels, "an int >= 1")
        for name in ("expert_hidden", "gate_hidden", "fusion_hidden", "head_hidden"):
            _check_widths(name, getattr(self, name))
        _check(isinstance(self.num_frequencies, int) and self.num_frequencies >= 1,
               "num_frequencies", self.num_frequencies, "an int >= 1")
        _check(self.frequency_std > 0, "frequency_std", self.frequency_std, "> 0")
        _check(self.num_points is None or (isinstance(self.num_points, int) and self.num_points >= 1),
               "num_points", self.num_points, "None or an int >= 1")
        _check(self.oversample_ratio >= 1, "oversample_ratio", self.oversample_ratio, ">= 1")
        _check(0.5 < self.importance_ratio <= 1, "importance_ratio", self.importance_ratio, "(0.5, 1]")
        _check(self.num_test_points is None or (isinstance(self.num_test_points, int) and self.num_test_points >= 1),
               "num_test_points", self.num_test_points, "None or an int >= 1")
        _check(self.rend_loss_weight >= 0, "rend_loss_weight", self.rend_loss_weight, ">= 0")
        _check(self.awa in AWA_MODES, "awa", self.awa, f"one of {AWA_MODES}")
        _check(self.head_training in HEAD_TRAINING, "head_training", self.head_training, f"one of {HEAD_TRAINING}")
        if self.point_features == "multiscale":
            _check(self.expert_drop_prob == 0, "expert_drop_prob", self.expert_drop_prob,
                   "0 with point_features='multiscale' (there are no experts to drop)")
            _check(self.gate == "pointwise", "gate", self.gate, "'pointwise' with point_features='multiscale' (no gate)")

    def check_dimensions(self, spatial_dims: int) -> None:
        """Raises for settings that a 2D or 3D network cannot use."""
        _check(self.gate == "pointwise" or spatial_dims == 2, "gate", self.gate,
               "'pointwise' in 3D: the dense gate would hold N x C channels at every voxel of the patch")

    def experts_for(self, spatial_dims: int, num_decoder_stages: int) -> int:
        """N for a U-Net with this many decoder stages; raises if an explicit N does not fit."""
        if self.num_experts is None:
            return min(PAPER_NUM_EXPERTS[spatial_dims], num_decoder_stages)
        _check(self.num_experts <= num_decoder_stages, "num_experts", self.num_experts,
               f"1..{num_decoder_stages} (the number of decoder stages this plan's U-Net has)")
        return self.num_experts

    def training_points_for(self, spatial_shape: Sequence[int]) -> int:
        """N_p for a patch of spatial_shape: num_points, or by default the dimension's share of its voxels, at most
        2048."""
        if self.num_points is not None:
            return self.num_points
        return min(MAX_DEFAULT_TRAINING_POINTS, share_of_patch(DEFAULT_TRAINING_POINT_SHARE, spatial_shape))

    def test_points_for(self, spatial_shape: Sequence[int]) -> int:
        """N_test for a patch of spatial_shape: num_test_points, or by default the dimension's share of its voxels."""
        if self.num_test_points is not None:
            return self.num_test_points
        return share_of_patch(DEFAULT_TEST_POINT_SHARE, spatial_shape)
