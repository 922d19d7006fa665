"""nnUNetTrainerMORSE: nnU-Net's trainer with MORSE's point rendering wired into its hooks."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import ClassVar, List, Optional, Tuple

import numpy as np
import torch
from torch import autocast
from torch.nn.parallel import DistributedDataParallel

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import dummy_context

from nnunetv2_morse.config import MorseConfig
from nnunetv2_morse.head import rendering_loss, selectable_voxels
from nnunetv2_morse.network import MorseNetwork
from nnunetv2_morse.precision import (AUTOCAST_ENVIRONMENT_VARIABLE, autocast_dtype_from_environment,
                                      default_autocast_dtype)
from nnunetv2_morse.schedule import awa_weight
from nnunetv2_morse.trainers.resume import capture_rng_state, restore_rng_state, save_checkpoint_with

MORSE_LOG_KEYS = ("rend_losses", "awa_weights")
GRADIENT_CLIP_NORM = 12.0  # nnUNetTrainer.train_step's


class MorseCheckpointError(RuntimeError):
    """A checkpoint that this trainer cannot continue from."""


def unwrap_network(network: torch.nn.Module) -> torch.nn.Module:
    """The MorseNetwork inside nnU-Net's wrappers: DDP(torch.compile(network)), either, or none."""
    network = network.module if isinstance(network, DistributedDataParallel) else network
    return getattr(network, "_orig_mod", network)


def split_parameters(network: torch.nn.Module) -> Tuple[List[torch.nn.Parameter], List[torch.nn.Parameter]]:
    """(U-Net parameters, rendering-module parameters) of a MorseNetwork, wrapped or not.

    The U-Net's come in the order nnUNetTrainer's network yields them (encoder, then decoder), so a norm over them
    is computed exactly as nnU-Net computes it.
    """
    morse = unwrap_network(network)
    rendering = list(morse.rendering.parameters())
    rendering_ids = {id(p) for p in rendering}
    return [p for p in morse.parameters() if id(p) not in rendering_ids], rendering


def clip_gradients(parameters: Tuple[List[torch.nn.Parameter], List[torch.nn.Parameter]]
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Clips split_parameters' U-Net and rendering-module gradient norms separately at nnU-Net's 12; returns both
    norms (before clipping), so that a large head gradient never shrinks the U-Net's update."""
    unet, rendering = parameters
    return (torch.nn.utils.clip_grad_norm_(unet, GRADIENT_CLIP_NORM),
            torch.nn.utils.clip_grad_norm_(rendering, GRADIENT_CLIP_NORM))


def config_differences(saved: dict, current: dict) -> List[str]:
    """'field old -> new' for every field in which two MorseConfig dicts differ, compared as JSON (tuples = lists)."""
    saved, current = json.loads(json.dumps(saved)), json.loads(json.dumps(current))

    def shown(config: dict, key: str) -> str:
        return json.dumps(config[key]) if key in config else "(absent)"

    keys = list(current) + [key for key in saved if key not in current]
    return [f"{key} {shown(saved, key)} -> {shown(current, key)}" for key in keys
            if key not in saved or key not in current or saved[key] != current[key]]


class nnUNetTrainerMORSE(nnUNetTrainer):
    """MORSE with the package's defaults (MorseConfig()); nnUNetTrainerMORSE_paper has the paper's configuration.
    A variant sets `morse_config` and nothing else."""

    morse_config: ClassVar[MorseConfig] = MorseConfig()

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        num_decoder_stages = len(self.configuration_manager.pool_op_kernel_sizes) - 1
        spatial_dims = len(self.configuration_manager.patch_size)
        self.morse_config.check_dimensions(spatial_dims)
        self.morse_config.experts_for(spatial_dims, num_decoder_stages)
        for key in MORSE_LOG_KEYS:
            self.logger.local_logger.my_fantastic_logging.setdefault(key, [])
        self._iteration_in_epoch = 0
        self._rng_state_to_restore: Optional[dict] = None
        self.autocast_dtype = autocast_dtype_from_environment()
        if self.autocast_dtype == torch.bfloat16:
            if self.device.type == "cuda":
                self.grad_scaler = None
                self.print_to_log_file(f"{AUTOCAST_ENVIRONMENT_VARIABLE}: bf16 autocast, no grad scaler")
            else:
                self.print_to_log_file(f"{AUTOCAST_ENVIRONMENT_VARIABLE}=bfloat16 ignored: like nnU-Net, training "
                                       f"on {self.device.type} runs in float32")

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision: bool = True) -> MorseNetwork:
        unet = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)
        return MorseNetwork(unet, cls.morse_config, num_output_channels)

    def initialize(self):
        super().initialize()
        unwrap_network(self.network).use_region_outputs(self.label_manager.has_regions)

    @property
    def clipped_parameters(self) -> Tuple[List[torch.nn.Parameter], List[torch.nn.Parameter]]:
        """split_parameters(self.network), computed once per network object rather than on every step."""
        if getattr(self, "_clipped_network", None) is not self.network:
            self._clipped_parameters = split_parameters(self.network)
            self._clipped_network = self.network
        return self._clipped_parameters

    @property
    def global_iteration(self) -> int:
        return self.current_epoch * self.num_iterations_per_epoch + self._iteration_in_epoch

    @property
    def total_iterations(self) -> int:
        return self.num_epochs * self.num_iterations_per_epoch

    def on_train_start(self):
        super().on_train_start()
        if self.local_rank == 0:
            with open(os.path.join(self.output_folder, "morse_config.json"), "w") as f:
                json.dump({"trainer": self.__class__.__name__, "morse_config": dataclasses.asdict(self.morse_config)},
                          f, indent=2)
        if self._rng_state_to_restore is not None:
            restore_rng_state(self._rng_state_to_restore, self.device, self.print_to_log_file)
            self._rng_state_to_restore = None

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint plus a 'morse' entry (configuration, random states for an exact resume), written once
        (resume.save_checkpoint_with)."""
        if self.local_rank != 0 or self.disable_checkpointing:
            return super().save_checkpoint(filename)
        morse_entry = {"config": dataclasses.asdict(self.morse_config), "rng_state": capture_rng_state(self.device)}
        if not save_checkpoint_with(super().save_checkpoint, filename, self.__class__.__name__, {"morse": morse_entry}):
            raise MorseCheckpointError(
                f"{filename} was written without MORSE's settings: this nnU-Net's save_checkpoint does not hand its "
                "checkpoint to torch.save(checkpoint, filename) as nnunetv2 2.8.1 does; install nnunetv2==2.8.1")

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        """Refuses, in one line and before loading anything, a checkpoint that is unreadable, from another trainer or
        trained with other (or no) MORSE settings; restores MORSE's state."""
        if not isinstance(filename_or_checkpoint, str):
            raise MorseCheckpointError("pass the checkpoint's file name: nnU-Net 2.8 cannot load a checkpoint dict")
        try:
            checkpoint = torch.load(filename_or_checkpoint, map_location="cpu", weights_only=False)
        except Exception as error:
            raise MorseCheckpointError(
                f"cannot read checkpoint {filename_or_checkpoint} ({type(error).__name__}: {error}); it is probably "
                "truncated or corrupted: delete it to resume from another checkpoint, or start again without --c"
            ) from None
        trainer_name = checkpoint.get("trainer_name") if isinstance(checkpoint, dict) else None
        if trainer_name != self.__class__.__name__:
            raise MorseCheckpointError(
                f"checkpoint {filename_or_checkpoint} was written by {trainer_name}, not {self.__class__.__name__}: "
                f"continue it with -tr {trainer_name}, or use -pretrained_weights to start {self.__class__.__name__} "
                "from its U-Net")
        morse_state = checkpoint.get("morse")
        if morse_state is None:
            raise MorseCheckpointError(
                f"checkpoint {filename_or_checkpoint} holds no MORSE settings, so it cannot be checked against "
                f"{self.__class__.__name__}'s: start fresh without --c in a new output folder, or use "
                "-pretrained_weights to start from its U-Net")
        differences = config_differences(morse_state["config"], dataclasses.asdict(self.morse_config))
        if differences:
            raise MorseCheckpointError(
                f"checkpoint {filename_or_checkpoint} was trained with other MORSE settings than "
                f"{self.__class__.__name__} has now ({', '.join(differences)}): start fresh without --c in a new "
                "output folder, or restore the variant's settings")
        super().load_checkpoint(filename_or_checkpoint)
        if not self.is_ddp:
            self._rng_state_to_restore = morse_state["rng_state"]

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._iteration_in_epoch = 0

    def train_step(self, batch: dict) -> dict:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        full_res_target = target[0] if isinstance(target, list) else target
        lambda_t = awa_weight(self.global_iteration, self.total_iterations, self.morse_config)
        decoupled = self.morse_config.head_training == "decoupled"
        backbone_scale = torch.tensor(lambda_t, device=self.device) if decoupled else None

        regions = self.label_manager.has_regions
        ignore = self.label_manager.ignore_label if self.label_manager.has_ignore_label else None
        selectable = selectable_voxels(full_res_target, ignore, regions)

        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, dtype=self.autocast_dtype) if self.device.type == "cuda" else dummy_context():
            output = self.network(data, backbone_scale, selectable)
            sup_loss = self.loss(output.seg, target)
            rend_loss = rendering_loss(output.point_logits, output.point_coords, full_res_target, ignore, regions)
            loss = sup_loss + (rend_loss if decoupled else lambda_t * rend_loss)

        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            clip_gradients(self.clipped_parameters)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            clip_gradients(self.clipped_parameters)
            self.optimizer.step()
        self._iteration_in_epoch += 1
        losses = torch.stack([(sup_loss + lambda_t * rend_loss).float(), rend_loss.float()]).detach().cpu().numpy()
        return {"loss": losses[0], "rend_loss": losses[1]}

    def validation_step(self, batch: dict) -> dict:
        if self.device.type != "cuda":
            return super().validation_step(batch)
        with default_autocast_dtype(self.device.type, self.autocast_dtype):
            return super().validation_step(batch)

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        last_lambda = awa_weight(self.global_iteration - 1, self.total_iterations, self.morse_config)
        rend_loss = float(np.mean([output["rend_loss"] for output in train_outputs]))
        if self.is_ddp:
            gathered = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, rend_loss)
            rend_loss = float(np.mean(gathered))
        self.logger.log("rend_losses", rend_loss, self.current_epoch)
        self.logger.log("awa_weights", last_lambda, self.current_epoch)
        self.print_to_log_file(f"rend_loss {np.round(rend_loss, 4)}, lambda_t {last_lambda:.5f}")
