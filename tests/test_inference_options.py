"""Options around training precision and inference: $nnUNet_morse_autocast, N_test overrides, the N_test sweep CLI."""
import dataclasses

import pytest
import torch

from nnunetv2_morse.evaluation import test_points
from nnunetv2_morse.precision import autocast_dtype_from_environment, default_autocast_dtype
from nnunetv2_morse.trainers.morse import nnUNetTrainerMORSE
from plans import DATASET_JSON, SMALL, SmallMORSE, build, trainer_plans
from workspace import nnunet_environment


@pytest.mark.parametrize("value, dtype", [(None, torch.float16), ("float16", torch.float16), ("fp16", torch.float16),
                                          ("bfloat16", torch.bfloat16), ("BF16", torch.bfloat16)])
def test_autocast_dtype_from_environment(value, dtype):
    environ = {} if value is None else {"nnUNet_morse_autocast": value}
    assert autocast_dtype_from_environment(environ) is dtype


def test_invalid_autocast_value_names_the_variable_and_the_choices():
    with pytest.raises(ValueError, match=r"nnUNet_morse_autocast='fp8' is invalid: allowed float16 .* or bfloat16"):
        autocast_dtype_from_environment({"nnUNet_morse_autocast": "fp8"})


def test_default_autocast_dtype_applies_inside_and_restores():
    before = torch.get_autocast_dtype("cpu")
    with default_autocast_dtype("cpu", torch.bfloat16):
        with torch.autocast("cpu"):
            assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.bfloat16
    assert torch.get_autocast_dtype("cpu") == before


@pytest.mark.filterwarnings(r"ignore:torch\.[gs]et_autocast_(cpu|gpu)_dtype:DeprecationWarning")
@pytest.mark.parametrize("device_type, old_getter", [("cpu", "get_autocast_cpu_dtype"),
                                                     ("cuda", "get_autocast_gpu_dtype")])
def test_default_autocast_dtype_falls_back_to_the_functions_of_torch_before_2_4(device_type, old_getter, monkeypatch):
    old_get = getattr(torch, old_getter)
    before = old_get()
    monkeypatch.delattr(torch, "get_autocast_dtype")
    monkeypatch.delattr(torch, "set_autocast_dtype")
    target = torch.float16 if before == torch.bfloat16 else torch.bfloat16
    with default_autocast_dtype(device_type, target):
        assert old_get() == target
    assert old_get() == before
    with pytest.raises(ValueError, match="autocast dtype for 'xpu' needs torch >= 2.4"):
        with default_autocast_dtype("xpu", target):
            pass


def test_trainer_refuses_an_invalid_autocast_setting_at_construction(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_morse_autocast", "half")
    with nnunet_environment(tmp_path):
        with pytest.raises(ValueError, match="nnUNet_morse_autocast='half'"):
            nnUNetTrainerMORSE(trainer_plans(2), "cfg", 0, DATASET_JSON, torch.device("cpu"))


def test_bf16_request_on_cpu_keeps_float32_training(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_morse_autocast", "bfloat16")
    with nnunet_environment(tmp_path):
        trainer = nnUNetTrainerMORSE(trainer_plans(2), "cfg", 0, DATASET_JSON, torch.device("cpu"))
    assert trainer.autocast_dtype is torch.bfloat16 and trainer.grad_scaler is None
    with open(trainer.log_file) as f:
        assert "nnUNet_morse_autocast=bfloat16 ignored" in f.read()


def test_zero_test_points_returns_the_coarse_output_and_counts_are_validated():
    torch.manual_seed(0)
    network = build(SmallMORSE, 2, deep_supervision=False).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        stage_features, seg_outputs = network.decode(network.encoder(x))
        network.set_num_test_points(0)
        assert torch.equal(network(x), seg_outputs[0])
        network.set_num_test_points(SMALL.num_test_points)
        changed = (network(x) != seg_outputs[0]).flatten(2).any(1).sum().item()
    assert 0 < changed <= SMALL.num_test_points
    network.set_num_test_points(None)  # back to the configuration's
    assert network.rendering.test_points_for((32, 32)) == SMALL.num_test_points
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="num_test_points=.* is invalid: allowed integers >= 0"):
            network.set_num_test_points(bad)


def test_default_test_points_follow_the_patch_size():
    """Without num_test_points, the head re-predicts the configured share of each patch's voxels."""
    torch.manual_seed(0)
    network = build(type("ShareMORSE", (SmallMORSE,), {"morse_config": dataclasses.replace(
        SMALL, num_test_points=None)}), 2, deep_supervision=False).eval()
    for size in (32, 64):
        x = torch.randn(1, 1, size, size)
        with torch.no_grad():
            coarse = network.decode(network.encoder(x))[1][0]
            changed = (network(x) != coarse).flatten(2).any(1).sum().item()
        expected = round(size * size * 8192 / 512 ** 2)
        assert network.rendering.test_points_for((size, size)) == expected
        assert 0.9 * expected < changed <= expected


def test_test_points_cli_refuses_negative_counts(capsys):
    with pytest.raises(SystemExit) as exit_info:
        test_points.main(["-d", "1", "-c", "2d", "-tr", "nnUNetTrainerMORSE", "--counts", "0", "-5"])
    assert exit_info.value.code == 2
    assert "--counts needs integers >= 0" in capsys.readouterr().err
