"""The benchmark command (nnUNetv2_morse_benchmark) runs end to end on the CPU at a tiny size, also as a study of
the ledger, and writes its tables; bad input is refused in one line; its FLOP shares are torch's counter's numbers."""
import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from ledger_files import write_json
from nnunetv2_morse import benchmark, cost
from nnunetv2_morse.ledger import verdict
from nnunetv2_morse.ledger.definition import RESERVED_BENCHMARK_OPTIONS, load_study
from nnunetv2_morse.ledger.render import recorded_benchmark, render_results
from nnunetv2_morse.ledger.run import run_study_folder
from plans import SMALL, SmallMORSE, build

PROG = "nnUNetv2_morse_benchmark"


@pytest.fixture
def nnunet_folders(monkeypatch, tmp_path):
    """nnU-Net's three folders, restored afterwards (the benchmark points them at its plans' work folder)."""
    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path / name))


def test_benchmark_smoke(tmp_path, nnunet_folders, capsys):
    """3d_fullres at a tiny image size; --device, the alias of -device that older commands use."""
    benchmark.main(["--preset", "3d_fullres", "--device", "cpu", "--image-shape", "12", "40", "40", "--steps", "1",
                    "--warmup", "1", "--no-mirroring", "--trainers", "nnUNetTrainer", "nnUNetTrainerMORSE",
                    "--test-points", "256", "1024", "--out", str(tmp_path)])
    with open(tmp_path / "benchmark_3d_fullres_cpu.json") as f:
        result = json.load(f)
    baseline, morse = result["plans"]["3d_fullres"]
    assert baseline["trainer"] == "nnUNetTrainer" and morse["trainer"] == "nnUNetTrainerMORSE"
    for row in (baseline, morse):
        assert row["step_s"] > 0 and row["inference_s"] > 0 and row["peak_memory_mb"] > 0
        assert row["memory_measure"] == cost.MEMORY_MEASURE["cpu"]
    assert morse["saved_for_backward_mb"] > baseline["saved_for_backward_mb"]
    assert baseline["flops"] is None and 0 < morse["flops"]["train_flop_share"] < 1
    sweep = morse["test_points_sweep"]
    assert [t["num_test_points"] for t in sweep] == [256, 1024]
    assert 0 < sweep[0]["head_gflop"] < sweep[1]["head_gflop"] and sweep[0]["unet_gflop"] == sweep[1]["unet_gflop"]
    assert sweep[1]["head_gflop"] == pytest.approx(4 * sweep[0]["head_gflop"], rel=0.05)  # linear in N_test
    table = (tmp_path / "benchmark_3d_fullres_cpu.md").read_text()
    assert "| nnUNetTrainerMORSE |" in table and "N_test sweep" in table and "step overhead above FLOPs" in table
    assert "| nnUNetTrainerMORSE |" in capsys.readouterr().out


def test_2d_plans_in_one_run_as_a_study_of_the_ledger(tmp_path, nnunet_folders):
    """The ledger's command line (-device, --out) runs the benchmark, keeps its files and renders its tables."""
    folder = tmp_path / "results" / "cost" / "cpu_2d_plans"
    write_json({"kind": "benchmark", "title": "2d plans", "arguments": [
        "--plans2d", "32", "--image-shape", "4", "32", "32", "--steps", "1", "--warmup", "0", "--rounds", "2",
        "--clock", "cpu", "--no-mirroring", "--case-scale", "1", "--trainers", "nnUNetTrainer", "nnUNetTrainerMORSE"]},
        str(folder / "study.json"))

    def in_process(command, environment=None):
        assert command[0] == PROG
        benchmark.main(command[1:])
        return {"command": " ".join(command), "seconds": 1.0}

    run_study_folder(str(folder), str(tmp_path / "work"), execute=in_process)
    with open(folder / "benchmark_2d_plans_cpu.json") as f:
        report = json.load(f)
    plans = report["plans"]
    assert list(plans) == ["2d 32x32"]
    rows = plans["2d 32x32"]
    assert [r["trainer"] for r in rows] == ["nnUNetTrainer", "nnUNetTrainerMORSE"]
    for row in rows:  # the plan's own patch, batch 2, the fastest of two rounds
        assert row["patch_size"] == [32, 32] and row["batch_size"] == 2 and len(row["rounds"]) == 2
        assert row["step_s"] == min(r["step_s"] for r in row["rounds"])
    assert rows[1]["flops"]["train_points"] == 32 * 32 // 32
    markdown = (folder / "benchmark_2d_plans_cpu.md").read_text()
    assert markdown == benchmark.benchmark_markdown(report) and "Careful" not in markdown
    sections = markdown.split("\n\n")  # one plan: no summary over the plans
    assert "one-thread CPU time" in sections[0] and "\n| nnUNetTrainerMORSE | " in sections[1]
    assert sections[0].endswith(f"(times: the fastest; ratios: the range), one-thread CPU time; memory: "
                                f"{cost.MEMORY_MEASURE['cpu']}")
    render_results(str(tmp_path / "results"), str(tmp_path / "RESULTS.md"), 99)
    cost_section = (tmp_path / "RESULTS.md").read_text().split("### 2d plans\n\n")[1]
    assert cost_section.startswith(f"`{PROG} --plans2d 32 ")
    assert "\n\n2d 32x32 (2d, patch [32, 32], batch 2, inference case [2, 32, 32], mirroring off) on CPU" in cost_section
    step = benchmark.ratio_range([m["step_s"] / b["step_s"] for m, b in zip(rows[1]["rounds"], rows[0]["rounds"])])
    assert f"\n| nnUNetTrainerMORSE | {step} | " in cost_section


@pytest.mark.parametrize("options, message", [
    (["--plans2d", "128", "--preset", "3d_fullres"], "--plans2d measures nnU-Net's own 2d plans"),
    (["--plans2d", "128", "--patch-size", "64", "64"], "--plans2d measures nnU-Net's own 2d plans"),
    (["--clock", "cpu", "-device", "cuda"], "--clock cpu times the CPU's work"),
    (["--preset", "3d_fullres", "--patch-size", "64", "64"], "--patch-size 64 64: --preset 3d_fullres takes 3 values"),
    (["--rounds", "0"], "argument --rounds: give an integer >= 1, got '0'"),
    (["--plans2d", "0"], "argument --plans2d: give an integer >= 1, got '0'"),
    (["--case-scale", "-1"], "argument --case-scale: give a number > 0, got '-1'"),
    (["-device", "mps"], "argument -device/--device: invalid choice: 'mps'"),
])
def test_bad_or_contradictory_options_are_refused(options, message, capsys):
    with pytest.raises(SystemExit):
        benchmark.main(options)
    assert message in capsys.readouterr().err


def test_options_also_in_nnunet_spelling_and_the_ledger_reserves_every_spelling_it_sets():
    parser = benchmark.build_parser()
    nnunet = parser.parse_args(["-tr", "A", "B", "-o", "folder", "--disable_tta"])
    assert vars(nnunet) == vars(parser.parse_args(["--trainers", "A", "B", "--out", "folder", "--no-mirroring"]))
    assert (nnunet.trainers, nnunet.out, nnunet.no_mirroring) == (["A", "B"], "folder", True)
    set_by_the_ledger = {option for action in parser._actions if action.dest in ("device", "out", "worker", "plans_file")
                         for option in action.option_strings}
    assert set_by_the_ledger == set(RESERVED_BENCHMARK_OPTIONS)


@pytest.mark.parametrize("options, message", [
    (["--trainers", "nnUNetTrainer", "nnUNetTrainerNoSuchThing"],
     "-tr/--trainers nnUNetTrainerNoSuchThing: no such trainer (neither this package's, nnU-Net's nor on "
     "nnUNet_extTrainer); e.g. nnUNetTrainer nnUNetTrainerMORSE"),
    (["--plans2d", "4", "--image-shape", "4", "4", "4"],
     "2d 4x4: nnU-Net plans a U-Net of one stage (no decoder) for images this small; give larger images (--plans2d, "
     "--image-shape)"),
    (["--image-shape", "4", "32", "32", "--patch-size", "20", "32"],
     "--patch-size 20 32: the 2d plan's U-Net downsamples by 8 8, give multiples of that"),
])
def test_bad_input_is_refused_in_one_line(options, message, tmp_path, nnunet_folders):
    with pytest.raises(SystemExit) as stop:
        benchmark.main(["--trainers", "nnUNetTrainer", *options, "-device", "cpu", "--out", str(tmp_path / "out")])
    assert str(stop.value) == f"{PROG}: error: {message}"


@pytest.mark.parametrize("options, cuda, message", [
    (["-device", "cuda"], False, "-device cuda: no cuda device is available here; use -device cpu or -device auto"),
    (["--clock", "cpu"], True, "--clock cpu times the CPU's work: on CUDA use --clock wall"),  # -device auto: cuda
])
def test_the_device_is_checked_in_one_line(options, cuda, message, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    with pytest.raises(SystemExit) as stop:
        benchmark.main([*options, "--out", str(tmp_path)])
    assert str(stop.value) == f"{PROG}: error: {message}"


def test_a_failing_trainer_is_reported_in_one_line_and_its_output_kept(tmp_path, nnunet_folders):
    with pytest.raises(SystemExit) as stop:
        benchmark.main(["--plans2d", "32", "--image-shape", "4", "32", "32", "-device", "cpu", "--steps", "1",
                        "--warmup", "0", "--trainers", "nnUNetTrainerMORSE_6experts", "--out", str(tmp_path)])
    log = tmp_path / "failed_nnUNetTrainerMORSE_6experts.log"
    assert str(stop.value).startswith(f"{PROG}: error: the benchmark of nnUNetTrainerMORSE_6experts failed: ")
    assert str(stop.value).endswith(f"(its whole output: {log})") and "\n" not in str(stop.value)
    assert "Traceback" in log.read_text()


@pytest.mark.parametrize("dim", [2, 3])
def test_flop_counts_are_the_unet_and_the_point_modules(dim):
    torch.manual_seed(0)
    stock = build(nnUNetTrainer, dim, True)
    morse = build(SmallMORSE, dim, True)
    patch, points = [32] * dim, 300
    unet, (head,) = cost.point_flop_counts(morse, patch, [points])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        stock(torch.randn(1, 1, *patch))
    assert unet == counter.get_total_flops() > 0
    # the renderer's matrix products: every linear layer of the experts, gate, fusion and head, and psi's B p
    linear_macs = sum(m.in_features * m.out_features for m in morse.rendering.modules()
                      if isinstance(m, torch.nn.Linear))
    assert head == 2 * points * (linear_macs + dim * SMALL.num_frequencies)
    shares = cost.flop_shares(morse, patch)
    assert shares["train_points"] == SMALL.num_points and shares["test_points"] == SMALL.num_test_points
    assert shares["train_flop_share"] == pytest.approx(2 * SMALL.num_points * (linear_macs + dim * 8) / unet)


def test_plan_table_gives_values_ratios_flop_shares_and_the_sweep():
    flops = {"train_flop_share": 0.02, "train_points": 512, "test_flop_share": 0.03, "test_points": 512}
    sweep = [{"num_test_points": 256, "coarse_s": 0.5, "refined_s": 0.55, "ratio": 1.1, "unet_gflop": 10.0,
              "head_gflop": 0.3}]
    rows = [{"trainer": "nnUNetTrainer", "step_s": 0.5, "peak_memory_mb": 1000.0, "saved_for_backward_mb": 400.0,
             "inference_s": 2.0, "flops": None, "test_points_sweep": []},
            {"trainer": "nnUNetTrainerMORSE", "step_s": 0.54, "peak_memory_mb": 1020.0, "saved_for_backward_mb": 600.0,
             "inference_s": 2.1, "flops": flops, "test_points_sweep": sweep}]
    lines = benchmark.format_table(rows, "nnUNetTrainer").splitlines()
    assert lines[1] == "| --- |" + " ---: |" * 12
    assert lines[2] == "| nnUNetTrainer | 0.500 | 1.000 | 1000 | 1.000 | 400 | 1.000 | 2.000 | 1.000 | – | – | – | – |"
    assert lines[3] == ("| nnUNetTrainerMORSE | 0.540 | 1.080 | 1020 | 1.020 | 600 | 1.500 | 2.100 | 1.050 | 2.0% (512) | "
                        "+6.0% | 3.0% (512) | +2.0% |")
    assert lines[5] == "N_test sweep, nnUNetTrainerMORSE: one patch, eval forward against the coarse U-Net forward"
    assert lines[9] == "| 256 | 0.500 | 0.550 | 1.100 | 10.0 | 0.3 | 0.030 |" and len(lines) == 10


def test_summary_puts_the_overhead_above_the_flops_beside_the_ratios():
    def row(trainer, step, inference, patch, flops=None):
        return {"trainer": trainer, "step_s": step, "inference_s": inference, "peak_memory_mb": 1000.0,
                "patch_size": [patch, patch], "batch_size": 2, "flops": flops}

    flops = {"train_flop_share": 0.02, "train_points": 512, "test_flop_share": 0.03, "test_points": 512}
    plans = {"2d 128x128": [row("nnUNetTrainer", 0.5, 2.0, 128), row("nnUNetTrainerMORSE", 0.54, 2.1, 128, flops)],
             "2d 512x512": [row("nnUNetTrainer", 5.0, 8.0, 512), row("nnUNetTrainerMORSE", 4.9, 8.0, 512, flops)]}
    lines = benchmark.format_summary(plans, "nnUNetTrainer").splitlines()
    assert lines[2] == "| 2d 128x128 (128x128, 2) | nnUNetTrainer | 0.500 s | 1000 MiB | 2.000 s | – | – | – | – |"
    assert lines[3] == ("| 2d 128x128 (128x128, 2) | nnUNetTrainerMORSE | 1.080x | 1.000x | 1.050x | 2.0% (512) | "
                        "+6.0% | 3.0% (512) | +2.0% |")
    assert lines[5].startswith("| 2d 512x512 (512x512, 2) | nnUNetTrainerMORSE | 0.980x | 1.000x | 1.000x | 2.0% ")
    assert lines[5].endswith("| -4.0% | 3.0% (512) | -3.0% |")


def test_best_of_rounds_keeps_the_fastest_of_every_timed_field():
    """Round 0 is the fastest at inference and at one N_test, round 1 at the step, the coarse forward and the other
    N_test: every time, and every ratio printed from them, is the minimum over the rounds; memory is round 0's."""
    def sweep(coarse, refined):
        return [{"num_test_points": n, "coarse_s": coarse, "refined_s": r, "ratio": r / coarse, "unet_gflop": 10.0,
                 "head_gflop": n / 1000} for n, r in zip((0, 1000), refined)]

    rounds = [{"trainer": "t", "step_s": 2.0, "inference_s": 1.0, "peak_memory_mb": 5.0, "saved_for_backward_mb": 3.0,
               "test_points_sweep": sweep(0.4, (0.45, 0.6))},
              {"trainer": "t", "step_s": 1.5, "inference_s": 1.2, "peak_memory_mb": 6.0, "saved_for_backward_mb": 3.0,
               "test_points_sweep": sweep(0.3, (0.35, 0.7))}]
    best = benchmark.best_of_rounds(rounds)
    assert (best["step_s"], best["inference_s"], best["peak_memory_mb"]) == (1.5, 1.0, 5.0)
    assert [(e["num_test_points"], e["coarse_s"], e["refined_s"]) for e in best["test_points_sweep"]] == [
        (0, 0.3, 0.35), (1000, 0.3, 0.6)]
    assert [e["ratio"] for e in best["test_points_sweep"]] == pytest.approx([0.35 / 0.3, 0.6 / 0.3])
    assert "| 1000 | 0.300 | 0.600 | 2.000 | 10.0 | 1.0 | 0.100 |" in benchmark.format_table([best], "t").splitlines()
    assert best["rounds"][1] == {"step_s": 1.5, "inference_s": 1.2, "peak_memory_mb": 6.0, "test_points_sweep": [
        {"num_test_points": 0, "coarse_s": 0.3, "refined_s": 0.35},
        {"num_test_points": 1000, "coarse_s": 0.3, "refined_s": 0.7}]}
    assert rounds[0]["test_points_sweep"][0]["coarse_s"] == 0.4  # the rounds themselves are left as they were
    rounds[1]["test_points_sweep"].pop()
    with pytest.raises(ValueError, match=r"the rounds of t swept different N_test \(\[\[0, 1000\], \[0\]\]\)"):
        benchmark.best_of_rounds(rounds)


@pytest.mark.parametrize("memory, baseline_memory, line", [
    ((1060.0, 1020.0), (1000.0, 1000.0), "m: peak memory over the 1.05x budget in 1 of 2 rounds only (1.060x, 1.020x): "
                                         "the peak memory varies this much between identical rounds, so this is no "
                                         "clear excess"),
    ((1020.0, 1080.0), (1000.0, 1000.0), "m: peak memory over the 1.05x budget in 1 of 2 rounds only (1.020x, 1.080x): "
                                         "the peak memory varies this much between identical rounds, so this is no "
                                         "clear excess"),
    ((1080.0, 1060.0), (1000.0, 1000.0), "m: peak memory 1.080x, 1.060x, 1.0% over the 1.05x budget"),
    ((1040.0, 1070.0), (1000.0, 1030.0), None),
])
def test_peak_memory_is_judged_against_its_budget_in_every_round(memory, baseline_memory, line):
    """Round 0's memory is the row's; a ratio over the budget in some rounds only is said to be no clear excess, one
    over it in every round is an excess by the smallest."""
    def row(trainer, peaks):
        rounds = [{"trainer": trainer, "step_s": 1.0, "inference_s": 1.0, "peak_memory_mb": p,
                   "saved_for_backward_mb": 1.0, "test_points_sweep": []} for p in peaks]
        return benchmark.best_of_rounds(rounds)

    assert benchmark.over_budget([row("b", baseline_memory), row("m", memory)], "b") == ([line] if line else [])


@pytest.mark.parametrize("rounds, suffix", [(None, ""), (2, " (the first of its rounds only: its table kept no other "
                                                          "round's memory)")])
def test_peak_memory_of_one_round_is_judged_as_it_stands_and_says_so(rounds, suffix):
    rows = [{"trainer": t, "step_s": 1.0, "inference_s": 1.0, "peak_memory_mb": p} for t, p in (("b", 1000.0),
                                                                                               ("m", 1070.0))]
    if rounds:  # a table recorded before the benchmark kept each round's memory
        rows = [dict(r, rounds=[{"step_s": 1.0, "inference_s": 1.0}] * rounds) for r in rows]
    assert benchmark.over_budget(rows, "b") == [f"m: peak memory 1.070x, 1.9% over the 1.05x budget{suffix}"]
    assert benchmark.over_budget([rows[0], dict(rows[1], peak_memory_mb=1040.0)], "b") == []


def test_the_markdown_is_rendered_from_the_report_with_memory_judged_in_every_round():
    """Peak memory 1.06x the baseline's in round 0 and 1.02x in round 1: the tables give the range, the budget line
    says it is no clear excess; several plans get a summary first."""
    def row(trainer, step, peaks, patch):
        rounds = [{"trainer": trainer, "step_s": step, "inference_s": 2.0, "peak_memory_mb": p,
                   "saved_for_backward_mb": 400.0, "test_points_sweep": []} for p in peaks]
        return dict(benchmark.best_of_rounds(rounds), patch_size=[patch, patch], batch_size=2, flops=None,
                    warm_up_process=True)

    report = {"command": ["nnUNetv2_morse_benchmark"], "headers": {"2d 64x64": "small plan", "2d 96x96": "large plan"},
              "plans": {"2d 64x64": [row("b", 1.0, (1000.0, 1000.0), 64), row("m", 1.01, (1060.0, 1020.0), 64)],
                        "2d 96x96": [row("b", 2.0, (2000.0, 2000.0), 96), row("m", 2.02, (2020.0, 2040.0), 96)]}}
    sections = benchmark.benchmark_markdown(report).split("\n\n")
    assert sections[0] == "2 plans (2d 64x64, 2d 96x96): ratios to b per plan"
    assert "\n| 2d 64x64 (64x64, 2) | m | 1.010x | 1.020-1.060x | 1.000x |" in sections[1]
    assert "\n| 2d 96x96 (96x96, 2) | m | 1.010x | 1.010-1.020x | 1.000x |" in sections[1]
    assert sections[2] == "small plan" and "\n| m | 1.010 | 1.010 | 1060 | 1.020-1.060 | 400 |" in sections[3]
    assert sections[4] == ("Between identical rounds (each trainer's slowest round over its fastest): b step 1.000x, "
                           "inference 1.000x; m step 1.000x, inference 1.000x.")
    assert sections[5] == (f"{benchmark.BUDGET_HEADING}:\n- m: peak memory over the 1.05x budget in 1 of 2 rounds "
                           "only (1.060x, 1.020x): the peak memory varies this much between identical rounds, so "
                           "this is no clear excess")
    assert sections[6] == "large plan" and sections[9] == f"{benchmark.BUDGET_HEADING}: all met.\n"
    assert benchmark.benchmark_markdown(dict(report, plans={"2d 64x64": report["plans"]["2d 64x64"]})).startswith(
        "small plan\n\n")


def test_step_and_inference_ratios_are_ranges_over_the_rounds_judged_round_by_round():
    """The baseline is slow in round 0 only: each trainer's fastest round gives a step ratio of 1.00x, but round by
    round MORSE's step is 0.96x and 1.08x, and its inference 1.12x in round 1 only: ranges, and no clear excess."""
    def row(trainer, steps, inferences):
        return benchmark.best_of_rounds([{"trainer": trainer, "step_s": s, "inference_s": i, "peak_memory_mb": 1000.0,
                                          "saved_for_backward_mb": 1.0, "test_points_sweep": []}
                                         for s, i in zip(steps, inferences)])

    rows = [row("b", (1.05, 1.0), (2.0, 2.0)), row("m", (1.0, 1.08), (2.0, 2.24))]
    assert benchmark.row_ratios(rows[1], rows[0], "step_s") == pytest.approx([1.0 / 1.05, 1.08])
    cells = benchmark.format_table(rows, "b").splitlines()[3].split(" | ")
    assert (cells[2], cells[8]) == ("0.952-1.080", "1.000-1.120")
    assert benchmark.over_budget(rows, "b") == [
        "m: step time over the 1.05x budget in 1 of 2 rounds only (0.952x, 1.080x): the step time varies this much "
        "between identical rounds, so this is no clear excess",
        "m: inference over the 1.1x budget in 1 of 2 rounds only (1.000x, 1.120x): the inference varies this much "
        "between identical rounds, so this is no clear excess"]


def test_a_warm_up_process_then_each_round_starts_one_trainer_later_never_the_baseline_first(monkeypatch, tmp_path):
    """A warm-up process of m, not counted; round 0: m, p, b; round 1: p, b, m; round 2: b, m, p. The first process
    of a benchmark is slow (here 1.2 s against 1.0 s): the warm-up takes it, so no trainer's rounds hold it, and
    without the warm-up it would have been m's, not the baseline's."""
    order = []

    def fake_run(command, **kwargs):
        name = command[command.index("--worker") + 1]
        order.append(name)
        row = {"trainer": name, "step_s": 1.2 if len(order) == 1 else 1.0, "inference_s": 1.0, "peak_memory_mb": 1.0,
               "saved_for_backward_mb": 1.0, "test_points_sweep": []}
        return type("Done", (), {"returncode": 0, "stdout": "RESULT " + json.dumps(row), "stderr": ""})()

    monkeypatch.setattr(benchmark.subprocess, "run", fake_run)
    args = benchmark.build_parser().parse_args(["--trainers", "b", "m", "p", "--rounds", "3", "--out", str(tmp_path)])
    rows = benchmark.run_trainers(args, "plans.json", "cpu", None, None)
    assert order == ["m", "m", "p", "b", "p", "b", "m", "b", "m", "p"]
    assert [r["trainer"] for r in rows] == ["b", "m", "p"] and all(len(r["rounds"]) == 3 for r in rows)
    assert all(r["step_s"] == 1.0 for row in rows for r in row["rounds"]) and all(r["warm_up_process"] for r in rows)
    assert benchmark.measurement_order(["b"], 2) == [(None, "b"), (0, "b"), (1, "b")]


def test_a_ratio_is_shown_beside_how_much_the_trainers_own_rounds_varied(tmp_path):
    """The baseline's first round was 18% slower than its second (as the 3d CPU benchmark measured before the
    warm-up): MORSE's step reads 0.831-0.929x, and beside it, in the plan's tables and the README's cost line, the
    baseline's own spread of 1.184x says that this is no saving."""
    def row(trainer, steps, inferences):
        return dict(benchmark.best_of_rounds([{"trainer": trainer, "step_s": s, "inference_s": i,
                                               "peak_memory_mb": 1000.0, "saved_for_backward_mb": 1.0,
                                               "test_points_sweep": []} for s, i in zip(steps, inferences)]),
                    patch_size=[64, 64], batch_size=1, flops=None, memory_measure=cost.MEMORY_MEASURE["cpu"])

    rows = [row("nnUNetTrainer", (94.56, 79.86), (25.78, 20.84)),
            row("nnUNetTrainerMORSE", (78.54, 74.2), (23.92, 22.31))]
    assert benchmark.round_spread(rows[0], "step_s") == pytest.approx(94.56 / 79.86)
    assert benchmark.round_spread(dict(rows[0], rounds=rows[0]["rounds"][:1]), "step_s") is None
    spread = ("Between identical rounds (each trainer's slowest round over its fastest): nnUNetTrainer step 1.184x, "
              "inference 1.237x; nnUNetTrainerMORSE step 1.058x, inference 1.072x.")
    assert benchmark.spread_line(rows) == spread
    assert benchmark.spread_line([dict(r, rounds=r["rounds"][:1]) for r in rows]) == ""
    markdown = benchmark.benchmark_markdown({"headers": {"3d": "3d plan"}, "plans": {"3d": rows}})
    assert "| 0.831-0.929 |" in markdown
    folder = tmp_path / "results" / "cost" / "cpu_3d"
    write_json({"kind": "benchmark", "title": "3d", "arguments": ["--preset", "3d_fullres"], "verdict": True},
               str(folder / "study.json"))
    write_json({"headers": {"3d": "3d plan"}, "plans": {"3d": rows}}, str(folder / "benchmark_3d_fullres_cpu.json"))
    write_json({"commands": [{"command": "benchmark"}], "machine": {"platform": "Linux", "cpu_count": 2},
                "recorded": "today", "files": ["benchmark_3d_fullres_cpu.json"]}, str(folder / "run.json"))
    line = ("- [3d](R.md): nnUNetTrainerMORSE step 0.831-0.929x, peak memory 1.000x, inference 0.928-1.071x (its own "
            "step varied by up to 1.058x between identical rounds, its inference by up to 1.072x); between "
            "identical rounds, nnUNetTrainer's own step varied by up to 1.184x and its inference by up to 1.237x")
    caveat = benchmark.caveats_with_remedy(benchmark.order_caveat(rows))  # baseline first, no warm-up: said wherever shown
    assert caveat.startswith("measured before the benchmark ran a warm-up process, with the baseline as its first")
    assert caveat.endswith(f"understate the other trainers' cost; {benchmark.MEASURE_AGAIN}")
    assert verdict.cost_line(recorded_benchmark(load_study(str(folder))), "[3d](R.md)") == f"{line} (careful: {caveat})."
    render_results(str(tmp_path / "results"), str(tmp_path / "RESULTS.md"), 99)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| nnUNetTrainerMORSE | 0.831-0.929x |" in text and f"{spread} Careful: {caveat}.\n" in text
    assert f"{spread} Careful: {caveat}.\n\n{benchmark.BUDGET_HEADING}:" in markdown

    old = [dict({k: v for k, v in r.items() if k != "memory_measure"}, device_name="CPU (2 cores)") for r in rows]
    write_json({"headers": {"3d": "3d plan"}, "plans": {"3d": old}}, str(folder / "benchmark_3d_fullres_cpu.json"))
    both = verdict.cost_line(recorded_benchmark(load_study(str(folder))), "[3d](R.md)")  # two caveats, one remedy
    assert both.startswith(f"{line} (careful: measured before the benchmark ran a warm-up process")
    assert "understate the other trainers' cost; and peak memory is each process's whole peak RSS" in both
    assert both.count(benchmark.MEASURE_AGAIN) == 1 and both.endswith(f"; {benchmark.MEASURE_AGAIN}).")

    measured = [dict(r, warm_up_process=True) for r in rows]  # as the benchmark records them now
    assert benchmark.order_caveat(measured) == "" and benchmark.table_notes(measured) == spread
    write_json({"headers": {"3d": "3d plan"}, "plans": {"3d": measured}}, str(folder / "benchmark_3d_fullres_cpu.json"))
    assert verdict.cost_line(recorded_benchmark(load_study(str(folder))), "[3d](R.md)") == f"{line}."


def test_cpu_memory_recorded_before_the_import_parity_is_not_judged_and_says_so():
    rows = [{"trainer": t, "device_name": "CPU (2 cores)", "step_s": 1.0, "inference_s": 1.0, "peak_memory_mb": p}
            for t, p in (("b", 1000.0), ("m", 1090.0))]
    caveat = benchmark.memory_caveat(rows)
    assert "imported about 48 MiB more" in caveat
    assert benchmark.over_budget(rows, "b") == [f"not judged for peak memory: {caveat}; {benchmark.MEASURE_AGAIN}"]
    measured = [dict(r, memory_measure=cost.MEMORY_MEASURE["cpu"]) for r in rows]
    assert benchmark.memory_caveat(measured) == ""
    assert benchmark.over_budget(measured, "b") == ["m: peak memory 1.090x, 3.8% over the 1.05x budget"]


def test_every_measured_process_imports_the_same_modules_whichever_trainer_it_measures():
    """nnU-Net's lookup of nnUNetTrainer stops at its first module; of a trainer outside its tree, it imports every
    nnU-Net trainer variant first (timm, torchvision, ...: hundreds of modules, about 48 MiB of RSS). With
    import_every_trainer both processes hold the same modules but the few of the external trainer folder itself."""
    from nnunetv2_morse.trainers import TRAINER_DIR

    def module_count(name, parity):
        script = ("import sys; from nnunetv2_morse import cost; " + ("cost.import_every_trainer(); " if parity else "")
                  + "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find; "
                  "find(sys.argv[1]); print(len(sys.modules))")
        done = subprocess.run([sys.executable, "-c", script, name], capture_output=True, text=True, check=True,
                              env={**os.environ, "nnUNet_extTrainer": TRAINER_DIR})
        return int(done.stdout.split()[-1])

    without = module_count("nnUNetTrainerMORSE", False) - module_count("nnUNetTrainer", False)
    with_parity = module_count("nnUNetTrainerMORSE", True) - module_count("nnUNetTrainer", True)
    assert without > 300 and 0 <= with_parity < 20
