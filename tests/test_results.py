"""Rendering RESULTS.md from a ledger made here with known per-case numbers; the paired statistics themselves."""
import json
import os

import numpy as np
import pytest
from scipy.stats import bootstrap, false_discovery_control, wilcoxon

from ledger_files import write_finished_run, write_json, write_study
from nnunetv2_morse.evaluation import statistics
from nnunetv2_morse.ledger import render
from nnunetv2_morse.ledger.render import FOREGROUND_MEAN, compare_arms, load_arm, render_results

CLASSES = ("a", "b")
SHIFT = {"Dice": 0.05, "HD95": -1.0, "ASSD": -0.5, "NSD": 0.03}
SCALE = {"Dice": 0.01, "HD95": 0.3, "ASSD": 0.1, "NSD": 0.01}
LOW, HIGH = {"Dice": 0.5, "HD95": 2.0, "ASSD": 0.5, "NSD": 0.4}, {"Dice": 0.9, "HD95": 10.0, "ASSD": 3.0, "NSD": 0.9}
NUM_CASES_PER_FOLD = 10


def cases(fold):
    return [f"case_{fold}{i}" for i in range(NUM_CASES_PER_FOLD)]


def make_values(rng):
    """{arm: {case: {class: {metric: value}}}}: baseline uniform; MORSE = baseline + SHIFT + noise; seed 1 = the
    arm + small noise; MORSE head off = MORSE - SHIFT / 2. case_03's class b has no Dice in the baseline (NaN)."""
    all_cases = cases(0) + cases(1)
    base = {c: {k: {m: float(rng.uniform(LOW[m], HIGH[m])) for m in SHIFT} for k in CLASSES} for c in all_cases}

    def shifted(values, shift, scale):
        return {c: {k: {m: v + shift[m] + float(rng.normal(0, scale[m])) for m, v in per.items()}
                    for k, per in values[c].items()} for c in values}

    morse = shifted(base, SHIFT, SCALE)
    values = {"base0": base, "base1": shifted(base, {m: 0.0 for m in SHIFT}, {m: s / 2 for m, s in SCALE.items()}),
              "morse0": morse,
              "morse1": shifted(morse, {m: 0.0 for m in SHIFT}, {m: s / 2 for m, s in SCALE.items()}),
              "off0": shifted(morse, {m: -s / 2 for m, s in SHIFT.items()}, {m: s / 4 for m, s in SCALE.items()})}
    values["base0"] = json.loads(json.dumps(base))
    values["base0"]["case_03"]["b"]["Dice"] = None
    return values


def fold_values(values, fold):
    return {c: values[c] for c in cases(fold)}


@pytest.fixture
def ledger(tmp_path):
    """results/ with the test study, every run finished, and RESULTS.md rendered."""
    study = write_study(tmp_path / "results" / "test_study")
    values = make_values(np.random.default_rng(1))
    for fold in (0, 1):
        for seed in (0, 1):
            write_finished_run(study, "nnUNetTrainer", seed, fold, fold_values(values[f"base{seed}"], fold),
                               wall_seconds=600.0 + 60 * fold)
            write_finished_run(study, "nnUNetTrainerMORSE", seed, fold, fold_values(values[f"morse{seed}"], fold),
                               head_off_values=fold_values(values["off0"], fold), wall_seconds=900.0)
    return study, values


def arrays(values, class_name, metric, all_cases):
    """(n,) values, NaN for None; FOREGROUND_MEAN: the per-case mean over the classes with a value."""
    def value(case, k):
        v = values[case][k][metric]
        return np.nan if v is None else v
    if class_name == FOREGROUND_MEAN:
        return np.array([np.nanmean([value(c, k) for k in CLASSES]) for c in all_cases])
    return np.array([value(c, class_name) for c in all_cases])


def test_paired_numbers_match_numpy_and_scipy(ledger):
    study, values = ledger
    all_cases = cases(0) + cases(1)
    paired = compare_arms(load_arm(study, "nnUNetTrainer", 0), load_arm(study, "nnUNetTrainerMORSE", 0), 999)
    assert paired.folds == (0, 1) and paired.num_cases == 20
    p_values = []
    for class_name in (*CLASSES, FOREGROUND_MEAN):
        for metric in SHIFT:
            b = arrays(values["base0"], class_name, metric, all_cases)
            m = arrays(values["morse0"], class_name, metric, all_cases)
            both = np.isfinite(b) & np.isfinite(m)
            d = m[both] - b[both]
            row = paired.row(class_name, metric)
            assert row.difference.count == (19 if (class_name, metric) == ("b", "Dice") else 20)
            assert row.baseline.mean == pytest.approx(np.mean(b[both]))
            assert row.baseline.median == pytest.approx(np.median(b[both]))
            assert row.model.mean == pytest.approx(np.mean(m[both]))
            assert row.model.median == pytest.approx(np.median(m[both]))
            assert row.difference.mean == pytest.approx(np.mean(d))
            assert row.difference.median == pytest.approx(np.median(d))
            interval = bootstrap((d,), np.mean, n_resamples=999, rng=np.random.default_rng(0)).confidence_interval
            assert (row.difference.low, row.difference.high) == pytest.approx((interval.low, interval.high))
            assert row.difference.low < np.mean(d) < row.difference.high
            assert row.difference.p_value == pytest.approx(wilcoxon(d).pvalue)
            p_values.append(row.difference.p_value)
    np.testing.assert_allclose([r.p_adjusted for r in paired.rows], false_discovery_control(p_values))
    for metric in SHIFT:  # both classes are shifted by SHIFT, so their per-case mean is too
        row = paired.row(FOREGROUND_MEAN, metric).difference
        assert row.low < SHIFT[metric] < row.high


def test_foreground_mean_of_a_case_skips_its_missing_class(ledger):
    study, values = ledger
    arm = load_arm(study, "nnUNetTrainer", 0)
    foreground = arm.array(["case_03", "case_04"], FOREGROUND_MEAN, "Dice")
    assert foreground[0] == pytest.approx(values["base0"]["case_03"]["a"]["Dice"])
    assert foreground[1] == pytest.approx(np.mean([values["base0"]["case_04"][k]["Dice"] for k in CLASSES]))


def test_results_md_shows_the_numbers_noise_floor_head_and_figures(ledger, tmp_path):
    study, values = ledger
    output = tmp_path / "RESULTS.md"
    assert render_results(str(tmp_path / "results"), str(output), 999) == ["test_study"]
    text = output.read_text()
    all_cases = cases(0) + cases(1)
    b = arrays(values["base0"], FOREGROUND_MEAN, "Dice", all_cases)
    m = arrays(values["morse0"], FOREGROUND_MEAN, "Dice", all_cases)
    noise = arrays(values["base1"], FOREGROUND_MEAN, "Dice", all_cases) - b
    row = next(line for line in text.splitlines() if line.startswith("| nnUNetTrainerMORSE | Dice |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == f"{np.mean(b):.4f} / {np.median(b):.4f}"
    assert cells[3] == f"{np.mean(m):.4f} / {np.median(m):.4f}"
    assert cells[4] == "20"
    assert cells[5].startswith(f"{np.mean(m - b):+.4f} [")
    assert cells[8].startswith(f"{np.mean(noise):+.4f} [") and cells[8].endswith("(n 20)")
    head = next(line for line in text.split("What the head adds")[1].splitlines()
                if line.startswith("| nnUNetTrainerMORSE | Dice |"))
    off = arrays(values["off0"], FOREGROUND_MEAN, "Dice", all_cases)
    assert f"{np.mean(m - off):+.4f} [" in head
    assert "| nnUNetTrainer | 0 | 0, 1 | 10.5 [10.0, 11.0] | 3 | 0.7000 | +0.1000 |" in text
    assert "**nnUNetTrainer (seed 0) has not levelled off**: its pseudo-Dice (EMA) still rose by +0.1000" in text
    assert "nnUNetTrainerMORSE (seed 0) has not levelled off" not in text
    for name in ("test_study_1_differences.png", "test_study_1_curves.png", "test_study_head_off.png"):
        assert (tmp_path / "results" / "figures" / name).read_bytes()[:4] == b"\x89PNG"
        assert f"](results/figures/{name})" in text


def test_unfinished_folds_make_a_preliminary_comparison(ledger, tmp_path):
    study, _ = ledger
    os.remove(os.path.join(study.folder, "runs", "nnUNetTrainerMORSE", "seed0", "fold_1", "run.json"))
    paired = compare_arms(load_arm(study, "nnUNetTrainer", 0), load_arm(study, "nnUNetTrainerMORSE", 0), 99)
    assert paired.folds == (0,) and paired.num_cases == 10
    render_results(str(tmp_path / "results"), str(tmp_path / "RESULTS.md"), 99)
    assert "10 cases of folds 0 paired with the baseline nnUNetTrainer (seed 0) (**preliminary**" in \
        (tmp_path / "RESULTS.md").read_text()


def test_reports_with_other_conventions_are_not_compared(ledger, tmp_path):
    study, values = ledger
    for fold in (0, 1):
        write_finished_run(study, "nnUNetTrainerMORSE", 0, fold, fold_values(values["morse0"], fold),
                           head_off_values=fold_values(values["off0"], fold), empty_case_rule="both empty: Dice 1")
    render_results(str(tmp_path / "results"), str(tmp_path / "RESULTS.md"), 99)
    text = (tmp_path / "RESULTS.md").read_text()
    assert ("nnUNetTrainerMORSE vs nnUNetTrainer: **not compared**: nnUNetTrainerMORSE seed 0 and nnUNetTrainer "
            "seed 0 were scored with different 'empty_case_rule'") in text
    assert "| nnUNetTrainerMORSE | Dice |" in text.split("What the head adds")[1]


def test_runs_recorded_under_another_schedule_are_refused(ledger, tmp_path):
    study, _ = ledger
    write_study(study.folder, schedule={"epochs": 9, "iterations_per_epoch": 3, "validation_iterations": 1})
    with pytest.raises(SystemExit, match="fold_0/run.json was recorded with another 'schedule' than its study.json"):
        render.main(["-i", str(tmp_path / "results"), "-o", str(tmp_path / "RESULTS.md")])


def test_a_study_without_runs_says_not_yet_run(tmp_path):
    write_study(tmp_path / "results" / "empty_study")
    render_results(str(tmp_path / "results"), str(tmp_path / "RESULTS.md"), 99)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "nnUNetTrainerMORSE vs nnUNetTrainer: not yet run" in text
    assert "| trainings finished | 0 of 8 |" in text


def test_cost_tables_as_ratios(tmp_path):
    folder = tmp_path / "results" / "cost" / "cpu_2d"
    write_json({"kind": "benchmark", "title": "CPU 2d", "arguments": ["--preset", "2d"]}, str(folder / "study.json"))
    rows = [{"trainer": "nnUNetTrainer", "step_s": 2.0, "peak_memory_mb": 1000.0, "saved_for_backward_mb": 500.0,
             "inference_s": 4.0},
            {"trainer": "nnUNetTrainerMORSE", "step_s": 2.2, "peak_memory_mb": 1020.0, "saved_for_backward_mb": 600.0,
             "inference_s": 4.2, "test_points_sweep": [{"num_test_points": 2048, "ratio": 1.06, "head_gflop": 7.5,
                                                        "unet_gflop": 119.2}]}]
    large = [dict(rows[0], step_s=10.0), dict(rows[1], step_s=10.1, test_points_sweep=[])]
    write_json({"headers": {"2d": "2d on CPU", "2d 512x512": "2d 512x512 on CPU"},
                "plans": {"2d": rows, "2d 512x512": large}}, str(folder / "benchmark_2d_cpu.json"))
    write_json({"commands": [{"command": "nnUNetv2_morse_benchmark --preset 2d -device cpu"}],
                "machine": {"platform": "Linux", "cpu_count": 2, "gpu": None}, "recorded": "today",
                "files": ["benchmark_2d_cpu.json"]}, str(folder / "run.json"))
    render_results(str(tmp_path / "results"), str(tmp_path / "RESULTS.md"), 99)
    text = (tmp_path / "RESULTS.md").read_text()
    assert ("2d on CPU\n\n| trainer | step | peak memory | saved for backward | inference / case |\n"
            "| --- | ---: | ---: | ---: | ---: |\n| nnUNetTrainer | 2.000 s | 1000 MiB | 500 MiB | 4.000 s |") in text
    assert "| nnUNetTrainerMORSE | 1.100x | 1.020x | 1.200x | 1.050x |" in text
    assert "nnUNetTrainerMORSE: step time 1.100x, 4.8% over the 1.05x budget" in text
    assert "| nnUNetTrainerMORSE | 2048 | 1.060x | 7.5 / 119.2 (6.3%) |" in text
    assert "2d 512x512 on CPU\n\n| trainer |" in text and "| nnUNetTrainerMORSE | 1.010x | 1.020x | 1.200x |" in text
    assert "tests/test_cuda.py on a CUDA GPU\n\nNot yet run" in text


def test_render_command_refuses_a_folder_without_studies_in_one_line(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    with pytest.raises(SystemExit) as stop:
        render.main(["-i", str(tmp_path / "results")])
    assert str(stop.value) == f"nnUNetv2_morse_results: error: no study.json under {tmp_path / 'results'}: give " \
                              "the ledger folder (-i)"


def test_confidence_interval_is_reproducible_and_handles_degenerate_differences():
    d = np.random.default_rng(0).normal(0.3, 1.0, 40)
    first, second = statistics.mean_confidence_interval(d, 999), statistics.mean_confidence_interval(d, 999)
    assert first == second and first[0] < 0.3 < first[1] and first[2] == "BCa"
    assert statistics.mean_confidence_interval(np.full(5, 0.2), 999) == (0.2, 0.2, "equal")
    assert np.isnan(statistics.mean_confidence_interval(np.array([0.1]), 999)[0])


def test_paired_difference_leaves_missing_values_out_pairwise():
    baseline = np.array([0.5, np.nan, 0.7, 0.8, 0.6])
    model = np.array([0.6, 0.9, np.nan, 0.8, 0.7])
    d = statistics.paired_difference(baseline, model, 99)
    assert (d.count, d.nonzero) == (3, 2)
    assert d.mean == pytest.approx(np.mean([0.1, 0.0, 0.1]))
    zeros = statistics.paired_difference(np.ones(4), np.ones(4), 99)
    assert zeros.p_value == 1.0 and zeros.nonzero == 0
    assert statistics.paired_difference(np.array([np.nan]), np.array([1.0]), 99).count == 0


def test_adjusted_p_values_by_hand_and_nan_kept():
    adjusted = np.array(statistics.adjusted_p_values([0.01, 0.04, np.nan, 0.03, 0.2]))
    np.testing.assert_allclose(adjusted[[0, 1, 3, 4]], [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])
    assert np.isnan(adjusted[2])
