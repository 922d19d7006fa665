"""nnUNetv2_morse_study: study.json validation, the resume logic with nnU-Net's commands stood in for, the generated
trainers, benchmark studies, the CUDA evidence command's refusal and commands, and one tiny study end to end."""
import datetime
import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch

from ledger_files import study_definition, write_finished_run, write_json, write_study
from nnunetv2_morse import benchmark
from nnunetv2_morse.cost import initialize_without_data
from nnunetv2_morse.ledger import gpu, records, run
from nnunetv2_morse.ledger.definition import Run, StudyError, load_study
from nnunetv2_morse.ledger.render import render_results
from nnunetv2_morse.ledger.run import CommandFailed, Workspace, run_study_folder
from nnunetv2_morse.ledger.trainers import scheduled_trainer
from plans import DATASET_JSON, trainer_plans
from workspace import nnunet_environment

DATASET_FOLDER = "Dataset961_MorseSynthetic"
HEAD_OFF = "metrics_head_off.json"
CURVES = {"train_losses": [np.float64(1.0), 0.5], "val_losses": [0.9, 0.6], "mean_fg_dice": [0.2, float("nan")],
          "ema_fg_dice": [0.2, 0.3], "epoch_start_timestamps": [10.0, 20.0], "epoch_end_timestamps": [15.0, 27.0],
          "lrs": [0.01, 0.005], "dice_per_class_or_region": [[0.1, 0.3], [0.2, 0.4]], "rend_losses": [0.7, 0.6],
          "awa_weights": [0.0, 0.05], "not_a_curve": [1]}


class FakeNnUNet:
    """Stands in for nnU-Net's and the package's commands: keeps each command line and writes what it would."""

    def __init__(self, workspace, fail_on=None):
        self.workspace, self.fail_on, self.commands = workspace, fail_on, []

    def fold_folder(self, command):
        trainer = command[command.index("-tr") + 1]
        model = os.path.join(self.workspace.results, DATASET_FOLDER, f"{trainer}__nnUNetPlans__2d")
        fold = command[3] if command[0] == "nnUNetv2_train" else command[command.index("-f") + 1]
        return model, os.path.join(model, f"fold_{fold}")

    def __call__(self, command, environment=None):
        self.commands.append(" ".join(command))
        record = {"command": " ".join(command), "environment": environment or {}, "started": records.now(),
                  "ended": records.now(), "seconds": 2.0, "returncode": 0}
        if self.fail_on and self.fail_on in self.commands[-1]:
            raise CommandFailed({**record, "returncode": 1})
        if command[0] == "nnUNetv2_train":
            _, fold = self.fold_folder(command)
            if "--val" not in command:
                torch.save({"logging": CURVES}, os.path.join(fold, "checkpoint_final.pth"))
            write_json({}, os.path.join(fold, "validation", "summary.json"))
        elif command[0] == "nnUNetv2_morse_evaluate_cv":
            model, fold = self.fold_folder(command)
            write_json({"metric_per_case": [], "from": fold}, os.path.join(model, "crossval_boundary_metrics.json"))
        elif command[0] == "nnUNetv2_morse_test_points":
            output = command[command.index("-o") + 1]
            write_json({"metric_per_case": [], "head": "off"}, os.path.join(output, "ntest_0",
                                                                            "boundary_metrics.json"))
        return record


def two_trainer_study(tmp_path, **fields):
    return write_study(tmp_path / "results" / "study",
                       **{"trainers": {"nnUNetTrainer": [0], "nnUNetTrainerMORSE": [0]}, **fields})


def one_training_study(tmp_path, **fields):
    """nnUNetTrainer at seed 0 on fold 0 only."""
    return two_trainer_study(tmp_path, folds=[0], trainers={"nnUNetTrainer": [0]}, head_off=[], comparisons=[],
                             **fields)


def fold_folder(workspace, study, trainer, fold):
    folder = os.path.join(workspace.results, DATASET_FOLDER, f"{study.nnunet_trainer(Run(trainer, 0, fold))}"
                                                             "__nnUNetPlans__2d", f"fold_{fold}")
    os.makedirs(os.path.join(folder, "validation"), exist_ok=True)
    return folder


def test_resume_skips_finished_runs_continues_interrupted_ones_and_records_trained_ones(tmp_path, capsys):
    study = two_trainer_study(tmp_path)
    workspace = Workspace(str(tmp_path / "work"))
    write_finished_run(study, "nnUNetTrainer", 0, 0, {})
    torch.save({}, os.path.join(fold_folder(workspace, study, "nnUNetTrainer", 1), "checkpoint_latest.pth"))
    torch.save({"logging": CURVES}, os.path.join(fold_folder(workspace, study, "nnUNetTrainerMORSE", 0),
                                                 "checkpoint_final.pth"))
    done = fold_folder(workspace, study, "nnUNetTrainerMORSE", 1)
    torch.save({"logging": CURVES}, os.path.join(done, "checkpoint_final.pth"))
    write_json({}, os.path.join(done, "validation", "summary.json"))
    fake = FakeNnUNet(workspace)
    run_study_folder(study.folder, workspace.root, num_processes=1, execute=fake)

    assert "4 trainings: 1 done, 1 to score and record, 1 to validate (--val), 1 to resume (--c)" \
           in capsys.readouterr().out
    morse, nnunet = "nnUNetTrainerMORSE_e2i3v1_seed0", "nnUNetTrainer_e2i3v1_seed0"
    head_off = os.path.join(workspace.results, DATASET_FOLDER, f"{morse}__nnUNetPlans__2d", "fold_{}", "head_off")
    assert fake.commands == [
        "nnUNetv2_plan_and_preprocess -d 961 -c 2d --verify_dataset_integrity -np 1",
        f"nnUNetv2_train 961 2d 0 -tr {morse} -p nnUNetPlans -device cpu --val",
        f"nnUNetv2_morse_evaluate_cv -d 961 -tr {morse} -c 2d -p nnUNetPlans -f 0 -np 1 --empty nan",
        f"nnUNetv2_morse_test_points -d 961 -c 2d -tr {morse} -p nnUNetPlans -f 0 --counts 0 -o "
        f"{head_off.format(0)} -device cpu -np 1 --empty nan",
        f"nnUNetv2_train 961 2d 1 -tr {nnunet} -p nnUNetPlans -device cpu --c",
        f"nnUNetv2_morse_evaluate_cv -d 961 -tr {nnunet} -c 2d -p nnUNetPlans -f 1 -np 1 --empty nan",
        f"nnUNetv2_morse_evaluate_cv -d 961 -tr {morse} -c 2d -p nnUNetPlans -f 1 -np 1 --empty nan",
        f"nnUNetv2_morse_test_points -d 961 -c 2d -tr {morse} -p nnUNetPlans -f 1 --counts 0 -o "
        f"{head_off.format(1)} -device cpu -np 1 --empty nan"]
    ledger = os.path.join(study.folder, "runs", "nnUNetTrainerMORSE", "seed0", "fold_0")
    with open(os.path.join(ledger, "curves.json")) as f:
        assert json.load(f) == {**{k: v for k, v in CURVES.items() if k != "not_a_curve"},
                                "train_losses": [1.0, 0.5], "mean_fg_dice": [0.2, None]}
    with open(os.path.join(ledger, "metrics_head_off.json")) as f:
        assert json.load(f)["head"] == "off"
    with open(os.path.join(ledger, "metrics.json")) as f:
        assert json.load(f)["from"].endswith(os.path.join(f"{morse}__nnUNetPlans__2d", "fold_0"))
    with open(os.path.join(ledger, "run.json")) as f:
        record = json.load(f)
    assert record["identity"] == study.identity() and record["nnunet_trainer"] == morse
    assert record["wall_seconds"] == 2.0 and record["training_seconds"] == 12.0 and record["epochs"] == 2
    assert [c["command"].split()[0] for c in record["commands"]] == [
        "nnUNetv2_plan_and_preprocess", "nnUNetv2_train", "nnUNetv2_morse_evaluate_cv", "nnUNetv2_morse_test_points"]
    assert record["versions"]["nnunetv2"] and record["machine"]["cpu_count"] == os.cpu_count()
    assert record["machine"]["cpu"] and \
        record["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    with open(os.path.join(study.folder, "runs", "nnUNetTrainerMORSE", "seed0", "fold_1", "run.json")) as f:
        assert json.load(f)["wall_seconds"] is None
    assert not os.path.exists(os.path.join(study.folder, "runs", "nnUNetTrainer", "seed0", "fold_1", HEAD_OFF))

    again = FakeNnUNet(workspace)
    run_study_folder(study.folder, workspace.root, num_processes=1, execute=again)
    assert again.commands == [] and "4 trainings: 4 done" in capsys.readouterr().out


def training_log(folder, seconds_ago, lasted, first_epoch=5):
    """An nnU-Net training log named as if its trainer started seconds_ago, at first_epoch (0: from scratch), last
    written lasted seconds later."""
    started = datetime.datetime.now().replace(microsecond=0) - datetime.timedelta(seconds=seconds_ago)
    path = os.path.join(folder, "training_log_{}_{}_{}_{:02d}_{:02d}_{:02d}.txt".format(
        *started.timetuple()[:6]))
    with open(path, "w") as f:
        f.write(f"{started}.000001: \n{started}.000002: Epoch {first_epoch} \n"
                f"{started}.000003: Current learning rate: 0.01 \n{started}.000004: Epoch {first_epoch + 1} \n")
    os.utime(path, (started.timestamp() + lasted,) * 2)
    return os.path.basename(path)


def test_a_killed_training_that_left_only_its_log_counts_in_the_wall_time(tmp_path):
    study = one_training_study(tmp_path)
    workspace = Workspace(str(tmp_path / "work"))
    folder = fold_folder(workspace, study, "nnUNetTrainer", 0)
    torch.save({}, os.path.join(folder, "checkpoint_latest.pth"))
    killed = training_log(folder, seconds_ago=600, lasted=300)
    run_study_folder(study.folder, workspace.root, num_processes=1, execute=FakeNnUNet(workspace))
    with open(os.path.join(study.folder, "runs", "nnUNetTrainer", "seed0", "fold_0", "run.json")) as f:
        record = json.load(f)
    assert record["wall_seconds"] == 302.0
    assert [(t["log"], t["seconds"]) for t in record["unrecorded_trainings"]] == [(killed, 300.0)]
    assert record["started"] == record["unrecorded_trainings"][0]["started"]


def test_a_killed_command_leaves_its_start_in_the_runs_commands(tmp_path):
    study = one_training_study(tmp_path)
    workspace = Workspace(str(tmp_path / "work"))
    folder = fold_folder(workspace, study, "nnUNetTrainer", 0)

    def killed(command, environment=None):
        if command[0] == "nnUNetv2_train":
            raise SystemExit("killed")
        return FakeNnUNet(workspace)(command, environment)

    with pytest.raises(SystemExit):
        run_study_folder(study.folder, workspace.root, num_processes=1, execute=killed)
    with open(os.path.join(folder, "ledger_commands.json")) as f:
        (pending,) = json.load(f)
    assert pending["command"].startswith("nnUNetv2_train 961 2d 0 ") and "started" in pending
    assert "ended" not in pending


def test_a_killed_training_from_scratch_leaves_out_the_logs_of_attempts_before_it(tmp_path):
    study = one_training_study(tmp_path)
    workspace = Workspace(str(tmp_path / "work"))
    folder = fold_folder(workspace, study, "nnUNetTrainer", 0)
    training_log(folder, seconds_ago=600, lasted=30)
    started = (datetime.datetime.now() - datetime.timedelta(seconds=300)).astimezone().isoformat(timespec="seconds")
    write_json([{"command": "nnUNetv2_train 961 2d 0 -tr x", "started": started}],
               os.path.join(folder, "ledger_commands.json"))
    killed = training_log(folder, seconds_ago=290, lasted=100)
    torch.save({}, os.path.join(folder, "checkpoint_latest.pth"))
    run_study_folder(study.folder, workspace.root, num_processes=1, execute=FakeNnUNet(workspace))
    with open(os.path.join(study.folder, "runs", "nnUNetTrainer", "seed0", "fold_0", "run.json")) as f:
        record = json.load(f)
    assert record["wall_seconds"] == 102.0
    assert [t["log"] for t in record["unrecorded_trainings"]] == [killed]


def test_logs_before_an_unrecorded_training_from_scratch_are_left_out(tmp_path):
    """Two killed nnUNetv2_train runs that left no record, both from scratch (their logs start at epoch 0), then one
    resumed from the second's checkpoint: the first attempt is abandoned and does not count."""
    study = one_training_study(tmp_path)
    workspace = Workspace(str(tmp_path / "work"))
    folder = fold_folder(workspace, study, "nnUNetTrainer", 0)
    training_log(folder, seconds_ago=900, lasted=200, first_epoch=0)
    from_scratch = training_log(folder, seconds_ago=600, lasted=100, first_epoch=0)
    resumed = training_log(folder, seconds_ago=300, lasted=50, first_epoch=5)
    torch.save({}, os.path.join(folder, "checkpoint_latest.pth"))
    run_study_folder(study.folder, workspace.root, num_processes=1, execute=FakeNnUNet(workspace))
    with open(os.path.join(study.folder, "runs", "nnUNetTrainer", "seed0", "fold_0", "run.json")) as f:
        record = json.load(f)
    assert [t["log"] for t in record["unrecorded_trainings"]] == [from_scratch, resumed]
    assert record["wall_seconds"] == 152.0


def test_a_new_training_gets_the_study_environment_and_trains_from_scratch(tmp_path):
    study = one_training_study(tmp_path, environment={"nnUNet_n_proc_DA": "0"})
    workspace = Workspace(str(tmp_path / "work"))
    fake = FakeNnUNet(workspace)
    fold_folder(workspace, study, "nnUNetTrainer", 0)
    run_study_folder(study.folder, workspace.root, num_processes=1, execute=fake)
    assert fake.commands[1] == "nnUNetv2_train 961 2d 0 -tr nnUNetTrainer_e2i3v1_seed0 -p nnUNetPlans -device cpu"
    with open(os.path.join(study.folder, "runs", "nnUNetTrainer", "seed0", "fold_0", "run.json")) as f:
        record = json.load(f)
    assert record["commands"][1]["environment"] == {"nnUNet_n_proc_DA": "0"}
    assert record["environment_variables"] == {"nnUNet_n_proc_DA": "0"}


def test_a_failed_training_keeps_its_command_and_records_nothing(tmp_path):
    study = one_training_study(tmp_path)
    workspace = Workspace(str(tmp_path / "work"))
    with pytest.raises(StudyError, match="nnUNetv2_train 961 2d 0 .* exited with code 1: fix the cause and rerun"):
        run_study_folder(study.folder, workspace.root, num_processes=1,
                         execute=FakeNnUNet(workspace, fail_on="nnUNetv2_train"))
    assert not os.path.exists(os.path.join(study.folder, "runs"))
    with open(os.path.join(fold_folder(workspace, study, "nnUNetTrainer", 0), "ledger_commands.json")) as f:
        assert [c["returncode"] for c in json.load(f)] == [1]


def test_a_run_recorded_with_another_schedule_is_refused(tmp_path):
    study = two_trainer_study(tmp_path)
    write_finished_run(study, "nnUNetTrainer", 0, 0, {})
    write_study(study.folder, trainers={"nnUNetTrainer": [0], "nnUNetTrainerMORSE": [0]},
                schedule={"epochs": 5, "iterations_per_epoch": 3, "validation_iterations": 1})
    with pytest.raises(StudyError, match="fold_0/run.json was recorded with another 'schedule' than"):
        run_study_folder(study.folder, str(tmp_path / "work"), dry_run=True)


def test_a_partly_recorded_run_without_its_checkpoint_is_refused(tmp_path):
    study = two_trainer_study(tmp_path)
    os.remove(os.path.join(write_finished_run(study, "nnUNetTrainerMORSE", 0, 1, {}, head_off_values={}), HEAD_OFF))
    with pytest.raises(StudyError, match="fold_1 lacks metrics_head_off.json and .* does not hold its checkpoint"):
        run_study_folder(study.folder, str(tmp_path / "work"), dry_run=True)


def test_a_work_folder_holding_another_dataset_is_refused(tmp_path):
    study = two_trainer_study(tmp_path)
    write_json({"builder": "synthetic", "id": 961, "arguments": {"dim": 3}},
               str(tmp_path / "work" / "ledger_dataset.json"))
    with pytest.raises(StudyError, match="holds dataset .* but .*study.json defines"):
        run_study_folder(study.folder, str(tmp_path / "work"), execute=FakeNnUNet(Workspace(str(tmp_path / "w"))))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("title"), "field 'title' is missing"),
    (lambda d: d["schedule"].update(epochs=0), "field 'schedule.epochs' must be an integer >= 1, got 0"),
    (lambda d: d.update(epoch=3), "unknown field 'epoch'"),
    (lambda d: d["trainers"].update(nnUNetTrainer=[]), "field 'trainers.nnUNetTrainer' must be a non-empty list"),
    (lambda d: d.update(head_off=["nnUNetTrainerIAR"]), "field 'head_off' names nnUNetTrainerIAR"),
    (lambda d: d.update(seed=1, trainers={"nnUNetTrainer": [1], "nnUNetTrainerMORSE": [0]}, head_off=[]),
     "field 'comparisons\\[0\\]' needs nnUNetTrainerMORSE with seed 1"),
    (lambda d: d["dataset"].update(builder="mnist"), "field 'dataset.builder' must be one of synthetic, boundary"),
    (lambda d: d["comparisons"][0].pop("models"), "field 'comparisons\\[0\\].models' is missing"),
    (lambda d: d.update(device="tpu"), "field 'device' must be one of cpu, cuda, mps, got \"tpu\""),
])
def test_an_invalid_study_json_is_refused_naming_the_field(tmp_path, change, message):
    definition = study_definition()
    change(definition)
    write_json(definition, str(tmp_path / "study.json"))
    with pytest.raises(StudyError, match=message):
        load_study(str(tmp_path))


def test_the_command_answers_bad_input_in_one_line(tmp_path):
    with pytest.raises(SystemExit) as stop:
        run.main([str(tmp_path)])
    assert str(stop.value) == (f"nnUNetv2_morse_study: error: no study.json in {tmp_path}: give a study folder such "
                               "as results/colin27_2d (see results/README.md)")
    (tmp_path / "study.json").write_text("{")
    with pytest.raises(SystemExit, match="study.json is not valid JSON"):
        run.main([str(tmp_path)])
    study = two_trainer_study(tmp_path)
    with pytest.raises(SystemExit, match="error: -tr nnUNetTrainerIAR: not in .*its trainers: nnUNetTrainer, "):
        run.main([study.folder, "-tr", "nnUNetTrainerIAR", "--dry-run"])
    write_study(study.folder, dataset={"builder": "synthetic", "id": 961, "arguments": {"shapes": [8, 8]}})
    with pytest.raises(SystemExit, match="field 'dataset.arguments.shapes' is not an argument of the synthetic "
                                         "builder \\(allowed: name, dim, num_training"):
        run.main([study.folder, "-w", str(tmp_path / "work")])


@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_the_command_refuses_fewer_than_one_process_in_one_line(tmp_path, capsys, value):
    study = two_trainer_study(tmp_path)
    with pytest.raises(SystemExit) as stop:
        run.main([study.folder, "-np", value, "--dry-run"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        f"nnUNetv2_morse_study: error: argument -np: give an integer >= 1, got '{value}'"


def test_runs_are_ordered_seed_fold_trainer_and_named_by_schedule_and_seed(tmp_path):
    study = write_study(tmp_path / "s", trainers={"nnUNetTrainer": [0, 1], "nnUNetTrainerIAR": [0]}, head_off=[],
                        comparisons=[])
    assert [(r.seed, r.fold, r.trainer) for r in study.runs()] == [
        (0, 0, "nnUNetTrainer"), (0, 0, "nnUNetTrainerIAR"), (0, 1, "nnUNetTrainer"), (0, 1, "nnUNetTrainerIAR"),
        (1, 0, "nnUNetTrainer"), (1, 1, "nnUNetTrainer")]
    assert study.nnunet_trainer(Run("nnUNetTrainerIAR", 1, 0)) == "nnUNetTrainerIAR_e2i3v1_seed1"
    assert study.schedule.checkpoint_every == 1


def test_scheduled_trainer_has_the_schedule_the_seed_and_frequent_checkpoints(tmp_path):
    trainer = scheduled_trainer("nnUNetTrainerMORSE", "nnUNetTrainerMORSE_e3i4v2_seed5", 3, 4, 2, 5, 1)
    assert trainer.__name__ == "nnUNetTrainerMORSE_e3i4v2_seed5"
    built = []
    with nnunet_environment(tmp_path):
        for _ in range(2):
            built.append(trainer(trainer_plans(2), "cfg", 0, DATASET_JSON, torch.device("cpu")))
            initialize_without_data(built[-1], 1, 3)
    assert (built[0].num_epochs, built[0].num_iterations_per_epoch, built[0].num_val_iterations_per_epoch,
            built[0].save_every) == (3, 4, 2, 1)
    for a, b in zip(built[0].network.parameters(), built[1].network.parameters()):
        assert torch.equal(a, b)


def test_a_benchmark_study_keeps_its_tables_and_is_run_once(tmp_path):
    folder = tmp_path / "results" / "cost" / "cpu_small"
    write_json({"kind": "benchmark", "title": "small", "arguments": ["--preset", "2d", "--steps", "2"]},
               str(folder / "study.json"))
    commands = []

    def benchmark(command, environment=None):
        commands.append(command)
        output = command[command.index("--out") + 1]
        write_json({"rows": []}, os.path.join(output, "benchmark_2d_cpu.json"))
        (tmp_path / "table.md").write_text("| table |")
        shutil.copy(tmp_path / "table.md", os.path.join(output, "benchmark_2d_cpu.md"))
        return {"command": " ".join(command), "seconds": 5.0}

    for _ in range(2):
        run_study_folder(str(folder), str(tmp_path / "work"), execute=benchmark)
    assert len(commands) == 1
    assert commands[0][:7] == ["nnUNetv2_morse_benchmark", "--preset", "2d", "--steps", "2", "-device", "cpu"]
    assert sorted(os.listdir(folder)) == ["benchmark_2d_cpu.json", "benchmark_2d_cpu.md", "run.json", "study.json"]
    write_json({"kind": "benchmark", "title": "x", "arguments": ["--out", "here"]}, str(folder / "study.json"))
    with pytest.raises(StudyError, match="field 'arguments' must leave -device, --device, -o, --out"):
        load_study(str(folder))


def test_a_benchmark_study_deletes_only_an_earlier_benchmarks_outputs_from_its_work_folder(tmp_path):
    """-w pointed at a folder of the user's: refused, nothing deleted; an earlier benchmark's outputs are cleared."""
    folder = tmp_path / "results" / "cost" / "cpu_small"
    write_json({"kind": "benchmark", "title": "small", "arguments": ["--preset", "2d"]}, str(folder / "study.json"))
    work = tmp_path / "data"
    write_json({}, str(work / "dataset.json"))
    (work / "benchmark_2d_cpu.md").write_text("old")

    def benchmark(command, environment=None):
        output = command[command.index("--out") + 1]
        assert sorted(os.listdir(output)) == []
        write_json({"rows": []}, os.path.join(output, "benchmark_2d_cpu.json"))
        return {"command": " ".join(command), "seconds": 5.0}

    with pytest.raises(StudyError, match=f"the work folder {work} holds dataset.json, which no benchmark wrote: give "
                                         "-w an empty or new folder \\(nothing was deleted\\)"):
        run_study_folder(str(folder), str(work), execute=benchmark)
    assert sorted(os.listdir(work)) == ["benchmark_2d_cpu.md", "dataset.json"]
    os.remove(work / "dataset.json")
    (work / "failed_MORSE.log").write_text("old")
    run_study_folder(str(folder), str(work), execute=benchmark)
    assert sorted(os.listdir(work)) == ["benchmark_2d_cpu.json"]
    for option in (["-tr", "nnUNetTrainer"], ["-f", "0"], ["--seeds", "0"]):
        with pytest.raises(SystemExit, match=f"error: {option[0]}: {folder} is a benchmark study, which runs as a "
                                             "whole: drop -tr, -f and --seeds"):
            run.main([str(folder), *option, "--dry-run"])


def test_the_plan_estimates_the_time_left_from_each_trainers_median_epoch(tmp_path, capsys):
    """nnUNetTrainer's recorded epochs took 20 s, MORSE's 40 s (one paused for 1000 s): the 200 epochs of each of
    the three runs left take 200 x (20 + 40 + 30) s (IAR has none recorded: the median of all recorded epochs, 30 s)."""
    study = two_trainer_study(tmp_path, trainers={"nnUNetTrainer": [0], "nnUNetTrainerMORSE": [0],
                                                  "nnUNetTrainerIAR": [0]}, head_off=[], comparisons=[],
                              schedule={"epochs": 200, "iterations_per_epoch": 3, "validation_iterations": 1})
    write_finished_run(study, "nnUNetTrainer", 0, 0, {}, epoch_seconds=(20.0, 20.0, 20.0))
    write_finished_run(study, "nnUNetTrainerMORSE", 0, 0, {}, epoch_seconds=(40.0, 1000.0, 40.0))
    run_study_folder(study.folder, str(tmp_path / "work"), folds=[1], dry_run=True)
    assert ("3 trainings: 3 to train; about 5.0 h of training left (from each trainer's median epoch so far)"
            in capsys.readouterr().out)


def test_seeds_limits_the_plan_to_those_seeds_and_refuses_others_in_one_line(tmp_path, capsys):
    """Seed 0 of every fold first, the noise floor's seed 1 later: --seeds 0 plans and runs seed 0 only."""
    study = two_trainer_study(tmp_path, folds=[0, 1], trainers={"nnUNetTrainer": [0, 1], "nnUNetTrainerMORSE": [0]},
                              head_off=[], comparisons=[])
    run.main([study.folder, "-w", str(tmp_path / "work"), "-tr", "nnUNetTrainer", "--seeds", "0", "--dry-run"])
    plan = [line for line in capsys.readouterr().out.splitlines() if line.lstrip().startswith("[")]
    assert plan == ["  [1/2] nnUNetTrainer seed 0 fold 0: to train", "  [2/2] nnUNetTrainer seed 0 fold 1: to train"]
    workspace = Workspace(str(tmp_path / "work"))
    fake = FakeNnUNet(workspace)
    run_study_folder(study.folder, workspace.root, num_processes=1, seeds=[1], execute=fake)
    assert [c.split()[5] for c in fake.commands if c.startswith("nnUNetv2_train")] == \
        ["nnUNetTrainer_e2i3v1_seed1", "nnUNetTrainer_e2i3v1_seed1"]
    with pytest.raises(SystemExit) as stop:
        run.main([study.folder, "--seeds", "0", "2", "--dry-run"])
    assert str(stop.value) == "nnUNetv2_morse_study: error: --seeds 2: not among the study's seeds 0, 1"


def test_a_colin27_study_without_its_source_files_says_what_to_install_in_one_line(tmp_path):
    from nnunetv2_morse.ledger.datasets import build_dataset
    from nnunetv2_morse.ledger.definition import DatasetDefinition

    with pytest.raises(StudyError, match="^dataset 620 \\(colin27\\): Colin27 files missing in .*: install Debian's "
                                         "mricron-data package: sudo apt-get install -y mricron-data"):
        build_dataset(DatasetDefinition("colin27", 620, json.dumps({"source_dir": str(tmp_path)})),
                      str(tmp_path / "raw"), str(tmp_path / "preprocessed"))


def test_a_relative_study_folder_that_is_not_there_names_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=f"no study.json in results/colin27_2d \\(from {tmp_path}: run from the "
                                         "repository root\\)"):
        run.main(["results/colin27_2d", "--dry-run"])


def test_a_benchmark_study_runs_on_cpu_or_cuda_only(tmp_path):
    """mps is refused when the study is loaded (study.json's device) or run (-device), as the benchmark refuses it;
    a training study keeps it."""
    folder = tmp_path / "results" / "cost" / "mps"
    write_json({"kind": "benchmark", "title": "x", "arguments": [], "device": "mps"}, str(folder / "study.json"))
    with pytest.raises(StudyError) as error:
        load_study(str(folder))
    assert str(error.value) == (f"{folder / 'study.json'}: field 'device' must be one of cpu, cuda in a benchmark "
                                "study (the devices nnUNetv2_morse_benchmark runs on), got \"mps\"")
    write_json({"kind": "benchmark", "title": "x", "arguments": []}, str(folder / "study.json"))
    with pytest.raises(StudyError, match=f"^-device mps: {folder} is a benchmark study, which runs on cpu or cuda$"):
        run_study_folder(str(folder), str(tmp_path / "work"), "mps", dry_run=True)
    assert one_training_study(tmp_path, device="mps").device == "mps"


def test_a_cuda_study_is_refused_in_one_line_without_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    study = one_training_study(tmp_path, device="cuda")
    with pytest.raises(SystemExit) as stop:
        run.main([study.folder, "-w", str(tmp_path / "work")])
    assert str(stop.value).startswith(f"nnUNetv2_morse_study: error: {study.folder} runs on cuda, and this machine "
                                      "has no CUDA GPU")
    assert not (tmp_path / "work").exists()


def test_gpu_evidence_refuses_without_cuda_in_one_line_but_shows_its_plan(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        gpu.main([])
    assert str(stop.value) == ("nnUNetv2_morse_gpu_evidence: error: no CUDA GPU here (torch.cuda.is_available() is "
                               "False): run it on a machine with one")
    gpu.main(["--dry-run"])
    shown = capsys.readouterr().out
    assert shown.startswith(f"CUDA evidence on a CUDA GPU (none here: --dry-run only):\n  {sys.executable} -m pytest ")
    assert "  nnUNetv2_morse_study " + os.path.join(gpu.REPOSITORY, "results", "cost", "cuda_2d_bf16") in shown
    with pytest.raises(SystemExit, match=f"-i {tmp_path / 'none'}: no such folder$"):
        gpu.main(["-i", str(tmp_path / "none"), "--dry-run"])
    monkeypatch.setattr(gpu, "DEFAULT_RESULTS", str(tmp_path / "site-packages" / "results"))
    with pytest.raises(SystemExit, match="no such folder; this command needs the repository's tests/ and results/: "
                                         "run it from a checkout installed with pip install -e"):
        gpu.main(["--dry-run"])


def test_gpu_evidence_runs_the_cuda_tests_and_every_cuda_benchmark_study(tmp_path):
    for name, device in (("cuda_2d_bf16", "cuda"), ("cpu_2d", "cpu"), ("cuda_3d_fullres_fp16", "cuda")):
        write_json({"kind": "benchmark", "title": name, "device": device, "arguments": ["--preset", "2d"]},
                   str(tmp_path / "cost" / name / "study.json"))
    test_command, studies = gpu.plan(str(tmp_path), "/repo")
    assert test_command == [sys.executable, "-m", "pytest", "/repo/tests/test_cuda.py", "-v", "-rs",
                            f"--junitxml={tmp_path}/cost/cuda_tests/junit.xml"]
    assert studies == [str(tmp_path / "cost" / "cuda_2d_bf16"), str(tmp_path / "cost" / "cuda_3d_fullres_fp16")]
    (tmp_path / "junit.xml").write_text('<testsuites><testsuite tests="5" failures="1" errors="0" skipped="2"/>'
                                        '<testsuite tests="3" failures="0" errors="1" skipped="0"/></testsuites>')
    assert gpu.junit_counts(str(tmp_path / "junit.xml")) == {"passed": 4, "failed": 1, "errors": 1, "skipped": 2,
                                                             "tests": 8}


def test_the_ledgers_studies_are_valid(monkeypatch):
    """Every study.json in the repository's results/ loads, its dataset arguments are its builder's, and a benchmark
    study's arguments are the benchmark's options with trainers it finds."""
    from nnunetv2_morse.ledger.datasets import check_arguments
    from nnunetv2_morse.ledger.definition import TrainingStudy, find_studies
    folders = find_studies(os.path.join(gpu.REPOSITORY, "results"))
    assert folders
    parser = benchmark.build_parser()
    for folder in folders:
        study = load_study(folder)
        if isinstance(study, TrainingStudy):
            check_arguments(study.dataset, folder)
        else:
            options = parser.parse_args([*study.arguments, "-device", study.device, "--out", "out"])
            benchmark.check_options(parser, options)
            benchmark.check_trainers(options.trainers)


def test_a_tiny_study_end_to_end_through_nnunet_commands(tmp_path, monkeypatch, capsys):
    """Synthetic 2D, 1 epoch of 2 iterations, fold 0, nnUNetTrainer and MORSE (head off too), then RESULTS.md."""
    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    study = write_study(tmp_path / "results" / "tiny", folds=[0],
                        schedule={"epochs": 1, "iterations_per_epoch": 2, "validation_iterations": 1},
                        trainers={"nnUNetTrainer": [0], "nnUNetTrainerMORSE": [0]},
                        environment={"nnUNet_n_proc_DA": "0", "nnUNet_compile": "0"})
    run_study_folder(study.folder, num_processes=1)
    for trainer, files in (("nnUNetTrainer", ["curves.json", "metrics.json", "run.json"]),
                           ("nnUNetTrainerMORSE", ["curves.json", "metrics.json", HEAD_OFF, "run.json"])):
        ledger = os.path.join(study.folder, "runs", trainer, "seed0", "fold_0")
        assert sorted(os.listdir(ledger)) == files
        with open(os.path.join(ledger, "metrics.json")) as f:
            assert len(json.load(f)["metric_per_case"]) == 2
    with open(os.path.join(study.folder, "runs", "nnUNetTrainerMORSE", "seed0", "fold_0", "curves.json")) as f:
        curves = json.load(f)
    assert len(curves["train_losses"]) == len(curves["rend_losses"]) == 1
    assert os.path.isdir(tmp_path / "results" / ".work" / "tiny" / "nnUNet_results")
    render_results(str(tmp_path / "results"), str(tmp_path / "RESULTS.md"), 99)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "- nnUNetTrainerMORSE: 2 cases of folds 0 paired with the baseline nnUNetTrainer (seed 0)" in text
    assert "| nnUNetTrainerMORSE | Dice |" in text.split("What the head adds")[1]
