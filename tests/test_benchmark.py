"""The benchmark command runs end to end on the CPU at a tiny size and writes its tables; its FLOP shares are
torch's counter's numbers."""
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_morse import benchmark
from plans import SMALL, SmallMORSE, build


def test_benchmark_smoke(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    benchmark.main(["--preset", "3d_fullres", "--device", "cpu", "--image-shape", "12", "40", "40", "--steps", "1",
                    "--warmup", "1", "--no-mirroring", "--trainers", "nnUNetTrainer", "nnUNetTrainerMORSE",
                    "--test-points", "256", "1024", "--out", str(tmp_path)])
    with open(tmp_path / "benchmark_3d_fullres_cpu.json") as f:
        result = json.load(f)
    baseline, morse = result["plans"]["3d_fullres"]
    assert baseline["trainer"] == "nnUNetTrainer" and morse["trainer"] == "nnUNetTrainerMORSE"
    for row in (baseline, morse):
        assert row["step_s"] > 0 and row["inference_s"] > 0 and row["peak_memory_mb"] > 0
    assert morse["saved_for_backward_mb"] > baseline["saved_for_backward_mb"]
    assert baseline["flops"] is None and 0 < morse["flops"]["train_flop_share"] < 1
    sweep = morse["test_points_sweep"]
    assert [t["num_test_points"] for t in sweep] == [256, 1024]
    assert 0 < sweep[0]["head_gflop"] < sweep[1]["head_gflop"] and sweep[0]["unet_gflop"] == sweep[1]["unet_gflop"]
    assert sweep[1]["head_gflop"] == pytest.approx(4 * sweep[0]["head_gflop"], rel=0.05)  # linear in N_test
    table = (tmp_path / "benchmark_3d_fullres_cpu.md").read_text()
    assert "| nnUNetTrainerMORSE |" in table and "N_test sweep" in table and "step overhead above FLOPs" in table
    assert "| nnUNetTrainerMORSE |" in capsys.readouterr().out


def test_2d_plans_in_one_run(tmp_path, monkeypatch):
    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    benchmark.main(["--plans2d", "32", "--image-shape", "4", "32", "32", "--device", "cpu", "--steps", "1",
                    "--warmup", "0", "--rounds", "2", "--clock", "cpu", "--no-mirroring", "--case-scale", "1",
                    "--trainers", "nnUNetTrainer", "nnUNetTrainerMORSE", "--out", str(tmp_path)])
    with open(tmp_path / "benchmark_2d_plans_cpu.json") as f:
        plans = json.load(f)["plans"]
    assert list(plans) == ["2d 32x32"]
    rows = plans["2d 32x32"]
    assert [r["trainer"] for r in rows] == ["nnUNetTrainer", "nnUNetTrainerMORSE"]
    for row in rows:  # the plan's own patch, batch 2, the fastest of two rounds
        assert row["patch_size"] == [32, 32] and row["batch_size"] == 2 and len(row["rounds"]) == 2
        assert row["step_s"] == min(r["step_s"] for r in row["rounds"])
    assert rows[1]["flops"]["train_points"] == 32 * 32 // 32
    sections = (tmp_path / "benchmark_2d_plans_cpu.md").read_text().split("\n\n")
    assert "| 2d 32x32 (32x32, 2) | nnUNetTrainerMORSE |" in sections[1] and "one-thread CPU time" in sections[2]


@pytest.mark.parametrize("options, message", [
    (["--plans2d", "128", "--preset", "3d_fullres"], "--plans2d measures nnU-Net's own 2d plans"),
    (["--plans2d", "128", "--patch-size", "64", "64"], "--plans2d measures nnU-Net's own 2d plans"),
    (["--clock", "cpu", "--device", "cuda"], "--clock cpu times the CPU's work"),
    (["--rounds", "0"], "--rounds 0: give 1 or more"),
])
def test_contradictory_options_are_refused(options, message, capsys):
    with pytest.raises(SystemExit):
        benchmark.main(options)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("dim", [2, 3])
def test_flop_counts_are_the_unet_and_the_point_modules(dim):
    torch.manual_seed(0)
    stock = build(nnUNetTrainer, dim, True)
    morse = build(SmallMORSE, dim, True)
    patch, points = [32] * dim, 300
    unet, (head,) = benchmark.point_flop_counts(morse, patch, [points])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        stock(torch.randn(1, 1, *patch))
    assert unet == counter.get_total_flops() > 0
    # the renderer's matrix products: every linear layer of the experts, gate, fusion and head, and psi's B p
    linear_macs = sum(m.in_features * m.out_features for m in morse.rendering.modules()
                      if isinstance(m, torch.nn.Linear))
    assert head == 2 * points * (linear_macs + dim * SMALL.num_frequencies)
    shares = benchmark.flop_shares(morse, patch)
    assert shares["train_points"] == SMALL.num_points and shares["test_points"] == SMALL.num_test_points
    assert shares["train_flop_share"] == pytest.approx(2 * SMALL.num_points * (linear_macs + dim * 8) / unet)


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


def test_best_of_rounds_keeps_the_fastest_times():
    rounds = [{"trainer": "t", "step_s": 2.0, "inference_s": 1.0, "peak_memory_mb": 5.0},
              {"trainer": "t", "step_s": 1.5, "inference_s": 1.2, "peak_memory_mb": 6.0}]
    best = benchmark.best_of_rounds(rounds)
    assert (best["step_s"], best["inference_s"], best["peak_memory_mb"]) == (1.5, 1.0, 5.0)
    assert best["rounds"] == [{"step_s": 2.0, "inference_s": 1.0}, {"step_s": 1.5, "inference_s": 1.2}]
