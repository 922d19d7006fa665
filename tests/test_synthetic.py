"""The synthetic nnU-Net raw datasets: layout, determinism, geometry, labels and nnU-Net's own integrity check."""
import json
import os
from glob import glob

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
from nnunetv2_morse.datasets.synthetic import make_synthetic_dataset
from workspace import assert_raw_layout


def read(path):
    img = sitk.ReadImage(path)
    return sitk.GetArrayFromImage(img), img


def case_files(folder):
    """{relative path: (array, image)} of every .nii.gz file of a dataset folder."""
    out = {}
    for path in sorted(glob(os.path.join(folder, "*", "*.nii.gz"))):
        out[os.path.relpath(path, folder)] = read(path)
    return out


@pytest.mark.parametrize("dim", [2, 3])
def test_layout_and_dataset_json(tmp_path, dim):
    folder = make_synthetic_dataset(str(tmp_path), 7, name="Synth", dim=dim, num_training=3, num_test=2)
    assert folder == os.path.join(str(tmp_path), "Dataset007_Synth")
    assert_raw_layout(folder, num_training=3, num_test=2)
    with open(os.path.join(folder, "dataset.json")) as f:
        dj = json.load(f)
    assert dj["labels"] == {"background": 0, "class_1": 1, "class_2": 2}
    assert dj["numTraining"] == 3
    assert dj["file_ending"] == ".nii.gz"
    assert list(dj["channel_names"]) == ["0"]


@pytest.mark.parametrize("dim, size, spacing", [
    (2, (64, 64), (1.0, 1.0)),
    (3, (32, 32, 32), (1.0, 1.0, 1.5)),  # SimpleITK order (x, y, z): thicker slices along z
])
def test_default_shapes_and_geometry(tmp_path, dim, size, spacing):
    folder = make_synthetic_dataset(str(tmp_path), 8, dim=dim, num_training=2, num_test=1)
    files = case_files(folder)
    assert len(files) == 5
    for rel, (arr, img) in files.items():
        assert img.GetDimension() == dim, rel
        assert img.GetSize() == size, rel
        assert np.allclose(img.GetSpacing(), spacing), rel
        assert np.allclose(img.GetDirection(), np.eye(dim).ravel()), rel
        assert arr.shape == size[::-1], rel
        if rel.startswith("labelsTr"):
            assert arr.dtype == np.uint8
        else:
            assert arr.dtype == np.float32 and np.all(np.isfinite(arr)), rel
    # each label has exactly the geometry of its image
    for rel, (_, img) in files.items():
        if rel.startswith("labelsTr"):
            _, image = files[os.path.join("imagesTr", os.path.basename(rel).replace(".nii.gz", "_0000.nii.gz"))]
            assert img.GetOrigin() == image.GetOrigin()
            assert img.GetSpacing() == image.GetSpacing()


def test_custom_shape_and_spacing_are_numpy_order(tmp_path):
    folder = make_synthetic_dataset(str(tmp_path), 9, dim=3, num_training=1, num_test=1, shape=(16, 24, 20),
                                    spacing=(2.0, 1.0, 0.8))
    for rel, (arr, img) in case_files(folder).items():
        assert arr.shape == (16, 24, 20), rel
        assert img.GetSize() == (20, 24, 16), rel
        assert np.allclose(img.GetSpacing(), (0.8, 1.0, 2.0)), rel


@pytest.mark.parametrize("dim", [2, 3])
def test_deterministic_from_seed(tmp_path, dim):
    a = case_files(make_synthetic_dataset(str(tmp_path / "a"), 10, dim=dim, num_training=3, num_test=1, seed=5))
    b = case_files(make_synthetic_dataset(str(tmp_path / "b"), 10, dim=dim, num_training=3, num_test=1, seed=5))
    c = case_files(make_synthetic_dataset(str(tmp_path / "c"), 10, dim=dim, num_training=3, num_test=1, seed=6))
    assert a.keys() == b.keys() == c.keys()
    for rel in a:
        (xa, ia), (xb, ib), (xc, _) = a[rel], b[rel], c[rel]
        np.testing.assert_array_equal(xa, xb, err_msg=rel)
        assert ia.GetOrigin() == ib.GetOrigin() and ia.GetSpacing() == ib.GetSpacing()
        assert not np.array_equal(xa, xc), rel
    # different cases differ from each other
    assert not np.array_equal(a["imagesTr/case_0000_0000.nii.gz"][0], a["imagesTr/case_0001_0000.nii.gz"][0])


@pytest.mark.parametrize("dim", [2, 3])
def test_labels_and_intensities(tmp_path, dim):
    k = 3
    folder = make_synthetic_dataset(str(tmp_path), 11, dim=dim, num_training=4, num_test=0, num_foreground_classes=k)
    for i in range(4):
        label, _ = read(os.path.join(folder, "labelsTr", f"case_{i:04d}.nii.gz"))
        image, _ = read(os.path.join(folder, "imagesTr", f"case_{i:04d}_0000.nii.gz"))
        values = set(np.unique(label).tolist())
        assert values <= set(range(k + 1))
        assert values == set(range(k + 1)), "every class appears in every case"
        assert 0.5 < np.mean(label == 0) < 0.99, "objects cover a part of the image, not all of it"
        # intensities increase with the class, so that there is something to segment
        means = [float(image[label == c].mean()) for c in range(k + 1)]
        assert all(m1 > m0 + 0.3 for m0, m1 in zip(means, means[1:])), means
        # partial-volume edges: intermediate values exist between background and the objects
        assert image.std() > 0.2


def test_replaces_existing_folder_and_refuses_id_clash(tmp_path):
    make_synthetic_dataset(str(tmp_path), 12, dim=2, num_training=4, num_test=2)
    folder = make_synthetic_dataset(str(tmp_path), 12, dim=2, num_training=2, num_test=0)
    assert len(os.listdir(os.path.join(folder, "imagesTr"))) == 2
    assert os.listdir(os.path.join(folder, "imagesTs")) == []
    with pytest.raises(RuntimeError, match="same dataset id"):
        make_synthetic_dataset(str(tmp_path), 12, name="Other", dim=2)


@pytest.mark.parametrize("dim", [2, 3])
def test_passes_nnunet_verify_dataset_integrity(tmp_path, dim):
    folder = make_synthetic_dataset(str(tmp_path), 13, dim=dim, num_training=3, num_test=1)
    verify_dataset_integrity(folder, num_processes=1)  # raises on any problem
