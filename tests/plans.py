"""Hand-made nnU-Net plans and small MORSE networks for tests: the structure nnU-Net's planners write, no dataset."""
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunetv2_morse.config import MorseConfig
from nnunetv2_morse.trainers.morse import nnUNetTrainerMORSE

UNETS = {
    "PlainConvUNet": ("dynamic_network_architectures.architectures.unet.PlainConvUNet", "n_conv_per_stage"),
    "ResidualEncoderUNet": ("dynamic_network_architectures.architectures.unet.ResidualEncoderUNet", "n_blocks_per_stage"),
}


def make_plans(dim: int, n_stages: int = 4, network: str = "PlainConvUNet", base_features: int = 8,
               patch_size=None) -> PlansManager:
    """Plans with one configuration 'cfg' of a dim-D U-Net with n_stages resolution stages."""
    class_name, blocks_key = UNETS[network]
    conv = "torch.nn.modules.conv.Conv%dd" % dim
    norm = "torch.nn.modules.instancenorm.InstanceNorm%dd" % dim
    patch_size = patch_size or [2 ** (n_stages + 1)] * dim
    arch = {
        "n_stages": n_stages,
        "features_per_stage": [min(base_features * 2 ** i, 64) for i in range(n_stages)],
        "conv_op": conv,
        "kernel_sizes": [[3] * dim] * n_stages,
        "strides": [[1] * dim] + [[2] * dim] * (n_stages - 1),
        blocks_key: [1] * n_stages,
        "n_conv_per_stage_decoder": [1] * (n_stages - 1),
        "conv_bias": True,
        "norm_op": norm,
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    configuration = {
        "data_identifier": "test", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": patch_size, "median_image_size_in_voxels": patch_size, "spacing": [1.0] * dim,
        "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {"network_class_name": class_name, "arch_kwargs": arch,
                         "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
        "batch_dice": False,
    }
    return PlansManager({
        "dataset_name": "Dataset999_Test", "plans_name": "nnUNetPlans", "original_median_spacing_after_transp": [1.0] * dim,
        "original_median_shape_after_transp": patch_size, "image_reader_writer": "SimpleITKIO",
        "transpose_forward": list(range(dim)), "transpose_backward": list(range(dim)),
        "configurations": {"cfg": configuration}, "experiment_planner_used": "hand-made",
        "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {},
    })


# dataset.json of the three-class dataset that hand-made plans stand for (trainers need it to be constructed)
DATASET_JSON = {"labels": {"background": 0, "a": 1, "b": 2}, "channel_names": {"0": "x"}, "numTraining": 1,
                "file_ending": ".nii.gz"}


def trainer_plans(dim: int, n_stages: int = 4) -> dict:
    """make_plans as the plans dict that an nnUNetTrainer constructor takes."""
    return {**make_plans(dim, n_stages=n_stages).plans, "continue_training": False}


SMALL = MorseConfig(feature_channels=16, expert_hidden=(16, 16), gate_hidden=(16,), fusion_hidden=(16,),
                    head_hidden=(16, 16), num_frequencies=8, num_points=64, num_test_points=50)


class SmallMORSE(nnUNetTrainerMORSE):
    morse_config = SMALL


def build(trainer, dim, deep_supervision, network="PlainConvUNet", n_stages=4, classes=3):
    pm = make_plans(dim, n_stages=n_stages, network=network)
    return trainer.build_network_architecture(pm, pm.get_configuration("cfg"), 1, classes, deep_supervision)
