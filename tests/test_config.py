import dataclasses

import pytest

from nnunetv2_morse.config import PAPER_WIDTHS, MorseConfig, MorseConfigError
from nnunetv2_morse.trainers import family


def test_defaults_are_the_papers_but_for_the_widths_and_the_training_points():
    cfg = MorseConfig()
    assert (cfg.expert_drop_prob, cfg.oversample_ratio, cfg.importance_ratio) == (0.7, 3.0, 0.75)
    assert (cfg.rend_loss_weight, cfg.num_points, cfg.num_test_points) == (0.1, None, None)
    assert (cfg.feature_channels, cfg.expert_hidden, cfg.gate_hidden, cfg.fusion_hidden, cfg.head_hidden,
            cfg.num_frequencies) == (64, (64, 64), (64, 64, 64), (64, 64), (64, 64, 64), 32)
    paper = MorseConfig(num_points=2048, **PAPER_WIDTHS)
    assert family.nnUNetTrainerMORSE_paper.morse_config == paper
    assert (paper.feature_channels, paper.expert_hidden, paper.gate_hidden, paper.fusion_hidden, paper.head_hidden,
            paper.num_frequencies) == (256, (256, 256), (256, 256, 256), (256, 256), (256, 256, 256), 128)
    assert paper.training_points_for((128, 128)) == paper.training_points_for((512, 512)) == 2048
    assert cfg.experts_for(2, 6) == 5 and cfg.experts_for(3, 5) == 3 and cfg.experts_for(2, 3) == 3
    # N_test: 3.125% of a 2D patch (8192 at 512^2), 0.93% of a 3D one (the paper's 8192 at 96^3)
    assert cfg.test_points_for((512, 512)) == 8192 and cfg.test_points_for((128, 128)) == 512
    assert cfg.test_points_for((96, 96, 96)) == 8192 and cfg.test_points_for((128, 128, 128)) == 19418
    assert cfg.test_points_for((2, 2)) == 1
    assert MorseConfig(num_test_points=100).test_points_for((512, 512)) == 100
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.expert_drop_prob = 0.5


def test_training_points_follow_the_patch_up_to_the_papers_count():
    cfg = MorseConfig()
    # 2D: 3.125% of the patch (the paper's 2048 at 256^2), at most 2048
    assert [cfg.training_points_for((s, s)) for s in (128, 160, 256, 512)] == [512, 800, 2048, 2048]
    assert cfg.training_points_for((100, 37)) == round(100 * 37 / 32) == 116
    # 3D: the paper's 2048 at 96^3, at most 2048 (so 3d_fullres patches of 96^3 and larger keep it)
    assert [cfg.training_points_for((s, s, s)) for s in (48, 64, 96, 128)] == [256, 607, 2048, 2048]
    assert cfg.training_points_for((1, 1)) == 1 and cfg.training_points_for((2, 2, 2)) == 1
    # an explicit count is taken as it is, also above 2048 and above the patch's voxels
    assert MorseConfig(num_points=2048).training_points_for((128, 128)) == 2048
    assert MorseConfig(num_points=4096).training_points_for((512, 512)) == 4096
    assert MorseConfig(num_points=100).training_points_for((4, 4)) == 100


@pytest.mark.parametrize("field, value, allowed", [
    ("expert_drop_prob", 1.0, "[0, 1)"),
    ("expert_drop_prob", -0.1, "[0, 1)"),
    ("importance_ratio", 0.5, "(0.5, 1]"),
    ("importance_ratio", 1.01, "(0.5, 1]"),
    ("oversample_ratio", 0.9, ">= 1"),
    ("num_points", 0, "None or an int >= 1"),
    ("num_points", 2048.0, "None or an int >= 1"),
    ("num_test_points", -5, "None or an int >= 1"),
    ("num_experts", 0, "None or an int >= 1"),
    ("head", "mlp", "one of"),
    ("point_features", "dense", "one of"),
    ("awa", "cosine", "one of"),
    ("gate", "conv", "one of"),
    ("expert_hidden", (), "non-empty tuple"),
    ("frequency_std", 0.0, "> 0"),
])
def test_invalid_fields_are_named(field, value, allowed):
    with pytest.raises(MorseConfigError) as err:
        MorseConfig(**{field: value})
    assert f"MorseConfig.{field}={value!r}" in str(err.value) and allowed in str(err.value)


def test_num_experts_must_fit_the_plan():
    with pytest.raises(MorseConfigError, match=r"num_experts=6 .*1\.\.4"):
        MorseConfig(num_experts=6).experts_for(2, 4)


def test_multiscale_features_cannot_drop_experts():
    with pytest.raises(MorseConfigError, match="expert_drop_prob"):
        MorseConfig(point_features="multiscale")
    MorseConfig(point_features="multiscale", expert_drop_prob=0.0)


def test_dense_gate_is_2d_only():
    MorseConfig(gate="dense").check_dimensions(2)
    with pytest.raises(MorseConfigError, match=r"MorseConfig.gate='dense' .*'pointwise' in 3D"):
        MorseConfig(gate="dense").check_dimensions(3)
    with pytest.raises(MorseConfigError, match="gate"):
        MorseConfig(gate="dense", point_features="multiscale", expert_drop_prob=0.0)
