"""CUDA only (skipped without a GPU; run `pytest tests/test_cuda.py` on one): every trainer of the family trains,
validates and predicts under torch.compile with fp16 autocast + nnU-Net's grad scaler and with bf16 autocast."""
import numpy as np
import pytest
import torch

from nnunetv2_morse import cost
from nnunetv2_morse.trainers import family, short
from nnunetv2_morse.trainers.morse import nnUNetTrainerMORSE, unwrap_network
from plans import DATASET_JSON, trainer_plans
from workspace import nnunet_environment

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FAMILY = [nnUNetTrainerMORSE] + [getattr(family, name) for name in dir(family) if name.startswith("nnUNetTrainer")
                                 and issubclass(getattr(family, name), nnUNetTrainerMORSE)
                                 and getattr(family, name) is not nnUNetTrainerMORSE]
NUM_CLASSES = 3


def train_validate_predict(trainer_class, dim, precision, tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_compile", "1")
    monkeypatch.setenv("nnUNet_morse_autocast", precision)
    plans = trainer_plans(dim, n_stages=7 if dim == 2 else 4)
    with nnunet_environment(tmp_path):
        trainer = trainer_class(plans, "cfg", 0, DATASET_JSON, torch.device("cuda"))
        assert cost.initialize_without_data(trainer, 1, NUM_CLASSES), "nnU-Net did not compile the network"
        assert (trainer.grad_scaler is None) == (precision == "bfloat16")
        network = unwrap_network(trainer.network)
        head_before = [p.detach().clone() for p in network.rendering.parameters()]
        batch = cost.random_batch(trainer, 1, NUM_CLASSES, torch.Generator().manual_seed(0))
        trainer.on_train_epoch_start()
        for _ in range(2):
            losses = trainer.train_step(batch)
            assert np.isfinite(losses["loss"]) and np.isfinite(losses["rend_loss"]) and losses["rend_loss"] > 0
        assert any(not torch.equal(a, b) for a, b in zip(head_before, network.rendering.parameters()))
        trainer.network.eval()
        validation = trainer.validation_step(batch)
        assert np.isfinite(validation["loss"])
        trainer.set_deep_supervision_enabled(False)
        x = batch["data"][:1].cuda()
        with torch.no_grad(), torch.autocast("cuda", dtype=trainer.autocast_dtype):
            refined = trainer.network(x).float()
            coarse = network.decode(network.encoder(x))[1][0].float()
        assert refined.shape == (1, NUM_CLASSES, *trainer.configuration_manager.patch_size)
        assert torch.isfinite(refined).all()
        changed = (refined != coarse).flatten(2).any(1).sum().item()
        assert 0 < changed <= network.rendering.test_points_for(refined.shape[2:])


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
@pytest.mark.parametrize("trainer_class", FAMILY, ids=lambda c: c.__name__)
def test_family_trains_compiled_in_mixed_precision_2d(trainer_class, precision, tmp_path, monkeypatch):
    train_validate_predict(trainer_class, 2, precision, tmp_path, monkeypatch)


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
@pytest.mark.parametrize("trainer_class", short.FAMILY, ids=lambda c: c.__name__)
def test_family_trains_compiled_in_mixed_precision_3d(trainer_class, precision, tmp_path, monkeypatch):
    train_validate_predict(trainer_class, 3, precision, tmp_path, monkeypatch)
