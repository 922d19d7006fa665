"""Does MORSE beat nnUNetTrainer on this data? Trains the baseline and MORSE (optionally the family) with the same
schedule and seed on all folds of a benchmark dataset, then scores every cross-validation with boundary metrics and
compares each trainer with the baseline, paired per case.

    nnUNetv2_morse_study --dataset boundary2d --size cpu --workdir study_cpu          # this CPU, reduced size
    nnUNetv2_morse_study --dataset colin27_3d --size full --device cuda --workdir study_gpu

--size cpu: a reduced dataset and schedule (few epochs of few iterations) that runs on a 2-core CPU in a bounded time
(tens of minutes); its numbers show that the pipeline works, not what MORSE does after a real training.
--size full: the dataset at full size and nnU-Net's 1000 epochs of 250 iterations (a GPU for days).
Everything is run through nnU-Net's own commands; the commands are printed first.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from typing import Dict, Optional, Sequence

DATASETS = ("synthetic2d", "synthetic3d", "boundary2d", "boundary3d", "colin27_2d", "colin27_3d")
SCHEDULES = {"cpu": (3, 40, 10), "full": (1000, 250, 50)}  # epochs, iterations per epoch, validation iterations


def build_dataset(kind: str, size: str, raw_dir: str, preprocessed_dir: str, dataset_id: int, seed: int) -> str:
    """Writes the benchmark dataset as nnU-Net raw data (Colin27: and its contiguous-block splits); returns its folder.

    --size cpu: 10 training cases (synthetic, boundary); Colin27 downsampled 2x in-plane, in 2D every 3rd slice.
    """
    small = size == "cpu"
    if kind.startswith("synthetic"):
        from nnunetv2_morse.datasets.synthetic import make_synthetic_dataset
        return make_synthetic_dataset(raw_dir, dataset_id, name=f"Study{kind}", dim=int(kind[-2]),
                                      num_training=10 if small else 40, num_test=2, seed=seed)
    if kind.startswith("boundary"):
        from nnunetv2_morse.datasets.boundary import make_boundary_dataset
        return make_boundary_dataset(raw_dir, dataset_id, dim=int(kind[-2]), num_training=10 if small else None,
                                     num_test=2, seed=seed)
    from nnunetv2_morse.datasets.colin27 import make_colin27_dataset
    return make_colin27_dataset(raw_dir, dataset_id, mode=kind[-2:], every=3 if small and kind.endswith("2d") else 1,
                                downsample=2 if small else 1, preprocessed_dir=preprocessed_dir)


def schedule_module(trainers: Sequence[str], epochs: int, iterations: int, val_iterations: int, seed: int) -> str:
    """Source of a trainer module: each trainer as <trainer>_study with this schedule and seed."""
    lines = ["from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name",
             "from nnunetv2_morse.trainers.short import with_schedule", ""]
    for trainer in trainers:
        lines.append(f"{study_name(trainer)} = with_schedule(recursive_find_trainer_class_by_name({trainer!r}), "
                     f"{study_name(trainer)!r}, {epochs}, {iterations}, {val_iterations}, seed={seed})")
    return "\n".join(lines) + "\n"


def study_name(trainer: str) -> str:
    return f"{trainer}_study"


class Runner:
    """Runs nnU-Net commands from this interpreter's bin folder with the study's environment, printing each."""

    def __init__(self, env: Dict[str, str]):
        self.env = {**os.environ, **env}
        self.bin = os.path.dirname(os.path.abspath(sys.executable))

    def __call__(self, *command: str) -> None:
        print("+ " + " ".join(command), flush=True)
        done = subprocess.run([os.path.join(self.bin, command[0]), *command[1:]], env=self.env)
        if done.returncode != 0:
            sys.exit(f"{command[0]} failed with exit code {done.returncode}")


def run_study(kind: str, size: str, workdir: str, trainers: Sequence[str], folds: Sequence[int], device: str,
              seed: int, dataset_id: int, schedule: Optional[Sequence[int]] = None) -> str:
    """Builds, trains, evaluates and compares; returns the comparison's Markdown file."""
    from nnunetv2_morse.trainers import TRAINER_DIR

    workdir = os.path.abspath(workdir)
    paths = {name: os.path.join(workdir, name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for path in paths.values():
        os.makedirs(path, exist_ok=True)
    trainer_dir = os.path.join(workdir, "study_trainers")
    os.makedirs(trainer_dir, exist_ok=True)
    epochs, iterations, val_iterations = schedule or SCHEDULES[size]
    with open(os.path.join(trainer_dir, "morse_study_trainers.py"), "w") as f:
        f.write(schedule_module(trainers, epochs, iterations, val_iterations, seed))
    # the package's trainers come first: the study module looks its base trainers up by name while it is imported
    run = Runner({**paths, "nnUNet_extTrainer": os.pathsep.join([TRAINER_DIR, trainer_dir]),
                  **({"nnUNet_def_n_proc": "1"} if size == "cpu" else {})})

    folder = build_dataset(kind, size, paths["nnUNet_raw"], paths["nnUNet_preprocessed"], dataset_id, seed)
    dataset = os.path.basename(folder)
    configuration = "3d_fullres" if kind.endswith("3d") else "2d"
    run("nnUNetv2_plan_and_preprocess", "-d", str(dataset_id), "-c", configuration, "--verify_dataset_integrity",
        "-np", "2")
    reports = []
    for trainer in trainers:
        for fold in folds:
            run("nnUNetv2_train", str(dataset_id), configuration, str(fold), "-tr", study_name(trainer),
                "-device", device)
        run("nnUNetv2_morse_evaluate_cv", "-d", str(dataset_id), "-tr", study_name(trainer), "-c", configuration,
            "-f", *map(str, folds))
        reports.append(os.path.join(paths["nnUNet_results"], dataset, f"{study_name(trainer)}__nnUNetPlans__"
                                    f"{configuration}", "crossval_boundary_metrics.json"))
    out = os.path.join(workdir, "comparison")
    run("nnUNetv2_morse_compare", *reports, "--names", *trainers, "-o", out)
    with open(os.path.join(workdir, "README.txt"), "w") as f:
        f.write(textwrap.dedent(f"""\
            study: {kind}, size {size}, {epochs} epochs x {iterations} iterations, seed {seed}, folds {list(folds)}
            trainers: {', '.join(trainers)} (first = baseline); device {device}
            comparison: {out}.md, {out}.json, {out}.png
            """))
    print(f"comparison: {out}.md, {out}.json, {out}.png")
    return out + ".md"


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--dataset", choices=DATASETS, default="boundary2d")
    parser.add_argument("--size", choices=sorted(SCHEDULES), default="cpu")
    parser.add_argument("--workdir", default="morse_study")
    parser.add_argument("--trainers", nargs="+", default=["nnUNetTrainer", "nnUNetTrainerMORSE"],
                        help="the first is the baseline")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--schedule", type=int, nargs=3, metavar=("EPOCHS", "ITERATIONS", "VAL_ITERATIONS"),
                        help="override the size's schedule")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset-id", type=int, default=930)
    args = parser.parse_args(argv)
    if len(args.trainers) < 2:
        parser.error("--trainers needs at least two: the baseline first, then the trainers compared with it")
    run_study(args.dataset, args.size, args.workdir, args.trainers, args.folds, args.device, args.seed,
              args.dataset_id, args.schedule)


if __name__ == "__main__":
    main()
