"""Runs a study of the ledger through nnU-Net's own commands and records each finished training at once.

    nnUNetv2_morse_study results/colin27_2d                       # everything the study defines, resumably
    nnUNetv2_morse_study results/colin27_2d -tr nnUNetTrainer nnUNetTrainerMORSE -f 0 1
    nnUNetv2_morse_study results/synthetic_boundary_3d --seeds 0  # the comparison seed first, the noise floor later
    nnUNetv2_morse_study results/colin27_2d --dry-run             # the plan only
    nnUNetv2_morse_study results/cost/cpu_2d                      # a benchmark study: its tables into the ledger

A training study builds its dataset and runs nnUNetv2_plan_and_preprocess once in its work folder, then for every
(trainer, seed, fold): nnUNetv2_train (--c when the work folder holds checkpoint_latest.pth, --val when training
finished but validation did not), nnUNetv2_morse_evaluate_cv on the fold's validation predictions, for the trainers
in 'head_off' nnUNetv2_morse_test_points --counts 0 (the coarse U-Net output), and writes the run's files into
<study>/runs/<trainer>/seed<seed>/fold_<fold>/: metrics.json, metrics_head_off.json, curves.json and, last, run.json.
A run whose files are all there is skipped, so the same command continues a study wherever it stopped.
"""
from __future__ import annotations

import datetime
import glob
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from nnunetv2_morse.cli import command_parser, console_script, integer_at_least, one_line_errors
from nnunetv2_morse.ledger import records
from nnunetv2_morse.ledger.definition import (BENCHMARK_STUDY_DEVICES, DEVICES, PLANS, BenchmarkStudy, Run, StudyError,
                                              TrainingStudy, load_study, recorded_identity_mismatch)

PROG = "nnUNetv2_morse_study"
METRICS_FILE = "metrics.json"
HEAD_OFF_FILE = "metrics_head_off.json"
CURVES_FILE = "curves.json"
RECORD_FILE = "run.json"
RUN_FORMAT = "nnunetv2_morse.ledger_run/1"
WORK_VARIABLE = "MORSE_LEDGER_WORK"
DATASET_RECORD = "ledger_dataset.json"
COMMANDS_RECORD = "ledger_commands.json"
CROSSVAL_REPORT = "crossval_boundary_metrics.json"
# nnU-Net's own convention: a class absent from both the reference and the prediction of a case is left out of that
# case's scores, rather than scored as a perfect absence that both sides of every comparison share
EMPTY_CONVENTION = "nan"
HEAD_OFF_FOLDER = "head_off"
BENCHMARK_OUTPUTS = ("benchmark_*.json", "benchmark_*.md", "profile_*.txt")
BENCHMARK_FAILURE_LOGS = "failed_*.log"
# nnU-Net's trainer writes one log per nnUNetv2_train invocation, named by the time it started (local time)
TRAINING_LOG = re.compile(r"^training_log_(\d+)_(\d+)_(\d+)_(\d+)_(\d+)_(\d+)\.txt$")
EPOCH_LINE = re.compile(r": Epoch (\d+)\s*$", re.MULTILINE)
STATES = {"done": "done", "record": "to score and record", "validate": "to validate (--val)",
          "resume": "to resume (--c)", "train": "to train"}

Execute = Callable[..., dict]


class CommandFailed(StudyError):
    """A command exited with a non-zero code or was interrupted; its record is kept."""

    def __init__(self, record: dict):
        what = ("was interrupted" if record["returncode"] == "interrupted"
                else f"exited with code {record['returncode']}: fix the cause and")
        super().__init__(f"{record['command']} {what} rerun the same nnUNetv2_morse_study command, it continues where "
                         "it stopped")
        self.record = record


class CommandRunner:
    """Runs a console script of this interpreter's environment (or 'python') with extra environment variables
    (those given at construction, then those given with the command), printing it; returns its record: command,
    started, ended, seconds, returncode."""

    def __init__(self, environment: Dict[str, str]):
        self.environment = {**os.environ, **environment}
        self.bin = os.path.dirname(os.path.abspath(sys.executable))

    def executable(self, name: str) -> str:
        if name == "python":
            return sys.executable
        local = os.path.join(self.bin, name)
        return local if os.path.isfile(local) else (shutil.which(name) or name)

    def __call__(self, command: List[str], environment: Optional[Dict[str, str]] = None) -> dict:
        print("+ " + " ".join(f"{k}={v}" for k, v in (environment or {}).items()) + (" " if environment else "")
              + shlex.join(command), flush=True)
        record = {"command": shlex.join(command), "environment": dict(environment or {}), "started": records.now()}
        start = time.monotonic()
        try:
            returncode = subprocess.run([self.executable(command[0]), *command[1:]],
                                        env={**self.environment, **(environment or {})}).returncode
        except KeyboardInterrupt:
            returncode = "interrupted"
        record.update(ended=records.now(), seconds=round(time.monotonic() - start, 1), returncode=returncode)
        if returncode != 0:
            raise CommandFailed(record)
        return record


class Workspace:
    """A study's work folder (outside git): nnU-Net's raw, preprocessed and results folders and the generated
    trainers."""

    def __init__(self, root: str):
        self.root = root
        self.raw, self.preprocessed, self.results, self.trainers = (
            os.path.join(root, name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "trainers"))

    def environment(self, num_processes: int) -> Dict[str, str]:
        """nnU-Net's paths, the package's and the study's trainers on nnUNet_extTrainer, its process count."""
        from nnunetv2_morse.trainers import TRAINER_DIR
        return {"nnUNet_raw": self.raw, "nnUNet_preprocessed": self.preprocessed, "nnUNet_results": self.results,
                "nnUNet_extTrainer": os.pathsep.join([TRAINER_DIR, self.trainers]),
                "nnUNet_def_n_proc": str(num_processes)}

    def preprocessing_record(self, study: TrainingStudy) -> str:
        """The record of the nnUNetv2_plan_and_preprocess command, written once it succeeded."""
        return os.path.join(self.root, f"ledger_preprocessed_{study.configuration}.json")

    def dataset_name(self, study: TrainingStudy) -> Optional[str]:
        """DatasetXXX_Name of the study's dataset once built (or trained on), else None."""
        for folder in (self.raw, self.results):
            found = sorted(glob.glob(os.path.join(folder, f"Dataset{study.dataset.id:03d}_*")))
            if found:
                return os.path.basename(found[0])
        return None

    def model_folder(self, study: TrainingStudy, run: Run) -> Optional[str]:
        name = self.dataset_name(study)
        if name is None:
            return None
        return os.path.join(self.results, name, f"{study.nnunet_trainer(run)}__{PLANS}__{study.configuration}")

    def fold_folder(self, study: TrainingStudy, run: Run) -> Optional[str]:
        model = self.model_folder(study, run)
        return None if model is None else os.path.join(model, f"fold_{run.fold}")


def default_work_folder(study_folder: str) -> str:
    """$MORSE_LEDGER_WORK/<study> if that variable is set, else <study folder's parent>/.work/<study>."""
    name = os.path.basename(os.path.normpath(study_folder))
    if os.environ.get(WORK_VARIABLE):
        return os.path.join(os.environ[WORK_VARIABLE], name)
    return os.path.join(os.path.dirname(os.path.abspath(study_folder)), ".work", name)


def expected_files(study: TrainingStudy, run: Run) -> List[str]:
    """The files a finished run has in its ledger folder; run.json is written last."""
    return [METRICS_FILE, CURVES_FILE] + ([HEAD_OFF_FILE] if run.trainer in study.head_off else []) + [RECORD_FILE]


def run_state(study: TrainingStudy, workspace: Workspace, run: Run) -> str:
    """done (ledger files complete), record, validate, resume (--c) or train; StudyError for a run recorded with
    another definition, or recorded in part without its checkpoint in the work folder."""
    ledger = os.path.join(study.folder, run.folder)
    record_file = os.path.join(ledger, RECORD_FILE)
    if os.path.isfile(record_file):
        mismatch = recorded_identity_mismatch(records.read_json(record_file).get("identity", {}), study)
        if mismatch:
            raise StudyError(f"{record_file} was recorded with another '{mismatch}' than {study.folder}/study.json "
                             "says: restore the definition, or move the study's runs/ folder away to start afresh")
    missing = [f for f in expected_files(study, run) if not os.path.isfile(os.path.join(ledger, f))]
    if not missing:
        return "done"
    fold = workspace.fold_folder(study, run)
    if fold and os.path.isfile(os.path.join(fold, "checkpoint_final.pth")):
        return "record" if os.path.isfile(os.path.join(fold, "validation", "summary.json")) else "validate"
    if os.path.isfile(record_file):
        raise StudyError(f"{ledger} lacks {', '.join(missing)} and {workspace.root} does not hold its checkpoint: "
                         f"give -w the work folder it was trained in, or delete {ledger} to train it again")
    if fold and os.path.isfile(os.path.join(fold, "checkpoint_latest.pth")):
        return "resume"
    return "train"


def median_epoch_seconds(curves: Mapping[Any, dict]) -> Optional[float]:
    """The median over every epoch of every run in curves ({key: its curves.json}) of its duration (nnU-Net's end -
    start timestamps, validation included); None without timestamps. Unlike the wall time, a few epochs slowed by
    other jobs, or a training paused, do not move it."""
    seconds = [end - start for c in curves.values()
               for start, end in zip(c.get("epoch_start_timestamps", []), c.get("epoch_end_timestamps", []))
               if start is not None and end is not None]
    return float(statistics.median(seconds)) if seconds else None


def hours_left(study: TrainingStudy, plan: Sequence[tuple]) -> Optional[Tuple[float, str]]:
    """(hours, basis) of training left for the plan's runs to train or resume (a resumed one counted whole): each
    run's trainer's median epoch over the study's recorded runs (every trainer's where it has none) times the
    schedule's epochs, else the study's minutes_per_training; None if neither is known."""
    curves = {run: records.read_json(os.path.join(study.folder, run.folder, CURVES_FILE)) for run in study.runs()
              if os.path.isfile(os.path.join(study.folder, run.folder, RECORD_FILE))}
    left = [run for run, state in plan if state in ("train", "resume")]
    overall = median_epoch_seconds(curves)
    if overall is None:
        if study.minutes_per_training is None:
            return None
        return (len(left) * study.minutes_per_training / 60,
                f"at the study's estimate of {study.minutes_per_training:g} min per training")
    per_trainer = {t: median_epoch_seconds({r: c for r, c in curves.items() if r.trainer == t})
                   for t in {run.trainer for run in left}}
    seconds = sum((per_trainer[run.trainer] or overall) * study.schedule.epochs for run in left)
    return seconds / 3600, "from each trainer's median epoch so far"


def print_plan(study: TrainingStudy, workspace: Workspace, plan: Sequence[tuple], device: str) -> None:
    s = study.schedule
    print(f"Study {study.name}: {study.title}\n"
          f"  dataset {study.dataset.id} ({study.dataset.builder} {study.dataset.arguments_json}), "
          f"{study.configuration}, folds {', '.join(map(str, study.folds))}, {s.epochs} epochs x "
          f"{s.iterations_per_epoch} iterations, device {device}\n  work folder: {workspace.root}")
    counts = {state: sum(1 for _, st in plan if st == state) for state in STATES}
    to_train = counts["train"] + counts["resume"]
    left = hours_left(study, plan) if to_train else None
    estimate = f"; about {left[0]:.1f} h of training left ({left[1]})" if left else ""
    states = ", ".join(f"{n} {STATES[state]}" for state, n in counts.items() if n)
    print(f"  {len(plan)} training{'' if len(plan) == 1 else 's'}: {states}{estimate}")
    for index, (run, state) in enumerate(plan, 1):
        print(f"  [{index}/{len(plan)}] {run.trainer} seed {run.seed} fold {run.fold}: {STATES[state]}")
    print(flush=True)


def prepare_dataset(study: TrainingStudy, workspace: Workspace, execute: Execute, num_processes: int) -> None:
    """Builds the dataset (once) and runs nnUNetv2_plan_and_preprocess (once) in the work folder."""
    from nnunetv2_morse.ledger.datasets import build_dataset

    definition_file = os.path.join(workspace.root, DATASET_RECORD)
    recorded = records.read_json(definition_file) if os.path.isfile(definition_file) else None
    preprocessed_marker = workspace.preprocessing_record(study)
    if recorded is not None and recorded != study.dataset.as_dict():
        raise StudyError(f"{workspace.root} holds dataset {recorded} but {study.folder}/study.json defines "
                         f"{study.dataset.as_dict()}: give another work folder (-w) or delete this one")
    if recorded is None or workspace.dataset_name(study) is None:
        print(f"building dataset {study.dataset.id}: {study.dataset.builder} {study.dataset.arguments_json}",
              flush=True)
        if os.path.isfile(preprocessed_marker):
            os.remove(preprocessed_marker)
        build_dataset(study.dataset, workspace.raw, workspace.preprocessed)
        records.write_json(study.dataset.as_dict(), definition_file)
    if not os.path.isfile(preprocessed_marker):
        record = execute(["nnUNetv2_plan_and_preprocess", "-d", str(study.dataset.id), "-c", study.configuration,
                          "--verify_dataset_integrity", "-np", str(num_processes)])
        records.write_json(record, preprocessed_marker)


def write_trainer_module(study: TrainingStudy, workspace: Workspace) -> None:
    from nnunetv2_morse.ledger.trainers import MODULE_NAME, trainer_module_source
    records.write_text(trainer_module_source(study), os.path.join(workspace.trainers, MODULE_NAME + ".py"))


def check_definition(study: TrainingStudy) -> None:
    """StudyError for a trainer nnU-Net cannot find or a dataset argument its builder does not take."""
    from nnunetv2_morse.ledger.datasets import check_arguments
    from nnunetv2_morse.ledger.trainers import trainer_class
    check_arguments(study.dataset, os.path.join(study.folder, "study.json"))
    for trainer, _ in study.trainers:
        try:
            trainer_class(trainer)
        except RuntimeError:
            raise StudyError(f"{study.folder}/study.json: field 'trainers' names {trainer}, which is neither this "
                             "package's, nnU-Net's nor on nnUNet_extTrainer") from None


class RunCommands:
    """The commands of one run, kept in its fold folder (ledger_commands.json) so that a run trained over several
    invocations keeps every command's wall time; a training from scratch starts the record afresh."""

    def __init__(self, fold_folder: str, execute: Execute, fresh: bool):
        self.path = os.path.join(fold_folder, COMMANDS_RECORD)
        self.execute = execute
        self.done = records.read_json(self.path) if os.path.isfile(self.path) and not fresh else []

    def __call__(self, command: List[str], environment: Optional[Dict[str, str]] = None) -> None:
        self.done.append({"command": shlex.join(command), "environment": dict(environment or {}),
                          "started": records.now()})
        records.write_json(self.done, self.path)  # left without an end if this process is killed
        try:
            self.done[-1] = self.execute(command, environment)
        except CommandFailed as failure:
            self.done[-1] = failure.record
            raise
        finally:
            records.write_json(self.done, self.path)


def first_epoch(log_file: str) -> Optional[int]:
    """The epoch an nnU-Net training log starts at (0: a training from scratch), None if it logged no epoch."""
    with open(log_file, errors="replace") as f:
        match = EPOCH_LINE.search(f.read())
    return int(match.group(1)) if match else None


def unrecorded_trainings(fold_folder: str, recorded: Sequence[dict]) -> List[dict]:
    """The nnUNetv2_train invocations that left a training log in fold_folder but no finished record among recorded
    (the process was killed, or ran outside this command), each {"log", "started", "ended", "seconds"}: from the log's
    name (the trainer's start, so a few seconds of start-up are missing) to its last write. Logs older than the last
    training from scratch (a recorded one, finished or not, or a log that starts at epoch 0) are of an abandoned
    attempt and left out."""
    spans = [(datetime.datetime.fromisoformat(c["started"]), datetime.datetime.fromisoformat(c["ended"]))
             for c in recorded if "ended" in c]
    from_scratch = [datetime.datetime.fromisoformat(c["started"]) for c in recorded
                    if not {"--c", "--val"} & set(c["command"].split())]
    logs = []
    for name in sorted(os.listdir(fold_folder)):
        match = TRAINING_LOG.match(name)
        if match:
            started = datetime.datetime(*map(int, match.groups())).astimezone()
            logs.append((name, started))
            if first_epoch(os.path.join(fold_folder, name)) == 0:
                from_scratch.append(started)
    last_from_scratch = max(from_scratch, default=None)
    found = []
    for name, started in logs:
        if (last_from_scratch and started < last_from_scratch) or any(a <= started <= b for a, b in spans):
            continue
        ended = datetime.datetime.fromtimestamp(os.path.getmtime(os.path.join(fold_folder, name))).astimezone()
        found.append({"log": name, "started": started.isoformat(timespec="seconds"),
                      "ended": ended.isoformat(timespec="seconds"),
                      "seconds": round((ended - started).total_seconds(), 1)})
    return found


def train_and_record(study: TrainingStudy, workspace: Workspace, run: Run, state: str, execute: Execute,
                     device: str, num_processes: int) -> None:
    """Trains (resumes, validates) one run as its state says, scores it and writes its ledger files."""
    fold_folder = workspace.fold_folder(study, run)
    os.makedirs(fold_folder, exist_ok=True)
    commands = RunCommands(fold_folder, execute, fresh=state == "train")
    dataset, trainer = str(study.dataset.id), study.nnunet_trainer(run)
    train = ["nnUNetv2_train", dataset, study.configuration, str(run.fold), "-tr", trainer, "-p", PLANS,
             "-device", device]
    network_environment = dict(study.environment)
    if state in ("train", "resume", "validate"):
        commands(train + {"train": [], "resume": ["--c"], "validate": ["--val"]}[state], network_environment)
    ledger = os.path.join(study.folder, run.folder)
    commands(["nnUNetv2_morse_evaluate_cv", "-d", dataset, "-tr", trainer, "-c", study.configuration, "-p", PLANS,
              "-f", str(run.fold), "-np", str(num_processes), "--empty", EMPTY_CONVENTION])
    records.copy_file(os.path.join(os.path.dirname(fold_folder), CROSSVAL_REPORT),
                      os.path.join(ledger, METRICS_FILE))
    if run.trainer in study.head_off:
        head_off = os.path.join(fold_folder, HEAD_OFF_FOLDER)
        commands(["nnUNetv2_morse_test_points", "-d", dataset, "-c", study.configuration, "-tr", trainer, "-p", PLANS,
                  "-f", str(run.fold), "--counts", "0", "-o", head_off, "-device", device, "-np",
                  str(num_processes), "--empty", EMPTY_CONVENTION], network_environment)
        records.copy_file(os.path.join(head_off, "ntest_0", "boundary_metrics.json"),
                          os.path.join(ledger, HEAD_OFF_FILE))
    curves = records.training_curves(os.path.join(fold_folder, "checkpoint_final.pth"))
    records.write_json(curves, os.path.join(ledger, CURVES_FILE))
    preprocessing = records.read_json(workspace.preprocessing_record(study))
    trainings = [c for c in commands.done if c["command"].startswith("nnUNetv2_train ")]
    unrecorded = unrecorded_trainings(fold_folder, trainings)
    spans = sorted([c for c in trainings if "ended" in c] + unrecorded,
                   key=lambda c: datetime.datetime.fromisoformat(c["started"]))
    epoch_seconds = [end - start for start, end in zip(curves.get("epoch_start_timestamps", []),
                                                       curves.get("epoch_end_timestamps", []))]
    records.write_json({
        "format": RUN_FORMAT, "study": study.name, "identity": study.identity(), "trainer": run.trainer,
        "seed": run.seed, "fold": run.fold, "nnunet_trainer": trainer, "device": device,
        "environment_variables": dict(study.environment),
        "wall_seconds": round(sum(c["seconds"] for c in spans), 1) if spans else None,
        "unrecorded_trainings": unrecorded,
        "training_seconds": round(sum(epoch_seconds), 1), "epochs": len(epoch_seconds),
        "started": spans[0]["started"] if spans else None,
        "ended": spans[-1]["ended"] if spans else None,
        "commands": [preprocessing] + commands.done, "recorded": records.now(), **records.environment_record(),
    }, os.path.join(ledger, RECORD_FILE))


def run_training_study(study: TrainingStudy, workspace: Workspace, execute: Execute, device: str,
                       num_processes: int, trainers: Optional[Sequence[str]] = None,
                       folds: Optional[Sequence[int]] = None, seeds: Optional[Sequence[int]] = None,
                       dry_run: bool = False) -> None:
    """Plans, prints the plan, then trains and records every run not yet in the ledger (see the module doc), of
    only the given trainers, folds and seeds where given."""
    runs = [r for r in study.runs() if (not trainers or r.trainer in trainers) and (not folds or r.fold in folds)
            and (not seeds or r.seed in seeds)]
    plan = [(run, run_state(study, workspace, run)) for run in runs]
    print_plan(study, workspace, plan, device)
    if dry_run or all(state == "done" for _, state in plan):
        return
    check_definition(study)
    os.makedirs(workspace.root, exist_ok=True)
    prepare_dataset(study, workspace, execute, num_processes)
    write_trainer_module(study, workspace)
    for index, (run, state) in enumerate(plan, 1):
        if state == "done":
            continue
        state = run_state(study, workspace, run)
        print(f"[{index}/{len(plan)}] {run.trainer} seed {run.seed} fold {run.fold}: {STATES[state]}", flush=True)
        train_and_record(study, workspace, run, state, execute, device, num_processes)
        print(f"[{index}/{len(plan)}] recorded in {os.path.join(study.folder, run.folder)}", flush=True)


def run_benchmark_study(study: BenchmarkStudy, workspace: Workspace, execute: Execute, device: str,
                        dry_run: bool = False) -> None:
    """Runs the benchmark once (skipped when run.json exists) and keeps its tables and record in the study folder."""
    record_file = os.path.join(study.folder, RECORD_FILE)
    command = ["nnUNetv2_morse_benchmark", *study.arguments, "-device", device, "--out", workspace.root]
    print(f"Benchmark study {study.name}: {study.title}\n  {'done' if os.path.isfile(record_file) else 'to run'}: "
          f"{shlex.join(command)}", flush=True)
    if dry_run or os.path.isfile(record_file):
        return
    clear_benchmark_folder(workspace.root)
    record = execute(command)
    outputs = benchmark_outputs(workspace.root)
    if not any(p.endswith(".json") for p in outputs):
        raise StudyError(f"the benchmark wrote no benchmark_*.json into {workspace.root}")
    for path in outputs:
        records.copy_file(path, os.path.join(study.folder, os.path.basename(path)))
    records.write_json({"format": RUN_FORMAT, "study": study.name, "device": device, "arguments": list(study.arguments),
                        "files": [os.path.basename(p) for p in outputs], "commands": [record],
                        "wall_seconds": record["seconds"], "recorded": records.now(),
                        **records.environment_record()}, record_file)


def benchmark_outputs(folder: str, patterns: Sequence[str] = BENCHMARK_OUTPUTS) -> List[str]:
    """The paths in folder that match patterns (a benchmark's tables and profiles), sorted."""
    return sorted(p for pattern in patterns for p in glob.glob(os.path.join(folder, pattern)))


def clear_benchmark_folder(folder: str) -> None:
    """Creates folder, or empties it of an earlier benchmark's outputs (BENCHMARK_OUTPUTS, failure logs); StudyError,
    deleting nothing, if it holds anything else."""
    os.makedirs(folder, exist_ok=True)
    outputs = {os.path.basename(p) for p in benchmark_outputs(folder, (*BENCHMARK_OUTPUTS, BENCHMARK_FAILURE_LOGS))}
    others = sorted(set(os.listdir(folder)) - outputs)
    if others:
        raise StudyError(f"the work folder {folder} holds {others[0]}, which no benchmark wrote: give -w an empty or "
                         "new folder (nothing was deleted)")
    for name in outputs:
        os.remove(os.path.join(folder, name))


def require_device(device: str, study_folder: str) -> None:
    """StudyError when the device is not available here."""
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        raise StudyError(f"{study_folder} runs on cuda, and this machine has no CUDA GPU: run it on one "
                         "(nnUNetv2_morse_gpu_evidence runs every CUDA measurement), or pass -device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise StudyError(f"{study_folder} runs on mps, which is not available here")


def run_study_folder(folder: str, work: Optional[str] = None, device: Optional[str] = None, num_processes: int = 2,
                     trainers: Optional[Sequence[str]] = None, folds: Optional[Sequence[int]] = None,
                     seeds: Optional[Sequence[int]] = None, dry_run: bool = False,
                     execute: Optional[Execute] = None) -> None:
    """Loads folder/study.json and runs it (training or benchmark study); StudyError with one line on failure."""
    study = load_study(folder)
    workspace = Workspace(os.path.abspath(work or default_work_folder(folder)))
    device = device or study.device
    if isinstance(study, BenchmarkStudy) and device not in BENCHMARK_STUDY_DEVICES:
        raise StudyError(f"-device {device}: {folder} is a benchmark study, which runs on "
                         f"{' or '.join(BENCHMARK_STUDY_DEVICES)}")
    if not dry_run:
        require_device(device, folder)
    if isinstance(study, BenchmarkStudy):
        given = [option for option, value in (("-tr", trainers), ("-f", folds), ("--seeds", seeds)) if value]
        if given:
            raise StudyError(f"{given[0]}: {folder} is a benchmark study, which runs as a whole: drop -tr, -f and "
                             "--seeds")
        run_benchmark_study(study, workspace, execute or CommandRunner({}), device, dry_run)
        return
    unknown = [t for t in trainers or () if not study.seeds_of(t)]
    if unknown:
        raise StudyError(f"-tr {' '.join(unknown)}: not in {folder}/study.json (its trainers: "
                         f"{', '.join(t for t, _ in study.trainers)})")
    unknown_folds = [f for f in folds or () if f not in study.folds]
    if unknown_folds:
        raise StudyError(f"-f {' '.join(map(str, unknown_folds))}: not among the study's folds "
                         f"{', '.join(map(str, study.folds))}")
    unknown_seeds = [s for s in seeds or () if s not in study.seeds]
    if unknown_seeds:
        raise StudyError(f"--seeds {' '.join(map(str, unknown_seeds))}: not among the study's seeds "
                         f"{', '.join(map(str, study.seeds))}")
    execute = execute or CommandRunner(workspace.environment(num_processes))
    run_training_study(study, workspace, execute, device, num_processes, trainers, folds, seeds, dry_run)


@console_script
def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = command_parser(PROG, __doc__, "See results/README.md: how to run, resume, render and add a study.")
    parser.add_argument("study", help="a study folder holding study.json, e.g. results/colin27_2d")
    parser.add_argument("-w", dest="work", metavar="FOLDER",
                        help=f"work folder for nnU-Net's raw, preprocessed and results folders, or a benchmark "
                             f"study's output (default: ${WORK_VARIABLE}/<name> if that is set, else .work/<name> "
                             "beside the study folder, e.g. results/.work/colin27_2d)")
    parser.add_argument("-device", choices=DEVICES, help="device to run the study on (default: the study's "
                                                         "'device')")
    parser.add_argument("-np", dest="num_processes", metavar="N", type=integer_at_least(1), default=2,
                        help="processes for preprocessing, validation export, scoring")
    parser.add_argument("-tr", dest="trainers", metavar="TRAINER", nargs="+",
                        help="only these trainers of a training study (default: all)")
    parser.add_argument("-f", dest="folds", metavar="FOLD", nargs="+", type=int,
                        help="only these folds of a training study (default: all)")
    parser.add_argument("--seeds", metavar="SEED", nargs="+", type=int,
                        help="only these seeds of a training study, e.g. 0 before the noise floor's 1 (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (what is done, what is left) and stop")
    args = parser.parse_args(argv)
    try:
        with one_line_errors(PROG, (StudyError,)):
            run_study_folder(args.study, args.work, args.device, args.num_processes, args.trainers, args.folds,
                             args.seeds, args.dry_run)
    except KeyboardInterrupt:
        sys.exit(f"{PROG}: interrupted: rerun the same command to continue where it stopped")

if __name__ == "__main__":
    main()
