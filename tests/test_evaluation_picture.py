"""nnUNetv2_morse_picture: its panels, legend, colour bar and points on an untrained small MORSE network (no
training), and its one-line errors."""
import os

import matplotlib.image
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from matplotlib.figure import Figure

from nnunetv2_morse.evaluation import picture
from nnunetv2_morse.trainers import TRAINER_DIR
from plans import DATASET_JSON, SmallMORSE, make_plans

SHAPE = (40, 48)  # numpy order (y, x)


@pytest.fixture
def case_files(tmp_path):
    """(image file, label file) of one 2D case: a bright square labelled 1 with a label-2 core."""
    image = np.random.default_rng(0).normal(0, 0.1, SHAPE).astype(np.float32)
    label = np.zeros(SHAPE, np.uint8)
    label[12:28, 14:34] = 1
    label[16:24, 20:28] = 2
    image[label > 0] += 1.0
    files = []
    for name, array in (("case_0000_0000.nii.gz", image), ("case_0000.nii.gz", label)):
        sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / name))
        files.append(str(tmp_path / name))
    return files


@pytest.fixture
def saved_figures(monkeypatch):
    """The matplotlib figures saved while the test runs (Figure.savefig still writes them)."""
    figures, savefig = [], Figure.savefig

    def recording_savefig(figure, *args, **kwargs):
        figures.append(figure)
        return savefig(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    return figures


@pytest.fixture
def untrained_model(monkeypatch):
    """load_trained_network replaced by a freshly built small 2D MORSE network with hand-made plans."""
    plans = make_plans(2)
    # as nnU-Net plans a 2D dataset: 2D images stored as 3D, intensity statistics per channel
    plans.plans.update(transpose_forward=[0, 1, 2], transpose_backward=[0, 1, 2],
                       foreground_intensity_properties_per_channel={"0": {}})
    configuration = plans.get_configuration("cfg")
    torch.manual_seed(0)
    network = SmallMORSE.build_network_architecture(plans, configuration, 1, 3, False).eval()
    monkeypatch.setattr(picture, "load_trained_network", lambda *args: (network, plans, configuration, DATASET_JSON))


def panel_titles(figure):
    """Titles of the image panels (the colour bar's axis has none)."""
    return [axis.get_title() for axis in figure.axes if axis.get_title()]


def test_no_reference_panel_without_a_reference(case_files, saved_figures, tmp_path, untrained_model):
    image_file, _ = case_files
    picture.make_picture("model", [image_file], str(tmp_path / "no_reference.png"))
    (figure,) = saved_figures
    titles = panel_titles(figure)
    assert len(titles) == 5 and not any("reference" in title for title in titles), titles
    assert figure._suptitle.get_text().endswith("no reference given")


def test_reference_panel_shows_the_reference(case_files, saved_figures, tmp_path, untrained_model):
    image_file, label_file = case_files
    picture.make_picture("model", [image_file], str(tmp_path / "reference.png"), reference_file=label_file)
    (figure,) = saved_figures
    titles = panel_titles(figure)
    assert len(titles) == 6 and titles[1] == "reference", titles
    assert "no reference" not in figure._suptitle.get_text()
    shown = np.asarray(figure.axes[1].images[0].get_array()).reshape(-1, 3)
    expected = picture.class_colours(3)
    assert {tuple(c) for c in np.unique(shown, axis=0)} == {tuple(c) for c in expected}


def test_class_legend_and_uncertainty_colour_bar(case_files, saved_figures, tmp_path, untrained_model):
    image_file, label_file = case_files
    picture.make_picture("model", [image_file], str(tmp_path / "legend.png"), reference_file=label_file)
    (figure,) = saved_figures
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["a", "b"]  # DATASET_JSON's names of labels 1, 2
    colours = picture.class_colours(3)
    assert [tuple(patch.get_facecolor()[:3]) for patch in legend.get_patches()] == [tuple(colours[1]),
                                                                                    tuple(colours[2])]
    colour_bars = [axis for axis in figure.axes if axis.get_xlabel().startswith("uncertainty")]
    assert len(colour_bars) == 1


def test_re_predicted_points_are_visible_at_the_default_size(case_files, saved_figures, tmp_path, untrained_model):
    """In the saved PNG, the pixel at the centre of every re-predicted voxel has the points' colour."""
    image_file, _ = case_files
    out_file = tmp_path / "points.png"
    picture.make_picture("model", [image_file], str(out_file))
    (figure,) = saved_figures
    axis = next(a for a in figure.axes if a.get_title().startswith("uncertainty"))
    points = axis.collections[0].get_offsets()
    assert len(points) > 20
    pixels = matplotlib.image.imread(out_file)[..., :3]
    scale = pixels.shape[1] / (figure.get_size_inches()[0] * figure.dpi)  # saved dpi / figure dpi
    x, y = (axis.transData.transform(points) * scale).T
    colours = pixels[(pixels.shape[0] - y).astype(int), x.astype(int)]
    cyan = np.linalg.norm(colours - np.array([0.0, 1.0, 1.0]), axis=1) < 0.2
    assert cyan.mean() > 0.95, cyan.mean()


def picture_arguments(*extra):
    return ["-d", "999", "-c", "cfg", "-o", "unused.png", *extra]


@pytest.fixture
def trained_folders(tmp_path, monkeypatch):
    """$nnUNet_results with Dataset999_Test/nnUNetTrainerMORSE__nnUNetPlans__cfg/fold_0/checkpoint_latest.pth only."""
    fold_folder = tmp_path / "results" / "Dataset999_Test" / "nnUNetTrainerMORSE__nnUNetPlans__cfg" / "fold_0"
    os.makedirs(fold_folder)
    (fold_folder / "checkpoint_latest.pth").write_bytes(b"")
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(tmp_path / variable.split("_")[1]))
    return fold_folder


@pytest.mark.parametrize("arguments, message", [
    (["-tr", "nnUNetTrainerMORSE_lean"], "model folder not found: {results}/Dataset999_Test/nnUNetTrainerMORSE_lean__"
                                         "nnUNetPlans__cfg (trained models of Dataset999_Test: nnUNetTrainerMORSE__"
                                         "nnUNetPlans__cfg)"),
    (["-f", "3"], "fold 3 of {results}/Dataset999_Test/nnUNetTrainerMORSE__nnUNetPlans__cfg is not trained (no fold_3; "
                  "trained folds: 0)"),
    ([], "no checkpoint_final.pth in {fold} (checkpoints there: checkpoint_latest.pth): give one of them with -chk"),
    (["-i", "missing_0000.nii.gz"], "file(s) not found: missing_0000.nii.gz"),
    (["-d", "998"], "Could not find a dataset with the ID 998"),
])
def test_one_line_errors(case_files, trained_folders, capsys, arguments, message):
    image_file, _ = case_files
    arguments = arguments if "-i" in arguments else arguments + ["-i", image_file]
    with pytest.raises(SystemExit) as exit_info:
        picture.main(picture_arguments(*arguments))
    error = str(exit_info.value.code)
    results = os.environ["nnUNet_results"]
    assert error.startswith("nnUNetv2_morse_picture: error: ") and "\n" not in error
    assert message.format(results=results, fold=trained_folders) in error
    if "-d" in arguments:  # nnU-Net's list of the folders it searched stays in the message
        assert f"nnUNet_results={results}" in error
    assert "Traceback" not in capsys.readouterr().err


def test_wrong_channel_count_and_slice_are_one_line_errors(case_files, tmp_path, untrained_model):
    image_file, _ = case_files
    with pytest.raises(picture.CommandError, match=r"the model takes 1 image channel\(s\) \(x\), got 2 file\(s\)"):
        picture.make_picture("model", [image_file, image_file], str(tmp_path / "two.png"))
    with pytest.raises(picture.CommandError, match=r"--slice 5 is outside the preprocessed case's 1 slice\(s\)"):
        picture.make_picture("model", [image_file], str(tmp_path / "slice.png"), slice_index=5)


def test_output_folder_is_created(case_files, tmp_path, untrained_model):
    image_file, _ = case_files
    out_file = tmp_path / "new" / "folder" / "picture.png"
    assert picture.make_picture("model", [image_file], str(out_file)) == str(out_file)
    assert out_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nnunet_ext_trainer_defaults_to_the_package_trainers(case_files, trained_folders, monkeypatch):
    """With nnUNet_extTrainer unset, the model is loaded with it pointing at the package's trainer folder."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    seen = []

    def record_and_stop(self, *args, **kwargs):
        seen.append(os.environ.get("nnUNet_extTrainer"))
        raise picture.CommandError("stopped after the trainer lookup's setup")

    monkeypatch.setattr(nnUNetPredictor, "initialize_from_trained_model_folder", record_and_stop)
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    image_file, _ = case_files
    with pytest.raises(SystemExit, match="stopped after"):
        picture.main(picture_arguments("-i", image_file, "-chk", "checkpoint_latest.pth", "-device", "cpu"))
    assert seen == [TRAINER_DIR]
    monkeypatch.setenv("nnUNet_extTrainer", "/my/trainers")
    with pytest.raises(SystemExit, match="stopped after"):
        picture.main(picture_arguments("-i", image_file, "-chk", "checkpoint_latest.pth", "-device", "cpu"))
    assert seen == [TRAINER_DIR, "/my/trainers"]
