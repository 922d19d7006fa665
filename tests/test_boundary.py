"""The boundary benchmark: layout, determinism, geometry, thin structures, touching classes, nnU-Net's check."""
import json
import os
from glob import glob

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import generate_binary_structure, maximum_filter, minimum_filter

from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
from nnunetv2_morse.datasets.boundary import (DEFAULT_NUM_TEST, DEFAULT_NUM_TRAINING, DEFAULT_SHAPES, LABELS,
                                              generate_boundary_case, make_boundary_dataset)
from nnunetv2_morse.datasets.commands import make_boundary_dataset_entry
from nnunetv2_morse.datasets.raw import case_rng
from nnunetv2_morse.datasets.synthetic import generate_case
from workspace import assert_raw_layout


def arrays(folder):
    """{relative path: array} of every .nii.gz file of a dataset folder."""
    return {os.path.relpath(p, folder): sitk.GetArrayFromImage(sitk.ReadImage(p))
            for p in sorted(glob(os.path.join(folder, "*", "*.nii.gz")))}


def near_boundary_fraction(label):
    """Fraction of foreground voxels with a face neighbour of another label (i.e. within 1 voxel of a boundary)."""
    footprint = generate_binary_structure(label.ndim, 1)
    on_boundary = maximum_filter(label, footprint=footprint, mode="nearest") != minimum_filter(
        label, footprint=footprint, mode="nearest")
    foreground = label > 0
    return (on_boundary & foreground).sum() / foreground.sum()


def adjacent_class_pairs(label):
    """Set of (a, b), a < b, both foreground, such that a voxel of a and one of b share a face."""
    pairs = set()
    for axis in range(label.ndim):
        a = np.moveaxis(label, axis, 0)[:-1].ravel()
        b = np.moveaxis(label, axis, 0)[1:].ravel()
        touching = (a != b) & (a > 0) & (b > 0)
        pairs |= {tuple(sorted(p)) for p in set(zip(a[touching].tolist(), b[touching].tolist()))}
    return pairs


def test_layout_and_dataset_json(tmp_path):
    folder = make_boundary_dataset(str(tmp_path), 21, dim=2, num_training=3, num_test=2, shape=(48, 48))
    assert folder == os.path.join(str(tmp_path), "Dataset021_MorseBoundary")
    assert_raw_layout(folder, num_training=3, num_test=2)
    with open(os.path.join(folder, "dataset.json")) as f:
        dataset_json = json.load(f)
    assert dataset_json["labels"] == LABELS
    assert dataset_json["numTraining"] == 3
    assert dataset_json["file_ending"] == ".nii.gz"


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    kwargs = dict(dim=3, num_training=2, num_test=1, shape=(24, 24, 24))
    first = arrays(make_boundary_dataset(str(tmp_path / "a"), 22, seed=5, **kwargs))
    again = arrays(make_boundary_dataset(str(tmp_path / "b"), 22, seed=5, **kwargs))
    other = arrays(make_boundary_dataset(str(tmp_path / "c"), 22, seed=6, **kwargs))
    assert first.keys() == again.keys() == other.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not any(np.array_equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize("dim, size, spacing", [(2, (128, 128), (1.0, 1.0)), (3, (48, 48, 48), (1.0, 1.0, 1.0))])
def test_default_shapes_spacing_and_labels(tmp_path, dim, size, spacing):
    folder = make_boundary_dataset(str(tmp_path), 23, dim=dim, num_training=1, num_test=1)
    for path in sorted(glob(os.path.join(folder, "*", "*.nii.gz"))):
        image = sitk.ReadImage(path)
        array = sitk.GetArrayFromImage(image)
        assert image.GetSize() == size and np.allclose(image.GetSpacing(), spacing), path
        if "labelsTr" in path:
            assert array.dtype == np.uint8
            assert set(np.unique(array).tolist()) == set(LABELS.values()), path
        else:
            assert array.dtype == np.float32 and np.all(np.isfinite(array)), path


@pytest.mark.parametrize("dim, shape, synthetic_shape, synthetic_spacing", [
    (2, (128, 128), (64, 64), (1.0, 1.0)),
    (3, (48, 48, 48), (32, 32, 32), (1.5, 1.0, 1.0)),
])
def test_boundaries_are_thin_and_classes_touch(dim, shape, synthetic_shape, synthetic_spacing):
    """Compared with synthetic.py's ellipses at their defaults, far more foreground lies next to a boundary; vessels
    are thin; wall and lumen share a border in every case, and so do vessels and parenchyma in most."""
    ours, theirs, vessel_pairs = [], [], 0
    for index in range(4):
        _, label = generate_boundary_case(shape, (1.0,) * dim, case_rng(0, "train", index))
        ours.append(near_boundary_fraction(label))
        vessel = label == LABELS["vessel"]
        assert vessel.sum() > 0
        assert near_boundary_fraction(np.where(vessel, label, 0)) > 0.7
        pairs = adjacent_class_pairs(label)
        assert (LABELS["wall"], LABELS["lumen"]) in pairs
        vessel_pairs += (LABELS["vessel"], LABELS["parenchyma"]) in pairs
        _, synthetic_label = generate_case(synthetic_shape, synthetic_spacing, 2, case_rng(0, "train", index))
        theirs.append(near_boundary_fraction(synthetic_label))
    assert vessel_pairs >= 3
    assert np.mean(ours) > 0.4
    assert np.mean(ours) > 1.25 * np.mean(theirs)


@pytest.mark.parametrize("dim, shape", [(2, (64, 64)), (3, (32, 32, 32))])
def test_passes_nnunet_integrity_check(tmp_path, dim, shape):
    folder = make_boundary_dataset(str(tmp_path), 24, dim=dim, num_training=2, num_test=1, shape=shape)
    verify_dataset_integrity(folder, num_processes=1)


def test_console_script(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    assert make_boundary_dataset_entry(["-d", "25", "--dim", "2"]) == 1
    assert "nnUNet_raw is not set" in capsys.readouterr().err
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    assert make_boundary_dataset_entry(["-d", "25", "--dim", "3", "-n", "2", "--num-test", "0", "--shape", "16", "16",
                                        "16", "--seed", "3"]) == 0
    out, err = capsys.readouterr()
    assert out == os.path.join(str(tmp_path), "Dataset025_MorseBoundary") + "\n"
    assert err == "next: nnUNetv2_plan_and_preprocess -d 25 -c 3d_fullres --verify_dataset_integrity\n"
    assert len(os.listdir(os.path.join(out.strip(), "labelsTr"))) == 2
    assert len(os.listdir(os.path.join(out.strip(), "imagesTs"))) == 0
    assert make_boundary_dataset_entry(["-d", "26", "--dim", "2", "--num-test", "1", "--shape", "32", "32"]) == 0
    out, err = capsys.readouterr()
    assert len(os.listdir(os.path.join(out.strip(), "labelsTr"))) == DEFAULT_NUM_TRAINING[2]
    assert err.endswith("-d 26 -c 2d --verify_dataset_integrity\n")
    assert make_boundary_dataset_entry(["-d", "25", "--dim", "3", "--shape", "8", "8", "8"]) == 1
    assert capsys.readouterr().err.startswith("error: shape (8, 8, 8) is too small")


def test_help_shows_the_builder_defaults(capsys):
    with pytest.raises(SystemExit):
        make_boundary_dataset_entry(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {DEFAULT_NUM_TRAINING[2]} in 2D, {DEFAULT_NUM_TRAINING[3]} in 3D)" in text
    assert f"(default: {DEFAULT_NUM_TEST[2]} in 2D, {DEFAULT_NUM_TEST[3]} in 3D)" in text
    shapes = [" ".join(map(str, DEFAULT_SHAPES[dim])) for dim in (2, 3)]
    assert f"(default: {shapes[0]} in 2D, {shapes[1]} in 3D)" in text
    assert "(default: 0)" in text and "(default: MorseBoundary)" in text
