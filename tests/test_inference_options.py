"""Options around training precision and inference: $nnUNet_morse_autocast, N_test overrides, the N_test sweep CLI
(on a stand-in for nnU-Net's predictor)."""
import dataclasses
import json
import os
import sys
import time

import numpy as np
import pytest
import torch

from nnunetv2_morse.evaluation import test_points
from nnunetv2_morse.precision import autocast_dtype_from_environment, default_autocast_dtype
from nnunetv2_morse.trainers.morse import nnUNetTrainerMORSE
from plans import DATASET_JSON, SMALL, SmallMORSE, build, make_plans, trainer_plans
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


class RecordingPredictor:
    """Stands in for nnU-Net's predictor around a small untrained MORSE network: predict_from_files copies the
    references as predictions, records each call's N_test and cases, and is slow (WARM_UP_SECONDS) the first time."""
    WARM_UP_SECONDS = 1.0
    calls = []

    def __init__(self, *args, **kwargs):
        self.trainer_name = "nnUNetTrainerMORSE"

    def initialize_from_trained_model_folder(self, model_folder, folds, checkpoint):
        torch.manual_seed(0)
        self.network = build(SmallMORSE, 2, deep_supervision=False).eval()
        self.configuration_manager = make_plans(2).get_configuration("cfg")

    def predict_from_files(self, inputs, output_folder, **kwargs):
        import shutil
        RecordingPredictor.calls.append((self.network.rendering.num_test_points, len(inputs), output_folder))
        if len(RecordingPredictor.calls) == 1:
            time.sleep(self.WARM_UP_SECONDS)
        os.makedirs(output_folder, exist_ok=True)
        for files in inputs:
            case = os.path.basename(files[0])[:-len("_0000.nii.gz")]
            shutil.copy(os.path.join(os.environ["nnUNet_preprocessed"], "Dataset999_Test", "gt_segmentations",
                                     case + ".nii.gz"), output_folder)


@pytest.fixture
def sweep_workspace(tmp_path, monkeypatch):
    """nnU-Net folders of a trained 'cfg' model of Dataset999_Test with two validation cases in fold 0, and
    nnU-Net's predictor replaced by RecordingPredictor."""
    import SimpleITK as sitk
    from nnunetv2.inference import predict_from_raw_data

    dataset = "Dataset999_Test"
    fold_folder = tmp_path / "results" / dataset / "nnUNetTrainerMORSE__nnUNetPlans__cfg" / "fold_0"
    os.makedirs(fold_folder)
    (fold_folder / "checkpoint_final.pth").write_bytes(b"")
    (fold_folder.parent / "dataset.json").write_text(json.dumps(DATASET_JSON))
    os.makedirs(tmp_path / "raw" / dataset / "imagesTr")
    os.makedirs(tmp_path / "preprocessed" / dataset / "gt_segmentations")
    cases = ["case_a", "case_b", "case_c"]
    (tmp_path / "preprocessed" / dataset / "splits_final.json").write_text(
        json.dumps([{"train": cases[2:], "val": cases[:2]}]))
    label = np.zeros((1, 20, 24), np.uint8)
    label[0, 5:15, 6:18] = 1
    label[0, 8:12, 9:14] = 2
    for case in cases:
        sitk.WriteImage(sitk.GetImageFromArray(label.astype(np.float32)),
                        str(tmp_path / "raw" / dataset / "imagesTr" / f"{case}_0000.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(label),
                        str(tmp_path / "preprocessed" / dataset / "gt_segmentations" / f"{case}.nii.gz"))
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(tmp_path / variable.split("_")[1]))
    monkeypatch.setattr(predict_from_raw_data, "nnUNetPredictor", RecordingPredictor)
    RecordingPredictor.calls = []
    return tmp_path


def test_test_points_warms_up_untimed_and_sweeps_around_the_models_own_count(sweep_workspace, capsys):
    output = sweep_workspace / "sweep"
    test_points.main(["-d", "999", "-c", "cfg", "-tr", "nnUNetTrainerMORSE", "-f", "0", "-device", "cpu", "-np", "1",
                      "-o", str(output)])
    result = json.loads((output / "test_points.json").read_text())
    model_count = SMALL.num_test_points  # the model's own N_test: 50 of the 32x32 patch
    assert result["model_num_test_points"] == model_count
    assert [row["num_test_points"] for row in result["rows"]] == [0, 12, 25, 50, 100, 200, 800]
    # the first prediction is an untimed warm-up of one case at the largest count, outside the output folder
    warm_up, *timed = RecordingPredictor.calls
    assert warm_up[:2] == (800, 1) and not warm_up[2].startswith(str(output))
    assert [call[:2] for call in timed] == [(count, 2) for count in (0, 12, 25, 50, 100, 200, 800)]
    assert all(row["seconds"] < RecordingPredictor.WARM_UP_SECONDS for row in result["rows"]), result["rows"]
    assert all(row["foreground_mean"]["Dice"] == 1.0 for row in result["rows"])  # predictions = references
    assert set(result["versions"]) == {"nnunetv2_morse", "nnunetv2", "monai", "torch"} and result["created"]
    assert "| 50 (model's) | 4.88% |" in (output / "test_points.md").read_text()


def test_test_points_sets_nnunet_ext_trainer_when_unset(sweep_workspace, monkeypatch):
    from nnunetv2_morse.trainers import TRAINER_DIR

    seen = []
    monkeypatch.setattr(RecordingPredictor, "initialize_from_trained_model_folder",
                        lambda *args: seen.append(os.environ.get("nnUNet_extTrainer")) or sys.exit("stop"))
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    with pytest.raises(SystemExit, match="stop"):
        test_points.main(["-d", "999", "-c", "cfg", "-tr", "nnUNetTrainerMORSE", "-device", "cpu"])
    assert seen == [TRAINER_DIR]


@pytest.mark.parametrize("empty, absent_dice", [("one", 1.0), ("nan", None)])
def test_test_points_scores_a_class_absent_everywhere_by_the_empty_convention(sweep_workspace, empty, absent_dice):
    """--empty as in nnUNetv2_morse_evaluate: the ledger scores head on and head off with nnU-Net's 'nan'."""
    [dataset_json] = sweep_workspace.glob("results/*/*/dataset.json")
    dataset_json.write_text(json.dumps({**DATASET_JSON, "labels": {**DATASET_JSON["labels"], "c": 3}}))
    output = sweep_workspace / "sweep"
    test_points.main(["-d", "999", "-c", "cfg", "-tr", "nnUNetTrainerMORSE", "-f", "0", "-device", "cpu", "-np", "1",
                      "--counts", "0", "--empty", empty, "-o", str(output)])
    report = json.loads((output / "ntest_0" / "boundary_metrics.json").read_text())
    assert report["empty_convention"] == empty
    assert [case["metrics"]["c"]["Dice"] for case in report["metric_per_case"]] == [absent_dice, absent_dice]
    assert [case["metrics"]["a"]["Dice"] for case in report["metric_per_case"]] == [1.0, 1.0]
