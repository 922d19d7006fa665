"""nnUNetTrainerMORSE: nnU-Net's trainer with MORSE's point rendering wired into its hooks."""
from __future__ import annotations

import json
import os
from typing import ClassVar

import numpy as np
import torch
from torch import autocast

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import dummy_context

from nnunetv2_morse.config import MorseConfig
from nnunetv2_morse.head import rendering_loss
from nnunetv2_morse.network import MorseNetwork
from nnunetv2_morse.schedule import awa_weight

MORSE_LOG_KEYS = ("rend_losses", "awa_weights")


class nnUNetTrainerMORSE(nnUNetTrainer):
    """MORSE with the paper's settings. A variant sets `morse_config` and nothing else."""

    morse_config: ClassVar[MorseConfig] = MorseConfig()

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.label_manager.has_regions:
            raise RuntimeError(
                f"{self.__class__.__name__} does not support region-based training (regions_class_order in "
                "dataset.json): MORSE's uncertainty and point loss assume softmax outputs. Train with plain labels "
                "or use nnUNetTrainer.")
        num_decoder_stages = len(self.configuration_manager.pool_op_kernel_sizes) - 1
        spatial_dims = len(self.configuration_manager.patch_size)
        self.morse_config.experts_for(spatial_dims, num_decoder_stages)
        for key in MORSE_LOG_KEYS:
            self.logger.local_logger.my_fantastic_logging.setdefault(key, [])
        self._iteration_in_epoch = 0
        self._epoch_rend_losses = []

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision: bool = True) -> MorseNetwork:
        unet = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)
        return MorseNetwork(unet, cls.morse_config, num_output_channels)

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
                json.dump({"trainer": self.__class__.__name__, "morse_config": json.loads(self.morse_config.to_json())},
                          f, indent=2)

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._iteration_in_epoch = 0
        self._epoch_rend_losses = []

    def train_step(self, batch: dict) -> dict:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        full_res_target = target[0] if isinstance(target, list) else target
        lambda_t = awa_weight(self.global_iteration, self.total_iterations, self.morse_config)
        decoupled = self.morse_config.head_training == "decoupled"
        backbone_scale = torch.tensor(lambda_t, device=self.device) if decoupled else None

        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            output = self.network(data, backbone_scale)
            sup_loss = self.loss(output.seg, target)
            ignore = self.label_manager.ignore_label if self.label_manager.has_ignore_label else None
            rend_loss = rendering_loss(output.point_logits, output.point_coords, full_res_target, ignore)
            loss = sup_loss + (rend_loss if decoupled else lambda_t * rend_loss)

        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()
        self._iteration_in_epoch += 1
        self._epoch_rend_losses.append(rend_loss.item())
        objective = (sup_loss + lambda_t * rend_loss).detach()
        return {"loss": objective.cpu().numpy()}

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        last_lambda = awa_weight(self.global_iteration - 1, self.total_iterations, self.morse_config)
        rend_loss = float(np.mean(self._epoch_rend_losses))
        if self.is_ddp:
            gathered = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, rend_loss)
            rend_loss = float(np.mean(gathered))
        self.logger.log("rend_losses", rend_loss, self.current_epoch)
        self.logger.log("awa_weights", last_lambda, self.current_epoch)
        self.print_to_log_file(f"rend_loss {np.round(rend_loss, 4)}, lambda_t {last_lambda:.5f}")
