"""What the dataset builders share: case files and their geometry, per-case random streams, dataset.json, majority
downsampling."""
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_morse.datasets.raw import (GENERATED_DATA_LICENCE, majority_downsample, prepare_raw_dataset_folder,
                                         write_case, write_dataset_json, write_generated_cases)


def small_case(rng):
    """A generate(rng) for write_generated_cases: a 4 x 5 image and label drawn from rng."""
    return rng.normal(size=(4, 5)).astype(np.float32), rng.integers(0, 3, size=(4, 5)).astype(np.uint8)


def read_array(*parts):
    return sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(*parts)))


def test_write_case_geometry_is_numpy_order(tmp_path):
    folder = prepare_raw_dataset_folder(str(tmp_path), 5, "Geometry", ("imagesTr", "labelsTr", "imagesTs"))
    image = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    direction = np.array([[-1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]])
    write_case(folder, "c", image, (image > 10).astype(np.uint8), (3.0, 2.0, 0.5), (7.0, 8.0, 9.0), direction)
    for path in ("imagesTr/c_0000.nii.gz", "labelsTr/c.nii.gz"):
        written = sitk.ReadImage(os.path.join(folder, path))
        assert written.GetSize() == (4, 3, 2)
        assert written.GetSpacing() == (0.5, 2.0, 3.0) and written.GetOrigin() == (9.0, 8.0, 7.0)
        assert written.GetDirection() == tuple(direction.ravel())
    np.testing.assert_array_equal(read_array(folder, "imagesTr", "c_0000.nii.gz"), image)
    write_case(folder, "t", image[0], None, (1.0, 1.0), (0.0, 0.0), image_dir="imagesTs")
    assert sitk.ReadImage(os.path.join(folder, "imagesTs", "t_0000.nii.gz")).GetDirection() == (1.0, 0.0, 0.0, 1.0)
    assert sorted(os.listdir(os.path.join(folder, "labelsTr"))) == ["c.nii.gz"]


def test_each_case_depends_on_seed_split_and_number_only(tmp_path):
    a = prepare_raw_dataset_folder(str(tmp_path / "a"), 6, "Cases", ("imagesTr", "labelsTr", "imagesTs"))
    b = prepare_raw_dataset_folder(str(tmp_path / "b"), 6, "Cases", ("imagesTr", "labelsTr", "imagesTs"))
    write_generated_cases(a, small_case, (1.0, 1.0), num_training=2, num_test=1, seed=4)
    write_generated_cases(b, small_case, (1.0, 1.0), num_training=3, num_test=0, seed=4)
    for case in ("case_0000", "case_0001"):
        np.testing.assert_array_equal(read_array(a, "imagesTr", f"{case}_0000.nii.gz"),
                                      read_array(b, "imagesTr", f"{case}_0000.nii.gz"))
        np.testing.assert_array_equal(read_array(a, "labelsTr", f"{case}.nii.gz"),
                                      read_array(b, "labelsTr", f"{case}.nii.gz"))
    # case 2 is a test case in a and a training case in b: another stream
    assert os.listdir(os.path.join(a, "imagesTs")) == ["case_0002_0000.nii.gz"]
    assert not np.array_equal(read_array(a, "imagesTs", "case_0002_0000.nii.gz"),
                              read_array(b, "imagesTr", "case_0002_0000.nii.gz"))
    images = [os.path.join(b, "imagesTr", f"case_{i:04d}_0000.nii.gz") for i in range(3)]
    assert len({sitk.ReadImage(path).GetOrigin() for path in images}) == 3, "every case has its own origin"


def test_dataset_json_is_nnunets(tmp_path):
    labels = {"background": 0, "vessel": 1}
    write_dataset_json(str(tmp_path), "Name", "what it is", "T1", labels, 3, licence=GENERATED_DATA_LICENCE)
    with open(tmp_path / "dataset.json") as f:
        dataset_json = json.load(f)
    assert dataset_json == {"name": "Name", "description": "what it is", "channel_names": {"0": "T1"},
                            "labels": labels, "numTraining": 3, "file_ending": ".nii.gz",
                            "overwrite_image_reader_writer": "SimpleITKIO", "licence": GENERATED_DATA_LICENCE,
                            "converted_by": "nnunetv2-morse (nnunetv2_morse.datasets)"}


def test_majority_downsample_and_ties():
    label = np.array([[1, 1, 2, 0],
                      [1, 0, 2, 0],
                      [3, 3, 0, 0],
                      [2, 2, 0, 4]], dtype=np.uint8)
    assert majority_downsample(label, (2, 2), 5).tolist() == [[1, 0], [2, 0]]
    with pytest.raises(ValueError, match="divisible"):
        majority_downsample(label[:3], (2, 2), 5)


def test_majority_downsample_3d_against_a_loop():
    label = np.random.default_rng(0).integers(0, 4, size=(3, 6, 9))
    expected = np.zeros((3, 3, 3), dtype=np.uint8)
    for index in np.ndindex(*expected.shape):
        block = label[index[0], 2 * index[1]:2 * index[1] + 2, 3 * index[2]:3 * index[2] + 3]
        expected[index] = np.argmax(np.bincount(block.ravel(), minlength=4))
    result = majority_downsample(label, (1, 2, 3), 4)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, expected)
