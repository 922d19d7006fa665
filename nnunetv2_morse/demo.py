"""End-to-end demo: synthetic dataset -> nnU-Net planning/preprocessing -> MORSE training -> prediction, on the CPU
unless CUDA is available.

Runs the real nnU-Net command line tools as subprocesses, printing each command first, so that the printed commands
can be repeated by hand with the printed ``export`` lines. The dataset builder (numpy, SimpleITK, nnU-Net) and torch
are imported after the arguments are parsed.
"""

import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from nnunetv2_morse.cli import (add_device_argument, command_parser, console_script, fail, one_line_errors,
                                resolve_device)
from nnunetv2_morse.trainers import TRAINER_DIR

PROG = "nnUNetv2_morse_demo"
DATASET_IDS = {2: 901, 3: 902}
CONFIGURATIONS = {2: "2d", 3: "3d_fullres"}
DATASET_NAME = "MorseSynthetic"
PLANS = "nnUNetPlans"
FOLD = "0"


def _bin(name: str) -> str:
    """Path of an nnU-Net console script next to this interpreter (not looked up on PATH)."""
    return os.path.join(os.path.dirname(os.path.abspath(sys.executable)), name)


def _package_needs_pythonpath() -> bool:
    """True when nnunetv2_morse is not installed, i.e. child processes only find it through PYTHONPATH."""
    try:
        importlib.metadata.distribution("nnunetv2-morse")
        return False
    except importlib.metadata.PackageNotFoundError:
        return True


def demo_environment(workdir: str) -> Dict[str, str]:
    """The variables the demo sets for its subprocesses (only these, not the whole environment)."""
    workdir = os.path.abspath(workdir)
    previous = os.environ.get("nnUNet_extTrainer", "")
    parts = [TRAINER_DIR] + [p for p in previous.split(os.pathsep) if p and p != TRAINER_DIR]
    env = {
        "nnUNet_raw": os.path.join(workdir, "nnUNet_raw"),
        "nnUNet_preprocessed": os.path.join(workdir, "nnUNet_preprocessed"),
        "nnUNet_results": os.path.join(workdir, "nnUNet_results"),
        "nnUNet_extTrainer": os.pathsep.join(parts),
        # nnU-Net's validation and export spawn this many worker processes (default 8), each importing torch:
        # on a small CPU machine that costs far more than the tiny demo cases themselves.
        "nnUNet_def_n_proc": os.environ.get("nnUNet_def_n_proc", "1"),
    }
    if _package_needs_pythonpath():
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        old = os.environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = package_parent + (os.pathsep + old if old else "")
    return env


def _format(cmd: Sequence[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


def _run(cmd: List[str], env: Dict[str, str]) -> None:
    """Print and run one command; exit with a one-line message if it fails."""
    print(f"\n$ {_format(cmd)}", flush=True)
    start = time.time()
    try:
        rc = subprocess.run(cmd, env=env).returncode
    except OSError as e:
        fail(PROG, f"could not run {cmd[0]}: {e}")
    if rc != 0:
        fail(PROG, f"command failed with exit code {rc}: {_format(cmd)}")
    print(f"[demo] done in {time.time() - start:.0f} s", flush=True)


@console_script
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser(
        PROG, "Make a small synthetic dataset, plan and preprocess it, train a MORSE trainer for a few minutes and "
              "predict the test images, all with nnU-Net's own commands.")
    parser.add_argument("--workdir", default="./demo_output",
                        help="folder for nnUNet_raw, nnUNet_preprocessed, nnUNet_results and predictions")
    parser.add_argument("--dim", type=int, choices=(2, 3), default=2, help="2D or 3D dataset")
    parser.add_argument("-tr", "--trainer", dest="trainer", metavar="TRAINER", default="nnUNetTrainerMORSE_demo",
                        help="nnU-Net trainer class")
    add_device_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    args = parser.parse_args(argv)
    from nnunetv2_morse.datasets.synthetic import make_synthetic_dataset

    with one_line_errors(PROG):
        device = resolve_device(args.device).type

    workdir = os.path.abspath(args.workdir)
    dataset_id = DATASET_IDS[args.dim]
    configuration = CONFIGURATIONS[args.dim]
    demo_env = demo_environment(workdir)
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.makedirs(demo_env[key], exist_ok=True)
    predictions = os.path.join(workdir, "predictions")
    if os.path.isdir(predictions):
        shutil.rmtree(predictions)
    env = dict(os.environ)
    env.update(demo_env)

    tools = {name: _bin(name) for name in ("nnUNetv2_plan_and_preprocess", "nnUNetv2_train", "nnUNetv2_predict")}
    missing = [path for path in tools.values() if not os.path.isfile(path)]
    if missing:
        fail(PROG, f"nnU-Net command not found next to {sys.executable}: {missing[0]}")

    started = time.time()
    print(f"[demo] writing a synthetic {args.dim}D dataset (seed {args.seed}) to {demo_env['nnUNet_raw']}",
          flush=True)
    dataset_folder = make_synthetic_dataset(demo_env["nnUNet_raw"], dataset_id, name=DATASET_NAME, dim=args.dim,
                                            seed=args.seed)
    images_ts = os.path.join(dataset_folder, "imagesTs")
    did = str(dataset_id)
    commands = [
        [tools["nnUNetv2_plan_and_preprocess"], "-d", did, "-c", configuration, "--verify_dataset_integrity",
         "-np", "2"],
        [tools["nnUNetv2_train"], did, configuration, FOLD, "-tr", args.trainer, "-device", device],
        [tools["nnUNetv2_predict"], "-i", images_ts, "-o", predictions, "-d", did, "-c", configuration, "-f", FOLD,
         "-tr", args.trainer, "-device", device, "-npp", "1", "-nps", "1"],
    ]
    for cmd in commands:
        _run(cmd, env)

    model_folder = os.path.join(demo_env["nnUNet_results"], os.path.basename(dataset_folder),
                                f"{args.trainer}__{PLANS}__{configuration}")
    fold_folder = os.path.join(model_folder, f"fold_{FOLD}")
    summary = os.path.join(fold_folder, "validation", "summary.json")
    mean_dice = "n/a"
    if os.path.isfile(summary):
        with open(summary) as f:
            mean_dice = f"{json.load(f)['foreground_mean']['Dice']:.4f}"
    predicted = sorted(p for p in os.listdir(predictions) if p.endswith(".nii.gz")) if os.path.isdir(predictions) \
        else []

    print(f"\n[demo] finished in {time.time() - started:.0f} s")
    print(f"  trained model:       {model_folder}")
    print(f"  final checkpoint:    {os.path.join(fold_folder, 'checkpoint_final.pth')}")
    print(f"  validation results:  {summary} (mean foreground Dice on fold {FOLD}'s validation cases: {mean_dice})")
    print(f"  predictions:         {predictions} ({len(predicted)} files: {', '.join(predicted)})")
    print("\nTo repeat the nnU-Net commands by hand:")
    for key, value in demo_env.items():
        print(f"export {key}={shlex.quote(value)}")
    for cmd in commands:
        print(_format([os.path.basename(cmd[0])] + cmd[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
