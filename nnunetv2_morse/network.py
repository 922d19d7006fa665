"""The nnU-Net U-Net with MORSE's point rendering: one network for training and inference, 2D and 3D."""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .config import MorseConfig
from .encoding import FourierPositionalEncoding
from .experts import DenseMixtureOfExperts, PointMixtureOfExperts, PointMultiscaleFeatures
from .head import PointHead
from .points import PointSampler, sample_training_points, select_uncertain_voxels, voxel_centres, write_point_logits


class MorseTrainingOutput(NamedTuple):
    """What the network returns in training mode.

    seg: nnU-Net's output (list over deep-supervision scales, highest first, or one tensor (B, K, *S));
    point_logits (B, K, P) predicted by the head at point_coords (B, P, D) in [0, 1].
    """
    seg: Union[torch.Tensor, List[torch.Tensor]]
    point_logits: torch.Tensor
    point_coords: torch.Tensor


def scale_gradient(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Identity forward, bit for bit; the gradient flowing back through it is multiplied by scale."""
    return x.detach() + (x - x.detach()) * scale


class PointRenderer(nn.Module):
    """Point features (mixture of experts or multi-scale) + point head, fed by the last N decoder stages.

    nnU-Net's -pretrained_weights transfers every weight except keys containing '.seg_layers.' (its
    task-specific output layers). The rendering modules are such output layers and live under `seg_layers`,
    so a stock nnUNetTrainer checkpoint initialises the U-Net and leaves them freshly initialised.
    """

    def __init__(self, config: MorseConfig, stage_channels: Sequence[int], num_classes: int, spatial_dims: int):
        super().__init__()
        self.config = config
        self.num_test_points: Optional[int] = config.num_test_points
        config.check_dimensions(spatial_dims)
        if config.gate == "dense":
            features = DenseMixtureOfExperts(stage_channels, config.feature_channels, config.expert_hidden,
                                             config.gate_hidden, config.fusion_hidden, config.expert_drop_prob)
        elif config.point_features == "moe":
            features = PointMixtureOfExperts(stage_channels, config.feature_channels, config.expert_hidden,
                                             config.gate_hidden, config.fusion_hidden, config.expert_drop_prob)
        else:
            features = PointMultiscaleFeatures(stage_channels)
        encoding = None
        if config.head == "iar":
            encoding = FourierPositionalEncoding(spatial_dims, config.num_frequencies, config.frequency_std)
        head = PointHead(features.out_channels, num_classes, config.head_hidden, encoding)
        self.seg_layers = nn.ModuleDict({"point_features": features, "point_head": head})

    @property
    def region_outputs(self) -> bool:
        """True when the outputs are nnU-Net regions (independent sigmoids) rather than softmax classes."""
        return self.seg_layers["point_head"].region_outputs

    def forward(self, stage_features: Sequence[torch.Tensor], coarse: torch.Tensor, coords: torch.Tensor,
                backbone_gradient_scale: Optional[torch.Tensor] = None,
                voxel_indices: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Point logits (B, K, P) at coords (B, P, D) from stage features (B, C_i, *S_i) and coarse (B, K, *S).

        The point modules work channels last, (B, P, C): linear layers over points. backbone_gradient_scale scales
        the gradient that flows back into the U-Net; sampling is linear, so scaling it at the sampled points is
        exact and costs P x C instead of full-resolution maps. voxel_indices (B, P): coords are the centres of these
        flat voxels of coarse (inference), so maps at coarse's resolution are read there by index, exactly.
        """
        def scaled(x: torch.Tensor) -> torch.Tensor:
            return x if backbone_gradient_scale is None else scale_gradient(x, backbone_gradient_scale)

        sampler = PointSampler(coords, voxel_indices, coarse.shape[2:])
        features = self.seg_layers["point_features"]
        if self.config.gate == "dense":
            dense = features([scaled(f) for f in stage_features], coarse.shape[2:])
            point_features = sampler(dense).transpose(1, 2)
        else:
            point_features = features([scaled(sampler(f).transpose(1, 2)) for f in stage_features])
        coarse_at_points = scaled(sampler(coarse).transpose(1, 2))
        return self.seg_layers["point_head"](point_features, coarse_at_points, coords).transpose(1, 2)

    def test_points_for(self, spatial_shape: Sequence[int]) -> int:
        """N_test for a patch of spatial_shape: num_test_points if set, else the configuration's default share."""
        if self.num_test_points is not None:
            return self.num_test_points
        return self.config.test_points_for(spatial_shape)

    def refine(self, stage_features: Sequence[torch.Tensor], coarse: torch.Tensor) -> torch.Tensor:
        """coarse (B, K, *S) with its N_test most uncertain voxels re-predicted by the head (N_test 0: coarse)."""
        count = self.test_points_for(coarse.shape[2:])
        if count == 0:
            return coarse
        flat_indices = select_uncertain_voxels(coarse, count, self.region_outputs)
        point_logits = self(stage_features, coarse, voxel_centres(flat_indices, coarse.shape[2:]),
                            voxel_indices=flat_indices)
        return write_point_logits(coarse, flat_indices, point_logits)


class MorseNetwork(nn.Module):
    """An nnU-Net U-Net (PlainConvUNet or ResidualEncoderUNet, any depth) with MORSE's point renderer.

    The U-Net's `encoder` and `decoder` keep their attribute names, so nnU-Net's deep-supervision switch and
    stock checkpoints see the same keys. forward(x (B, C_in, *S)):
    - training: MorseTrainingOutput (nnU-Net's outputs + point logits at training points);
    - eval: nnU-Net's outputs with the full-resolution logits refined at the most uncertain voxels.
    """

    def __init__(self, unet: nn.Module, config: MorseConfig, num_classes: int):
        super().__init__()
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.config = config
        spatial_dims = len(self.encoder.strides[0])
        num_stages = len(self.decoder.stages)
        self.num_experts = config.experts_for(spatial_dims, num_stages)
        stage_channels = list(self.encoder.output_channels[:self.num_experts])
        self.rendering = PointRenderer(config, stage_channels, num_classes, spatial_dims)

    def use_region_outputs(self, enabled: bool) -> None:
        """Declare sigmoid region outputs (nnU-Net's region-based training). Stored in the state dict, so a network
        rebuilt from the plans alone and loaded from a checkpoint knows it too."""
        self.rendering.seg_layers["point_head"].set_region_outputs(enabled)

    def set_num_test_points(self, count: Optional[int]) -> None:
        """Re-predict `count` voxels per patch at inference (0: the coarse U-Net output; None: the configuration's
        N_test), e.g. to sweep N_test."""
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ValueError(f"num_test_points={count!r} is invalid: allowed integers >= 0 (0 = coarse output) or "
                             "None (the configuration's)")
        self.rendering.num_test_points = count

    def decode(self, skips: Sequence[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """nnU-Net's UNetDecoder.forward, also returning the last N stages' features (highest resolution first).

        Returns (stage_features, seg_outputs); seg_outputs is highest resolution first and holds every scale only
        when deep supervision is on.
        """
        decoder = self.decoder
        x = skips[-1]
        stage_outputs, seg_outputs = [], []
        last = len(decoder.stages) - 1
        for s in range(len(decoder.stages)):
            x = decoder.stages[s](torch.cat((decoder.transpconvs[s](x), skips[-(s + 2)]), 1))
            stage_outputs.append(x)
            if decoder.deep_supervision or s == last:
                seg_outputs.append(decoder.seg_layers[s](x))
        return stage_outputs[::-1][:self.num_experts], seg_outputs[::-1]

    def forward(self, x: torch.Tensor, backbone_gradient_scale: Optional[torch.Tensor] = None,
                selectable: Optional[torch.Tensor] = None):
        """x (B, C_in, *S). Training only: backbone_gradient_scale multiplies the gradient L_rend sends into the
        U-Net; selectable (B, 1, *S) marks voxels that may be chosen as uncertain training points."""
        stage_features, seg_outputs = self.decode(self.encoder(x))
        seg = seg_outputs if self.decoder.deep_supervision else seg_outputs[0]
        coarse = seg_outputs[0]
        if not self.training:
            refined = self.rendering.refine(stage_features, coarse)
            return [refined, *seg_outputs[1:]] if self.decoder.deep_supervision else refined
        num_points = self.config.training_points_for(coarse.shape[2:])
        coords = sample_training_points(coarse, num_points, self.config.oversample_ratio, self.config.importance_ratio,
                                        self.rendering.region_outputs, selectable)
        return MorseTrainingOutput(seg, self.rendering(stage_features, coarse, coords, backbone_gradient_scale), coords)
