"""nnU-Net's real command line on a synthetic dataset with a short MORSE trainer: plan and preprocess, train with a
simulated pre-emption and a resume (--c), check the logged MORSE values, validate and predict.
"""
import json
import math
import os

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunetv2_morse.config import MorseConfig
from nnunetv2_morse.schedule import awa_weight
from nnunetv2_morse.trainers.morse import nnUNetTrainerMORSE
from nnunetv2_morse.datasets.synthetic import make_synthetic_dataset

TRAINER = "nnUNetTrainerMORSE_test_preempted"
EPOCHS = 4  # as set by nnUNetTrainerMORSE_test in conftest.py
ITERATIONS = 4
STOP_AFTER_EPOCH = 2

CASES = {
    # dim: (dataset id, configuration, expected patch size)
    2: (911, "2d", [64, 64]),
    3: (912, "3d_fullres", [32, 32, 32]),
}


@pytest.mark.parametrize("dim", [2, 3], ids=["2d", "3d"])
def test_plan_train_resume_predict(nnunet_workarea, tmp_path, dim):
    area = nnunet_workarea
    dataset_id, configuration, patch_size = CASES[dim]
    dataset_folder = make_synthetic_dataset(area.raw, dataset_id, name=f"MorseE2E{dim}d", dim=dim, num_training=8,
                                            num_test=2, seed=dim)
    dataset_name = os.path.basename(dataset_folder)
    with open(os.path.join(dataset_folder, "dataset.json")) as f:
        label_values = set(json.load(f)["labels"].values())

    # plan and preprocess
    area.run(["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", configuration, "--verify_dataset_integrity",
              "-np", "1"])
    with open(os.path.join(area.preprocessed, dataset_name, "nnUNetPlans.json")) as f:
        plans = json.load(f)
    assert plans["configurations"][configuration]["patch_size"] == patch_size

    # train, pre-empted after epoch STOP_AFTER_EPOCH's checkpoint
    train = ["nnUNetv2_train", dataset_id, configuration, "0", "-tr", TRAINER, "-device", "cpu"]
    area.run(train, expected_returncode=3, extra_env={"MORSE_TEST_STOP_AFTER_EPOCH": str(STOP_AFTER_EPOCH)})
    fold_dir = os.path.join(area.results, dataset_name, f"{TRAINER}__nnUNetPlans__{configuration}", "fold_0")
    assert os.path.isfile(os.path.join(fold_dir, "checkpoint_latest.pth"))
    assert not os.path.isfile(os.path.join(fold_dir, "checkpoint_final.pth"))
    latest = torch.load(os.path.join(fold_dir, "checkpoint_latest.pth"), map_location="cpu", weights_only=False)
    assert latest["current_epoch"] == STOP_AFTER_EPOCH

    # resume to the end
    area.run(train + ["--c"])
    final_path = os.path.join(fold_dir, "checkpoint_final.pth")
    assert os.path.isfile(final_path)
    checkpoint = torch.load(final_path, map_location="cpu", weights_only=False)
    assert checkpoint["current_epoch"] == EPOCHS
    logging = checkpoint["logging"]
    assert len(logging["train_losses"]) == EPOCHS
    config = MorseConfig()
    for key in ("rend_losses", "awa_weights"):
        assert key in logging, f"{key} missing from the checkpoint's logging: {sorted(logging)}"
        values = logging[key]
        assert len(values) == EPOCHS, f"{key}: {values}"
        assert all(math.isfinite(float(v)) for v in values), f"{key}: {values}"
    for epoch, logged in enumerate(logging["awa_weights"]):
        expected = awa_weight((epoch + 1) * ITERATIONS - 1, EPOCHS * ITERATIONS, config)
        assert float(logged) == pytest.approx(expected, abs=1e-7), (epoch, logging["awa_weights"])

    # nnU-Net's validation after training
    summary_path = os.path.join(fold_dir, "validation", "summary.json")
    assert os.path.isfile(summary_path)
    with open(summary_path) as f:
        assert math.isfinite(json.load(f)["foreground_mean"]["Dice"])

    # predict the test images
    images_ts = os.path.join(dataset_folder, "imagesTs")
    out = str(tmp_path / "predictions")
    area.run(["nnUNetv2_predict", "-i", images_ts, "-o", out, "-d", dataset_id, "-c", configuration, "-f", "0",
              "-tr", TRAINER, "-device", "cpu", "-npp", "1", "-nps", "1"])
    inputs = sorted(os.listdir(images_ts))
    assert len(inputs) == 2
    for name in inputs:
        predicted_path = os.path.join(out, name.replace("_0000.nii.gz", ".nii.gz"))
        assert os.path.isfile(predicted_path), f"no prediction for {name}"
        image = sitk.ReadImage(os.path.join(images_ts, name))
        prediction = sitk.ReadImage(predicted_path)
        assert prediction.GetSize() == image.GetSize()
        assert np.allclose(prediction.GetSpacing(), image.GetSpacing())
        assert np.allclose(prediction.GetOrigin(), image.GetOrigin())
        assert np.allclose(prediction.GetDirection(), image.GetDirection())
        values = set(np.unique(sitk.GetArrayFromImage(prediction)).tolist())
        assert values <= label_values, f"{name}: predicted labels {values}, dataset labels {label_values}"

    if dim == 2:
        # inference time and quality against N_test on the fold's validation cases; 0 = the coarse output
        sweep_dir = str(tmp_path / "test_points")
        own = nnUNetTrainerMORSE.morse_config.test_points_for(patch_size)
        area.run(["nnUNetv2_morse_test_points", "-d", dataset_id, "-c", configuration, "-tr", TRAINER, "-f", "0",
                  "--counts", "0", str(own), "512", "-device", "cpu", "-np", "1", "-o", sweep_dir])
        with open(os.path.join(sweep_dir, "test_points.json")) as f:
            sweep = json.load(f)
        assert [row["num_test_points"] for row in sweep["rows"]] == [0, own, 512]
        # at the model's own N_test its prediction path is nnU-Net's validation, voxel for voxel: the ledger's head
        # on - head off (validation/ against --counts 0) differs by the head alone
        for case in sweep["cases"]:
            swept, validated = (sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(folder, f"{case}.nii.gz")))
                                for folder in (os.path.join(sweep_dir, f"ntest_{own}"),
                                               os.path.join(fold_dir, "validation")))
            assert np.array_equal(swept, validated), case
        assert sweep["patch_voxels"] == 64 * 64 and len(sweep["cases"]) == 2
        for row in sweep["rows"]:
            assert row["seconds"] > 0 and 0 <= row["foreground_mean"]["Dice"] <= 1
            predicted = sorted(os.listdir(os.path.join(sweep_dir, f"ntest_{row['num_test_points']}")))
            assert [p for p in predicted if p.endswith(".nii.gz")] == [f"{case}.nii.gz" for case in sweep["cases"]]
        assert "| 512 | 12.50% |" in open(os.path.join(sweep_dir, "test_points.md")).read()

        # the method at work on one test image, and the boundary metrics of fold 0's validation, through the commands
        figure = tmp_path / "picture" / "fig4.png"
        area.run(["nnUNetv2_morse_picture", "-d", dataset_id, "-c", configuration, "-tr", TRAINER, "-f", "0",
                  "-i", os.path.join(images_ts, inputs[0]), "-o", figure, "-device", "cpu"])
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        area.run(["nnUNetv2_morse_evaluate_cv", "-d", dataset_id, "-c", configuration, "-tr", TRAINER, "-f", "0",
                  "-o", tmp_path / "cv.json"])
        with open(tmp_path / "cv.json") as f:
            assert json.load(f)["num_cases"] == len(sweep["cases"])
