"""A study's ``study.json``, read into one frozen, validated object: ``TrainingStudy`` (trainers x seeds x folds on
one dataset with one schedule) or ``BenchmarkStudy`` (one run of ``nnUNetv2_morse_benchmark``).

A training run is keyed by (dataset, configuration, plans, schedule, trainer, seed, fold): the study fixes the first
four, so within a study a run is (trainer, seed, fold), recorded in ``runs/<trainer>/seed<seed>/fold_<fold>/``.
Any error names the field and says what is expected, in one line (``StudyError``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from nnunetv2_morse.benchmark import BENCHMARK_DEVICES
from nnunetv2_morse.cli import relative_to_here

STUDY_FILE = "study.json"
PLANS = "nnUNetPlans"
HEAD_OFF_TITLE = "What the head adds at inference: head on vs head off (N_test 0, the coarse U-Net output)"
BUILDERS = ("synthetic", "boundary", "colin27")
DEVICES = ("cpu", "cuda", "mps")
BENCHMARK_STUDY_DEVICES = tuple(device for device in DEVICES if device in BENCHMARK_DEVICES)
RESERVED_BENCHMARK_OPTIONS = ("-device", "--device", "-o", "--out", "--worker", "--plans-file")


class StudyError(Exception):
    """A study that cannot be read, run or rendered as it stands; the message is one line saying what to do."""


@dataclass(frozen=True)
class Schedule:
    """nnU-Net's training length: epochs of iterations_per_epoch steps, validation_iterations pseudo-Dice steps per
    epoch; checkpoint_latest.pth every checkpoint_every epochs (what --c resumes from)."""
    epochs: int
    iterations_per_epoch: int
    validation_iterations: int
    checkpoint_every: int

    def identity(self) -> Dict[str, int]:
        """What makes two trainings the same (checkpointing does not change them)."""
        return {"epochs": self.epochs, "iterations_per_epoch": self.iterations_per_epoch,
                "validation_iterations": self.validation_iterations}


@dataclass(frozen=True)
class DatasetDefinition:
    """A dataset builder of this package (``BUILDERS``), its nnU-Net dataset id and its keyword arguments."""
    builder: str
    id: int
    arguments_json: str

    @property
    def arguments(self) -> Dict[str, Any]:
        return json.loads(self.arguments_json)

    def as_dict(self) -> Dict[str, Any]:
        return {"builder": self.builder, "id": self.id, "arguments": self.arguments}


@dataclass(frozen=True)
class Run:
    """One training of a study: trainer, seed and fold."""
    trainer: str
    seed: int
    fold: int

    @property
    def folder(self) -> str:
        """The run's ledger folder, relative to the study folder."""
        return os.path.join("runs", self.trainer, f"seed{self.seed}", f"fold_{self.fold}")


@dataclass(frozen=True)
class Comparison:
    """Models compared with a baseline, paired per case, at the study's comparison seed; verdict: a headline of the
    README's verdict."""
    title: str
    baseline: str
    models: Tuple[str, ...]
    verdict: bool


@dataclass(frozen=True)
class TrainingStudy:
    """Trainers x seeds x folds on one dataset and configuration with one schedule; see results/README.md."""
    folder: str
    title: str
    description: str
    dataset: DatasetDefinition
    configuration: str
    folds: Tuple[int, ...]
    schedule: Schedule
    device: str
    environment: Tuple[Tuple[str, str], ...]
    trainers: Tuple[Tuple[str, Tuple[int, ...]], ...]
    head_off: Tuple[str, ...]
    head_off_title: str
    seed: int
    comparisons: Tuple[Comparison, ...]
    sizing: str
    minutes_per_training: Optional[float]

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.folder))

    def seeds_of(self, trainer: str) -> Tuple[int, ...]:
        return dict(self.trainers).get(trainer, ())

    @property
    def seeds(self) -> List[int]:
        """Every seed some trainer trains at, ascending."""
        return sorted({s for _, trainer_seeds in self.trainers for s in trainer_seeds})

    def runs(self) -> List[Run]:
        """Every run, seed-major, then fold, then the trainers' order: a fold of the comparison seed is complete
        for all trainers before the next fold starts."""
        return [Run(trainer, seed, fold) for seed in self.seeds for fold in self.folds
                for trainer, trainer_seeds in self.trainers if seed in trainer_seeds]

    def nnunet_trainer(self, run: Run) -> str:
        """The generated trainer class nnU-Net trains: the trainer with this schedule and seed."""
        s = self.schedule
        return f"{run.trainer}_e{s.epochs}i{s.iterations_per_epoch}v{s.validation_iterations}_seed{run.seed}"

    def identity(self) -> Dict[str, Any]:
        """What a recorded run must share with the study to belong to it."""
        return {"dataset": self.dataset.as_dict(), "configuration": self.configuration, "plans": PLANS,
                "schedule": self.schedule.identity()}


@dataclass(frozen=True)
class BenchmarkStudy:
    """One benchmark run (nnUNetv2_morse_benchmark ARGUMENTS -device DEVICE), its tables kept."""
    folder: str
    title: str
    description: str
    device: str
    arguments: Tuple[str, ...]
    verdict: bool

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.folder))


class _Fields:
    """Reads one JSON object's fields, naming each by its path in errors; unknown fields are refused."""

    def __init__(self, data: Any, path: str, where: str):
        self.path, self.where = path, where
        if not isinstance(data, dict):
            self.fail(path or "the file", "must be a JSON object", data)
        self.data = dict(data)
        self.read = set()

    def fail(self, field: str, expected: str, value: Any) -> None:
        raise StudyError(f"{self.where}: field '{field}' {expected}, got {json.dumps(value)}")

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: Any = ..., kind=None, expected: str = "") -> Any:
        self.read.add(key)
        if key not in self.data:
            if default is ...:
                raise StudyError(f"{self.where}: field '{self.name(key)}' is missing ({expected})")
            return default
        value = self.data[key]
        if kind is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
            self.fail(self.name(key), f"must be {expected}", value)
        return value

    def integer(self, key: str, minimum: int, default: Any = ...) -> int:
        value = self.get(key, default, int, f"an integer >= {minimum}")
        if value < minimum:
            self.fail(self.name(key), f"must be an integer >= {minimum}", value)
        return value

    def text(self, key: str, default: Any = ..., choices: Optional[Tuple[str, ...]] = None) -> str:
        expected = f"one of {', '.join(choices)}" if choices else "a string"
        value = self.get(key, default, str, expected)
        if choices and value not in choices:
            self.fail(self.name(key), f"must be {expected}", value)
        return value

    def strings(self, key: str, default: Any = ...) -> Tuple[str, ...]:
        value = self.get(key, default, list, "a list of strings")
        if not all(isinstance(v, str) and v for v in value):
            self.fail(self.name(key), "must be a list of non-empty strings", value)
        return tuple(value)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            raise StudyError(f"{self.where}: unknown field '{self.name(unknown[0])}' (known: "
                             f"{', '.join(sorted(self.read))})")


def _seeds(fields: _Fields, trainer: str, value: Any) -> Tuple[int, ...]:
    if (not isinstance(value, list) or not value or len(set(map(str, value))) != len(value)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)):
        fields.fail(fields.name(trainer), "must be a non-empty list of distinct seeds (integers >= 0)", value)
    return tuple(value)


def _verdict(fields: _Fields) -> bool:
    return fields.get("verdict", False, bool, "true or false (a headline of the README's verdict)")


def _training_study(folder: str, fields: _Fields) -> TrainingStudy:
    where = fields.where
    dataset = _Fields(fields.get("dataset", expected="builder, id, arguments"), "dataset", where)
    builder = dataset.text("builder", choices=BUILDERS)
    dataset_id = dataset.integer("id", 1)
    if dataset_id > 999:
        dataset.fail("dataset.id", "must be an nnU-Net dataset id (1..999)", dataset_id)
    arguments = dataset.get("arguments", {}, dict, "a JSON object of the builder's keyword arguments")
    dataset.finish()
    schedule = _Fields(fields.get("schedule", expected="epochs, iterations_per_epoch, validation_iterations"),
                       "schedule", where)
    epochs = schedule.integer("epochs", 1)
    parsed_schedule = Schedule(epochs, schedule.integer("iterations_per_epoch", 1),
                               schedule.integer("validation_iterations", 1),
                               schedule.integer("checkpoint_every", 1, max(1, epochs // 10)))
    schedule.finish()
    folds = fields.get("folds", expected="a list of fold numbers")
    if (not isinstance(folds, list) or not folds or len(set(map(str, folds))) != len(folds)
            or not all(isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in folds)):
        fields.fail("folds", "must be a non-empty list of distinct fold numbers (integers >= 0)", folds)
    runs = _Fields(fields.get("trainers", expected="{trainer: [seeds]}"), "trainers", where)
    trainers = tuple((trainer, _seeds(runs, trainer, runs.get(trainer))) for trainer in runs.data)
    if not trainers:
        fields.fail("trainers", "must name at least one trainer with its seeds", {})
    seed = fields.integer("seed", 0, 0)
    environment = fields.get("environment", {}, dict, "a JSON object of environment variables (strings)")
    if not all(isinstance(v, str) for v in environment.values()):
        fields.fail("environment", "must map variable names to strings", environment)
    head_off = fields.strings("head_off", [])
    comparisons = []
    for index, entry in enumerate(fields.get("comparisons", [], list, "a list of comparisons")):
        comparison = _Fields(entry, f"comparisons[{index}]", where)
        comparisons.append(Comparison(comparison.text("title"), comparison.text("baseline"),
                                      comparison.strings("models"), _verdict(comparison)))
        comparison.finish()
    minutes = fields.get("minutes_per_training", None, (int, float), "a number of minutes")
    study = TrainingStudy(folder, fields.text("title"), fields.text("description", ""),
                          DatasetDefinition(builder, dataset_id, json.dumps(arguments, sort_keys=True)),
                          fields.text("configuration"), tuple(folds), parsed_schedule,
                          fields.text("device", "cpu", DEVICES), tuple(sorted(environment.items())), trainers,
                          head_off, fields.text("head_off_title", HEAD_OFF_TITLE), seed, tuple(comparisons),
                          fields.text("sizing", ""),
                          None if minutes is None else float(minutes))
    fields.finish()
    for trainer in head_off:
        if not study.seeds_of(trainer):
            raise StudyError(f"{where}: field 'head_off' names {trainer}, which is not in 'trainers'")
    for index, comparison in enumerate(study.comparisons):
        for trainer in (comparison.baseline, *comparison.models):
            if seed not in study.seeds_of(trainer):
                raise StudyError(f"{where}: field 'comparisons[{index}]' needs {trainer} with seed {seed} (the "
                                 f"comparison seed, field 'seed') in 'trainers'")
    return study


def _benchmark_study(folder: str, fields: _Fields) -> BenchmarkStudy:
    arguments = fields.strings("arguments")
    reserved = [a for a in arguments if a.split("=")[0] in RESERVED_BENCHMARK_OPTIONS]
    if reserved:
        fields.fail("arguments", f"must leave {', '.join(RESERVED_BENCHMARK_OPTIONS)} to the ledger (the device is "
                                 "field 'device')", reserved)
    device = fields.text("device", "cpu", DEVICES)
    if device not in BENCHMARK_STUDY_DEVICES:
        fields.fail("device", f"must be one of {', '.join(BENCHMARK_STUDY_DEVICES)} in a benchmark study (the "
                              "devices nnUNetv2_morse_benchmark runs on)", device)
    study = BenchmarkStudy(folder, fields.text("title"), fields.text("description", ""), device, arguments,
                           _verdict(fields))
    fields.finish()
    return study


def load_study(folder: str):
    """The TrainingStudy or BenchmarkStudy defined by folder/study.json; StudyError naming the field if invalid."""
    path = os.path.join(folder, STUDY_FILE)
    if not os.path.isfile(path):
        raise StudyError(f"no {STUDY_FILE} in {folder}{relative_to_here(folder)}: give a study folder such as "
                         "results/colin27_2d "
                         "(see results/README.md)")
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as error:
        raise StudyError(f"{path} is not valid JSON: {error}") from None
    fields = _Fields(data, "", path)
    kind = fields.text("kind", "training", ("training", "benchmark"))
    return _benchmark_study(folder, fields) if kind == "benchmark" else _training_study(folder, fields)


def find_studies(results_folder: str) -> List[str]:
    """Every folder under results_folder that holds a study.json, sorted (work folders starting with '.' skipped)."""
    found = []
    for root, folders, files in os.walk(results_folder):
        folders[:] = sorted(f for f in folders if not f.startswith(".") and f != "runs")
        if STUDY_FILE in files:
            found.append(root)
    return sorted(found)


def recorded_identity_mismatch(recorded: Mapping[str, Any], study: TrainingStudy) -> Optional[str]:
    """The first field in which a run record's identity differs from the study's, or None."""
    expected = study.identity()
    for key, value in expected.items():
        if recorded.get(key) != value:
            return key
    return None
