"""Every trainer of the family trains, checkpoints, rebuilds and predicts through nnU-Net, in process."""
import json
import os

import numpy as np
import pytest
import torch

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.run.run_training import get_trainer_from_args

from nnunetv2_morse.config import MorseConfig, MorseConfigError
from nnunetv2_morse.trainers import family
from nnunetv2_morse.trainers.morse import nnUNetTrainerMORSE
from workspace import nnunet_environment, prepare_dataset

DATASET_ID = 961
FAMILY = ["nnUNetTrainerPointRend", "nnUNetTrainerMoE", "nnUNetTrainerSMoE", "nnUNetTrainerIAR",
          "nnUNetTrainerIARMoE", "nnUNetTrainerMORSE"]
VARIANTS = ["nnUNetTrainerMORSE_alpha0p1", "nnUNetTrainerMORSE_1expert", "nnUNetTrainerMORSE_4experts",
            "nnUNetTrainerMORSE_noAWA", "nnUNetTrainerMORSE_stepAWA", "nnUNetTrainerMORSE_scaledHead",
            "nnUNetTrainerMORSE_denseGate", "nnUNetTrainerMORSE_lean", "nnUNetTrainerMORSE_paper"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    with nnunet_environment(tmp_path_factory.mktemp("family")) as root:
        prepare_dataset(root, DATASET_ID, dim=2, num_training=5, num_test=1, seed=3)
        yield root


def make_trainer(name, workspace):
    return get_trainer_from_args(str(DATASET_ID), "2d", 0, name, device=torch.device("cpu"))


@pytest.mark.parametrize("name", FAMILY + VARIANTS)
def test_trains_rebuilds_and_predicts(name, workspace):
    torch.manual_seed(0)
    trainer = make_trainer(name, workspace)
    trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = 1, 2, 1
    trainer.run_training()

    with open(os.path.join(trainer.output_folder, "morse_config.json")) as f:
        saved = json.load(f)
    assert saved["trainer"] == name
    assert MorseConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["morse_config"].items()}) \
        == type(trainer).morse_config

    checkpoint = torch.load(os.path.join(trainer.output_folder, "checkpoint_final.pth"), weights_only=False)
    rebuilt = type(trainer).build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, trainer.num_input_channels,
        trainer.label_manager.num_segmentation_heads, enable_deep_supervision=False)
    result = rebuilt.load_state_dict(checkpoint["network_weights"], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(checkpoint["logging"]["rend_losses"]) == 1 and np.isfinite(checkpoint["logging"]["rend_losses"][0])

    predictor = nnUNetPredictor(use_mirroring=False, perform_everything_on_device=False, device=torch.device("cpu"),
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(trainer.output_folder_base, (0,), "checkpoint_final.pth")
    assert type(predictor.network).__name__ == "MorseNetwork"
    image = np.random.default_rng(0).normal(size=(1, 1, 64, 64)).astype(np.float32)
    seg = predictor.predict_single_npy_array(image, {"spacing": [999, 1, 1]})
    assert seg.shape == (1, 64, 64) and set(np.unique(seg)) <= {0, 1, 2}


def test_too_many_experts_fail_at_construction(workspace):
    with pytest.raises(MorseConfigError, match=r"MorseConfig.num_experts=6 .* allowed 1\.\.4"):
        make_trainer("nnUNetTrainerMORSE_6experts", workspace)


def test_dense_and_stochastic_experts_agree_at_inference(workspace):
    smoe, moe = make_trainer("nnUNetTrainerSMoE", workspace), make_trainer("nnUNetTrainerMoE", workspace)
    smoe.initialize()
    moe.initialize()
    moe.network.load_state_dict(smoe.network.state_dict())
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(smoe.network.eval()(x), moe.network.eval()(x))
        torch.manual_seed(0)
        a = smoe.network.train()(x).point_logits
        torch.manual_seed(0)
        b = moe.network.train()(x).point_logits
    assert not torch.allclose(a, b)


def test_family_configurations():
    assert family.nnUNetTrainerPointRend.morse_config.point_features == "multiscale"
    assert family.nnUNetTrainerPointRend.morse_config.head == "pointrend"
    assert family.nnUNetTrainerMoE.morse_config.expert_drop_prob == 0.0
    assert family.nnUNetTrainerSMoE.morse_config.expert_drop_prob == 0.7
    assert family.nnUNetTrainerIAR.morse_config.head == "iar"
    assert family.nnUNetTrainerIARMoE.morse_config == MorseConfig(expert_drop_prob=0.0)
    assert nnUNetTrainerMORSE.morse_config == MorseConfig()
    with pytest.raises(MorseConfigError):
        MorseConfig(expert_drop_prob=1.0)


def test_picture_of_the_method_at_work(workspace, tmp_path):
    from PIL import Image
    from nnunetv2_morse.evaluation.picture import make_picture

    torch.manual_seed(0)
    trainer = make_trainer("nnUNetTrainerMORSE_alpha0p5", workspace)
    trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = 1, 2, 1
    trainer.run_training()
    raw = workspace / "raw" / f"Dataset{DATASET_ID}_MorseSynthetic"
    out = make_picture(trainer.output_folder_base, [str(raw / "imagesTr" / "case_0000_0000.nii.gz")],
                       str(tmp_path / "fig4.png"), reference_file=str(raw / "labelsTr" / "case_0000.nii.gz"))
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    width, height = Image.open(out).size
    assert width > 3 * height  # six panels side by side
