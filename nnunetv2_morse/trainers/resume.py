"""Exact resume: checkpoints that hold the global random states, restored when a training continues (--c).

nnU-Net seeds nothing and saves no random state, so a training continued from a checkpoint draws other patches,
augmentations (and MORSE points) than the uninterrupted training would have: both are valid trainings, but the
continued one cannot be redone. With the states saved at each checkpoint and restored before the first epoch after
it, a continued training on the same machine repeats the uninterrupted one (with single-process data augmentation,
nnUNet_n_proc_DA=0: worker processes draw from their own generators).
"""
from __future__ import annotations

import random
from typing import Callable, Dict, Optional

import numpy as np
import torch

RANDOM_STATE_KEY = "random_state"


def capture_rng_state(device: torch.device) -> dict:
    """The global random states that nnU-Net's single-process data augmentation and MORSE's point sampling use;
    'cuda' is the training GPU's state (None when training on another device)."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state(_cuda_index(device)) if device.type == "cuda" else None}


def restore_rng_state(state: dict, device: torch.device, log: Callable[[str], None]) -> None:
    """Restores capture_rng_state's states; the CUDA state goes to the training GPU, whichever index it has.

    Older checkpoints stored a list with one state per visible GPU: the training GPU's entry is restored if the list
    has one, else the CUDA state is skipped (logged)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    cuda_state = state.get("cuda")
    if cuda_state is None:
        return
    if device.type != "cuda":
        log(f"the checkpoint's CUDA random state is not restored: training on {device.type}")
        return
    index = _cuda_index(device)
    if isinstance(cuda_state, (list, tuple)):
        if index >= len(cuda_state):
            log(f"the checkpoint's CUDA random states cover GPUs 0..{len(cuda_state) - 1}, not the training GPU "
                f"cuda:{index}: its random state is not restored")
            return
        cuda_state = cuda_state[index]
    torch.cuda.set_rng_state(cuda_state, index)


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def save_checkpoint_with(save_checkpoint: Callable[[str], None], filename: str, trainer_name: str,
                         entries: Dict[str, object]) -> bool:
    """Runs nnU-Net's save_checkpoint(filename) with entries added to the checkpoint dict it hands to
    torch.save(checkpoint, filename), so that every field nnU-Net writes is kept without a copy of its code and the
    file is written once; whether the entries were written (False: this nnU-Net saves its checkpoint otherwise)."""
    save = torch.save
    written = []

    def save_with_entries(obj, f, *args, **kwargs):
        if f == filename and isinstance(obj, dict) and obj.get("trainer_name") == trainer_name:
            obj = {**obj, **entries}
            written.append(f)
        return save(obj, f, *args, **kwargs)

    torch.save = save_with_entries
    try:
        save_checkpoint(filename)
    finally:
        torch.save = save
    return bool(written)


class ExactResume:
    """Mixin for an nnUNetTrainer (listed before it): its checkpoints hold the random states (RANDOM_STATE_KEY), and
    a training continued from one restores them at the end of on_train_start, where the uninterrupted training
    stood when it wrote the checkpoint (module docstring). Under DDP every rank draws its own numbers: nothing is
    restored there. A checkpoint without the states (one of nnU-Net's own trainer), or a base trainer that does not
    save its checkpoint through torch.save as nnU-Net 2.8 does, gives an inexact continuation, which the training
    log says."""

    _random_state_to_restore: Optional[dict] = None

    def save_checkpoint(self, filename: str) -> None:
        if self.local_rank != 0 or self.disable_checkpointing:
            return super().save_checkpoint(filename)
        entries = {RANDOM_STATE_KEY: capture_rng_state(self.device)}
        if not save_checkpoint_with(super().save_checkpoint, filename, self.__class__.__name__, entries):
            self.print_to_log_file(f"warning: {filename} holds no random states ({self.__class__.__name__}'s "
                                   "save_checkpoint does not hand its checkpoint to torch.save as nnU-Net 2.8 does): a "
                                   "training continued from it will not repeat an uninterrupted one")

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        checkpoint = (filename_or_checkpoint if isinstance(filename_or_checkpoint, dict)
                      else torch.load(filename_or_checkpoint, map_location="cpu", weights_only=False))
        state = checkpoint.get(RANDOM_STATE_KEY)
        name = "the checkpoint" if isinstance(filename_or_checkpoint, dict) else filename_or_checkpoint
        if state is None:
            self.print_to_log_file(f"{name} holds no random states: a training continued from it draws fresh ones "
                                   "and will not repeat an uninterrupted training")
        elif self.is_ddp:
            self.print_to_log_file(f"{name}'s random states are not restored: under DDP every rank draws its own")
        else:
            self._random_state_to_restore = state

    def on_train_start(self):
        super().on_train_start()
        if self._random_state_to_restore is not None:
            restore_rng_state(self._random_state_to_restore, self.device, self.print_to_log_file)
            self._random_state_to_restore = None
