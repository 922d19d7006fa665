"""nnUNetv2_morse_picture's panels with and without a reference, on an untrained small MORSE network (no training)."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from matplotlib.figure import Figure

from nnunetv2_morse.evaluation import picture
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


@pytest.fixture(autouse=True)
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
    return [axis.get_title() for axis in figure.axes]


def test_no_reference_panel_without_a_reference(case_files, saved_figures, tmp_path):
    image_file, _ = case_files
    picture.make_picture("model", [image_file], str(tmp_path / "no_reference.png"))
    (figure,) = saved_figures
    titles = panel_titles(figure)
    assert len(titles) == 5 and not any("reference" in title for title in titles), titles
    assert figure._suptitle.get_text().endswith("no reference given")


def test_reference_panel_shows_the_reference(case_files, saved_figures, tmp_path):
    image_file, label_file = case_files
    picture.make_picture("model", [image_file], str(tmp_path / "reference.png"), reference_file=label_file)
    (figure,) = saved_figures
    titles = panel_titles(figure)
    assert len(titles) == 6 and titles[1] == "reference", titles
    assert "no reference" not in figure._suptitle.get_text()
    shown = np.asarray(figure.axes[1].images[0].get_array())
    assert set(np.unique(shown)) == {0, 1, 2}
