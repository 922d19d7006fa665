"""nnUNetv2_morse_evaluate, nnUNetv2_morse_evaluate_cv and nnUNetv2_morse_compare on tiny fake folders."""
import datetime
import importlib.metadata
import io
import json
import math
import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_morse.evaluation.compare import (ComparisonError, compare_reports, differences_table, markdown_report,
                                               plot_differences)
from nnunetv2_morse.evaluation.statistics import paired_statistics
from nnunetv2_morse.evaluation.compare import main as compare_main
from nnunetv2_morse.evaluation.evaluate import (EvaluationError, evaluate_folders, main_evaluate, main_evaluate_cv,
                                                worker_count)
from test_evaluation_statistics import benjamini_hochberg

BIN_DIR = os.path.dirname(os.path.abspath(sys.executable))
SPACING = (2.0, 0.75, 1.25)  # numpy axis order (z, y, x)
SHAPE = (12, 32, 24)
DATASET_JSON = {"labels": {"background": 0, "organ": 1, "lesion": 2}, "file_ending": ".nii.gz",
                "channel_names": {"0": "CT"}, "numTraining": 4}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_command(name, *args, env=None, expected_returncode=0):
    """Run one of this environment's console scripts; return the CompletedProcess (text output)."""
    script = os.path.join(BIN_DIR, name)
    assert os.path.isfile(script), f"{name} is not installed: pip install --no-deps -e ."
    process = subprocess.run([script, *map(str, args)], capture_output=True, text=True, timeout=300,
                             env={**os.environ, **(env or {})})
    assert process.returncode == expected_returncode, process.stdout + process.stderr
    return process


def write_label_map(path, label_map, spacing):
    """Write a numpy-ordered label map with its numpy-ordered spacing (mm) as NIfTI via SimpleITK."""
    image = sitk.GetImageFromArray(label_map.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    sitk.WriteImage(image, str(path))


def reference_case():
    """Organ (label 1) cube with a lesion (label 2) inside it."""
    label_map = np.zeros(SHAPE, np.uint8)
    label_map[3:9, 8:24, 6:18] = 1
    label_map[5:7, 12:16, 9:12] = 2
    return label_map


def write_cases(folder, cases):
    """Write {case id: label map} into folder as CASE.nii.gz with SPACING."""
    os.makedirs(folder, exist_ok=True)
    for case_id, label_map in cases.items():
        write_label_map(os.path.join(folder, case_id + ".nii.gz"), label_map, SPACING)


def fake_cases():
    """References and predictions of four cases with known organ/lesion answers (see the assertions)."""
    reference = reference_case()
    shifted = np.roll(reference, 2, axis=0)  # organ and lesion shifted by 2 slices = 4 mm
    no_lesion_reference = np.where(reference == 2, 1, reference)
    references = {"case_000": reference, "case_001": reference, "case_002": reference,
                  "case_003": no_lesion_reference}
    predictions = {"case_000": reference, "case_001": shifted, "case_002": np.where(reference == 2, 1, reference),
                   "case_003": no_lesion_reference}
    return references, predictions


def dice(reference, prediction, label):
    """Dice of one label computed directly from the voxel counts."""
    reference, prediction = reference == label, prediction == label
    return 2 * np.count_nonzero(reference & prediction) / (reference.sum() + prediction.sum())


def test_evaluate_cli_writes_json_and_prints_table(tmp_path):
    references, predictions = fake_cases()
    write_cases(tmp_path / "ref", references)
    write_cases(tmp_path / "pred", predictions)
    (tmp_path / "dataset.json").write_text(json.dumps(DATASET_JSON))
    output = tmp_path / "out" / "metrics.json"
    process = run_command("nnUNetv2_morse_evaluate", tmp_path / "ref", tmp_path / "pred", "-djfile",
                          tmp_path / "dataset.json", "-o", output, "--tolerance-mm", "1.0",
                          "--tolerance-mm-per-class", "2:3.0", "-np", "2")
    report = json.loads(output.read_text())
    assert report["classes"] == {"organ": {"labels": [1], "nsd_tolerance_mm": 1.0},
                                 "lesion": {"labels": [2], "nsd_tolerance_mm": 3.0}}
    per_case = {entry["case"]: entry["metrics"] for entry in report["metric_per_case"]}
    assert list(per_case) == ["case_000", "case_001", "case_002", "case_003"]
    assert report["metric_per_case"][0]["spacing_mm"] == pytest.approx(SPACING)
    assert per_case["case_000"]["organ"]["Dice"] == 1.0 and per_case["case_000"]["lesion"]["HD95"] == 0.0
    # a shift of 2 slices of 2 mm: the lesion's surface points are at most 4 mm from the other surface
    assert 0 < per_case["case_001"]["lesion"]["HD95"] <= 4.0 + 1e-5
    assert per_case["case_001"]["organ"]["Dice"] == pytest.approx(dice(references["case_001"],
                                                                         predictions["case_001"], 1))
    # lesion predicted as organ: lesion missing in the prediction -> Dice 0, HD95 = ASSD = image diagonal
    diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(SHAPE, SPACING)))
    assert per_case["case_002"]["lesion"]["Dice"] == 0.0
    assert per_case["case_002"]["lesion"]["ASSD"] == pytest.approx(diagonal, rel=1e-6)
    # no lesion in reference and prediction: a correct "absent"
    assert per_case["case_003"]["lesion"] == {**per_case["case_003"]["lesion"], "Dice": 1.0, "IoU": 1.0,
                                              "HD95": 0.0, "ASSD": 0.0, "NSD": 1.0}
    for class_name in ("organ", "lesion"):
        for metric in ("Dice", "IoU", "HD95", "ASSD", "NSD"):
            expected = np.mean([per_case[c][class_name][metric] for c in per_case])
            assert report["mean"][class_name][metric] == pytest.approx(expected)
    assert report["foreground_mean"]["Dice"] == pytest.approx(
        (report["mean"]["organ"]["Dice"] + report["mean"]["lesion"]["Dice"]) / 2)
    assert "| class | labels | NSD tol. (mm) | Dice | IoU | HD95 (mm) | ASSD (mm) | NSD |" in process.stdout
    assert "| lesion | 2 | 3 |" in process.stdout and "**foreground mean**" in process.stdout


def test_evaluate_names_missing_predictions_in_one_line(tmp_path):
    references, predictions = fake_cases()
    write_cases(tmp_path / "ref", references)
    write_cases(tmp_path / "pred", {k: v for k, v in predictions.items() if k not in ("case_001", "case_003")})
    (tmp_path / "dataset.json").write_text(json.dumps(DATASET_JSON))
    with pytest.raises(SystemExit) as exit_info:
        main_evaluate([str(tmp_path / "ref"), str(tmp_path / "pred"), "-djfile", str(tmp_path / "dataset.json"),
                       "-np", "1"])
    message = str(exit_info.value.code)
    assert "lacks 2 of 4 case(s): case_001, case_003" in message and "\n" not in message


def test_evaluate_2d_nifti(tmp_path):
    square = np.zeros((40, 30), np.uint8)
    square[10:22, 8:16] = 1
    for folder, label_map in (("ref", square), ("pred", np.roll(square, 3, axis=1))):
        os.makedirs(tmp_path / folder)
        write_label_map(tmp_path / folder / "img_000.nii.gz", label_map, (0.5, 1.5))
    dataset_json = {"labels": {"background": 0, "square": 1}, "file_ending": ".nii.gz"}
    report = evaluate_folders(str(tmp_path / "ref"), str(tmp_path / "pred"), dataset_json, 1.0)
    assert report["metric_per_case"][0]["shape"] == [40, 30]
    assert report["metric_per_case"][0]["spacing_mm"] == pytest.approx([0.5, 1.5])
    metrics = report["metric_per_case"][0]["metrics"]["square"]
    assert metrics["Dice"] == pytest.approx(5 / 8)
    assert metrics["HD95"] == pytest.approx(3 * 1.5, rel=1e-5)
    write_label_map(tmp_path / "pred" / "img_000.nii.gz", square, (0.5, 1.0))
    # the message shows the 2D spacings, not nnU-Net's placeholder spacing 999 of the missing axis
    with pytest.raises(EvaluationError, match=r"^case img_000: prediction spacing \(0.5, 1.0\) mm differs from "
                                              r"reference spacing \(0.5, 1.5\) mm$"):
        evaluate_folders(str(tmp_path / "ref"), str(tmp_path / "pred"), dataset_json, 1.0)


@pytest.mark.parametrize("reader", ["SimpleITKIO", "NibabelIO"])
def test_a_prediction_off_the_references_grid_is_refused(tmp_path, reader):
    """Same voxels, same spacing: a prediction flipped along x (direction -1) or moved by 100 mm (origin) is not on
    the reference's grid, and scoring it voxel by voxel would compare it with a mirrored or shifted reference; a
    float32 header's rounding of the origin is accepted."""
    references, _ = fake_cases()
    reference = references["case_000"]
    dataset_json = {**DATASET_JSON, "overwrite_image_reader_writer": reader}

    def write(origin, direction):
        image = sitk.GetImageFromArray(reference)
        image.SetSpacing(tuple(reversed(SPACING)))
        image.SetOrigin(origin)
        image.SetDirection(direction)
        sitk.WriteImage(image, str(tmp_path / "pred" / "case_000.nii.gz"))

    os.makedirs(tmp_path / "pred")
    write_cases(tmp_path / "ref", {"case_000": reference})
    identity, flipped_x = (1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, 1, 0, 0, 0, 1)
    write((1e-5, 0.0, 0.0), identity)
    report = evaluate_folders(str(tmp_path / "ref"), str(tmp_path / "pred"), dataset_json, 1.0)
    assert report["metric_per_case"][0]["metrics"]["organ"]["Dice"] == 1.0
    write((0.0, 0.0, 0.0), flipped_x)
    with pytest.raises(EvaluationError, match=r"^case case_000: prediction orientation .* differs from the "
                                              r"reference's .*: it would be scored voxel by voxel against a flipped"):
        evaluate_folders(str(tmp_path / "ref"), str(tmp_path / "pred"), dataset_json, 1.0)
    write((0.0, 100.0, 0.0), identity)
    with pytest.raises(EvaluationError, match=r"^case case_000: prediction origin \[0.0, -?100.0, 0.0\] mm differs "
                                              r"from the reference's \[0.0, 0.0, 0.0\] mm by more than 0.0075 mm"):
        evaluate_folders(str(tmp_path / "ref"), str(tmp_path / "pred"), dataset_json, 1.0)


def write_fake_cross_validation(tmp_path):
    """fake_cases() as a two-fold cross-validation of nnUNetTrainerFake on Dataset901_Fake; returns the
    environment and the model folder."""
    dataset, model = "Dataset901_Fake", "nnUNetTrainerFake__nnUNetPlans__3d_fullres"
    preprocessed, results = tmp_path / "preprocessed" / dataset, tmp_path / "results" / dataset / model
    references, predictions = fake_cases()
    write_cases(preprocessed / "gt_segmentations", references)
    os.makedirs(results)
    for folder in (preprocessed, results):
        (folder / "dataset.json").write_text(json.dumps(DATASET_JSON))
    splits = [{"train": ["case_002", "case_003"], "val": ["case_000", "case_001"]},
              {"train": ["case_000", "case_001"], "val": ["case_002", "case_003"]}]
    (preprocessed / "splits_final.json").write_text(json.dumps(splits))
    for fold, split in enumerate(splits):
        write_cases(results / f"fold_{fold}" / "validation", {c: predictions[c] for c in split["val"]})
    write_cases(results / "fold_all" / "validation", predictions)
    env = {"nnUNet_preprocessed": str(tmp_path / "preprocessed"), "nnUNet_results": str(tmp_path / "results"),
           "nnUNet_raw": str(tmp_path / "raw")}
    return env, results


def test_evaluate_cv_on_fake_nnunet_layout(tmp_path):
    env, results = write_fake_cross_validation(tmp_path)
    dataset, model = results.parent.name, results.name
    references, predictions = fake_cases()
    process = run_command("nnUNetv2_morse_evaluate_cv", "-d", "901", "-tr", "nnUNetTrainerFake", "-c", "3d_fullres",
                          "-f", "0", "1", "-np", "1", env=env)
    report = json.loads((results / "crossval_boundary_metrics.json").read_text())
    assert report["dataset"] == dataset and report["num_cases"] == 4
    assert {e["case"]: e["fold"] for e in report["metric_per_case"]} == \
        {"case_000": 0, "case_001": 0, "case_002": 1, "case_003": 1}
    assert report["folds"]["0"]["num_cases"] == 2 and report["folds"]["0"]["mean"]["organ"]["Dice"] == \
        pytest.approx((1 + dice(references["case_001"], predictions["case_001"], 1)) / 2)
    markdown = (results / "crossval_boundary_metrics.md").read_text()
    assert markdown.startswith(f"# {model} on {dataset}: cross-validation, folds 0, 1")
    assert "| organ | 1 | 1 |" in markdown and markdown.split("# ", 1)[1] in process.stdout

    os.remove(results / "fold_1" / "validation" / "case_003.nii.gz")
    failed = run_command("nnUNetv2_morse_evaluate_cv", "-d", dataset, "-tr", "nnUNetTrainerFake", "-c",
                         "3d_fullres", "-f", "0", "1", env=env, expected_returncode=1)
    assert failed.stderr.strip().count("\n") == 0 and "lacks 1 of 2 case(s): case_003" in failed.stderr


def fake_report(dice_by_case, hd95_by_case):
    """A minimal metric report of one class "organ" with the given per-case Dice and HD95 (ASSD = HD95 / 2)."""
    cases = []
    for index, (dice, hd95) in enumerate(zip(dice_by_case, hd95_by_case)):
        metrics = {"Dice": dice, "IoU": dice / (2 - dice), "HD95": hd95, "ASSD": hd95 / 2, "NSD": dice}
        cases.append({"case": f"case_{index:03d}", "metrics": {"organ": metrics}})
    return {"classes": {"organ": {"labels": [1], "nsd_tolerance_mm": 1.0}}, "metric_per_case": cases}


def test_compare_cli_p_values_markdown_json_and_png(tmp_path):
    rng = np.random.default_rng(0)
    baseline_dice = rng.uniform(0.6, 0.8, 10)
    baseline_hd95 = rng.uniform(5.0, 10.0, 10)
    reports = {"baseline": fake_report(baseline_dice, baseline_hd95),
               "MORSE": fake_report(baseline_dice + rng.uniform(0.02, 0.06, 10),
                                    baseline_hd95 - rng.uniform(1.0, 3.0, 10)),
               "same": fake_report(baseline_dice, baseline_hd95)}
    paths = []
    for name, report in reports.items():
        paths.append(tmp_path / name / "metrics.json")
        os.makedirs(paths[-1].parent)
        paths[-1].write_text(json.dumps(report))
    prefix = tmp_path / "out" / "morse_vs_baseline"
    process = run_command("nnUNetv2_morse_compare", *paths, "--names", "nnUNetTrainer", "MORSE", "same", "-o",
                          prefix)
    comparison = json.loads(prefix.with_suffix(".json").read_text())
    assert comparison["baseline"] == "nnUNetTrainer" and comparison["num_cases"] == 10
    morse = comparison["comparisons"]["MORSE"]["organ"]
    assert morse["Dice"]["p_value"] < 0.01 and morse["Dice"]["mean_difference"] > 0
    assert morse["HD95"]["p_value"] < 0.01 and morse["HD95"]["mean_difference"] < 0
    assert morse["Dice"]["p_value"] == pytest.approx(2 / 2 ** 10)  # exact: all 10 differences of one sign
    same = comparison["comparisons"]["same"]["organ"]["HD95"]
    assert same["p_value"] == 1.0 and same["mean_difference"] == 0.0 and "all 10 paired differences are zero" in \
        same["note"]
    assert comparison["comparisons"]["MORSE"]["foreground mean"]["Dice"]["p_value"] == morse["Dice"]["p_value"]
    family = [s for per_metric in comparison["comparisons"]["MORSE"].values() for s in per_metric.values()]
    assert len(family) == 2 * 5 and [s["p_value_bh"] for s in family] == \
        pytest.approx(benjamini_hochberg([s["p_value"] for s in family]))
    low, high = morse["Dice"]["mean_difference_ci"]
    assert 0 < low < morse["Dice"]["mean_difference"] < high
    assert set(comparison["versions"]) == {"nnunetv2_morse", "nnunetv2", "monai", "torch"}
    markdown = prefix.with_suffix(".md").read_text()
    assert "## MORSE vs nnUNetTrainer" in markdown and "## same vs nnUNetTrainer" in markdown
    assert "Difference = model - baseline" in markdown and "HD95, ASSD (mm): lower is better" in markdown
    assert "| class | metric | n | nnUNetTrainer mean | MORSE mean | nnUNetTrainer median | MORSE median | " \
           "mean diff | 95% CI | median diff | p | p (BH) | favours | note |" in markdown
    assert comparison["empty_pairing"] is None and "Pairing under" not in markdown
    organ_hd95_row = next(line for line in markdown.splitlines() if line.startswith("| organ | HD95 (mm) |"))
    assert organ_hd95_row.split("|")[-3].strip() == "MORSE"  # "favours" column
    assert "## MORSE vs nnUNetTrainer" in process.stdout

    png = prefix.with_suffix(".png").read_bytes()
    assert png[:8] == PNG_SIGNATURE
    from PIL import Image
    with Image.open(prefix.with_suffix(".png")) as image:
        image.verify()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image
    pixels = matplotlib.image.imread(prefix.with_suffix(".png"))
    assert pixels.shape[0] >= 800 and pixels.shape[1] >= 1000 and pixels.std() > 0.01


def test_difference_figure_is_the_same_on_every_render(tmp_path):
    """The strip plot's jitter is drawn from a fixed seed: re-rendering an unchanged ledger changes no PNG, and the
    caller's global numpy random state is left as it was."""
    comparison = compare_reports([fake_report([0.7, 0.8, 0.75, 0.6], [5.0, 6.0, 7.0, 8.0]),
                                  fake_report([0.72, 0.79, 0.8, 0.65], [4.0, 6.5, 6.0, 7.0])],
                                 ["base", "model"], ["base.json", "model.json"])
    np.random.seed(123)
    plot_differences(comparison, str(tmp_path / "first.png"))
    after_plot = np.random.random()
    np.random.seed(123)
    expected = np.random.random()
    plot_differences(comparison, str(tmp_path / "second.png"))
    assert (tmp_path / "first.png").read_bytes() == (tmp_path / "second.png").read_bytes()
    assert after_plot == expected


def test_compare_markdown_marks_a_percentile_interval_and_case_counts_are_named_per_model():
    from nnunetv2_morse.evaluation.compare import _cases_text

    baseline = fake_report([0.7, 0.8, 0.75, 0.6], [5.0, 6.0, 7.0, 8.0])
    model = fake_report([0.71, 0.83, 0.74, 0.65], [4.0, 6.0, 6.5, 7.0])
    comparison = compare_reports([baseline, model], ["base", "model"], ["base.json", "model.json"])
    comparison["comparisons"]["model"]["organ"]["Dice"]["mean_difference_ci_method"] = "percentile"
    rows = [line for line in markdown_report(comparison).splitlines() if line.startswith("| organ |")]
    assert [("(percentile)" in row) for row in rows[:2]] == [True, False]
    assert _cases_text(90, ["A", "B"]) == "90 cases"
    assert _cases_text({"A": 90, "B": 30}, ["A", "B"]) == "90 cases: A; 30: B"


def test_compare_small_samples_and_unpaired_cases(tmp_path):
    baseline = fake_report([0.7, 0.8, 0.75], [5.0, 6.0, 7.0])
    better = fake_report([0.71, 0.81, 0.75], [4.0, 6.0, 6.5])
    comparison = compare_reports([baseline, better], ["base", "better"], ["base.json", "better.json"])
    dice = comparison["comparisons"]["better"]["organ"]["Dice"]
    assert dice["num_nonzero_differences"] == 2 and 0 < dice["p_value"] <= 1
    assert "p < 0.05 unattainable" in dice["note"]
    assert "unattainable" in markdown_report(comparison)
    plot_differences(comparison, str(tmp_path / "small.png"))
    assert (tmp_path / "small.png").read_bytes()[:8] == PNG_SIGNATURE

    unpaired = fake_report([0.7, 0.8], [5.0, 6.0])
    with pytest.raises(ComparisonError, match="lacks 1 case.*case_002"):
        compare_reports([baseline, unpaired], ["base", "short"], ["base.json", "short.json"])


def write_fake_folders(tmp_path, dataset_json=DATASET_JSON):
    """fake_cases() as tmp_path/ref and tmp_path/pred, dataset_json as tmp_path/dataset.json; returns main_evaluate's
    folder and -djfile arguments."""
    references, predictions = fake_cases()
    write_cases(tmp_path / "ref", references)
    write_cases(tmp_path / "pred", predictions)
    (tmp_path / "dataset.json").write_text(json.dumps(dataset_json))
    return [str(tmp_path / "ref"), str(tmp_path / "pred"), "-djfile", str(tmp_path / "dataset.json"), "-np", "1"]


@pytest.mark.parametrize("folder, case", [("pred", "case_001"), ("ref", "case_000")])
def test_truncated_gzip_fails_naming_the_file(tmp_path, capsys, folder, case):
    arguments = write_fake_folders(tmp_path)
    broken = tmp_path / folder / f"{case}.nii.gz"
    data = broken.read_bytes()
    broken.write_bytes(data[:len(data) * 3 // 4])
    # the premise: SimpleITK reads the truncated file without an error, the missing part as zeros
    read = sitk.GetArrayFromImage(sitk.ReadImage(str(broken)))
    assert 0 < np.count_nonzero(read) < np.count_nonzero(reference_case())
    output = tmp_path / "metrics.json"
    with pytest.raises(SystemExit) as exit_info:
        main_evaluate(arguments + ["-o", str(output)])
    message = str(exit_info.value.code)
    assert message.startswith("nnUNetv2_morse_evaluate: error: ") and "\n" not in message
    assert f"{broken} is truncated or corrupt" in message
    assert not output.exists() and "Traceback" not in capsys.readouterr().err


def test_class_empty_everywhere_warns_and_empty_nan_leaves_it_out(tmp_path, capsys):
    wrong_dataset_json = {**DATASET_JSON, "labels": {**DATASET_JSON["labels"], "cyst": 3}}
    arguments = write_fake_folders(tmp_path, wrong_dataset_json)
    main_evaluate(arguments + ["-o", str(tmp_path / "one.json")])
    one = json.loads((tmp_path / "one.json").read_text())
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("nnUNetv2_morse_evaluate: warning: class 'cyst' (label(s) 3)"
                                                         " is empty in every reference and prediction of the 4 case(s)")
    assert one["empty_convention"] == "one" and one["warnings"] == [warnings[0].split("warning: ", 1)[1]]
    assert one["mean"]["cyst"] == {"Dice": 1.0, "IoU": 1.0, "HD95": 0.0, "ASSD": 0.0, "NSD": 1.0}
    organ, lesion = one["mean"]["organ"]["Dice"], one["mean"]["lesion"]["Dice"]
    assert one["foreground_mean"]["Dice"] == pytest.approx((organ + lesion + 1.0) / 3)  # inflated by the absent cyst
    assert one["reference_folder"] == str(tmp_path / "ref") and one["dataset_labels"] == wrong_dataset_json["labels"]
    assert one["dataset_json_file"] == str(tmp_path / "dataset.json")

    main_evaluate(arguments + ["-o", str(tmp_path / "nan.json"), "--empty", "nan"])
    nan = json.loads((tmp_path / "nan.json").read_text())
    out, err = capsys.readouterr()
    assert "class 'cyst' (label(s) 3) is empty in every reference and prediction" in err and err.count("\n") == 1
    assert nan["empty_convention"] == "nan" and "left out of the means" in nan["empty_case_rule"]
    assert nan["mean"]["cyst"] == dict.fromkeys(("Dice", "IoU", "HD95", "ASSD", "NSD"))
    # case_003 has no lesion in reference and prediction: undefined, the lesion mean is over the other three cases
    per_case = {entry["case"]: entry["metrics"] for entry in nan["metric_per_case"]}
    assert per_case["case_003"]["lesion"]["Dice"] is None and nan["num_scored_cases"] == \
        {"organ": 4, "lesion": 3, "cyst": 0}
    nan_lesion = np.mean([per_case[c]["lesion"]["Dice"] for c in ("case_000", "case_001", "case_002")])
    assert nan["mean"]["lesion"]["Dice"] == pytest.approx(nan_lesion)
    assert nan["foreground_mean"]["Dice"] == pytest.approx((organ + nan_lesion) / 2)
    assert "| cyst | 3 | 1 | n/a | n/a | n/a | n/a | n/a |" in out and "**Warning**: class 'cyst'" in out


def test_unknown_label_values_and_predictions_without_reference_are_named(tmp_path, capsys):
    arguments = write_fake_folders(tmp_path)
    stray = reference_case()
    stray[0, 0, :3] = 7
    write_cases(tmp_path / "pred", {"case_002": stray, "case_104": stray, "case_105": stray})
    report = evaluate_folders(str(tmp_path / "ref"), str(tmp_path / "pred"), DATASET_JSON)
    assert report["num_cases"] == 4
    unscored, unknown = report["warnings"]
    assert unscored == f"2 prediction file(s) in {tmp_path / 'pred'} have no reference in {tmp_path / 'ref'} and " \
                       "are not scored: case_104.nii.gz, case_105.nii.gz"
    assert unknown.startswith("label value(s) 7 not in dataset.json's labels") and \
        f"in 1 file(s): {tmp_path / 'pred' / 'case_002.nii.gz'} (7)" in unknown
    main_evaluate(arguments)
    assert capsys.readouterr().err.splitlines() == [f"nnUNetv2_morse_evaluate: warning: {w}"
                                                    for w in report["warnings"]]


def scored_report(dice_by_case, tolerance_mm=1.0, empty="one", reference_folder="/data/ref"):
    """fake_report with what evaluate records about how it was scored."""
    report = fake_report(dice_by_case, [5.0] * len(dice_by_case))
    report["classes"]["organ"]["nsd_tolerance_mm"] = tolerance_mm
    return {**report, "empty_convention": empty, "reference_folder": reference_folder, "dataset": "Dataset901_Fake",
            "dataset_labels": {"background": 0, "organ": 1}}


def test_compare_refuses_reports_scored_differently(tmp_path, capsys):
    baseline = scored_report([0.7, 0.8, 0.75] * 4)
    names, sources = ["base", "model"], ["base.json", "model.json"]
    with pytest.raises(ComparisonError, match=r"different NSD tolerances \(organ 1 vs 2 mm\)"):
        compare_reports([baseline, scored_report([0.7, 0.8, 0.8] * 4, tolerance_mm=2.0)], names, sources)
    with pytest.raises(ComparisonError, match="model was scored with --empty nan, baseline base with --empty one"):
        compare_reports([baseline, scored_report([0.7, 0.8, 0.8] * 4, empty="nan")], names, sources)
    undefined = scored_report([0.7, 0.8, 0.8] * 4)
    undefined["metric_per_case"][1]["metrics"]["organ"]["Dice"] = None
    with pytest.raises(ComparisonError, match="non-finite Dice of class organ in case.s.: case_001 .only a report "
                                              "scored with --empty nan may leave one null"):
        compare_reports([baseline, undefined], names, sources)
    infinite = scored_report([0.7, 0.8, 0.8] * 4, empty="nan")
    infinite["metric_per_case"][2]["metrics"]["organ"]["HD95"] = float("inf")
    with pytest.raises(ComparisonError, match="non-finite HD95 of class organ in case.s.: case_002$"):
        compare_reports([scored_report([0.7, 0.8, 0.75] * 4, empty="nan"), infinite], names, sources)

    unrecorded = fake_report([0.7, 0.8, 0.75] * 4, [5.0] * 12)
    with pytest.raises(ComparisonError, match=r"different --empty conventions \(nan, one\)"):
        compare_reports([unrecorded, scored_report([0.7] * 12), scored_report([0.8] * 12, empty="nan")],
                        ["base", "one", "nan"], ["base.json", "one.json", "nan.json"])
    nan_models = compare_reports([unrecorded, scored_report([0.8] * 12, empty="nan")], names, sources)
    assert nan_models["empty_convention"] == "nan" and nan_models["empty_pairing"]

    other_reference = scored_report([0.7, 0.8, 0.8] * 4, reference_folder="/data/other")
    assert compare_reports([baseline, other_reference], names, sources)["warnings"] == [
        'model and baseline base were scored with different reference folders: "/data/other" vs "/data/ref"']
    assert compare_reports([baseline, scored_report([0.7, 0.8, 0.8] * 4)], names, sources)["warnings"] == []
    old = fake_report([0.7, 0.8, 0.8] * 4, [5.0] * 12)
    (warning,) = compare_reports([baseline, old], names, sources)["warnings"]
    assert warning.startswith("report model does not record its empty-class convention (--empty), reference folder, "
                              "dataset.json labels") and "cannot check" in warning

    paths = []
    for name, report in (("base", baseline), ("model", other_reference), ("wide", scored_report([0.7] * 12, 2.0))):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(report))
    compare_main([str(p) for p in paths[:2]] + ["--names", "base", "model", "-o", str(tmp_path / "cmp")])
    assert capsys.readouterr().err.startswith("nnUNetv2_morse_compare: warning: model and baseline base were scored "
                                              "with different reference folders")
    assert "**Warning**: model and baseline base" in (tmp_path / "cmp.md").read_text()
    with pytest.raises(SystemExit) as exit_info:
        compare_main([str(paths[0]), str(paths[2]), "--names", "base", "wide", "-o", str(tmp_path / "refused")])
    assert str(exit_info.value.code).startswith("nnUNetv2_morse_compare: error: wide and baseline base use different")
    assert not list(tmp_path.glob("refused*"))


def nan_scored_report(organ_dice, lesion_dice):
    """A report scored with --empty nan, classes organ, lesion and cyst (cyst absent everywhere: undefined); a
    lesion Dice of None is undefined, 0 a false positive or miss (distances 50 mm), otherwise HD95 = 10 (1 - Dice)."""
    def scores(dice):
        if dice is None:
            return dict.fromkeys(("Dice", "IoU", "HD95", "ASSD", "NSD"))
        distance = 50.0 if dice == 0 else 10 * (1 - dice)
        return {"Dice": dice, "IoU": dice / (2 - dice), "HD95": distance, "ASSD": distance / 2, "NSD": dice}
    return {"classes": {name: {"labels": [label], "nsd_tolerance_mm": 1.0}
                        for label, name in enumerate(("organ", "lesion", "cyst"), start=1)},
            "metric_per_case": [{"case": f"case_{i:03d}", "metrics": {"organ": scores(organ), "lesion": scores(lesion),
                                                                    "cyst": scores(None)}}
                                for i, (organ, lesion) in enumerate(zip(organ_dice, lesion_dice))],
            "empty_convention": "nan", "reference_folder": "/data/ref", "dataset": "Dataset901_Fake",
            "dataset_labels": {"background": 0, "organ": 1, "lesion": 2, "cyst": 3}}


def test_compare_pairs_empty_nan_reports_as_results_md_does(tmp_path, capsys):
    """--empty nan: a lesion both sides leave out (cases 0, 1) is left out of that pair; one the baseline leaves out
    where the model predicts it (cases 2, 3) scores the baseline's correct absence against the model's false
    positive, and the reverse (case 4); the foreground mean of a case averages the classes scored on both sides; a
    class undefined everywhere (cyst) has no numbers, written as null and n/a."""
    rng = np.random.default_rng(3)
    organ_base, organ_model = rng.uniform(0.7, 0.9, 12), rng.uniform(0.7, 0.9, 12)
    lesion_base = [None, None, None, None, 0.0, *rng.uniform(0.5, 0.8, 7)]
    lesion_model = [None, None, 0.0, 0.0, None, *rng.uniform(0.5, 0.8, 7)]
    paths = [tmp_path / "base.json", tmp_path / "model.json"]
    paths[0].write_text(json.dumps(nan_scored_report(organ_base, lesion_base)))
    paths[1].write_text(json.dumps(nan_scored_report(organ_model, lesion_model)))
    compare_main([str(p) for p in paths] + ["--names", "base", "model", "-o", str(tmp_path / "cmp")])
    comparison = json.loads((tmp_path / "cmp.json").read_text())
    assert comparison["empty_pairing"].startswith("--empty nan: a class undefined on one side of a pair only")
    statistics = comparison["comparisons"]["model"]

    paired_base = np.array([np.nan, np.nan, 1.0, 1.0, 0.0, *lesion_base[5:]])
    paired_model = np.array([np.nan, np.nan, 0.0, 0.0, 1.0, *lesion_model[5:]])
    expected = paired_statistics(paired_base, paired_model)
    lesion = statistics["lesion"]["Dice"]
    assert lesion["n"] == 10 and lesion["differences"] == pytest.approx(expected["differences"])
    assert lesion["left_out_cases"] == ["case_000", "case_001"] and statistics["organ"]["Dice"]["left_out_cases"] == []
    table = differences_table(comparison)
    lesion_rows = table[(table["class"] == "lesion") & (table["metric"] == "Dice")]
    assert lesion_rows["case"].tolist() == [f"case_{i:03d}" for i in range(2, 12)]
    assert lesion_rows["difference"].tolist() == pytest.approx(expected["differences"])
    for key in ("mean_difference", "median_difference", "p_value", "baseline_mean", "model_mean"):
        assert lesion[key] == pytest.approx(expected[key])
    assert lesion["mean_difference_ci"] == pytest.approx(expected["mean_difference_ci"])
    lesion_hd95 = statistics["lesion"]["HD95"]
    assert lesion_hd95["differences"][:3] == pytest.approx([50.0, 50.0, -50.0])

    foreground_base = np.where(np.isnan(paired_base), organ_base, (organ_base + paired_base) / 2)
    foreground_model = np.where(np.isnan(paired_model), organ_model, (organ_model + paired_model) / 2)
    foreground = statistics["foreground mean"]["Dice"]
    assert foreground["n"] == 12 and foreground["baseline_mean"] == pytest.approx(np.mean(foreground_base))
    assert foreground["mean_difference"] == pytest.approx(np.mean(foreground_model - foreground_base))

    cyst = statistics["cyst"]["Dice"]
    assert cyst["n"] == 0 and cyst["mean_difference"] is None and cyst["p_value"] is None and \
        cyst["p_value_bh"] is None and cyst["note"] == "no case is scored on both sides"
    family = [s["p_value"] for per_metric in statistics.values() for s in per_metric.values() if s["n"]]
    assert [s["p_value_bh"] for per_metric in statistics.values() for s in per_metric.values() if s["n"]] == \
        pytest.approx(benjamini_hochberg(family))
    markdown = (tmp_path / "cmp.md").read_text()
    assert "Pairing under --empty nan" in markdown
    assert next(line for line in markdown.splitlines() if line.startswith("| lesion | Dice |")).split("|")[3].strip() \
        == "10"
    assert "| cyst | Dice | 0 | n/a | n/a | n/a | n/a | n/a | [n/a, n/a] | n/a | n/a | n/a | - |" in markdown
    assert "## model vs base" in capsys.readouterr().out


def test_compare_gives_no_interval_below_ten_cases_and_says_why(tmp_path, capsys):
    dice = [0.70, 0.80, 0.75, 0.72, 0.78, 0.71, 0.79, 0.74, 0.76, 0.73]
    better = [d + 0.01 * (1 + i % 3) for i, d in enumerate(dice)]
    for name, (base, model) in (("few", (dice[:9], better[:9])), ("enough", (dice, better))):
        for side, values in (("base", base), ("model", model)):
            (tmp_path / f"{name}_{side}.json").write_text(json.dumps(scored_report(values)))
        compare_main([str(tmp_path / f"{name}_{side}.json") for side in ("base", "model")]
                     + ["--names", "base", "model", "-o", str(tmp_path / name)])
    few, enough = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("few", "enough"))
    assert few["warnings"] == ["only 9 paired cases: no confidence intervals, which need at least 10 (a bootstrap "
                               "over fewer gives intervals that are too narrow)"]
    assert capsys.readouterr().err == f"nnUNetv2_morse_compare: warning: {few['warnings'][0]}\n"
    dice_few, dice_enough = (report["comparisons"]["model"]["organ"]["Dice"] for report in (few, enough))
    assert dice_few["mean_difference_ci"] == [None, None] and dice_few["mean_difference_ci_method"] == "none"
    assert "| [n/a, n/a] |" in (tmp_path / "few.md").read_text()
    low, high = dice_enough["mean_difference_ci"]
    assert enough["warnings"] == [] and low < dice_enough["mean_difference"] < high


def test_compare_with_groups_resamples_and_ranks_whole_groups(tmp_path, capsys):
    """20 cases, pairs of near-identical ones, the model better in every case: taken as independent, p is
    2 / 2^20 and there is an interval; grouped, p ranks 5 group means (at least 2 / 2^5, p < 0.05 unattainable) and
    5 groups are too few for an interval; grouped by pair (10 groups) the numbers are statistics.paired_difference's
    over the pairs."""
    from nnunetv2_morse.evaluation.statistics import paired_difference

    rng = np.random.default_rng(3)
    dice = np.repeat(rng.uniform(0.6, 0.8, 10), 2) + rng.normal(0, 0.002, 20)
    model = dice + np.repeat(rng.uniform(0.005, 0.03, 10), 2) + rng.uniform(0.0, 0.001, 20)
    for side, values in (("base", dice), ("model", model)):
        (tmp_path / f"{side}.json").write_text(json.dumps(scored_report(values)))
    cases = [f"case_{i:03d}" for i in range(20)]
    # in another order than the reports' cases, labels not in case order, and a case the reports lack
    five = {"case_999": "patient_9", **{c: f"patient_{i % 5}" for i, c in reversed(list(enumerate(cases)))}}
    ten = {"case_999": 0, **{c: (i // 2 * 7) % 10 for i, c in reversed(list(enumerate(cases)))}}
    for name, groups in (("five", five), ("ten", ten), ("bad", {**ten, "case_007": [1]}), ("list", cases),
                         ("partial", {c: g for c, g in ten.items() if c not in ("case_003", "case_011")})):
        (tmp_path / f"{name}_groups.json").write_text(json.dumps(groups))
    paths = [str(tmp_path / "base.json"), str(tmp_path / "model.json"), "--names", "base", "model"]
    compare_main(paths + ["-o", str(tmp_path / "independent")])
    compare_main(paths + ["--groups", str(tmp_path / "five_groups.json"), "-o", str(tmp_path / "five")])
    compare_main(paths + ["--groups", str(tmp_path / "ten_groups.json"), "-o", str(tmp_path / "ten")])
    independent, by_five, by_ten = (json.loads((tmp_path / f"{n}.json").read_text())
                                    for n in ("independent", "five", "ten"))
    dice_independent, dice_five, dice_ten = (c["comparisons"]["model"]["organ"]["Dice"]
                                             for c in (independent, by_five, by_ten))
    assert independent["groups"] is None and dice_independent["num_units"] == 20
    assert dice_independent["p_value"] == pytest.approx(2 / 2 ** 20) and None not in dice_independent[
        "mean_difference_ci"]
    assert by_five["groups"]["num_groups"] == 5 and by_five["groups"]["of_case"]["case_006"] == "patient_1"
    assert list(by_five["groups"]["of_case"]) == cases
    assert by_five["groups"]["source"] == str(tmp_path / "five_groups.json")
    assert dice_five["n"] == 20 and dice_five["num_units"] == 5 and dice_five["p_value"] == pytest.approx(2 / 2 ** 5)
    assert dice_five["mean_difference_ci"] == [None, None] and "p < 0.05 unattainable" in dice_five["note"]
    assert dice_five["mean_difference"] == pytest.approx(dice_independent["mean_difference"])
    assert by_five["warnings"] == ["only 5 groups of the 20 paired cases: no confidence intervals, which need at "
                                   "least 10 groups (a bootstrap over fewer gives intervals that are too narrow)"]
    expected = paired_difference(dice, model, units=np.array([str(ten[c]) for c in cases]))
    assert by_ten["groups"]["num_groups"] == dice_ten["num_units"] == 10
    assert dice_ten["mean_difference_ci"] == pytest.approx([expected.low, expected.high])
    assert dice_ten["p_value"] == pytest.approx(expected.p_value) == pytest.approx(2 / 2 ** 10)
    assert dice_ten["mean_difference_ci"] != pytest.approx(dice_independent["mean_difference_ci"])
    assert "20 paired cases in 10 groups (" in (tmp_path / "ten.md").read_text()
    capsys.readouterr()
    for name, message in (("bad", "the group of a case must be a name or an integer, not that of case_007"),
                          ("partial", "the groups give no group for 2 of the 20 case(s): case_003, case_011"),
                          ("list", "is not a groups file: give a JSON object mapping each case id to its group"),
                          ("missing", "groups file not found")):
        with pytest.raises(SystemExit) as exit_info:
            compare_main(paths + ["--groups", str(tmp_path / f"{name}_groups.json"), "-o", str(tmp_path / name)])
        assert message in str(exit_info.value.code) and "\n" not in str(exit_info.value.code)
        assert not list(tmp_path.glob(f"{name}.*"))


def test_chill_scores_only_the_predictions_present(tmp_path, capsys):
    references, predictions = fake_cases()
    write_cases(tmp_path / "ref", references)
    write_cases(tmp_path / "pred", {k: v for k, v in predictions.items() if k not in ("case_001", "case_003")})
    (tmp_path / "dataset.json").write_text(json.dumps(DATASET_JSON))
    output = tmp_path / "chill.json"
    main_evaluate([str(tmp_path / "ref"), str(tmp_path / "pred"), "-djfile", str(tmp_path / "dataset.json"), "-np",
                   "1", "-o", str(output), "--chill"])
    report = json.loads(output.read_text())
    assert [entry["case"] for entry in report["metric_per_case"]] == ["case_000", "case_002"]
    (warning,) = report["warnings"]
    assert warning == (f"--chill: 2 reference case(s) in {tmp_path / 'ref'} have no prediction and are not scored: "
                       "case_001.nii.gz, case_003.nii.gz")
    assert capsys.readouterr().err == f"nnUNetv2_morse_evaluate: warning: {warning}\n"
    write_cases(tmp_path / "none", {"other": predictions["case_000"]})
    with pytest.raises(EvaluationError, match="holds none of the 4 reference case"):
        evaluate_folders(str(tmp_path / "ref"), str(tmp_path / "none"), DATASET_JSON, chill=True)


def test_reports_record_versions_and_time(tmp_path):
    report = evaluate_folders(*write_fake_folders(tmp_path)[:2], DATASET_JSON)
    assert report["versions"] == {name: importlib.metadata.version(distribution) for name, distribution in
                                  (("nnunetv2_morse", "nnunetv2-morse"), ("nnunetv2", "nnunetv2"),
                                   ("monai", "monai"), ("torch", "torch"))}
    created = datetime.datetime.fromisoformat(report["created"])
    assert abs((datetime.datetime.now(datetime.timezone.utc) - created).total_seconds()) < 600


def test_progress_bar_counts_the_cases_on_a_terminal(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    evaluate_folders(*write_fake_folders(tmp_path)[:2], DATASET_JSON)
    assert "scoring: 100%" in terminal.getvalue() and "4/4" in terminal.getvalue()


@pytest.mark.parametrize("num_cases, num_processes, workers", [(2, 2, 0), (4, 8, 0), (15, 2, 0), (16, 2, 2),
                                                               (16, 8, 2), (100, 8, 8), (100, 1, 0)])
def test_worker_processes_only_for_enough_cases(num_cases, num_processes, workers):
    assert worker_count(num_cases, num_processes) == workers


def test_a_handful_of_cases_is_scored_without_worker_processes(tmp_path, monkeypatch):
    """Each worker process imports torch, MONAI and nnU-Net: for a few cases that costs more than it saves."""
    def no_processes(*args, **kwargs):
        raise AssertionError("a worker pool was started")

    monkeypatch.setattr(multiprocessing, "get_context", no_processes)
    report = evaluate_folders(*write_fake_folders(tmp_path)[:2], DATASET_JSON, num_processes=2)
    assert report["num_cases"] == 4


def test_evaluate_cv_output_file_fold_all_and_missing_dataset(tmp_path, monkeypatch, capsys):
    env, results = write_fake_cross_validation(tmp_path)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    main_evaluate_cv(["-d", "901", "-c", "3d_fullres", "-tr", "nnUNetTrainerFake", "-f", "0", "-o",
                      str(tmp_path / "out" / "folds0.json")])
    assert json.loads((tmp_path / "out" / "folds0.json").read_text())["num_cases"] == 2
    assert (tmp_path / "out" / "folds0.md").read_text().startswith("# nnUNetTrainerFake__nnUNetPlans__3d_fullres")
    assert not (results / "crossval_boundary_metrics.json").exists()  # the model folder's report is left alone

    main_evaluate_cv(["-d", "901", "-c", "3d_fullres", "-tr", "nnUNetTrainerFake", "-f", "all"])
    report = json.loads((results / "crossval_boundary_metrics.json").read_text())
    assert report["num_cases"] == 4 and list(report["folds"]) == ["all"]  # fold all validates on every case

    with pytest.raises(SystemExit) as exit_info:
        main_evaluate_cv(["-d", "902", "-c", "3d_fullres", "-tr", "nnUNetTrainerFake"])
    message = str(exit_info.value.code)
    assert message.startswith("nnUNetv2_morse_evaluate_cv: error: Could not find a dataset with the ID 902") and \
        "\n" not in message
    assert f"nnUNet_preprocessed={env['nnUNet_preprocessed']}; nnUNet_results={env['nnUNet_results']}" in message
    with pytest.raises(SystemExit) as exit_info:
        main_evaluate_cv(["-d", "901", "-c", "2d", "-tr", "nnUNetTrainerFake"])
    assert "model folder not found" in str(exit_info.value.code) and \
        "trained models of Dataset901_Fake: nnUNetTrainerFake__nnUNetPlans__3d_fullres" in str(exit_info.value.code)
