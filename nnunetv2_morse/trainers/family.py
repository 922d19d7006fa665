"""The paper's ablations (Tables 1-4) as trainers: each sets a MorseConfig and nothing else."""
from nnunetv2_morse.config import PAPER_WIDTHS, MorseConfig
from nnunetv2_morse.trainers.morse import nnUNetTrainerMORSE

_DENSE = dict(expert_drop_prob=0.0)
_MULTISCALE = dict(point_features="multiscale", expert_drop_prob=0.0)


class nnUNetTrainerPointRend(nnUNetTrainerMORSE):
    """Table 1 '+ PointRend': decoder features concatenated, PointRend MLP."""
    morse_config = MorseConfig(head="pointrend", **_MULTISCALE)


class nnUNetTrainerMoE(nnUNetTrainerMORSE):
    """Table 1 '+ Ours (MoE)': dense mixture of experts, PointRend MLP."""
    morse_config = MorseConfig(head="pointrend", **_DENSE)


class nnUNetTrainerSMoE(nnUNetTrainerMORSE):
    """Table 1 '+ Ours (SMoE)': stochastic mixture of experts, PointRend MLP."""
    morse_config = MorseConfig(head="pointrend")


class nnUNetTrainerIAR(nnUNetTrainerMORSE):
    """Table 1 '+ Ours (IAR)': decoder features concatenated, IAR head."""
    morse_config = MorseConfig(**_MULTISCALE)


class nnUNetTrainerIARMoE(nnUNetTrainerMORSE):
    """Table 1 '+ Ours (IAR+MoE)': dense mixture of experts, IAR head."""
    morse_config = MorseConfig(**_DENSE)


class nnUNetTrainerMORSE_alpha0p1(nnUNetTrainerMORSE):
    """Table 3, alpha = 0.1."""
    morse_config = MorseConfig(expert_drop_prob=0.1)


class nnUNetTrainerMORSE_alpha0p2(nnUNetTrainerMORSE):
    """Table 3, alpha = 0.2."""
    morse_config = MorseConfig(expert_drop_prob=0.2)


class nnUNetTrainerMORSE_alpha0p5(nnUNetTrainerMORSE):
    """Table 3, alpha = 0.5."""
    morse_config = MorseConfig(expert_drop_prob=0.5)


class nnUNetTrainerMORSE_alpha0p9(nnUNetTrainerMORSE):
    """Table 3, alpha = 0.9."""
    morse_config = MorseConfig(expert_drop_prob=0.9)


class nnUNetTrainerMORSE_1expert(nnUNetTrainerMORSE):
    """Table 3, N = 1 (no MoE: one expert, the highest-resolution decoder stage)."""
    morse_config = MorseConfig(num_experts=1)


class nnUNetTrainerMORSE_2experts(nnUNetTrainerMORSE):
    """Table 3, N = 2."""
    morse_config = MorseConfig(num_experts=2)


class nnUNetTrainerMORSE_3experts(nnUNetTrainerMORSE):
    """Table 3, N = 3."""
    morse_config = MorseConfig(num_experts=3)


class nnUNetTrainerMORSE_4experts(nnUNetTrainerMORSE):
    """Table 3, N = 4."""
    morse_config = MorseConfig(num_experts=4)


class nnUNetTrainerMORSE_5experts(nnUNetTrainerMORSE):
    """Table 3, N = 5."""
    morse_config = MorseConfig(num_experts=5)


class nnUNetTrainerMORSE_6experts(nnUNetTrainerMORSE):
    """N = 6, for plans whose U-Net has 6 or more decoder stages."""
    morse_config = MorseConfig(num_experts=6)


class nnUNetTrainerMORSE_noAWA(nnUNetTrainerMORSE):
    """Table 4 'w/o AWA, L_rend from scratch': lambda_rend from the first iteration."""
    morse_config = MorseConfig(awa="off")


class nnUNetTrainerMORSE_stepAWA(nnUNetTrainerMORSE):
    """Table 4 'w/o AWA, L_rend in T/2': lambda_rend switched on at T/2."""
    morse_config = MorseConfig(awa="step")


class nnUNetTrainerMORSE_scaledHead(nnUNetTrainerMORSE):
    """The paper's L_total literally: the point modules also learn only through lambda_t * L_rend."""
    morse_config = MorseConfig(head_training="scaled")


class nnUNetTrainerMORSE_denseGate(nnUNetTrainerMORSE):
    """The paper's dense mixture of experts: full-resolution expert maps and a 3x3-convolution gate (2D only)."""
    morse_config = MorseConfig(gate="dense")


class nnUNetTrainerMORSE_paper(nnUNetTrainerMORSE):
    """MORSE as the paper configures it: widths 256, L = 128 frequencies, a fixed N_p = 2048 training points per
    sample; N_test as the default share of the patch (the paper's 8192 at 512x512)."""
    morse_config = MorseConfig(num_points=2048, **PAPER_WIDTHS)


class nnUNetTrainerMORSE_lean(nnUNetTrainerMORSE):
    """Half the paper's widths (128, 64 Fourier frequencies), twice the default's: between the two in cost (about
    3.5x fewer FLOPs per point than the paper's, 3.2x more than the default's; docs/cpu-measurements.md, Cost)."""
    morse_config = MorseConfig(feature_channels=128, expert_hidden=(128, 128), gate_hidden=(128, 128, 128),
                               fusion_hidden=(128, 128), head_hidden=(128, 128, 128), num_frequencies=64)
