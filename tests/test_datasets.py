"""Datasets that use nnU-Net's harder features: MORSE trains on them and predicts through nnU-Net's predictor."""
import json
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.run.run_training import get_trainer_from_args

from nnunetv2_morse.datasets.synthetic import make_synthetic_dataset
from workspace import nnunet_environment


def add_ignore_label(folder):
    """Marks a band of every training label as the ignore label (sparse annotation)."""
    with open(os.path.join(folder, "dataset.json")) as f:
        dataset = json.load(f)
    ignore = max(dataset["labels"].values()) + 1
    dataset["labels"]["ignore"] = ignore
    for name in os.listdir(os.path.join(folder, "labelsTr")):
        path = os.path.join(folder, "labelsTr", name)
        image = sitk.ReadImage(path)
        array = sitk.GetArrayFromImage(image)
        array[..., : array.shape[-1] // 3] = ignore
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(image)
        sitk.WriteImage(out, path)
    return dataset


def use_regions(folder):
    """Region-based training: 'any foreground' = {1, 2} and 'class 2' = {2}, nested sigmoid outputs."""
    with open(os.path.join(folder, "dataset.json")) as f:
        dataset = json.load(f)
    dataset["labels"] = {"background": 0, "foreground": [1, 2], "class_2": [2]}
    dataset["regions_class_order"] = [1, 2]
    return dataset


def add_second_channel(folder):
    with open(os.path.join(folder, "dataset.json")) as f:
        dataset = json.load(f)
    dataset["channel_names"] = {"0": "synthetic", "1": "inverted"}
    for sub in ("imagesTr", "imagesTs"):
        for name in sorted(os.listdir(os.path.join(folder, sub))):
            if name.endswith("_0000.nii.gz"):
                image = sitk.ReadImage(os.path.join(folder, sub, name))
                sitk.WriteImage(-image, os.path.join(folder, sub, name.replace("_0000.", "_0001.")))
    return dataset


CASES = {
    # name: (dataset id, make_synthetic_dataset arguments, dataset.json rewrite)
    "ignore_label": (971, dict(dim=2), add_ignore_label),
    "regions": (972, dict(dim=2), use_regions),
    "regions_and_ignore_label": (973, dict(dim=2), lambda folder: {**use_regions(folder), **{
        "labels": {**use_regions(folder)["labels"], "ignore": add_ignore_label(folder)["labels"]["ignore"]}}}),
    "one_foreground_class": (974, dict(dim=2, num_foreground_classes=1), None),
    "100_classes": (975, dict(dim=2, num_foreground_classes=99), None),
    "two_channels": (976, dict(dim=2), add_second_channel),
    "anisotropic_3d": (977, dict(dim=3, shape=(12, 40, 40), spacing=(5.0, 0.8, 0.8)), None),
    "patch_smaller_than_points": (978, dict(dim=2, shape=(24, 24)), None),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    with nnunet_environment(tmp_path_factory.mktemp("datasets")) as root:
        yield root


@pytest.mark.parametrize("case", sorted(CASES))
def test_morse_trains_and_predicts(case, workspace):
    dataset_id, synthetic_kwargs, rewrite = CASES[case]
    folder = make_synthetic_dataset(str(workspace / "raw"), dataset_id, name=case.replace("_", ""), num_training=5,
                                    num_test=1, seed=dataset_id, **synthetic_kwargs)
    if rewrite is not None:
        dataset = rewrite(folder)
        with open(os.path.join(folder, "dataset.json"), "w") as f:
            json.dump(dataset, f)
    configuration = "3d_fullres" if synthetic_kwargs["dim"] == 3 else "2d"
    os.environ.pop("nnUNet_n_proc_DA", None)
    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=True, verbose=False)
    plan_experiments([dataset_id])
    preprocess([dataset_id], configurations=(configuration,), num_processes=(1,), verbose=False)
    os.environ["nnUNet_n_proc_DA"] = "0"

    torch.manual_seed(0)
    trainer = get_trainer_from_args(str(dataset_id), configuration, 0, "nnUNetTrainerMORSE", device=torch.device("cpu"))
    trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = 1, 2, 1
    trainer.run_training()
    log = trainer.logger.local_logger.my_fantastic_logging
    assert np.isfinite(log["rend_losses"]).all() and np.isfinite(log["train_losses"]).all()

    predictor = nnUNetPredictor(use_mirroring=False, perform_everything_on_device=False, device=torch.device("cpu"),
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(trainer.output_folder_base, (0,), "checkpoint_final.pth")
    assert predictor.network.rendering.region_outputs == trainer.label_manager.has_regions
    out = workspace / f"pred_{case}"
    predictor.predict_from_files(os.path.join(folder, "imagesTs"), str(out), save_probabilities=False,
                                 overwrite=True, num_processes_preprocessing=1, num_processes_segmentation_export=1)
    predicted = [p for p in os.listdir(out) if p.endswith(".nii.gz")]
    assert len(predicted) == 1
    source = sitk.ReadImage(os.path.join(folder, "imagesTs", predicted[0].replace(".nii.gz", "_0000.nii.gz")))
    seg = sitk.ReadImage(str(out / predicted[0]))
    assert seg.GetSize() == source.GetSize() and np.allclose(seg.GetSpacing(), source.GetSpacing())
    allowed = set(range(len(trainer.label_manager.foreground_labels) + 1))
    assert set(np.unique(sitk.GetArrayFromImage(seg))) <= allowed
    shutil.rmtree(trainer.output_folder_base)
