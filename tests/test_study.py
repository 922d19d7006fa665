"""The study command: baseline and MORSE with one schedule and seed, cross-validation scored and compared."""
import json
import os

import pytest

from nnunetv2_morse.evaluation import study
from nnunetv2_morse.evaluation.study import run_study


def test_study_trains_scores_and_compares(tmp_path, monkeypatch):
    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    markdown = run_study("synthetic2d", "cpu", str(tmp_path), ["nnUNetTrainer", "nnUNetTrainerMORSE"], folds=[0, 1],
                         device="cpu", seed=0, dataset_id=931, schedule=(1, 2, 1))
    assert os.path.isfile(markdown)
    with open(markdown.replace(".md", ".json")) as f:
        comparison = json.load(f)
    assert "nnUNetTrainerMORSE" in json.dumps(comparison)
    with open(tmp_path / "comparison.png", "rb") as f:
        assert f.read(4) == b"\x89PNG"
    results = tmp_path / "nnUNet_results" / "Dataset931_Studysynthetic2d"
    for trainer in ("nnUNetTrainer_study", "nnUNetTrainerMORSE_study"):
        assert (results / f"{trainer}__nnUNetPlans__2d" / "crossval_boundary_metrics.json").is_file()


def test_study_refuses_a_single_trainer_before_building_anything(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        study.main(["--trainers", "nnUNetTrainerMORSE", "--workdir", str(tmp_path / "study")])
    assert exit_info.value.code == 2
    assert "--trainers needs at least two" in capsys.readouterr().err
    assert not (tmp_path / "study").exists()
