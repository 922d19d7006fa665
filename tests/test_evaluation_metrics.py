"""Metrics of nnunetv2_morse.evaluation.metrics on cases with known answers, and against an independent scipy EDT."""
import math

import numpy as np
import pytest
from scipy import ndimage

from nnunetv2_morse.evaluation.metrics import (EvaluatedClass, as_spatial, binary_metrics, case_metrics,
                                               classes_from_dataset_json, ignore_label_from_dataset_json,
                                               image_diagonal_mm)


def ball(shape, spacing, radius_mm, centre=None):
    """Boolean mask of the voxels whose centres lie within radius_mm (physical units) of centre (voxel coords)."""
    centre = [(n - 1) / 2 for n in shape] if centre is None else centre
    grid = np.indices(shape, dtype=float)
    squared = sum(((grid[i] - centre[i]) * spacing[i]) ** 2 for i in range(len(shape)))
    return squared <= radius_mm ** 2


def box(shape, lower, upper):
    """Boolean mask with the voxels lower[i] <= index < upper[i] set."""
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(lo, hi) for lo, hi in zip(lower, upper))] = True
    return mask


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.8, 1.2)])
def test_concentric_spheres_distance_is_radius_difference(spacing):
    shape = tuple(int(round(64 / s)) for s in spacing)
    inner_mm, outer_mm = 10.0, 17.0
    inner, outer = ball(shape, spacing, inner_mm), ball(shape, spacing, outer_mm)
    voxel = max(spacing)
    metrics = binary_metrics(inner, outer, spacing, tolerance_mm=1.0)
    assert abs(metrics["HD95"] - (outer_mm - inner_mm)) <= voxel
    assert abs(metrics["ASSD"] - (outer_mm - inner_mm)) <= voxel
    assert metrics["Dice"] == pytest.approx(2 * inner.sum() / (inner.sum() + outer.sum()))
    assert metrics["IoU"] == pytest.approx(inner.sum() / outer.sum())
    below = binary_metrics(inner, outer, spacing, tolerance_mm=outer_mm - inner_mm - 2 * voxel)["NSD"]
    above = binary_metrics(inner, outer, spacing, tolerance_mm=outer_mm - inner_mm + 2 * voxel)["NSD"]
    assert (below, above) == (0.0, 1.0)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_shifted_cube_hausdorff_is_shift_times_spacing(axis):
    spacing, shift = (2.5, 0.7, 1.1), 3
    cube = box((24, 24, 24), (6, 6, 6), (14, 14, 14))
    shifted = np.roll(cube, shift, axis=axis)
    expected_mm = shift * spacing[axis]
    maximum = binary_metrics(cube, shifted, spacing, 1.0, hausdorff_percentile=100)
    assert maximum["HD95"] == pytest.approx(expected_mm, rel=1e-5)
    hd95 = binary_metrics(cube, shifted, spacing, 1.0)["HD95"]
    assert 0 < hd95 <= expected_mm * (1 + 1e-5)
    # a one-voxel-thick plate across the shift axis: every surface point is exactly shift * spacing from the other
    plate = box((24, 24, 24), [6 if a != axis else 10 for a in range(3)], [14 if a != axis else 11 for a in range(3)])
    plate_metrics = binary_metrics(plate, np.roll(plate, shift, axis=axis), spacing, tolerance_mm=expected_mm - 0.1)
    assert plate_metrics["HD95"] == pytest.approx(expected_mm, rel=1e-5)
    assert plate_metrics["ASSD"] == pytest.approx(expected_mm, rel=1e-5)
    assert plate_metrics["NSD"] == 0.0
    assert binary_metrics(plate, np.roll(plate, shift, axis=axis), spacing, expected_mm + 0.1)["NSD"] == 1.0


def test_identical_masks_are_perfect():
    mask = ball((30, 30, 20), (0.9, 0.9, 2.5), 9.0)
    metrics = binary_metrics(mask, mask, (0.9, 0.9, 2.5), tolerance_mm=0.0)
    assert {k: metrics[k] for k in ("Dice", "IoU", "HD95", "ASSD", "NSD")} == \
        {"Dice": 1.0, "IoU": 1.0, "HD95": 0.0, "ASSD": 0.0, "NSD": 1.0}
    assert (metrics["FP"], metrics["FN"], metrics["TP"]) == (0, 0, mask.sum())


def test_empty_cases_have_defined_values():
    shape, spacing = (10, 20, 30), (3.0, 1.0, 0.5)
    empty, blob = np.zeros(shape, bool), box(shape, (2, 2, 2), (5, 8, 9))
    both_empty = binary_metrics(empty, empty, spacing, 1.0)
    assert {k: both_empty[k] for k in ("Dice", "IoU", "HD95", "ASSD", "NSD")} == \
        {"Dice": 1.0, "IoU": 1.0, "HD95": 0.0, "ASSD": 0.0, "NSD": 1.0}
    diagonal = math.sqrt(30.0 ** 2 + 20.0 ** 2 + 15.0 ** 2)
    assert image_diagonal_mm(shape, spacing) == pytest.approx(diagonal)
    for reference, prediction in ((empty, blob), (blob, empty)):
        one_empty = binary_metrics(reference, prediction, spacing, 1.0)
        assert {k: one_empty[k] for k in ("Dice", "IoU", "HD95", "ASSD", "NSD")} == \
            {"Dice": 0.0, "IoU": 0.0, "HD95": pytest.approx(diagonal), "ASSD": pytest.approx(diagonal), "NSD": 0.0}
        assert all(math.isfinite(v) for v in one_empty.values())
        assert binary_metrics(reference, prediction, spacing, 1.0, empty="nan") == one_empty
    # nnU-Net's convention: undefined when both are empty, the voxel counts still there
    both_undefined = binary_metrics(empty, empty, spacing, 1.0, empty="nan")
    assert all(math.isnan(both_undefined[k]) for k in ("Dice", "IoU", "HD95", "ASSD", "NSD"))
    assert both_undefined["n_ref"] == both_undefined["n_pred"] == 0
    with pytest.raises(ValueError, match="unknown empty-class convention 'zero'; choose one of one, nan"):
        binary_metrics(empty, empty, spacing, 1.0, empty="zero")


def test_2d_case_and_one_slice_volume_agree():
    spacing_2d = (0.6, 1.5)
    square = box((40, 30), (10, 8), (22, 16))
    shifted = np.roll(square, 2, axis=1)
    metrics = binary_metrics(square, shifted, spacing_2d, 1.0, hausdorff_percentile=100)
    assert metrics["HD95"] == pytest.approx(2 * 1.5, rel=1e-5)
    assert metrics["Dice"] == pytest.approx(6 / 8)
    # nnU-Net stores 2D data as (1, x, y) with a large dummy spacing for the first axis: evaluated as 2D, not as a
    # one-slice volume (whose every voxel would be surface)
    classes = [EvaluatedClass("square", (1,), 1.0)]
    as_volume = case_metrics(square[None].astype(np.uint8), shifted[None].astype(np.uint8), (999.0, *spacing_2d),
                             classes)["square"]
    as_image = case_metrics(square.astype(np.uint8), shifted.astype(np.uint8), spacing_2d, classes)["square"]
    assert as_volume == as_image
    assert as_spatial(np.zeros((5, 1, 7)), (1.0, 2.0, 3.0))[1] == (1.0, 3.0)
    diagonal_2d = binary_metrics(square, np.zeros_like(square), spacing_2d, 1.0)["HD95"]
    assert diagonal_2d == pytest.approx(math.hypot(40 * 0.6, 30 * 1.5))


def scipy_surface_metrics(reference, prediction, spacing, tolerance_mm, connectivity):
    """HD95, ASSD, NSD from scipy's EDT on surfaces = mask minus its erosion (structure of the given connectivity)."""
    structure = ndimage.generate_binary_structure(reference.ndim, connectivity)

    def surface(mask):
        return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)

    reference_surface, prediction_surface = surface(reference), surface(prediction)
    prediction_to_reference = ndimage.distance_transform_edt(~reference_surface, sampling=spacing)[prediction_surface]
    reference_to_prediction = ndimage.distance_transform_edt(~prediction_surface, sampling=spacing)[reference_surface]
    both = np.concatenate([prediction_to_reference, reference_to_prediction])
    return {"HD95": max(np.percentile(prediction_to_reference, 95), np.percentile(reference_to_prediction, 95)),
            "ASSD": both.mean(), "NSD": np.mean(both <= tolerance_mm)}


def random_blobs(shape, seed):
    """Two overlapping smooth random blobs (reference, prediction) away from the image border."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=4)
    perturbation = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2)
    inside = np.zeros(shape, bool)
    inside[tuple(slice(3, n - 3) for n in shape)] = True
    reference = (field > 0.02) & inside
    prediction = (field + 0.6 * perturbation > 0.02) & inside
    return reference, prediction


def test_surface_metrics_match_independent_scipy_edt():
    spacing, tolerance_mm = (2.0, 0.8, 1.2), 1.5
    reference, prediction = random_blobs((36, 48, 40), seed=3)
    assert reference.sum() > 1000 and prediction.sum() > 1000
    monai_metrics = binary_metrics(reference, prediction, spacing, tolerance_mm)
    # Same surface definition as MONAI (scipy's default erosion: face neighbours): MONAI only differs by computing
    # nearest-surface distances with a KD-tree and storing them in float32, so the numbers agree to float32 precision.
    same_definition = scipy_surface_metrics(reference, prediction, spacing, tolerance_mm, connectivity=1)
    for metric in ("HD95", "ASSD", "NSD"):
        assert monai_metrics[metric] == pytest.approx(same_definition[metric], rel=1e-5, abs=1e-6), metric
    # Surface = voxels with any background neighbour, edges and corners included (26-connectivity in 3D): a thicker
    # surface that also holds voxels one diagonal step inside, so its distances shift systematically by a fraction
    # of a voxel. The two definitions must agree within one voxel (the largest spacing).
    full_definition = scipy_surface_metrics(reference, prediction, spacing, tolerance_mm, connectivity=3)
    for metric in ("HD95", "ASSD"):
        assert abs(monai_metrics[metric] - full_definition[metric]) <= max(spacing), metric
    assert monai_metrics["HD95"] > max(spacing)  # the blobs differ by more than a voxel: the test is not vacuous


def test_classes_regions_tolerances_and_ignore_label():
    dataset_json = {"labels": {"background": 0, "tumour core": [2, 3], "whole tumour": [1, 2, 3], "enhancing": 3,
                               "ignore": 4},
                    "regions_class_order": [1, 2, 3], "file_ending": ".nii.gz"}
    classes = classes_from_dataset_json(dataset_json, 1.0, {"whole tumour": 2.0, "3": 0.5})
    assert [(c.name, c.labels, c.tolerance_mm) for c in classes] == \
        [("tumour core", (2, 3), 1.0), ("whole tumour", (1, 2, 3), 2.0), ("enhancing", (3,), 0.5)]
    assert ignore_label_from_dataset_json(dataset_json) == 4
    with pytest.raises(ValueError, match="unknown class.*necrosis"):
        classes_from_dataset_json(dataset_json, 1.0, {"necrosis": 1.0})
    digits = {"labels": {"background": 0, "2": 1, "x": 2}}  # "2" names label 1, and is label x's value
    with pytest.raises(ValueError, match=r"key\(s\) 2 name one class and are the label value of another"):
        classes_from_dataset_json(digits, 1.0, {"2": 3.0})
    assert [c.tolerance_mm for c in classes_from_dataset_json(digits, 1.0, {"x": 3.0, "1": 0.5})] == [0.5, 3.0]

    reference = np.zeros((20, 20, 20), np.uint8)
    reference[5:10, 5:10, 5:10] = 1
    reference[6:9, 6:9, 6:9] = 3
    reference[12:18] = 4  # unannotated slab
    prediction = np.zeros_like(reference)
    prediction[5:10, 5:10, 5:10] = 2
    prediction[14:16, 2:4, 2:4] = 1  # false positive inside the unannotated slab: not counted
    results = case_metrics(reference, prediction, (1.0, 1.0, 1.0), classes, ignore_label=4)
    assert results["whole tumour"]["Dice"] == 1.0 and results["whole tumour"]["FP"] == 0
    assert results["whole tumour"]["HD95"] == 0.0
    assert results["tumour core"]["Dice"] == pytest.approx(2 * 27 / (27 + 125))
    assert results["enhancing"]["Dice"] == 0.0 and results["enhancing"]["NSD"] == 0.0
    without_ignore = case_metrics(reference, prediction, (1.0, 1.0, 1.0), classes)
    assert without_ignore["whole tumour"]["FP"] == 8
