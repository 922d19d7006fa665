"""nnUNetTrainerMORSE's own hooks on hand-made plans: gradient clipping, checkpoint writing, configuration checks."""
import dataclasses
import os

import pytest
import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_morse.config import MorseConfigError
from nnunetv2_morse.trainers.morse import MorseCheckpointError, nnUNetTrainerMORSE, split_parameters
from nnunetv2_morse.trainers.resume import ExactResume, capture_rng_state, restore_rng_state
from plans import DATASET_JSON, SMALL, trainer_plans
from workspace import nnunet_environment


def small_trainer_class(**config_changes):
    """A MORSE trainer named nnUNetTrainerMORSE_small whose configuration is SMALL with config_changes."""
    config = dataclasses.replace(SMALL, **config_changes)
    return type("nnUNetTrainerMORSE_small", (nnUNetTrainerMORSE,), {"morse_config": config})


def initialized(trainer_class, root, dim=2):
    """trainer_class on the hand-made 3-class plans, initialised on the CPU inside an nnU-Net work area at root."""
    with nnunet_environment(root):
        trainer = trainer_class(trainer_plans(dim), "cfg", 0, DATASET_JSON, torch.device("cpu"))
        os.makedirs(trainer.preprocessed_dataset_folder, exist_ok=True)  # nnU-Net reads the data format from a file
        open(os.path.join(trainer.preprocessed_dataset_folder, "case.b2nd"), "w").close()
        trainer.initialize()
    return trainer


def batch_for(trainer, seed):
    """A batch as nnU-Net's data loader gives it: data (B, 1, *patch), one target per deep-supervision scale."""
    generator = torch.Generator().manual_seed(seed)
    patch = trainer.configuration_manager.patch_size
    data = torch.randn(trainer.batch_size, 1, *patch, generator=generator)
    labels = torch.randint(0, 3, (trainer.batch_size, 1, *patch), generator=generator).float()
    targets = [labels[(..., *[slice(None, None, round(1 / s)) for s in scale])]
               for scale in trainer._get_deep_supervision_scales()]
    return {"data": data, "target": targets}


def recorded_clip_norms(monkeypatch):
    """Replaces torch.nn.utils.clip_grad_norm_ by itself plus a record of (number of tensors, returned norm)."""
    calls = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        norm = clip(parameters, max_norm, *args, **kwargs)
        calls.append((len(parameters), norm.item()))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    return calls


@pytest.mark.parametrize("head_training", ["decoupled", "scaled"])
@pytest.mark.parametrize("grad_scaler", [False, True], ids=["plain", "grad_scaler"])
def test_unet_step_equals_nnunet_step_while_lambda_is_zero(head_training, grad_scaler, tmp_path, monkeypatch):
    """At lambda_t = 0 the U-Net learns exactly as in nnUNetTrainer, also when its gradient norm is clipped."""
    torch.manual_seed(0)
    stock = initialized(nnUNetTrainer, tmp_path)
    morse = initialized(small_trainer_class(head_training=head_training), tmp_path)
    with torch.no_grad():  # convolutions before instance norms at 1/100 weight: their gradients grow 100-fold
        for name, parameter in stock.network.named_parameters():
            if parameter.ndim > 1 and "seg_layers" not in name:
                parameter.mul_(0.01)
    result = morse.network.load_state_dict(stock.network.state_dict(), strict=False)
    assert not result.unexpected_keys and all(key.startswith("rendering.") for key in result.missing_keys)
    if grad_scaler:
        stock.grad_scaler, morse.grad_scaler = torch.amp.GradScaler("cpu"), torch.amp.GradScaler("cpu")
    norms = recorded_clip_norms(monkeypatch)

    batch = batch_for(stock, seed=1)
    stock.train_step(batch)
    [(stock_count, stock_norm)] = norms
    assert stock_norm > 12
    assert morse.global_iteration == 0 and morse.morse_config.awa == "linear"  # lambda_t = 0
    morse.train_step(batch)

    stock_parameters = dict(stock.network.named_parameters())
    morse_parameters = dict(morse.network.named_parameters())
    unet_names = [name for name in morse_parameters if not name.startswith("rendering.")]
    assert unet_names == list(stock_parameters)
    for name in unet_names:
        assert torch.equal(morse_parameters[name], stock_parameters[name]), name
    unet, rendering = split_parameters(morse.network)
    [(unet_count, unet_norm), (rendering_count, rendering_norm)] = norms[1:]
    assert (unet_count, unet_norm) == (stock_count, stock_norm) and unet_count == len(unet)
    assert rendering_count == len(rendering)
    assert (rendering_norm > 0) == (head_training == "decoupled")  # 'scaled': lambda_t = 0 leaves the head no gradient


def test_parameter_split_sees_through_torch_compile(tmp_path):
    trainer = initialized(small_trainer_class(), tmp_path)
    unet, rendering = split_parameters(trainer.network)
    compiled_unet, compiled_rendering = split_parameters(torch.compile(trainer.network))
    assert [id(p) for p in compiled_unet] == [id(p) for p in unet]
    assert [id(p) for p in compiled_rendering] == [id(p) for p in rendering]
    assert {id(p) for p in unet + rendering} == {id(p) for p in trainer.network.parameters()}
    assert {id(p) for p in rendering} == {id(p) for p in trainer.network.rendering.parameters()}


def test_dense_gate_in_3d_is_refused_at_construction(tmp_path):
    with nnunet_environment(tmp_path), pytest.raises(MorseConfigError, match="MorseConfig.gate='dense'.*in 3D"):
        small_trainer_class(gate="dense")(trainer_plans(3), "cfg", 0, DATASET_JSON, torch.device("cpu"))


def test_checkpoint_is_written_once_and_loads(tmp_path, monkeypatch):
    torch.manual_seed(0)
    trainer = initialized(small_trainer_class(), tmp_path)
    trainer.train_step(batch_for(trainer, seed=1))
    writes = []
    save = torch.save

    def recording_save(obj, f, *args, **kwargs):
        writes.append(f)
        save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", recording_save)
    path = str(tmp_path / "checkpoint.pth")
    trainer.save_checkpoint(path)
    assert writes == [path]

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == "nnUNetTrainerMORSE_small"
    assert checkpoint["morse"]["config"] == dataclasses.asdict(SMALL)
    assert set(checkpoint["morse"]["rng_state"]) == {"torch", "numpy", "python", "cuda"}
    resumed = initialized(small_trainer_class(), tmp_path)
    resumed.load_checkpoint(path)
    for (name, a), b in zip(trainer.network.state_dict().items(), resumed.network.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.optimizer.state_dict()["state"].keys() == trainer.optimizer.state_dict()["state"].keys()
    assert resumed.current_epoch == 1


def test_checkpoint_without_the_morse_entry_is_an_error(tmp_path, monkeypatch):
    """Should nnU-Net's save_checkpoint stop handing its dict to torch.save(checkpoint, filename), saving fails loudly."""
    trainer = initialized(small_trainer_class(), tmp_path)
    monkeypatch.setattr(nnUNetTrainer, "save_checkpoint", lambda self, filename: torch.save({}, filename))
    with pytest.raises(MorseCheckpointError, match="written without MORSE's settings"):
        trainer.save_checkpoint(str(tmp_path / "checkpoint.pth"))


def test_resume_under_changed_settings_is_refused_naming_the_fields(tmp_path):
    trainer = initialized(small_trainer_class(), tmp_path)
    path = str(tmp_path / "checkpoint.pth")
    trainer.save_checkpoint(path)
    changed = initialized(small_trainer_class(expert_drop_prob=0.5, awa="off", head_hidden=(16, 8)), tmp_path)
    weights_before = [p.detach().clone() for p in changed.network.parameters()]
    with pytest.raises(MorseCheckpointError) as error:
        changed.load_checkpoint(path)
    message = str(error.value)
    assert "\n" not in message
    assert 'expert_drop_prob 0.7 -> 0.5' in message and 'awa "linear" -> "off"' in message
    assert "head_hidden [16, 16] -> [16, 8]" in message and "num_points" not in message
    assert "start fresh without --c in a new output folder, or restore the variant's settings" in message
    assert changed.current_epoch == 0
    assert all(torch.equal(p, q) for p, q in zip(changed.network.parameters(), weights_before))


def test_resume_from_a_checkpoint_without_morse_settings_is_refused(tmp_path):
    trainer = initialized(small_trainer_class(), tmp_path)
    path = str(tmp_path / "checkpoint.pth")
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    del checkpoint["morse"]
    torch.save(checkpoint, path)
    with pytest.raises(MorseCheckpointError, match="holds no MORSE settings"):
        initialized(small_trainer_class(), tmp_path).load_checkpoint(path)


def fake_gpus(monkeypatch, count):
    """torch.cuda with `count` GPUs whose generator states live in the returned dict {index: state}; indices beyond
    count raise IndexError, as torch.cuda.default_generators[index] does."""
    states = {index: torch.full((16,), index, dtype=torch.uint8) for index in range(count)}

    def checked(device):
        index = device if isinstance(device, int) else torch.device(device).index or 0
        if index >= count:
            raise IndexError(f"no GPU {index}")
        return index

    def get_rng_state(device="cuda"):
        return states[checked(device)].clone()

    def set_rng_state(state, device="cuda"):
        states[checked(device)] = state.clone()

    for module in (torch.cuda, torch.cuda.random):
        monkeypatch.setattr(module, "get_rng_state", get_rng_state)
        monkeypatch.setattr(module, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    return states


def test_rng_state_holds_the_training_gpu_only_and_restores_it(monkeypatch):
    states = fake_gpus(monkeypatch, count=2)
    saved = capture_rng_state(torch.device("cuda", 1))
    assert torch.equal(saved["cuda"], states[1])
    expected = torch.rand(3)
    states[0] = states[1] = torch.zeros(16, dtype=torch.uint8)
    restore_rng_state(saved, torch.device("cuda", 0), log=pytest.fail)  # resumed on another GPU of the machine
    assert torch.equal(states[0], torch.full((16,), 1, dtype=torch.uint8))
    assert torch.equal(torch.rand(3), expected)


def test_rng_state_of_more_gpus_than_present_restores_the_training_gpus_entry(monkeypatch):
    """Checkpoints that stored every GPU's state (a list) resume on a machine with fewer GPUs."""
    states = fake_gpus(monkeypatch, count=1)
    saved = {**capture_rng_state(torch.device("cpu")), "cuda": [torch.full((16,), 7 + i, dtype=torch.uint8)
                                                                for i in range(4)]}
    restore_rng_state(saved, torch.device("cuda", 0), log=pytest.fail)
    assert torch.equal(states[0], torch.full((16,), 7, dtype=torch.uint8))

    states = fake_gpus(monkeypatch, count=3)
    messages = []
    restore_rng_state({**saved, "cuda": saved["cuda"][:2]}, torch.device("cuda", 2), log=messages.append)
    assert messages == ["the checkpoint's CUDA random states cover GPUs 0..1, not the training GPU cuda:2: its "
                        "random state is not restored"]
    assert torch.equal(states[2], torch.full((16,), 2, dtype=torch.uint8))


def test_cuda_rng_state_is_skipped_with_a_log_line_when_resuming_on_the_cpu():
    saved = {**capture_rng_state(torch.device("cpu")), "cuda": torch.zeros(16, dtype=torch.uint8)}
    assert capture_rng_state(torch.device("cpu"))["cuda"] is None
    messages = []
    restore_rng_state(saved, torch.device("cpu"), log=messages.append)
    assert messages == ["the checkpoint's CUDA random state is not restored: training on cpu"]


def test_a_scheduled_nnunet_trainer_restores_its_checkpoints_random_states_and_logs_their_absence(tmp_path,
                                                                                                   monkeypatch):
    """resume.ExactResume on a study's nnUNetTrainer: after load_checkpoint and on_train_start, the generators draw
    what they drew after the checkpoint was written; nnU-Net's own checkpoint, without states, is logged."""
    import numpy as np

    from nnunetv2_morse.ledger.trainers import scheduled_trainer
    from nnunetv2_morse.trainers.resume import RANDOM_STATE_KEY
    trainer_class = scheduled_trainer("nnUNetTrainer", "nnUNetTrainer_e1i1v1_seed0", 1, 1, 1, 0, 1)
    # nnU-Net's needs a dataset; it draws from the generators (the data loaders' first batches) before training
    monkeypatch.setattr(nnUNetTrainer, "on_train_start", lambda self: (torch.rand(3), np.random.random(3)))
    trainer = initialized(trainer_class, tmp_path)
    torch.rand(10), np.random.random(10)  # as training does: the states saved are not those after the seeding
    path = str(tmp_path / "checkpoint.pth")
    trainer.save_checkpoint(path)
    after_save = (torch.rand(4), np.random.random(4))
    resumed = initialized(trainer_class, tmp_path)
    resumed.load_checkpoint(path)
    resumed.on_train_start()
    assert torch.equal(torch.rand(4), after_save[0]) and np.array_equal(np.random.random(4), after_save[1])

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    del checkpoint[RANDOM_STATE_KEY]
    torch.save(checkpoint, path)
    logged = []
    without = initialized(trainer_class, tmp_path)
    monkeypatch.setattr(without, "print_to_log_file", lambda *args, **kwargs: logged.append(" ".join(args)))
    without.load_checkpoint(path)
    without.on_train_start()
    assert logged == [f"{path} holds no random states: a training continued from it draws fresh ones and will not "
                      "repeat an uninterrupted training"]


def test_a_study_trainer_of_a_base_that_saves_otherwise_logs_that_its_checkpoints_lack_the_random_states(
        tmp_path, monkeypatch):
    """A base trainer that writes no checkpoint through torch.save (nnU-Net's benchmark trainers write none) still
    trains: the log says its continuations are not exact. A base that already has the states is not wrapped again."""
    from nnunetv2_morse.ledger.trainers import scheduled_trainer
    from nnunetv2_morse.trainers.short import with_schedule
    trainer_class = scheduled_trainer("nnUNetTrainer", "nnUNetTrainer_e1i1v1_seed0", 1, 1, 1, 0, 1)
    monkeypatch.setattr(nnUNetTrainer, "save_checkpoint", lambda self, filename: None)
    trainer = initialized(trainer_class, tmp_path)
    logged = []
    monkeypatch.setattr(trainer, "print_to_log_file", lambda *args, **kwargs: logged.append(" ".join(args)))
    trainer.save_checkpoint(str(tmp_path / "checkpoint.pth"))
    assert len(logged) == 1 and "holds no random states" in logged[0] and "will not repeat" in logged[0]
    assert with_schedule(trainer_class, "nnUNetTrainer_again", 2).__mro__.count(ExactResume) == 1


def test_parameter_split_is_made_once_per_network(tmp_path, monkeypatch):
    """The clipping split is not rebuilt on every step; a network put in place later (compiled, reloaded) gets its own."""
    import nnunetv2_morse.trainers.morse as morse_module
    splits = []
    monkeypatch.setattr(morse_module, "split_parameters",
                        lambda network: splits.append(network) or split_parameters(network))
    trainer = initialized(small_trainer_class(), tmp_path)
    for seed in (1, 2):
        trainer.train_step(batch_for(trainer, seed))
    assert splits == [trainer.network]
    trainer.network = torch.compile(trainer.network)
    unet, rendering = trainer.clipped_parameters
    assert len(splits) == 2 and {id(p) for p in unet + rendering} == {id(p) for p in trainer.network.parameters()}
