"""Shared fixtures: an nnU-Net work area in a temporary folder and short MORSE trainers for end-to-end tests."""
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import pytest

import nnunetv2_morse
from nnunetv2_morse.trainers import TRAINER_DIR

BIN_DIR = os.path.dirname(os.path.abspath(sys.executable))
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(nnunetv2_morse.__file__)))

TEST_TRAINERS_MODULE = "morse_e2e_test_trainers"
TEST_TRAINERS_SOURCE = '''\
"""Short MORSE trainers for the end-to-end tests (written by tests/conftest.py)."""
import os

import torch

from nnunetv2_morse.trainers.morse import nnUNetTrainerMORSE


class nnUNetTrainerMORSE_test(nnUNetTrainerMORSE):
    """4 epochs of 4 training and 2 validation iterations, checkpoint_latest after every epoch."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = 4
        self.num_val_iterations_per_epoch = 2
        self.num_epochs = 4
        self.save_every = 1


class nnUNetTrainerMORSE_test_preempted(nnUNetTrainerMORSE_test):
    """Exits with code 3 once current_epoch reaches $MORSE_TEST_STOP_AFTER_EPOCH (after checkpoint_latest)."""

    def on_epoch_end(self):
        super().on_epoch_end()
        stop = os.environ.get("MORSE_TEST_STOP_AFTER_EPOCH")
        if stop is not None and self.current_epoch == int(stop):
            raise SystemExit(3)
'''


def write_test_trainers(folder: str) -> str:
    """Write the short test trainers (nnUNetTrainerMORSE_test, ..._test_preempted) into folder; return folder."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, TEST_TRAINERS_MODULE + ".py"), "w") as f:
        f.write(TEST_TRAINERS_SOURCE)
    return folder


def nnunet_command(name: str) -> str:
    """Absolute path of an nnU-Net console script of this interpreter's environment."""
    path = os.path.join(BIN_DIR, name)
    assert os.path.isfile(path), f"{name} not found next to {sys.executable}"
    return path


@dataclass
class NnUNetWorkArea:
    """nnUNet_raw / nnUNet_preprocessed / nnUNet_results under root, plus the environment for nnU-Net subprocesses."""

    root: str
    raw: str
    preprocessed: str
    results: str
    trainer_dir: str
    env: Dict[str, str] = field(default_factory=dict)
    log_dir: str = ""

    def run(self, args: List[str], expected_returncode: Optional[int] = 0, extra_env: Optional[Dict[str, str]] = None,
            timeout: float = 900) -> subprocess.CompletedProcess:
        """Run an nnU-Net command (args[0] = console script name) with this area's environment.

        Output goes to a log file under log_dir; if the return code differs from expected_returncode (None: don't
        check) the test fails showing the end of that log.
        """
        env = dict(self.env)
        if extra_env:
            env.update(extra_env)
        args = [str(a) for a in args]
        cmd = [nnunet_command(args[0])] + args[1:]
        log_path = os.path.join(self.log_dir, f"{time.strftime('%H%M%S')}_{len(os.listdir(self.log_dir)):02d}_"
                                              f"{args[0]}.log")
        start = time.time()
        with open(log_path, "w") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        elapsed = time.time() - start
        print(f"[{elapsed:6.1f} s] rc={proc.returncode} {' '.join(args)}  (log: {log_path})")
        if expected_returncode is not None and proc.returncode != expected_returncode:
            with open(log_path) as log:
                tail = log.read()[-6000:]
            pytest.fail(f"{' '.join(args)} exited with {proc.returncode}, expected {expected_returncode}. "
                        f"End of {log_path}:\n{tail}", pytrace=False)
        return proc


@pytest.fixture(scope="session")
def nnunet_workarea(tmp_path_factory) -> NnUNetWorkArea:
    """A fresh nnU-Net work area for the test session, with the test trainers on nnUNet_extTrainer."""
    root = str(tmp_path_factory.mktemp("nnunet"))
    area = NnUNetWorkArea(
        root=root,
        raw=os.path.join(root, "nnUNet_raw"),
        preprocessed=os.path.join(root, "nnUNet_preprocessed"),
        results=os.path.join(root, "nnUNet_results"),
        trainer_dir=write_test_trainers(os.path.join(root, "test_trainers")),
        log_dir=os.path.join(root, "logs"),
    )
    for d in (area.raw, area.preprocessed, area.results, area.log_dir):
        os.makedirs(d, exist_ok=True)
    env = dict(os.environ)
    env.pop("MORSE_TEST_STOP_AFTER_EPOCH", None)
    python_path = env.get("PYTHONPATH", "")
    env.update({
        "nnUNet_raw": area.raw,
        "nnUNet_preprocessed": area.preprocessed,
        "nnUNet_results": area.results,
        "nnUNet_extTrainer": area.trainer_dir + os.pathsep + TRAINER_DIR,
        # the package is importable in the subprocesses even when it is not installed
        "PYTHONPATH": PACKAGE_PARENT + (os.pathsep + python_path if python_path else ""),
        # nnU-Net spawns this many workers (default 8, each importing torch) for validation export and metrics;
        # one is far faster for the tiny test cases
        "nnUNet_def_n_proc": "1",
        "nnUNet_n_proc_DA": env.get("nnUNet_n_proc_DA", "2"),
        "nnUNet_compile": "false",
    })
    area.env = env
    return area
