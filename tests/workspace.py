"""An nnU-Net work area for in-process tests: environment variables, a planned and preprocessed synthetic dataset."""
import contextlib
import os

from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

from nnunetv2_morse.datasets.synthetic import make_synthetic_dataset
from nnunetv2_morse.trainers import TRAINER_DIR


@contextlib.contextmanager
def nnunet_environment(root, ext_trainer_dirs=()):
    """Points nnU-Net's path variables at root/{raw,preprocessed,results}; data augmentation single-threaded."""
    env = {"nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
           "nnUNet_results": str(root / "results"),
           "nnUNet_extTrainer": os.pathsep.join([*map(str, ext_trainer_dirs), TRAINER_DIR])}
    saved = {k: os.environ.get(k) for k in (*env, "nnUNet_n_proc_DA")}
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.makedirs(env[key], exist_ok=True)
    os.environ.update(env)
    try:
        yield root
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def workspace_with_trainers(root, module_name, trainers_source):
    """nnunet_environment(root) whose nnUNet_extTrainer also holds root/trainers/<module_name>.py."""
    (root / "trainers").mkdir()
    (root / "trainers" / f"{module_name}.py").write_text(trainers_source)
    with nnunet_environment(root, ext_trainer_dirs=[root / "trainers"]):
        yield root


def prepare_dataset(root, dataset_id, configuration="2d", **synthetic_kwargs):
    """Makes, plans and preprocesses a synthetic dataset inside an active nnunet_environment(root)."""
    make_synthetic_dataset(str(root / "raw"), dataset_id, **synthetic_kwargs)
    os.environ.pop("nnUNet_n_proc_DA", None)
    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=True, verbose=False)
    plan_experiments([dataset_id])
    preprocess([dataset_id], configurations=(configuration,), num_processes=(1,), verbose=False)
    os.environ["nnUNet_n_proc_DA"] = "0"  # single-threaded data augmentation: deterministic, no worker start-up


def assert_raw_layout(folder, num_training, num_test):
    """The builders' nnU-Net raw layout: case_0000.. in imagesTr (+ labelsTr), the next num_test in imagesTs."""
    def listed(sub):
        return sorted(os.listdir(os.path.join(folder, sub)))
    assert listed("imagesTr") == [f"case_{i:04d}_0000.nii.gz" for i in range(num_training)]
    assert listed("labelsTr") == [f"case_{i:04d}.nii.gz" for i in range(num_training)]
    assert listed("imagesTs") == [f"case_{i:04d}_0000.nii.gz" for i in range(num_training, num_training + num_test)]
