"""Resume is exact: k epochs straight == k/2 epochs, pre-emption, --c for the rest (same AWA trace, same losses),
for MORSE and for a study's scheduled nnUNetTrainer (resume.ExactResume)."""
import os
import random
import textwrap

import numpy as np
import pytest
import torch

from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

from nnunetv2_morse.config import MorseConfig
from nnunetv2_morse.schedule import awa_weight
from nnunetv2_morse.trainers.morse import MorseCheckpointError
from workspace import prepare_dataset, workspace_with_trainers

DATASET_ID = 962
EPOCHS, ITERATIONS, STOP = 4, 3, 1

TRAINERS = textwrap.dedent('''
    import os
    import torch
    from nnunetv2_morse.ledger.trainers import scheduled_trainer
    from nnunetv2_morse.trainers.morse import nnUNetTrainerMORSE


    class nnUNetTrainerMORSE_resumeStraight(nnUNetTrainerMORSE):
        def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 4, 3, 1
            self.save_every = 1


    class nnUNetTrainerMORSE_resumeStopped(nnUNetTrainerMORSE_resumeStraight):
        def on_epoch_end(self):
            super().on_epoch_end()
            if os.environ.get("MORSE_TEST_STOP_AFTER_EPOCH") == str(self.current_epoch - 1):
                raise KeyboardInterrupt("pre-empted")


    nnUNetTrainer_resumeStraight = scheduled_trainer("nnUNetTrainer", "nnUNetTrainer_resumeStraight", 4, 3, 1, 0, 1)


    class nnUNetTrainer_resumeStopped(nnUNetTrainer_resumeStraight):
        def on_epoch_end(self):
            super().on_epoch_end()
            if os.environ.get("MORSE_TEST_STOP_AFTER_EPOCH") == str(self.current_epoch - 1):
                raise KeyboardInterrupt("pre-empted")
''')


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    with workspace_with_trainers(tmp_path_factory.mktemp("resume"), "morse_resume_test_trainers", TRAINERS) as root:
        prepare_dataset(root, DATASET_ID, dim=2, num_training=5, num_test=1, seed=4)
        yield root


def train(name, continue_training=False):
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    trainer = get_trainer_from_args(str(DATASET_ID), "2d", 0, name, continue_training=continue_training,
                                    device=torch.device("cpu"))
    maybe_load_checkpoint(trainer, continue_training, False)
    trainer.run_training()
    return trainer


def straight_and_resumed(trainer, monkeypatch):
    """The logs of trainer_resumeStraight's training and of trainer_resumeStopped's, pre-empted after epoch STOP
    and continued with --c."""
    straight = train(f"{trainer}_resumeStraight").logger.local_logger.my_fantastic_logging
    monkeypatch.setenv("MORSE_TEST_STOP_AFTER_EPOCH", str(STOP))
    with pytest.raises(KeyboardInterrupt):
        train(f"{trainer}_resumeStopped")
    monkeypatch.delenv("MORSE_TEST_STOP_AFTER_EPOCH")
    return straight, train(f"{trainer}_resumeStopped", continue_training=True).logger.local_logger.my_fantastic_logging


def test_resume_reproduces_the_straight_run(workspace, monkeypatch):
    straight, resumed = straight_and_resumed("nnUNetTrainerMORSE", monkeypatch)

    expected_awa = [awa_weight((e + 1) * ITERATIONS - 1, EPOCHS * ITERATIONS, MorseConfig()) for e in range(EPOCHS)]
    assert expected_awa[-1] > 0 and expected_awa[0] == 0
    for log in (straight, resumed):
        assert log["awa_weights"] == pytest.approx(expected_awa, abs=1e-12)
    for key in ("train_losses", "val_losses", "rend_losses", "mean_fg_dice"):
        assert len(resumed[key]) == EPOCHS
        np.testing.assert_allclose(resumed[key], straight[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_a_studys_nnunettrainer_resumes_exactly_too(workspace, monkeypatch):
    """nnU-Net's own trainer saves no random state: continued, it would draw other patches than the straight run."""
    straight, resumed = straight_and_resumed("nnUNetTrainer", monkeypatch)
    for key in ("train_losses", "val_losses", "mean_fg_dice"):
        assert len(resumed[key]) == EPOCHS
        np.testing.assert_allclose(resumed[key], straight[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_resume_refuses_a_checkpoint_of_another_trainer(workspace):
    trainer = get_trainer_from_args(str(DATASET_ID), "2d", 0, "nnUNetTrainerMORSE_resumeStopped",
                                    device=torch.device("cpu"))
    other = os.path.join(str(workspace), "other.pth")
    torch.save({"trainer_name": "nnUNetTrainerIAR", "network_weights": {}}, other)
    with pytest.raises(MorseCheckpointError, match="written by nnUNetTrainerIAR, not nnUNetTrainerMORSE_resumeStopped"):
        trainer.load_checkpoint(other)


def test_resume_refuses_a_truncated_checkpoint(workspace):
    trainer = get_trainer_from_args(str(DATASET_ID), "2d", 0, "nnUNetTrainerMORSE_resumeStopped",
                                    device=torch.device("cpu"))
    good = os.path.join(str(workspace), "good.pth")
    torch.save({"trainer_name": "nnUNetTrainerMORSE_resumeStopped", "blob": torch.zeros(10000)}, good)
    truncated = os.path.join(str(workspace), "truncated.pth")
    with open(good, "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read()[:5000])
    with pytest.raises(MorseCheckpointError, match="truncated or corrupted"):
        trainer.load_checkpoint(truncated)
