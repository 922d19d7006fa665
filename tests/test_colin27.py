"""The Colin27 + AAL builder on a small fake source folder in the Debian files' format (the package is not needed)."""
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
from nnunetv2_morse.datasets import colin27
from nnunetv2_morse.datasets.colin27 import (LABELS, class_of_region, contiguous_folds, interleaved_folds, make_colin27_dataset,
                                             read_region_names, region_class_lut, validation_slabs)
from nnunetv2_morse.datasets.commands import make_colin27_entry

# a few lines of aal.nii.txt (same numbering and format, CRLF as in the Debian file), with their expected classes
FAKE_REGIONS = {
    1: ("Precentral_L 2001", "frontal"), 6: ("Frontal_Sup_Orb_R 2112", "frontal"), 28: ("Rectus_R 2702", "frontal"),
    29: ("Insula_L 3001", "insula"), 31: ("Cingulum_Ant_L 4001", "limbic"), 41: ("Amygdala_L 4201", "limbic"),
    43: ("Calcarine_L 5001", "occipital"), 55: ("Fusiform_L 5401", "occipital"),
    57: ("Postcentral_L 6001", "parietal"), 67: ("Precuneus_L 6301", "parietal"),
    71: ("Caudate_L 7001", "subcortical_grey"), 78: ("Thalamus_R 7102", "subcortical_grey"),
    79: ("Heschl_L 8101", "temporal"), 88: ("Temporal_Pole_Mid_R 8212", "temporal"),
    92: ("Cerebelum_Crus1_R 9002", "cerebellum"), 116: ("Vermis_10 9170", "cerebellum"),
}
SHAPE = (40, 24, 20)  # (z, y, x)
BRAIN_SLICES = range(5, 35)  # slice 4 holds one labelled voxel only and is skipped
REGION_IDS = sorted(FAKE_REGIONS)


def write_fake_source(folder):
    """ch2.nii.gz, aal.nii.gz (uint8, Colin27's geometry) and aal.nii.txt; region k fills column x = 2 + k."""
    os.makedirs(folder, exist_ok=True)
    regions = np.zeros(SHAPE, dtype=np.uint8)
    for k, region_id in enumerate(REGION_IDS):
        regions[BRAIN_SLICES.start:BRAIN_SLICES.stop, 4:20, 2 + k] = region_id
    regions[4, 10, 10] = 1
    t1 = (np.arange(np.prod(SHAPE)) % 200 + 20).reshape(SHAPE).astype(np.uint8)
    for array, name in ((t1, "ch2.nii.gz"), (regions, "aal.nii.gz")):
        image = sitk.GetImageFromArray(array)
        image.SetOrigin((90.0, 125.0, -71.0))
        image.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
        sitk.WriteImage(image, os.path.join(folder, name), True)
    with open(os.path.join(folder, "aal.nii.txt"), "w", newline="") as f:
        f.write("".join(f"{i} {FAKE_REGIONS[i][0]}\r\n" for i in REGION_IDS))
    return folder


def expected_classes():
    """Class labels of the fake atlas, shape SHAPE."""
    labels = np.zeros(SHAPE, dtype=np.uint8)
    for k, region_id in enumerate(REGION_IDS):
        labels[BRAIN_SLICES.start:BRAIN_SLICES.stop, 4:20, 2 + k] = LABELS[FAKE_REGIONS[region_id][1]]
    labels[4, 10, 10] = LABELS["frontal"]
    return labels


@pytest.fixture
def source(tmp_path):
    return write_fake_source(str(tmp_path / "templates"))


def build(tmp_path, source, mode, **kwargs):
    folder = make_colin27_dataset(str(tmp_path / "raw"), 27, mode=mode, source_dir=source,
                                  preprocessed_dir=str(tmp_path / "preprocessed"), **kwargs)
    with open(tmp_path / "preprocessed" / "Dataset027_Colin27AAL" / "splits_final.json") as f:
        splits = json.load(f)
    return folder, splits


def read_case(folder, case_id):
    image = sitk.ReadImage(os.path.join(folder, "imagesTr", f"{case_id}_0000.nii.gz"))
    label = sitk.ReadImage(os.path.join(folder, "labelsTr", f"{case_id}.nii.gz"))
    return image, label


def assert_contiguous_folds(splits, case_ids):
    """5 folds; validation sets are consecutive blocks of case_ids covering each case once; train = the rest."""
    assert len(splits) == 5
    assert [c for split in splits for c in split["val"]] == list(case_ids)
    sizes = [len(split["val"]) for split in splits]
    assert max(sizes) - min(sizes) <= 1
    for split in splits:
        assert sorted(split["train"] + split["val"]) == sorted(case_ids)
        assert not set(split["train"]) & set(split["val"])


def test_region_names_and_grouping(source):
    names = read_region_names(os.path.join(source, "aal.nii.txt"))
    assert names == {i: FAKE_REGIONS[i][0].split()[0] for i in REGION_IDS}
    for region_id, (line, class_name) in FAKE_REGIONS.items():
        assert class_of_region(line.split()[0]) == LABELS[class_name], line
    lut = region_class_lut(names)
    assert lut[0] == 0 and lut[29] == LABELS["insula"] and lut[2] == 255
    assert list(LABELS) == ["background", "frontal", "insula", "limbic", "occipital", "parietal", "subcortical_grey",
                            "temporal", "cerebellum"]
    with pytest.raises(ValueError, match="'White_Matter' belongs to none"):
        class_of_region("White_Matter")


def test_2d_slices_labels_and_folds(tmp_path, source):
    folder, splits = build(tmp_path, source, "2d")
    case_ids = [f"colin27_z{z:03d}" for z in BRAIN_SLICES]
    assert sorted(f[:-len(".nii.gz")] for f in os.listdir(os.path.join(folder, "labelsTr"))) == case_ids
    with open(os.path.join(folder, "dataset.json")) as f:
        dataset_json = json.load(f)
    assert dataset_json["labels"] == LABELS and dataset_json["numTraining"] == len(case_ids)
    expected = expected_classes()
    for z in (5, 20, 34):
        image, label = read_case(folder, f"colin27_z{z:03d}")
        assert image.GetSize() == label.GetSize() == (20, 24)
        assert np.allclose(label.GetSpacing(), (1.0, 1.0)) and np.allclose(label.GetOrigin(), (90.0, 125.0))
        assert np.array_equal(sitk.GetArrayFromImage(label), expected[z])
    assert_contiguous_folds(splits, case_ids)
    with open(os.path.join(folder, "splits_final.json")) as f:
        assert json.load(f) == splits
    assert not [p for p in (folder, tmp_path / "preprocessed" / "Dataset027_Colin27AAL")  # five blocks: too few groups
                if os.path.exists(os.path.join(p, "case_groups.json"))]
    verify_dataset_integrity(folder, num_processes=1)


def test_3d_slabs_every_and_downsample(tmp_path, source):
    folder, splits = build(tmp_path, source, "3d", every=2, downsample=2, slab_thickness=3)
    kept = list(range(5, 35, 2))  # 15 slices -> 5 slabs of 3
    case_ids = [f"colin27_z{kept[i]:03d}-{kept[i + 2]:03d}" for i in range(0, 15, 3)]
    assert sorted(f[:-len(".nii.gz")] for f in os.listdir(os.path.join(folder, "labelsTr"))) == case_ids
    image, label = read_case(folder, case_ids[1])
    assert image.GetSize() == label.GetSize() == (10, 12, 3)
    assert np.allclose(label.GetSpacing(), (2.0, 2.0, 2.0))
    assert np.allclose(label.GetOrigin(), (89.5, 124.5, -71.0 + kept[3]))
    assert np.allclose(label.GetDirection(), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    t1 = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(source, "ch2.nii.gz"))).astype(np.float64)
    block = t1[kept[3], 0:2, 4:6]
    assert np.isclose(sitk.GetArrayFromImage(image)[0, 0, 2], block.mean())
    # each 2 x 2 block of rows 4-5 holds two source columns of two classes each: the tie goes to the lower class
    source_row = expected_classes()[kept[3], 4]
    assert np.array_equal(sitk.GetArrayFromImage(label)[0, 2], np.minimum(source_row[0::2], source_row[1::2]))
    assert_contiguous_folds(splits, case_ids)
    verify_dataset_integrity(folder, num_processes=1)


def test_too_few_cases_and_bad_source(tmp_path, source):
    with pytest.raises(ValueError, match="only 2 3d cases, need at least 5"):
        build(tmp_path, source, "3d", slab_thickness=15)
    with open(os.path.join(source, "aal.nii.txt"), "a", newline="") as f:
        f.write("117 Frontal\r\n")
    with pytest.raises(ValueError, match=r"aal.nii.txt:17: expected '<id> <name> <code>'"):
        build(tmp_path, source, "2d")
    with pytest.raises(FileNotFoundError, match="mricron-data"):
        build(tmp_path, str(tmp_path / "nowhere"), "2d")


def test_contiguous_folds():
    splits = contiguous_folds([f"c{i}" for i in range(12)])
    assert [s["val"] for s in splits] == [["c0", "c1", "c2"], ["c3", "c4", "c5"], ["c6", "c7"], ["c8", "c9"],
                                          ["c10", "c11"]]
    with pytest.raises(ValueError, match="need at least 5"):
        contiguous_folds(["a", "b"])


def test_interleaved_folds():
    splits = interleaved_folds([f"c{i}" for i in range(13)], slab=2)
    assert [s["val"] for s in splits] == [["c0", "c1", "c10", "c11"], ["c2", "c3", "c12"], ["c4", "c5"], ["c6", "c7"],
                                          ["c8", "c9"]]
    for split in splits:
        assert sorted(split["train"] + split["val"]) == sorted(f"c{i}" for i in range(13))
    with pytest.raises(ValueError, match="only 4 slabs of 3 of the 12 cases, need at least 5"):
        interleaved_folds([f"c{i}" for i in range(12)], slab=3)


@pytest.mark.parametrize("mode", ["2d", "3d"])
@pytest.mark.parametrize("folds", [range(5), [0], [1, 3, 4]])
def test_validation_slabs_are_found_again_from_the_folds_of_the_cases(folds, mode):
    """Each case's slab, from its fold alone (any folds present, the last slab shorter, cases in any order), is its
    interleaved_folds slab: case i of the dataset is in slab i // 6."""
    starts = range(37, 179) if mode == "2d" else range(37, 37 + 16 * 29, 16)
    case_ids = [f"colin27_z{z:03d}" if mode == "2d" else f"colin27_z{z:03d}-{z + 15:03d}" for z in starts]
    splits = interleaved_folds(case_ids, 6)
    case_folds = {c: f for f in folds for c in reversed(splits[f]["val"])}
    assert validation_slabs(case_folds, 6) == {c: case_ids.index(c) // 6 for c in case_folds}


def test_validation_slabs_refuse_a_fold_that_lacks_one_of_its_cases():
    case_ids = [f"colin27_z{z:03d}" for z in range(40, 100)]
    case_folds = {c: f for f, split in enumerate(interleaved_folds(case_ids, 6)) for c in split["val"]}
    del case_folds["colin27_z043"]
    with pytest.raises(ValueError, match="not runs of consecutive slices .*lacks some of its validation cases"):
        validation_slabs(case_folds, 6)
    with pytest.raises(ValueError, match="slab must be >= 1"):
        validation_slabs(case_folds, 0)
    with pytest.raises(ValueError, match="case_[78] is not a Colin27 case id"):
        validation_slabs({"case_7": 0, "case_8": 0}, 6)


def test_2d_validation_slabs_dealt_to_the_folds(tmp_path, source):
    folder, splits = build(tmp_path, source, "2d", validation_slab=3)
    case_ids = [f"colin27_z{z:03d}" for z in BRAIN_SLICES]
    assert splits == interleaved_folds(case_ids, 3) and splits[0]["val"][:4] == case_ids[:3] + case_ids[15:16]
    with open(os.path.join(folder, "splits_final.json")) as f:
        assert json.load(f) == splits
    with open(os.path.join(folder, "dataset.json")) as f:
        assert "slabs of 3 cases dealt to the folds in turn" in json.load(f)["description"]
    case_folds = {c: fold for fold, split in enumerate(splits) for c in split["val"]}
    slab_of = validation_slabs(case_folds, 3)
    for groups_folder in (folder, tmp_path / "preprocessed" / "Dataset027_Colin27AAL"):
        with open(os.path.join(groups_folder, "case_groups.json")) as f:
            groups = json.load(f)
        assert groups == {c: f"slab_{slab_of[c]:03d}" for c in case_ids}
        assert groups[case_ids[2]] == "slab_000" != groups[case_ids[3]] == "slab_001"
    verify_dataset_integrity(folder, num_processes=1)
    build(tmp_path, source, "2d")  # rebuilt with contiguous folds: no groups file is left behind
    assert not [p for p in (folder, tmp_path / "preprocessed" / "Dataset027_Colin27AAL")
                if os.path.exists(os.path.join(p, "case_groups.json"))]


def test_console_script(tmp_path, source, monkeypatch, capsys):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    assert make_colin27_entry(["-d", "28", "--mode", "2d", "--every", "3", "--source", source]) == 0
    out, err = capsys.readouterr()
    assert out == str(tmp_path / "raw" / "Dataset028_Colin27AAL") + "\n"
    assert err == "next: nnUNetv2_plan_and_preprocess -d 28 -c 2d --verify_dataset_integrity\n"
    assert os.path.isfile(tmp_path / "preprocessed" / "Dataset028_Colin27AAL" / "splits_final.json")
    assert make_colin27_entry(["-d", "29", "--mode", "3d", "--slab-thickness", "3", "--source", source]) == 0
    assert capsys.readouterr().err.endswith("-d 29 -c 3d_fullres --verify_dataset_integrity\n")

    missing = str(tmp_path / "missing")
    assert make_colin27_entry(["-d", "28", "--mode", "2d", "--source", missing]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "apt-get install -y mricron-data" in error

    monkeypatch.setattr(colin27, "DEFAULT_SOURCE_DIR", missing)
    monkeypatch.setattr(colin27.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(colin27.os, "geteuid", lambda: 1000)
    assert make_colin27_entry(["-d", "28", "--mode", "2d", "--install", "--source", missing]) == 1
    assert "--install needs root" in capsys.readouterr().err

    commands = []
    monkeypatch.setattr(colin27.os, "geteuid", lambda: 0)
    monkeypatch.setattr(colin27.subprocess, "run", lambda command: commands.append(command) or
                        type("Completed", (), {"returncode": 0})())
    assert make_colin27_entry(["-d", "28", "--mode", "2d", "--install", "--source", missing]) == 1
    assert commands == [["apt-get", "install", "-y", "mricron-data"]]
    assert "Colin27 files missing" in capsys.readouterr().err
    assert make_colin27_entry(["-d", "28", "--mode", "2d", "--install", "--source", source + "_other"]) == 1
    assert "--install fills" in capsys.readouterr().err


def test_help_shows_the_source_folder(capsys):
    with pytest.raises(SystemExit):
        make_colin27_entry(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {colin27.DEFAULT_SOURCE_DIR})" in text
    assert all(name in text for name in colin27.SOURCE_FILES)
    assert "(default: 16)" in text and "(default: Colin27AAL)" in text
