"""Rendering RESULTS.md from a ledger made here with known per-case numbers; the paired statistics themselves."""
import dataclasses
import json
import os
import re

import numpy as np
import pytest
from scipy.stats import bootstrap, false_discovery_control, wilcoxon

from ledger_files import METRICS, study_definition, write_finished_run, write_json, write_study
from nnunetv2_morse import benchmark
from nnunetv2_morse.evaluation import statistics
from nnunetv2_morse.ledger import render, verdict
from nnunetv2_morse.ledger.datasets import resampling_units
from nnunetv2_morse.ledger.definition import DatasetDefinition, StudyError, load_study
from nnunetv2_morse.ledger.records import read_json
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


def arrays(values, class_name, metric, all_cases, other=None):
    """(n,) values, NaN for None; FOREGROUND_MEAN: the per-case mean over the classes with a value in values and in
    other (the other side of the pair; default: values itself)."""
    def value(source, case, k):
        v = source[case][k][metric]
        return np.nan if v is None else v
    if class_name == FOREGROUND_MEAN:
        other = values if other is None else other
        return np.array([np.nanmean([value(values, c, k) for k in CLASSES
                                     if np.isfinite(value(values, c, k)) and np.isfinite(value(other, c, k))])
                         for c in all_cases])
    return np.array([value(values, c, class_name) for c in all_cases])


def test_paired_numbers_match_numpy_and_scipy(ledger):
    study, values = ledger
    all_cases = cases(0) + cases(1)
    paired = compare_arms(load_arm(study, "nnUNetTrainer", 0), load_arm(study, "nnUNetTrainerMORSE", 0), 999)
    assert paired.folds == (0, 1) and paired.num_cases == 20
    p_values = []
    for class_name in (*CLASSES, FOREGROUND_MEAN):
        for metric in SHIFT:
            b = arrays(values["base0"], class_name, metric, all_cases, values["morse0"])
            m = arrays(values["morse0"], class_name, metric, all_cases, values["base0"])
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


def test_foreground_mean_of_a_pair_averages_the_classes_both_sides_scored(ledger):
    """case_03's class b has no Dice in the baseline: both sides' foreground Dice of that case is class a's alone."""
    study, values = ledger
    baseline, model = load_arm(study, "nnUNetTrainer", 0), load_arm(study, "nnUNetTrainerMORSE", 0)
    b, m = render.paired_foreground_means(baseline, model, ["case_03", "case_04"], "Dice")
    assert (b[0], m[0]) == pytest.approx((values["base0"]["case_03"]["a"]["Dice"],
                                          values["morse0"]["case_03"]["a"]["Dice"]))
    assert m[1] == pytest.approx(np.mean([values["morse0"]["case_04"][k]["Dice"] for k in CLASSES]))
    row = compare_arms(baseline, model, 999).row(FOREGROUND_MEAN, "Dice")
    all_cases = cases(0) + cases(1)
    assert row.model.mean == pytest.approx(np.mean(arrays(values["morse0"], FOREGROUND_MEAN, "Dice", all_cases,
                                                          values["base0"])))


def test_a_false_positive_in_a_class_the_reference_lacks_counts_under_empty_nan(tmp_path):
    """--empty nan leaves a class undefined where reference and prediction lack it: a model that predicts it anyway
    (Dice 0, HD95 the diagonal) is paired with the baseline's correct absence (Dice 1, HD95 0), not left out;
    a class that both sides correctly leave out stays out."""
    study = write_study(tmp_path / "results" / "nan_study")
    scores = {"Dice": 0.8, "HD95": 2.0, "ASSD": 1.0, "NSD": 0.9}
    absent = {m: None for m in scores}
    wrong = {"Dice": 0.0, "HD95": 100.0, "ASSD": 100.0, "NSD": 0.0}
    baseline = {f"case_{i}": {"a": scores, "b": absent} for i in range(12)}
    model = {f"case_{i}": {"a": scores, "b": wrong if i < 6 else absent} for i in range(12)}
    for trainer, values in (("nnUNetTrainer", baseline), ("nnUNetTrainerMORSE", model)):
        write_finished_run(study, trainer, 0, 0, values, empty_convention="nan")
    paired = compare_arms(load_arm(study, "nnUNetTrainer", 0), load_arm(study, "nnUNetTrainerMORSE", 0), 999)
    dice_b, hd95_b = paired.row("b", "Dice").difference, paired.row("b", "HD95").difference
    assert (dice_b.count, dice_b.mean, hd95_b.mean) == (6, -1.0, 100.0)
    foreground = paired.row(FOREGROUND_MEAN, "Dice").difference
    assert foreground.count == 12 and foreground.mean == pytest.approx(6 * (0.4 - 0.9) / 12)  # b: 1 -> 0


def test_missed_and_false_positive_classes_are_counted_per_side_beside_the_scoring(tmp_path, monkeypatch):
    """A class missed, or predicted where the reference has none, scores the image diagonal in HD95 and ASSD and
    moves their means by millimetres: RESULTS.md and the verdict count those class-case pairs per side, and the
    study's scoring row gives the diagonal and the NSD tolerance, here below the voxel spacing."""
    comparison = dict(study_definition()["comparisons"][0], verdict=True)
    study = write_study(tmp_path / "results" / "failures", comparisons=[comparison])
    scored = {"Dice": 0.8, "HD95": 2.0, "ASSD": 1.0, "NSD": 0.9, "n_ref": 50, "n_pred": 52}
    missed = {"Dice": 0.0, "HD95": 50.0, "ASSD": 50.0, "NSD": 0.0, "n_ref": 50, "n_pred": 0}
    spurious = {"Dice": 0.0, "HD95": 50.0, "ASSD": 50.0, "NSD": 0.0, "n_ref": 0, "n_pred": 5}
    absent = {"Dice": None, "HD95": None, "ASSD": None, "NSD": None, "n_ref": 0, "n_pred": 0}
    baseline = {f"case_{i}": {"a": missed if i < 3 else scored, "b": spurious if i == 0 else absent}
                for i in range(12)}
    model = {f"case_{i}": {"a": scored, "b": absent} for i in range(12)}
    for trainer, seed, values in (("nnUNetTrainer", 0, baseline), ("nnUNetTrainerMORSE", 0, model),
                                  ("nnUNetTrainer", 1, model)):
        write_finished_run(study, trainer, seed, 0, values, head_off_values=values, empty_convention="nan",
                           geometry=((15, 20), (2.0, 2.0)))
    write_readme(tmp_path / "README.md")
    monkeypatch.chdir(tmp_path)
    render_main()
    text = (tmp_path / "RESULTS.md").read_text()
    assert ("| scoring | NSD tolerance 1 mm (below the voxel spacing: NSD counts the boundary voxels that lie on the "
            "other boundary); voxel spacing 2 x 2 mm; image diagonal 50.0 mm (the HD95 and ASSD of a class missed or "
            "predicted where absent) |") in text
    failures = ("class-case pairs with the class missed or predicted where absent: 4 of nnUNetTrainer seed 0, 0 of "
                "nnUNetTrainerMORSE seed 0")
    assert (f"  - {failures} (12 cases)\n  - seed to seed: 4 of nnUNetTrainer seed 0, 0 of nnUNetTrainer seed 1 "
            "(12 cases)\n") in text
    assert f"12 paired cases ({failures})" in block_of(tmp_path / "README.md")


def test_results_md_shows_the_numbers_noise_floor_head_and_figures(ledger, tmp_path):
    study, values = ledger
    output = tmp_path / "RESULTS.md"
    assert render_results(str(tmp_path / "results"), str(output), 999) == ["test_study"]
    text = output.read_text()
    all_cases = cases(0) + cases(1)
    b = arrays(values["base0"], FOREGROUND_MEAN, "Dice", all_cases, values["morse0"])
    m = arrays(values["morse0"], FOREGROUND_MEAN, "Dice", all_cases, values["base0"])
    noise = (arrays(values["base1"], FOREGROUND_MEAN, "Dice", all_cases, values["base0"])
             - arrays(values["base0"], FOREGROUND_MEAN, "Dice", all_cases, values["base1"]))
    row = next(line for line in text.splitlines() if line.startswith("| nnUNetTrainerMORSE | Dice |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == f"{np.mean(b):.4f} / {np.median(b):.4f}"
    assert cells[3] == f"{np.mean(m):.4f} / {np.median(m):.4f}"
    assert cells[4] == "20"
    assert cells[5].startswith(f"{np.mean(m - b):+.4f} [")
    assert cells[8].startswith(f"{np.mean(noise):+.4f} [") and cells[8].endswith("(n 20)")
    head = next(line for line in text.split("What the head adds")[1].splitlines()
                if line.startswith("| nnUNetTrainerMORSE | Dice |"))
    difference = foreground_difference(values, "morse0", "off0", "Dice")
    assert f"{np.mean(difference):+.4f} [" in head
    assert "| nnUNetTrainer | 0 | 0, 1 | 10.5 [10.0, 11.0] | 24.0 | 3 | 0.7000 | +0.1000 |" in text
    assert "**nnUNetTrainer (seed 0) has not levelled off**: its pseudo-Dice (EMA) still rose by +0.1000" in text
    for name in ("test_study_1_differences.png", "test_study_1_curves.png", "test_study_head_off.png"):
        assert (tmp_path / "results" / "figures" / name).read_bytes()[:4] == b"\x89PNG"
        assert f"](results/figures/{name})" in text


def test_slices_of_one_volume_are_resampled_and_ranked_by_validation_slab(tmp_path, monkeypatch):
    """A Colin27 study of 20 slices, validation slabs of 2 over 2 folds: both slices of a slab differ by the same
    amount, so the comparison has 10 independent differences, not 20: its interval and p are those of the 10 slabs'
    differences, its tables and verdict say '20 in 10 slabs'; counted as 20 cases, the interval would be narrower."""
    dataset = {"builder": "colin27", "id": 620, "arguments": {"mode": "2d", "validation_slab": 2}}
    study = write_study(tmp_path / "results" / "slab_study", dataset=dataset, trainers={"nnUNetTrainer": [0],
                        "nnUNetTrainerMORSE": [0]}, head_off=[],
                        comparisons=[dict(study_definition()["comparisons"][0], verdict=True)])
    case_ids = [f"colin27_z{z:03d}" for z in range(40, 60)]
    slab_shift = np.random.default_rng(5).normal(0.02, 0.03, 10)
    for fold in (0, 1):
        slabs = [i for i in range(10) if i % 2 == fold]
        base = {case_ids[2 * i + k]: {"a": {m: 0.5 for m in METRICS}} for i in slabs for k in (0, 1)}
        morse = {case_ids[2 * i + k]: {"a": {m: 0.5 + slab_shift[i] for m in METRICS}} for i in slabs for k in (0, 1)}
        write_finished_run(study, "nnUNetTrainer", 0, fold, base)
        write_finished_run(study, "nnUNetTrainerMORSE", 0, fold, morse)
    paired = compare_arms(load_arm(study, "nnUNetTrainer", 0), load_arm(study, "nnUNetTrainerMORSE", 0), 999,
                          study.dataset)
    assert (paired.num_cases, paired.num_units, paired.unit_name) == (20, 10, "slab")
    d = paired.row(FOREGROUND_MEAN, "Dice").difference
    in_order = slab_shift[[0, 2, 4, 6, 8, 1, 3, 5, 7, 9]]  # fold 0's slabs first, as the arms list the cases
    interval = bootstrap((in_order,), np.mean, n_resamples=999, rng=np.random.default_rng(0)).confidence_interval
    assert (d.count, d.units, d.low, d.high) == (20, 10, pytest.approx(interval.low), pytest.approx(interval.high))
    assert d.p_value == pytest.approx(wilcoxon(in_order).pvalue)
    naive = compare_arms(load_arm(study, "nnUNetTrainer", 0), load_arm(study, "nnUNetTrainerMORSE", 0), 999)
    assert naive.num_units == 20 and naive.unit_name is None
    assert naive.row(FOREGROUND_MEAN, "Dice").difference.high - naive.row(FOREGROUND_MEAN, "Dice").difference.low \
        < 0.8 * (d.high - d.low)
    write_readme(tmp_path / "README.md")
    monkeypatch.chdir(tmp_path)
    render_main()
    row = next(line for line in (tmp_path / "RESULTS.md").read_text().splitlines()
               if line.startswith("| nnUNetTrainerMORSE | Dice |"))
    assert "| 20 in 10 slabs |" in row
    assert "2 of 2 folds finished, 20 paired cases in 10 slabs" in block_of(tmp_path / "README.md")


def test_nnunetv2_morse_compare_gives_results_md_numbers_from_the_pooled_reports_and_slabs(tmp_path):
    """RESULTS.md's pairing and statistics are nnUNetv2_morse_compare's: the folds' --empty nan reports pooled, with
    the validation slabs as --groups, give each row's n, means, interval and p, classes undefined on one side and on
    both sides included."""
    from nnunetv2_morse.evaluation.compare import compare_reports

    dataset = {"builder": "colin27", "id": 620, "arguments": {"mode": "2d", "validation_slab": 2}}
    study = write_study(tmp_path / "results" / "nan_slabs", dataset=dataset, head_off=[],
                        trainers={"nnUNetTrainer": [0], "nnUNetTrainerMORSE": [0]})
    rng = np.random.default_rng(11)
    case_ids = [f"colin27_z{z:03d}" for z in range(40, 60)]
    absent = dict.fromkeys(METRICS)
    pooled, reports = {"nnUNetTrainer": [], "nnUNetTrainerMORSE": []}, {}
    for fold in (0, 1):
        fold_cases = [case_ids[2 * i + k] for i in range(10) if i % 2 == fold for k in (0, 1)]
        for trainer in pooled:
            values = {}
            absent_in = (0, 1) if trainer == "nnUNetTrainer" else (1, 2)  # b: both sides lack it in 1 case of 5
            for case in fold_cases:
                b = {m: float(rng.uniform(LOW[m], HIGH[m])) for m in METRICS}
                values[case] = {"a": {m: float(rng.uniform(LOW[m], HIGH[m])) for m in METRICS},
                                "b": absent if case_ids.index(case) % 5 in absent_in else b}
            write_finished_run(study, trainer, 0, fold, values, empty_convention="nan")
            reports[trainer] = read_json(os.path.join(study.folder, "runs", trainer, "seed0", f"fold_{fold}",
                                                      "metrics.json"))
            pooled[trainer] += [{**entry, "metrics": {k: {**v, "IoU": v["Dice"]} for k, v in entry["metrics"].items()}}
                                for entry in reports[trainer]["metric_per_case"]]
    reports = [{**reports[trainer], "metric_per_case": pooled[trainer]} for trainer in pooled]
    case_folds = {entry["case"]: fold for fold in (0, 1)
                  for entry in read_json(os.path.join(study.folder, "runs", "nnUNetTrainer", "seed0", f"fold_{fold}",
                                                      "metrics.json"))["metric_per_case"]}
    _, slabs = resampling_units(study.dataset, case_folds)
    comparison = compare_reports(reports, ["base", "morse"], ["base.json", "morse.json"],
                                 {case: str(slab) for case, slab in slabs.items()})
    paired = compare_arms(load_arm(study, "nnUNetTrainer", 0), load_arm(study, "nnUNetTrainerMORSE", 0),
                          statistics.BOOTSTRAP_RESAMPLES, study.dataset)
    assert paired.row("b", "Dice").difference.count == 16  # 4 undefined on both sides, 8 on one
    for class_name in ("a", "b", FOREGROUND_MEAN):
        for metric in METRICS:
            row, compared = paired.row(class_name, metric), comparison["comparisons"]["morse"][class_name][metric]
            assert (compared["n"], compared["num_units"]) == (row.difference.count, row.difference.units)
            assert (compared["baseline_mean"], compared["model_mean"]) == pytest.approx((row.baseline.mean,
                                                                                         row.model.mean))
            assert compared["mean_difference"] == pytest.approx(row.difference.mean)
            assert compared["mean_difference_ci"] == pytest.approx([row.difference.low, row.difference.high])
            assert compared["p_value"] == pytest.approx(row.difference.p_value)


@pytest.mark.parametrize("builder, arguments", [("synthetic", {"dim": 2}), ("boundary", {"dim": 3}),
                                                ("colin27", {"mode": "2d"}), ("colin27", {"validation_slab": 0})])
def test_cases_are_their_own_units_unless_they_are_slices_dealt_in_validation_slabs(builder, arguments):
    case_folds = {f"colin27_z{z:03d}": z % 5 for z in range(40, 60)}
    assert resampling_units(DatasetDefinition(builder, 620, json.dumps(arguments)), case_folds) is None
    slabs = resampling_units(DatasetDefinition("colin27", 620, json.dumps({"validation_slab": 1})), case_folds)
    assert slabs == ("slab", {c: z - 40 for z, c in zip(range(40, 60), case_folds)})


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


def test_sides_that_validated_a_case_in_different_folds_are_not_compared(ledger):
    study, _ = ledger
    baseline = load_arm(study, "nnUNetTrainer", 0)
    swapped = {c: 1 - f for c, f in baseline.case_folds.items()}
    model = dataclasses.replace(baseline, label="swapped", case_folds=swapped)
    with pytest.raises(render.ComparisonRefused, match="swapped and nnUNetTrainer seed 0 validate case_00 in "
                                                       "different folds \\(1 and 0\\): their splits differ"):
        compare_arms(baseline, model, 99)


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
    plan = {"patch_size": [256, 256], "batch_size": 2, "flops": None, "test_points_sweep": []}
    rows = [dict(plan, trainer="nnUNetTrainer", step_s=2.0, peak_memory_mb=1000.0, saved_for_backward_mb=500.0,
                 inference_s=4.0),
            dict(plan, trainer="nnUNetTrainerMORSE", step_s=2.2, peak_memory_mb=1020.0, saved_for_backward_mb=600.0,
                 inference_s=4.2, test_points_sweep=[{"num_test_points": 2048, "ratio": 1.06, "head_gflop": 7.5,
                                                      "unet_gflop": 119.2, "coarse_s": 1.0, "refined_s": 1.06}])]
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


def test_machines_are_named_with_their_cpu_model_and_torch_cpu_capability_where_recorded():
    """Runs on two machines with one platform string but other vector instructions differ bit for bit: the
    machines row tells them apart where the records say; older records give what they have."""
    old = {"platform": "Linux-6.18", "processor": "x86_64", "cpu_count": 2, "gpu": None}
    assert render.machine_text(old) == "Linux-6.18, 2 CPUs"
    new = dict(old, cpu="AMD EPYC", torch_cpu_capability="AVX512", gpu="NVIDIA H100")
    assert render.machine_text(new) == "Linux-6.18, AMD EPYC (AVX512), 2 CPUs, NVIDIA H100"


def test_render_command_refuses_a_folder_without_studies_in_one_line(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    with pytest.raises(SystemExit) as stop:
        render.main(["-i", str(tmp_path / "results")])
    assert str(stop.value) == f"nnUNetv2_morse_results: error: no study.json under {tmp_path / 'results'}: give " \
                              "the ledger folder (-i)"


def test_render_command_refuses_fewer_than_one_resample(tmp_path, capsys):
    with pytest.raises(SystemExit):
        render.main(["-i", str(tmp_path), "--resamples", "0"])
    assert "nnUNetv2_morse_results: error: argument --resamples: give an integer >= 1, got '0'" in \
        capsys.readouterr().err


def test_confidence_interval_is_reproducible_and_handles_degenerate_differences():
    d = np.random.default_rng(0).normal(0.3, 1.0, 40)
    first, second = statistics.mean_confidence_interval(d, 999), statistics.mean_confidence_interval(d, 999)
    assert first == second and first[0] < 0.3 < first[1] and first[2] == "BCa"
    assert statistics.mean_confidence_interval(np.full(10, 0.2), 999) == (0.2, 0.2, "equal")
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


README_BEFORE = ("# Project\r\n\nKept byte for byte, CRLF and all.\r\n\n## Quality and cost\n\n"
                 "Rendered from the ledger:\n\n")
README_AFTER = "\n\n## Next section\n\nKept too.\n"


def write_readme(path):
    with open(path, "w", newline="") as f:
        f.write(README_BEFORE + verdict.BEGIN + "\nMORSE is 5.0% better (typed by hand)\n" + verdict.END + README_AFTER)


def block_of(readme_path):
    with open(readme_path, newline="") as f:
        text = f.read()
    return text.split(verdict.BEGIN)[1].split(verdict.END)[0]


def metric_line(block, metric):
    return next(line for line in block.splitlines() if line.startswith(f"  - {metric}"))


def foreground_difference(values, model, baseline, metric, folds=(0, 1)):
    """(n,) per-case model - baseline foreground means over the classes both scored, cases of folds."""
    all_cases = [c for fold in folds for c in cases(fold)]
    return (arrays(values[model], FOREGROUND_MEAN, metric, all_cases, values[baseline])
            - arrays(values[baseline], FOREGROUND_MEAN, metric, all_cases, values[model]))


@pytest.fixture
def headline(ledger, tmp_path, monkeypatch):
    """The ledger with its comparison marked as a headline, and a README with the verdict markers; cwd tmp_path."""
    study, values = ledger
    comparison = dict(study_definition()["comparisons"][0], verdict=True)
    study = write_study(study.folder, comparisons=[comparison])
    write_readme(tmp_path / "README.md")
    monkeypatch.chdir(tmp_path)
    return study, values


def render_main(*options):
    render.main(["-i", "results", "--resamples", "999", *options])


def test_verdict_shows_the_paired_rows_numbers_the_noise_floor_and_words(headline, tmp_path):
    study, values = headline
    render_main()
    block = block_of(tmp_path / "README.md")
    assert block.lstrip().startswith(
        "**In short**, the headline comparisons' foreground means, each detailed below:\n\n")
    paired = compare_arms(load_arm(study, "nnUNetTrainer", 0), load_arm(study, "nnUNetTrainerMORSE", 0), 999)
    assert ("- [MORSE vs nnU-Net](RESULTS.md#morse-vs-nnu-net) (`test_study`), nnUNetTrainerMORSE − nnUNetTrainer: "
            "2 of 2 folds finished, 20 paired cases") in block
    assert "### MORSE vs nnU-Net\n" in (tmp_path / "RESULTS.md").read_text()
    for metric in SHIFT:
        digits = 2 if metric in ("HD95", "ASSD") else 4
        row = paired.row(FOREGROUND_MEAN, metric)
        difference = foreground_difference(values, "morse0", "base0", metric)
        floor = max(abs(np.mean(foreground_difference(values, f"{arm}1", f"{arm}0", metric)))
                    for arm in ("base", "morse"))
        assert row.difference.mean == pytest.approx(np.mean(difference))
        assert metric_line(block, metric).endswith(
            f": {np.mean(difference):+.{digits}f} [{row.difference.low:+.{digits}f}, {row.difference.high:+.{digits}f}]"
            f", p (BH) {row.p_adjusted:.3g}, noise floor {floor:.{digits}f}: **better**")
    assert ("\n- nnUNetTrainerMORSE − nnUNetTrainer (`test_study`): better in Dice, HD95, ASSD and NSD; nnUNetTrainer "
            "has not levelled off; nnUNetTrainerMORSE has not levelled off.\n"
            "- nnUNetTrainerMORSE head on − head off (`test_study`): better in Dice, HD95, ASSD and NSD.\n\n**Quality**"
            in block)
    assert block.rstrip().endswith("[RESULTS.md](RESULTS.md).")
    assert "**Cost**" in block and '- none: mark one with `"verdict": true`' in block.split("**Cost**")[1]


def test_verdict_shows_what_the_head_adds_for_a_headline_model_scored_with_its_head_off(headline, tmp_path):
    """MORSE head off lies SHIFT / 2 below MORSE: head on - head off is significant, and judged without a noise
    floor (the same models on both sides)."""
    study, values = headline
    render_main()
    block = block_of(tmp_path / "README.md")
    head_part = block.split("nnUNetTrainerMORSE head on − head off: ")[1]
    assert head_part.startswith("2 of 2 folds finished, 20 paired cases:\n")
    assert ("[What the head adds at inference: head on vs head off (N_test 0, the coarse U-Net output)]"
            "(RESULTS.md#what-the-head-adds-at-inference-head-on-vs-head-off-n_test-0-the-coarse-u-net-output-seed-0) "
            "(`test_study`), nnUNetTrainerMORSE head on − head off") in block
    paired = compare_arms(load_arm(study, "nnUNetTrainerMORSE", 0, head_off=True),
                          load_arm(study, "nnUNetTrainerMORSE", 0), 999)
    for metric in SHIFT:
        digits = 2 if metric in ("HD95", "ASSD") else 4
        row = paired.row(FOREGROUND_MEAN, metric)
        assert row.difference.mean == pytest.approx(np.mean(foreground_difference(values, "morse0", "off0", metric)))
        assert metric_line(head_part, metric).endswith(
            f": {row.difference.mean:+.{digits}f} [{row.difference.low:+.{digits}f}, {row.difference.high:+.{digits}f}]"
            f", p (BH) {row.p_adjusted:.3g}: **better**")
    write_study(study.folder, comparisons=[dict(study_definition()["comparisons"][0], verdict=True)], head_off=[])
    render_main()
    assert "head on − head off" not in block_of(tmp_path / "README.md").split("**Quality**")[1].split("\n\n", 1)[1]
    for fold in (0, 1):
        os.remove(os.path.join(study.folder, "runs", "nnUNetTrainerMORSE", "seed0", f"fold_{fold}", "run.json"))
    write_study(study.folder, comparisons=[dict(study_definition()["comparisons"][0], verdict=True)])
    render_main()
    assert ("nnUNetTrainerMORSE head on − head off: not yet run (no finished fold of nnUNetTrainerMORSE at seed 0)."
            in block_of(tmp_path / "README.md"))


def test_a_finished_run_without_one_of_its_files_is_refused_in_one_line(headline, tmp_path):
    study, _ = headline
    folder = os.path.join(study.folder, "runs", "nnUNetTrainerMORSE", "seed0", "fold_1")
    os.remove(os.path.join(folder, render.HEAD_OFF_FILE))
    with pytest.raises(SystemExit, match="results/test_study/runs/nnUNetTrainerMORSE/seed0/fold_1 has its run.json but "
                                         "no metrics_head_off.json: run nnUNetv2_morse_study results/test_study "):
        render_main()
    write_study(study.folder, comparisons=[dict(study_definition()["comparisons"][0], verdict=True)], head_off=[])
    render_main()
    assert "head on − head off" not in block_of(tmp_path / "README.md").split("**Quality**")[1].split("\n\n", 1)[1]


def rising_ema(rise):
    """10 epochs whose EMA pseudo-Dice changes by rise over the last 20% (epochs 7 to 9)."""
    return [0.5] * 7 + [0.6, 0.6 + rise / 2, 0.6 + rise]


@pytest.mark.parametrize("rises, caveat", [
    ({"nnUNetTrainer": (0.005, 0.005), "nnUNetTrainerMORSE": (0.03, 0.01)},
     "; nnUNetTrainerMORSE has not levelled off (EMA +0.0200 over the last 20% of epochs)"),
    ({"nnUNetTrainer": (0.02, 0.04), "nnUNetTrainerMORSE": (0.01, 0.0)},
     "; nnUNetTrainer has not levelled off (EMA +0.0300 over the last 20% of epochs)"),
    ({"nnUNetTrainer": (0.02, 0.04), "nnUNetTrainerMORSE": (0.03, 0.01)},
     "; nnUNetTrainer has not levelled off (EMA +0.0300 over the last 20% of epochs); nnUNetTrainerMORSE has not "
     "levelled off (EMA +0.0200 over the last 20% of epochs)"),
    ({"nnUNetTrainer": (0.01, 0.0), "nnUNetTrainerMORSE": (-0.05, 0.0)}, ""),
], ids=["model", "baseline", "both", "neither"])
def test_runs_table_and_verdict_name_the_side_of_a_comparison_that_has_not_levelled_off(headline, tmp_path, rises,
                                                                                        caveat):
    """rises: each trainer's EMA change over the last 20% of epochs at seed 0, per fold (the mean over the folds
    counts: above 0.01 has not levelled off)."""
    study, values = headline
    for trainer, arm in (("nnUNetTrainer", "base0"), ("nnUNetTrainerMORSE", "morse0")):
        for fold, rise in enumerate(rises[trainer]):
            write_finished_run(study, trainer, 0, fold, fold_values(values[arm], fold),
                               head_off_values=fold_values(values["off0"], fold), ema=rising_ema(rise))
        assert renderer_ema_change(study, trainer, 0) == pytest.approx(np.mean(rises[trainer]))
    render_main()
    text = (tmp_path / "RESULTS.md").read_text()
    for trainer, trainer_rises in rises.items():
        warning = (f"**{trainer} (seed 0) has not levelled off**: its pseudo-Dice (EMA) still rose by "
                   f"{np.mean(trainer_rises):+.4f} over the last 20% of epochs (more than 0.01)")
        assert (warning in text) == (np.mean(trainer_rises) > 0.01), trainer
        assert f"**{trainer} (seed 1) has not levelled off**: its pseudo-Dice (EMA) still rose by +0.1000" in text
    assert ("- [MORSE vs nnU-Net](RESULTS.md#morse-vs-nnu-net) (`test_study`), nnUNetTrainerMORSE − nnUNetTrainer: "
            f"2 of 2 folds finished, 20 paired cases{caveat}:\n") in block_of(tmp_path / "README.md")


def test_the_verdict_judges_levelling_off_on_the_folds_it_compares(headline, tmp_path):
    """The baseline's fold 1 still rose by 0.05, but the model has finished fold 0 only: the comparison, and so its
    caveat, is over fold 0, where the baseline had levelled off."""
    study, values = headline
    for fold, rise in enumerate((0.0, 0.05)):
        write_finished_run(study, "nnUNetTrainer", 0, fold, fold_values(values["base0"], fold), ema=rising_ema(rise))
    write_finished_run(study, "nnUNetTrainerMORSE", 0, 0, fold_values(values["morse0"], 0),
                       head_off_values=fold_values(values["off0"], 0), ema=rising_ema(0.0))
    os.remove(os.path.join(study.folder, "runs", "nnUNetTrainerMORSE", "seed0", "fold_1", "run.json"))
    render_main()
    assert ("nnUNetTrainerMORSE − nnUNetTrainer: 1 of 2 folds finished (**preliminary**), 10 paired cases:\n"
            in block_of(tmp_path / "README.md"))


def test_the_median_epoch_time_is_not_moved_by_a_paused_training(ledger, tmp_path):
    """Fold 1 of MORSE seed 1 was paused for 25 minutes in its second epoch: its wall time shows it, the median
    epoch does not."""
    study, values = ledger
    write_finished_run(study, "nnUNetTrainerMORSE", 1, 0, fold_values(values["morse1"], 0), wall_seconds=300.0,
                       epoch_seconds=(30.0, 31.0, 33.0))
    write_finished_run(study, "nnUNetTrainerMORSE", 1, 1, fold_values(values["morse1"], 1), wall_seconds=1800.0,
                       epoch_seconds=(32.0, 1530.0, 34.0))
    render_results(str(tmp_path / "results"), str(tmp_path / "RESULTS.md"), 99)
    assert "| nnUNetTrainerMORSE | 1 | 0, 1 | 17.5 [5.0, 30.0] | 32.5 | 3 |" in (tmp_path / "RESULTS.md").read_text()
    curves = render.finished_curves(study, "nnUNetTrainerMORSE", 1)
    assert render.median_epoch_seconds(curves) == pytest.approx(np.median([30, 31, 33, 32, 1530, 34]))
    assert render.median_epoch_seconds({0: {"ema_fg_dice": [0.5]}}) is None


def test_a_run_without_a_known_wall_time_is_left_out_of_the_wall_time_range(ledger, tmp_path):
    study, values = ledger
    write_finished_run(study, "nnUNetTrainerMORSE", 1, 0, fold_values(values["morse1"], 0), wall_seconds=300.0)
    write_finished_run(study, "nnUNetTrainerMORSE", 1, 1, fold_values(values["morse1"], 1), wall_seconds=None)
    render_results(str(tmp_path / "results"), str(tmp_path / "RESULTS.md"), 99)
    assert "| nnUNetTrainerMORSE | 1 | 0, 1 | 5.0 [5.0, 5.0] |" in (tmp_path / "RESULTS.md").read_text()


def test_rendering_the_results_and_the_verdict_reads_each_run_file_once(headline, tmp_path, monkeypatch):
    benchmark_study(tmp_path / "results" / "cost" / "cpu", {"2d": {"nnUNetTrainer": (2.0, 1000.0, 4.0),
                                                                   "nnUNetTrainerMORSE": (2.1, 1010.0, 4.4)}})
    reads = []

    def counted(path):
        reads.append(os.path.abspath(path))
        return read_json(path)
    monkeypatch.setattr(render, "read_json", counted)
    render_main()
    runs = [path for path in reads if f"{os.sep}runs{os.sep}" in path]
    assert len(runs) == len(set(runs))
    cost = [path for path in reads if f"{os.sep}cost{os.sep}" in path]
    assert sorted(os.path.basename(path) for path in cost) == ["benchmark_2d_cpu.json", "run.json"]
    assert {os.path.basename(path) for path in runs} == {"run.json", "curves.json", "metrics.json",
                                                         "metrics_head_off.json"}
    in_short = block_of(tmp_path / "README.md").split("**Quality**")[0]
    assert in_short.lstrip().startswith(
        "**In short**, the headline comparisons' foreground means and the default's cost, each detailed below:\n\n")
    assert ("- nnUNetTrainerMORSE's cost on the CPU, as a ratio to nnUNetTrainer's: step 1.050x, peak memory 1.010x, "
            "inference 1.100x over 1 plan in 1 benchmark.\n") in in_short


@pytest.mark.parametrize("metric", ["Dice", "HD95"])
def test_a_mean_shift_against_the_signed_ranks_is_mixed_not_better_or_worse(metric):
    """50 cases a little worse and 10 much better: the mean and its interval are positive, the Wilcoxon ranks
    point down, and p is small; neither 'better' nor 'worse' may be printed."""
    rng = np.random.default_rng(0)
    differences = np.concatenate([-0.01 - 0.001 * rng.random(50), 1.0 + 0.1 * rng.random(10)])
    d = statistics.paired_difference(np.zeros(60), differences, 999)
    assert d.low > 0 and d.p_value < 0.05 and d.rank_sign == -1
    assert wilcoxon(differences, alternative="less").pvalue < 0.05
    row = render.Row(FOREGROUND_MEAN, metric, None, None, d, d.p_value)
    assert verdict.significance_word(metric, row) == verdict.MIXED
    assert verdict.verdict_word(metric, row, 0.0) == verdict.MIXED


def test_significant_ranks_without_an_interval_do_not_claim_one():
    difference = statistics.PairedDifference(20, 20, 20, 0.01, 0.01, np.nan, np.nan, 0.001, "none", "", 1)
    row = render.Row(FOREGROUND_MEAN, "Dice", None, None, difference, 0.001)
    assert verdict.significance_word("Dice", row) == "better by the signed ranks only: the mean has no interval"


def test_significant_ranks_against_a_mean_whose_interval_includes_0_are_mixed_not_no_significant_difference():
    """Most cases a little worse, one much better: the mean favours the model but its interval includes 0, while
    the Wilcoxon ranks find it worse (p < 0.05), as study 2's ASSD did; this once printed 'no significant
    difference' beside p (BH) 0.02."""
    differences = np.concatenate([np.full(40, 0.02) + 0.001 * np.arange(40), [-30.0]])
    d = statistics.paired_difference(np.zeros(41), differences, 999)
    assert d.low < 0 < d.high and d.mean < 0 and d.rank_sign == 1 and d.p_value < 0.05
    row = render.Row(FOREGROUND_MEAN, "ASSD", None, None, d, d.p_value)
    assert verdict.significance_word("ASSD", row) == verdict.MIXED


@pytest.mark.parametrize("metric, value, shown", [("Dice", -4.7e-05, "-4.7e-05"), ("HD95", 0.0031, "+3.1e-03"),
                                                  ("Dice", 0.0, "+0.0000"), ("Dice", 0.01234, "+0.0123"),
                                                  ("ASSD", -0.004, "-4.0e-03"), ("ASSD", -0.006, "-0.01")])
def test_a_signed_number_that_would_read_as_zero_keeps_its_sign_and_digits(metric, value, shown):
    """An interval bound printed -0.0000 would hide on which side of 0 it lies."""
    assert render._number(metric, value, signed=True) == shown


@pytest.mark.parametrize("differences, sign", [([1.0, 2.0, -0.5], 1), ([-3.0, -0.5, 1.0], -1),
                                               ([-3.0, 1.0, 2.0], 0), ([0.0, 0.0], 0), ([1.0, -1.0, 0.0], 0)])
def test_signed_rank_direction(differences, sign):
    assert statistics.signed_rank_direction(np.array(differences)) == sign


def renderer_ema_change(study, trainer, seed):
    return render.StudyRenderer(study, "figures", ".", 99).ema_change(trainer, seed)


def test_ema_change_is_none_without_a_finished_curve(ledger):
    study, values = ledger
    for fold in (0, 1):
        write_finished_run(study, "nnUNetTrainerMORSE", 1, fold, fold_values(values["morse1"], fold), ema=())
    assert renderer_ema_change(study, "nnUNetTrainerMORSE", 1) is None
    os.remove(os.path.join(study.folder, "runs", "nnUNetTrainer", "seed1", "fold_0", "run.json"))
    assert renderer_ema_change(study, "nnUNetTrainer", 1) == pytest.approx(0.1)
    os.remove(os.path.join(study.folder, "runs", "nnUNetTrainer", "seed1", "fold_1", "run.json"))
    assert renderer_ema_change(study, "nnUNetTrainer", 1) is None


@pytest.mark.parametrize("metric, low, high, p_adjusted, floor, word", [
    ("Dice", 0.01, 0.03, 0.01, 0.005, "better"),
    ("NSD", -0.03, -0.01, 0.01, 0.005, "worse"),
    ("HD95", 0.01, 0.03, 0.01, 0.005, "worse"),
    ("ASSD", -0.03, -0.01, 0.049, 0.005, "better"),
    ("Dice", 0.01, 0.03, 0.05, 0.005, "no significant difference"),
    ("Dice", -0.01, 0.03, 0.001, 0.005, "better by the signed ranks only: the mean's interval includes 0"),
    ("HD95", -0.01, 0.03, 0.001, None, "worse by the signed ranks only: the mean's interval includes 0, noise "
                                       "floor not yet measured"),
    ("Dice", -0.01, 0.03, 0.001, 0.02, "within the seed-to-seed noise"),
    ("Dice", 0.01, 0.03, 0.01, 0.02, "within the seed-to-seed noise"),
    ("HD95", -0.03, -0.01, 0.01, 0.03, "within the seed-to-seed noise"),
    ("Dice", 0.01, 0.03, 0.01, None, "better, noise floor not yet measured"),
    ("Dice", 0.01, 0.03, 0.2, None, "no significant difference"),
])
def test_verdict_word(metric, low, high, p_adjusted, floor, word):
    """The signed ranks point the way of the mean here; where they point against it, see the tests of MIXED."""
    mean = (low + high) / 2
    difference = statistics.PairedDifference(20, 20, 20, mean, mean, low, high, p_adjusted, "BCa", "", int(np.sign(mean)))
    assert verdict.verdict_word(metric, render.Row(FOREGROUND_MEAN, metric, None, None, difference, p_adjusted),
                                floor) == word


def test_a_noise_floor_from_fewer_folds_than_its_comparison_says_so(headline, tmp_path):
    study, values = headline
    for trainer in ("nnUNetTrainer", "nnUNetTrainerMORSE"):
        os.remove(os.path.join(study.folder, "runs", trainer, "seed1", "fold_1", "run.json"))
    render_main()
    block = block_of(tmp_path / "README.md")
    assert "2 of 2 folds finished, 20 paired cases" in block
    for metric in SHIFT:
        digits = 2 if metric in ("HD95", "ASSD") else 4
        floor = max(abs(np.mean(foreground_difference(values, f"{arm}1", f"{arm}0", metric, folds=(0,))))
                    for arm in ("base", "morse"))
        assert f", noise floor {floor:.{digits}f} (from fold 0 only, 10 cases): **" in metric_line(block, metric)


def test_a_noise_floor_from_more_folds_than_its_comparison_names_them_without_only(headline, tmp_path):
    """The model has finished fold 0 at seed 0 and no fold at seed 1: the floor is the baseline's, over folds 0-1."""
    study, _ = headline
    for seed, fold in ((0, 1), (1, 0), (1, 1)):
        os.remove(os.path.join(study.folder, "runs", "nnUNetTrainerMORSE", f"seed{seed}", f"fold_{fold}", "run.json"))
    render_main()
    block = block_of(tmp_path / "README.md")
    assert "1 of 2 folds finished (**preliminary**), 10 paired cases" in block
    assert all("(from folds 0, 1, 20 cases): **" in metric_line(block, m) for m in SHIFT)


def test_verdict_says_preliminary_within_noise_and_noise_floor_not_yet_measured(headline, tmp_path):
    study, values = headline
    far = {c: {k: {m: v + 2 * SHIFT[m] for m, v in per_class.items()} for k, per_class in values["morse0"][c].items()}
           for c in values["morse0"]}
    for fold in (0, 1):  # the model's second seed lies twice as far from its first as the model from the baseline
        write_finished_run(study, "nnUNetTrainerMORSE", 1, fold, fold_values(far, fold))
    render_main()
    block = block_of(tmp_path / "README.md")
    assert "nnUNetTrainerMORSE − nnUNetTrainer: 2 of 2 folds finished, 20 paired cases" in block
    assert all(metric_line(block, m).endswith("**within the seed-to-seed noise**") for m in SHIFT)
    os.remove(os.path.join(study.folder, "runs", "nnUNetTrainerMORSE", "seed0", "fold_1", "run.json"))
    for trainer in ("nnUNetTrainer", "nnUNetTrainerMORSE"):
        for fold in (0, 1):
            os.remove(os.path.join(study.folder, "runs", trainer, "seed1", f"fold_{fold}", "run.json"))
    render_main()
    block = block_of(tmp_path / "README.md")
    assert "2 folds finished (**preliminary**), 10 paired cases" in block
    # case_03's Dice of class b, missing in the baseline, is left out on both sides: the shift stays visible
    assert all(metric_line(block, m).endswith("**better, noise floor not yet measured**") for m in SHIFT)
    assert "noise floor 0" not in block
    assert ("- nnUNetTrainerMORSE − nnUNetTrainer (`test_study`): better in Dice, HD95, ASSD and NSD (noise floor not "
            "yet measured); preliminary, 1 of 2 folds; nnUNetTrainer has not levelled off") in block


@pytest.mark.parametrize("words, short", [
    (("worse", "no significant difference", "better, noise floor not yet measured", "worse"),
     "worse in Dice and NSD; no significant difference in HD95; better in ASSD (noise floor not yet measured)"),
    ((verdict.MIXED, verdict.RANKS_ONLY.format("better", "the mean's interval includes 0"), verdict.MIXED,
      "within the seed-to-seed noise"),
     "mixed in Dice and ASSD (the mean and the signed ranks point opposite ways); better by the signed ranks only in "
     "HD95 (the mean's interval includes 0); within the seed-to-seed noise in NSD"),
])
def test_in_short_groups_the_metrics_by_word_with_its_qualifier_in_parentheses(words, short):
    assert verdict.words_in_short([(metric, None, None, word) for metric, word in zip(METRICS, words)]) == short


def test_verdict_of_a_study_not_yet_run_and_a_reversed_headline(headline, tmp_path):
    study, _ = headline
    comparisons = [dict(study_definition()["comparisons"][0], verdict=True),
                   {"title": "Reversed", "baseline": "nnUNetTrainerMORSE", "models": ["nnUNetTrainer"],
                    "verdict": True}]
    write_study(study.folder, comparisons=comparisons)
    write_study(tmp_path / "results" / "unrun_study", title="Unrun study", comparisons=comparisons[:1])
    render_main()
    block = block_of(tmp_path / "README.md")
    assert ("- [MORSE vs nnU-Net](RESULTS.md#morse-vs-nnu-net-1) (`unrun_study`), nnUNetTrainerMORSE − nnUNetTrainer: "
            "not yet run (no finished fold of nnUNetTrainer at seed 0).") in block
    assert "- nnUNetTrainerMORSE − nnUNetTrainer (`unrun_study`): not yet run." in block
    assert "- nnUNetTrainer − nnUNetTrainerMORSE (`test_study`): worse in Dice, HD95, ASSD and NSD; " in block
    reversed_part = block.split("[Reversed](RESULTS.md#reversed) (`test_study`), nnUNetTrainer − nnUNetTrainerMORSE")[1]
    assert all(metric_line(reversed_part, m).endswith("**worse**") for m in SHIFT)


def test_the_readme_outside_the_markers_is_kept_byte_for_byte(headline, tmp_path):
    render_main()
    with open(tmp_path / "README.md", newline="") as f:
        text = f.read()
    assert text.startswith(README_BEFORE + verdict.BEGIN + "\n\n**In short**")
    assert text.endswith("[RESULTS.md](RESULTS.md).\n\n" + verdict.END + README_AFTER)
    assert "typed by hand" not in text


@pytest.mark.parametrize("broken", ["no end marker", "twice", "reversed"])
def test_a_readme_without_its_markers_is_refused_and_nothing_is_written(headline, tmp_path, broken):
    text = {"no end marker": README_BEFORE + verdict.BEGIN + "\nold\n",
            "twice": README_BEFORE + (verdict.BEGIN + "\nold\n" + verdict.END + "\n") * 2,
            "reversed": README_BEFORE + verdict.END + "\nold\n" + verdict.BEGIN + "\n"}[broken]
    (tmp_path / "README.md").write_bytes(text.encode())
    with pytest.raises(SystemExit) as stop:
        render_main()
    assert str(stop.value) == (f"nnUNetv2_morse_results: error: {tmp_path / 'README.md'} has no verdict block: add "
                               f"the two lines '{verdict.BEGIN}' and '{verdict.END}' (once each, in this order) where "
                               "the verdict goes, or give the README that has them with --readme")
    assert (tmp_path / "README.md").read_bytes() == text.encode()
    assert not (tmp_path / "RESULTS.md").exists() and not (tmp_path / "results" / "figures").exists()


def test_a_ledger_beside_a_readme_without_markers_renders_results_md_alone(headline, tmp_path, capsys):
    (tmp_path / "README.md").write_text("# Another project\n")
    render_main()
    assert (tmp_path / "README.md").read_text() == "# Another project\n" and (tmp_path / "RESULTS.md").exists()
    assert "verdict" not in capsys.readouterr().out
    with pytest.raises(SystemExit, match="has no verdict block"):
        render_main("--readme", "README.md")


def snapshot(folder):
    return {os.path.join(root, name): os.stat(os.path.join(root, name)).st_mtime_ns
            for root, _, names in os.walk(folder) for name in names}


def test_check_passes_after_rendering_and_fails_on_a_hand_edit_or_a_new_run(headline, tmp_path, capsys):
    study, values = headline
    new_run = os.path.join(study.folder, "runs", "nnUNetTrainerMORSE", "seed0", "fold_1", "run.json")
    os.rename(new_run, new_run + ".later")
    render_main()
    capsys.readouterr()
    before = snapshot(tmp_path)
    render_main("--check")
    assert capsys.readouterr().out == ("RESULTS.md, the verdict in README.md and the benchmark tables' Markdown are up "
                                       "to date with results/\n")
    assert snapshot(tmp_path) == before
    stale = "is out of date with results/: run nnUNetv2_morse_results -i results --resamples 999"
    readme, results = (tmp_path / "README.md").read_bytes(), (tmp_path / "RESULTS.md").read_bytes()
    line = metric_line(block_of(tmp_path / "README.md"), "Dice")
    typed = re.sub(r"[+-]\d\.\d{4}", "+0.0500", line, count=1)
    assert typed != line
    (tmp_path / "README.md").write_bytes(readme.replace(line.encode(), typed.encode()))
    with pytest.raises(SystemExit) as stop:
        render_main("--check")
    assert str(stop.value) == f"the verdict in README.md {stale}"
    (tmp_path / "README.md").write_bytes(readme)
    assert b"| 10 |" in results
    (tmp_path / "RESULTS.md").write_bytes(results.replace(b"| 10 |", b"| 11 |", 1))
    with pytest.raises(SystemExit) as stop:
        render_main("--check")
    assert str(stop.value) == f"RESULTS.md {stale}"
    (tmp_path / "RESULTS.md").write_bytes(results)
    render_main("--check")
    os.rename(new_run + ".later", new_run)
    with pytest.raises(SystemExit) as stop:
        render_main("--check")
    assert str(stop.value) == f"RESULTS.md {stale}\nthe verdict in README.md {stale}"


def benchmark_study(folder, plans, device="cpu"):
    """A headline benchmark study on device whose recorded table holds plans {plan: {trainer: (step, memory,
    inference)}} (none: not yet run); a tuple is one value per round, a number the same in every round (the row's
    times are the fastest round's, its memory the first round's)."""
    definition = {"kind": "benchmark", "title": "CPU 2d plans", "arguments": ["--preset", "2d"], "verdict": True,
                  "device": device}
    write_json(definition, str(folder / "study.json"))

    def row(trainer, *values):
        count = max(len(v) if isinstance(v, tuple) else 1 for v in values)
        step, memory, inference = (v if isinstance(v, tuple) else (v,) * count for v in values)
        return {"trainer": trainer, "step_s": min(step), "peak_memory_mb": memory[0], "saved_for_backward_mb": 1.0,
                "inference_s": min(inference), "patch_size": [64, 64], "batch_size": 2, "flops": None,
                "test_points_sweep": [], "warm_up_process": True,
                "rounds": [{"step_s": t, "inference_s": i, "peak_memory_mb": m}
                           for t, m, i in zip(step, memory, inference)]}

    if plans is not None:
        rows = {plan: [row(t, *values) for t, values in trainers.items()] for plan, trainers in plans.items()}
        write_json({"headers": {plan: plan for plan in rows}, "plans": rows}, str(folder / "benchmark_2d_cpu.json"))
        write_json({"commands": [{"command": "benchmark"}], "machine": {"platform": "Linux", "cpu_count": 2},
                    "recorded": "today", "files": ["benchmark_2d_cpu.json", "benchmark_2d_cpu.md"]},
                   str(folder / "run.json"))
    return load_study(str(folder))


def test_verdict_cost_is_the_default_and_paper_ratios_over_the_plans(tmp_path):
    base, morse, paper = "nnUNetTrainer", "nnUNetTrainerMORSE", "nnUNetTrainerMORSE_paper"
    plans = {"2d 128x128": {base: (2.0, 1000.0, 4.0), morse: (2.1, 1010.0, 4.4), paper: (4.0, 1200.0, 5.0)},
             "2d 512x512": {base: (10.0, 3000.0, 16.0), morse: (10.2, 3090.0, 15.2), paper: (10.4, 3150.0, 17.6),
                            "nnUNetTrainerMORSE_lean": (11.0, 3000.0, 16.0)}}
    study = benchmark_study(tmp_path / "plans", plans)
    assert study.verdict
    assert verdict.cost_line(render.recorded_benchmark(study), "[CPU](R.md#cpu)") == (
        "- [CPU](R.md#cpu): nnUNetTrainerMORSE step 1.020-1.050x, peak memory 1.010-1.030x, inference 0.950-1.100x "
        "over 2 plans; nnUNetTrainerMORSE_paper step 1.040-2.000x, peak memory 1.050-1.200x, inference 1.100-1.250x "
        "over 2 plans.")
    one_plan = benchmark_study(tmp_path / "one",
                               {"3d_fullres": {base: (20.0, 6000.0, 10.0), morse: (20.4, 6300.0, 10.7)}})
    assert verdict.cost_line(render.recorded_benchmark(one_plan), "[3d](R.md)") == (
        "- [3d](R.md): nnUNetTrainerMORSE step 1.020x, peak memory 1.050x, inference 1.070x.")
    assert render.recorded_benchmark(benchmark_study(tmp_path / "none", None)) is None
    assert verdict.cost_line(None, "[x](R.md)") == "- [x](R.md): not yet measured."
    no_baseline = benchmark_study(tmp_path / "no_baseline",
                                  {"2d": {morse: (2.1, 1010.0, 4.4), paper: (4.0, 1200.0, 5.0)}})
    assert verdict.cost_line(render.recorded_benchmark(no_baseline), "[2d](R.md)") == (
        "- [2d](R.md): not compared: no nnUNetTrainer in its tables.")
    assert verdict.largest_spreads([], base) is None


def test_verdict_in_short_gives_the_defaults_cost_per_device_over_every_headline_benchmark(tmp_path):
    """The CPU line ranges over the plans of both measured CPU studies, counts the one not yet run and the two
    without MORSE beside nnUNetTrainer, and names the step over budget in every round; the spreads between rounds
    (each trainer's slowest round over its fastest) are given only where every plan ran several rounds, step and
    inference apart; a CUDA study not run is 'not yet measured', one without MORSE 'not compared'."""
    base, morse = "nnUNetTrainer", "nnUNetTrainerMORSE"
    plans_2d = {"2d 128x128": {base: (2.0, 1000.0, 4.0), morse: (2.2, 1010.0, 4.4)},
                "2d 512x512": {base: (10.0, 3000.0, 16.0), morse: (10.2, 3090.0, 15.2)}}
    plans_3d = {"3d_fullres": {base: ((20.0, 21.0), (6000.0, 6100.0), 10.0),
                               morse: (21.0, (6301.0, 6222.0), (10.7, 11.77))}}
    studies = [benchmark_study(tmp_path / "2d", plans_2d), benchmark_study(tmp_path / "3d", plans_3d),
               benchmark_study(tmp_path / "unrun", None),
               benchmark_study(tmp_path / "no_base", {"2d": {morse: (2.1, 1010.0, 4.4)}}),
               benchmark_study(tmp_path / "no_morse", {"2d": {base: (2.0, 1000.0, 4.0)}}),
               benchmark_study(tmp_path / "gpu", None, device="cuda")]
    head = "- nnUNetTrainerMORSE's cost on {}, as a ratio to nnUNetTrainer's: "
    assert verdict.cost_in_short([(s, render.recorded_benchmark(s)) for s in studies]) == [
        head.format("the CPU") + "step 1.000-1.100x, peak memory 1.010-1.050x, inference 0.950-1.177x over 3 plans "
        "in 2 benchmarks (1 more not yet measured, 2 more without nnUNetTrainerMORSE beside nnUNetTrainer); step "
        "time over the 1.05x budget in every round at the 64x64 patch (1.100x).",
        head.format("a CUDA GPU") + "not yet measured."]
    assert verdict.cost_in_short([(studies[1], render.recorded_benchmark(studies[1]))]) == [
        head.format("the CPU") + "step 1.000-1.050x, peak memory 1.020-1.050x, inference 1.070-1.177x over 1 plan in "
        "1 benchmark; the two trainers' own step times varied by up to 1.050x between identical rounds, their "
        "inference times by up to 1.100x."]
    cuda_without = benchmark_study(tmp_path / "gpu_no_morse", {"2d": {base: (2.0, 1000.0, 4.0)}}, device="cuda")
    assert verdict.cost_in_short([(studies[5], None), (cuda_without, render.recorded_benchmark(cuda_without))]) == [
        head.format("a CUDA GPU") + "not compared: no nnUNetTrainerMORSE beside nnUNetTrainer in its benchmarks."]
    table = tmp_path / "3d" / "benchmark_2d_cpu.json"
    report = json.loads(table.read_text())
    del report["plans"]["3d_fullres"][0]["warm_up_process"]
    write_json(report, str(table))
    assert verdict.cost_in_short([(studies[1], render.recorded_benchmark(studies[1]))])[0].endswith(
        "their inference times by up to 1.100x; careful: see the benchmarks below.")
    assert verdict.cost_in_short([]) == []


def test_peak_memory_ratios_are_a_range_over_the_rounds(tmp_path):
    """MORSE's peak memory is 1.050x the baseline's in round 0 and 1.020x in round 1: the verdict and the table give
    the range, and the budget line does not call it an excess."""
    base, morse = "nnUNetTrainer", "nnUNetTrainerMORSE"
    study = benchmark_study(tmp_path / "results" / "cost" / "rounds",
                            {"3d_fullres": {base: (20.0, (6000.0, 6100.0), 10.0),
                                            morse: (20.4, (6301.0, 6222.0), 10.7)}})
    assert verdict.cost_line(render.recorded_benchmark(study), "[3d](R.md)") == (
        "- [3d](R.md): nnUNetTrainerMORSE step 1.020x, peak memory 1.020-1.050x, inference 1.070x (its own step "
        "varied by up to 1.000x between identical rounds, its inference by up to 1.000x); between identical "
        "rounds, nnUNetTrainer's own step varied by up to 1.000x and its inference by up to 1.000x.")
    render_results(str(tmp_path / "results"), str(tmp_path / "RESULTS.md"), 99)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| nnUNetTrainerMORSE | 1.020x | 1.020-1.050x | 1.000x | 1.070x |" in text
    assert "nnUNetTrainerMORSE: peak memory over the 1.05x budget in 1 of 2 rounds only (1.050x, 1.020x)" in text


def test_the_benchmark_tables_beside_their_reports_are_rendered_and_checked(tmp_path, monkeypatch, capsys):
    """A benchmark's Markdown written by an older benchmark (here: memory judged on round 0 alone) is rewritten from
    its report, and --check names it while it differs."""
    monkeypatch.chdir(tmp_path)
    base, morse = "nnUNetTrainer", "nnUNetTrainerMORSE"
    study = benchmark_study(tmp_path / "results" / "cost" / "rounds",
                            {"3d_fullres": {base: (20.0, (6000.0, 6100.0), 10.0),
                                            morse: (20.4, (6301.0, 6222.0), 10.7)}})
    table = os.path.join(study.folder, "benchmark_2d_cpu.md")
    older = "3d_fullres\n\nover budget:\n- nnUNetTrainerMORSE: peak memory 1.050x\n"
    with open(table, "w") as f:
        f.write(older)
    with pytest.raises(SystemExit) as stop:
        render_main("--check", "-o", "RESULTS.md")
    assert str(stop.value).splitlines() == [
        f"{what} is out of date with results/: run nnUNetv2_morse_results -i results --resamples 999 -o RESULTS.md"
        for what in ("RESULTS.md", os.path.join("results", "cost", "rounds", "benchmark_2d_cpu.md"))]
    assert (tmp_path / table).read_text() == older
    render_main("-o", "RESULTS.md")
    with open(os.path.join(study.folder, "benchmark_2d_cpu.json")) as f:
        assert (tmp_path / table).read_text() == benchmark.benchmark_markdown(json.load(f))
    assert "in 1 of 2 rounds only (1.050x, 1.020x)" in (tmp_path / table).read_text()
    capsys.readouterr()
    render_main("--check", "-o", "RESULTS.md")
    assert capsys.readouterr().out == "RESULTS.md and the benchmark tables' Markdown are up to date with results/\n"
    written = os.stat(table).st_mtime_ns
    render_main("-o", "RESULTS.md")
    assert os.stat(table).st_mtime_ns == written  # an up-to-date table is left as it is
    report_file = os.path.join(study.folder, "benchmark_2d_cpu.json")
    report = read_json(report_file)
    del report["plans"]["3d_fullres"][1]["test_points_sweep"]
    write_json(report, report_file)
    with pytest.raises(SystemExit) as stop:
        render_main("-o", "RESULTS.md")
    shown = os.path.join("results", "cost", "rounds", "benchmark_2d_cpu.json")
    assert str(stop.value) == (f"nnUNetv2_morse_results: error: {shown} is not a complete benchmark report "
                               "(KeyError: 'test_points_sweep'): run its study again")


@pytest.mark.parametrize("where", ["comparison", "benchmark"])
def test_the_verdict_field_must_be_true_or_false(tmp_path, where):
    if where == "comparison":
        comparison = dict(study_definition()["comparisons"][0], verdict="yes")
        write_json(study_definition(comparisons=[comparison]), str(tmp_path / "study.json"))
        field = "comparisons[0].verdict"
    else:
        write_json({"kind": "benchmark", "title": "t", "arguments": [], "verdict": 1}, str(tmp_path / "study.json"))
        field = "verdict"
    with pytest.raises(StudyError, match=re.escape(f"field '{field}' must be true or false")):
        load_study(str(tmp_path))
    comparison = dict(study_definition()["comparisons"][0], verdikt=True)
    write_json(study_definition(comparisons=[comparison]), str(tmp_path / "study.json"))
    with pytest.raises(StudyError, match=re.escape("unknown field 'comparisons[0].verdikt'")):
        load_study(str(tmp_path))


def test_the_repository_results_and_readme_verdict_are_rendered_from_its_ledger(monkeypatch):
    """Fails when a number in RESULTS.md or the README's verdict was typed by hand or runs were added without
    rendering (at the committed 9999 resamples): run nnUNetv2_morse_results, commit RESULTS.md and README.md."""
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    render.main(["--check"])
