"""The benchmark command runs end to end on the CPU at a tiny size and writes its table."""
import json

import pytest

from nnunetv2_morse import benchmark


def test_benchmark_smoke(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    benchmark.main(["--preset", "3d_fullres", "--device", "cpu", "--image-shape", "12", "40", "40", "--steps", "1",
                    "--warmup", "1", "--no-mirroring", "--trainers", "nnUNetTrainer", "nnUNetTrainerMORSE",
                    "--test-points", "256", "1024", "--out", str(tmp_path)])
    with open(tmp_path / "benchmark_3d_fullres_cpu.json") as f:
        result = json.load(f)
    baseline, morse = result["rows"]
    assert baseline["trainer"] == "nnUNetTrainer" and morse["trainer"] == "nnUNetTrainerMORSE"
    for row in (baseline, morse):
        assert row["step_s"] > 0 and row["inference_s"] > 0 and row["peak_memory_mb"] > 0
    assert morse["saved_for_backward_mb"] > baseline["saved_for_backward_mb"]
    sweep = morse["test_points_sweep"]
    assert [t["num_test_points"] for t in sweep] == [256, 1024]
    assert 0 < sweep[0]["head_gflop"] < sweep[1]["head_gflop"] and sweep[0]["unet_gflop"] == sweep[1]["unet_gflop"]
    assert sweep[1]["head_gflop"] == pytest.approx(4 * sweep[0]["head_gflop"], rel=0.05)  # linear in N_test
    table = (tmp_path / "benchmark_3d_fullres_cpu.md").read_text()
    assert "| nnUNetTrainerMORSE |" in table and "N_test sweep" in table
    assert "| nnUNetTrainerMORSE |" in capsys.readouterr().out
