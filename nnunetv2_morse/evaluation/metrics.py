"""Overlap and surface metrics per case and class, in physical units (mm) from the image spacing.

Metrics (per class, i.e. per foreground label or, for region-based datasets, per region = union of its labels):

- ``Dice`` = 2 TP / (2 TP + FP + FN) and ``IoU`` = TP / (TP + FP + FN), voxel counts.
- ``HD95`` (mm): MONAI's symmetric 95th-percentile Hausdorff distance, the larger of the two directed 95th
  percentiles (reference surface -> prediction surface and back).
- ``ASSD`` (mm): MONAI's symmetric average surface distance, the mean over the distances of both surfaces' points to
  the other surface.
- ``NSD``: MONAI's normalised surface Dice at a tolerance tau (mm): the fraction of both surfaces' points (boundary
  voxels, each counting once) lying within tau of the other surface. This is the voxel-count form: Nikolov et al.'s
  surface Dice weights each piece of surface by its area, which gives other values where the spacing is anisotropic
  (MONAI's ``use_subvoxels=True``).

Surfaces are MONAI's: the foreground voxels with at least one face neighbour in the background (the image outside
the array counts as background), located at their voxel centres; distances are Euclidean between voxel centres in
mm. A mask's surface therefore lies half a voxel inside its geometric boundary.

Empty masks:

- reference and prediction both empty: by the ``empty`` convention, ``"one"`` (the default): Dice 1, IoU 1, HD95 0,
  ASSD 0, NSD 1 (a correct "absent"); ``"nan"`` (nnU-Net's summary.json): every metric NaN (undefined), left out of
  the means;
- exactly one empty: Dice 0, IoU 0, NSD 0, and HD95 = ASSD = the image's diagonal in mm,
  sqrt(sum_i (n_i s_i)^2) for n_i voxels of spacing s_i along axis i, an upper bound of any distance in the image.

Ignore label (nnU-Net's ``"ignore"`` entry in dataset.json): voxels whose reference value is the ignore label are
unannotated. They are set to background in both reference and prediction before any metric is computed, so they
never count as TP, FP or FN and no surface point lies inside them. A mask that runs into an ignored area gets a
surface along that area's border, in the reference and the prediction alike, where both agree at distance 0.

Images: 2D or 3D arrays in numpy axis order with the spacing in the same order (nnU-Net's readers give both
reversed from SimpleITK's x, y, z: (z, y, x) for 3D); a 3D image with a single slice along one
axis (nnU-Net's way of storing 2D data) is evaluated as 2D. Without this, every foreground voxel of a one-slice
volume would be a surface voxel.

torch and MONAI are imported by the first surface metric computed, not with this module: commands that import it
answer ``--help`` at once.
"""
import math
import warnings
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

METRIC_NAMES = ("Dice", "IoU", "HD95", "ASSD", "NSD")
METRIC_UNITS = {"Dice": "", "IoU": "", "HD95": "mm", "ASSD": "mm", "NSD": ""}
HIGHER_IS_BETTER = {"Dice": True, "IoU": True, "HD95": False, "ASSD": False, "NSD": True}
DEFAULT_TOLERANCE_MM = 1.0
# the scores of a correct absence (reference and prediction empty) under --empty one; --empty nan leaves them undefined
CORRECT_ABSENCE = {"Dice": 1.0, "IoU": 1.0, "HD95": 0.0, "ASSD": 0.0, "NSD": 1.0}

ONE_EMPTY_RULE = ("exactly one empty: Dice 0, IoU 0, NSD 0, HD95 = ASSD = image diagonal in mm "
                  "(sqrt(sum((shape * spacing)^2)))")
EMPTY_RULES = {
    "one": "reference and prediction empty: Dice 1, IoU 1, HD95 0, ASSD 0, NSD 1; " + ONE_EMPTY_RULE,
    "nan": "reference and prediction empty: every metric undefined (null), left out of the means (nnU-Net's "
           "summary.json convention); " + ONE_EMPTY_RULE,
}
DEFAULT_EMPTY = "one"
IGNORE_RULE = ("voxels with the ignore label in the reference are set to background in reference and prediction "
               "before all metrics: never TP, FP or FN, never surface points")


@dataclass(frozen=True)
class EvaluatedClass:
    """One scored class: its dataset.json name, the labels whose union it is, and its NSD tolerance in mm."""
    name: str
    labels: Tuple[int, ...]
    tolerance_mm: float


def ignore_label_from_dataset_json(dataset_json: Mapping) -> Optional[int]:
    """The dataset's ignore label (dataset.json labels["ignore"]), or None."""
    ignore = dataset_json["labels"].get("ignore")
    return None if ignore is None else int(ignore)


def label_values_from_dataset_json(dataset_json: Mapping) -> Tuple[int, ...]:
    """Every label value that dataset.json's "labels" name: background, foreground labels or region members, ignore."""
    values = set()
    for value in dataset_json["labels"].values():
        values.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    return tuple(sorted(values))


def classes_from_dataset_json(dataset_json: Mapping, default_tolerance_mm: float = DEFAULT_TOLERANCE_MM,
                              tolerance_mm_per_class: Optional[Mapping[str, float]] = None) -> List[EvaluatedClass]:
    """The foreground classes of dataset.json's "labels", in their order; background and "ignore" left out.

    A label-based dataset gives one class per label; a region-based one (``regions_class_order`` present, or a label
    entry listing several values) one class per region, the union of its labels. ``tolerance_mm_per_class`` maps a
    class name, or for a single-label class its label value as a string, to its NSD tolerance in mm; the others get
    ``default_tolerance_mm``.
    """
    classes = []
    for name, value in dataset_json["labels"].items():
        if name == "ignore":
            continue
        labels = tuple(sorted({int(v) for v in (value if isinstance(value, (list, tuple)) else [value])}))
        if labels == (0,):
            continue
        if 0 in labels:
            raise ValueError(f"class {name!r} of dataset.json includes the background label 0: {list(labels)}")
        classes.append(EvaluatedClass(name, labels, float(default_tolerance_mm)))
    if not classes:
        raise ValueError("dataset.json's labels define no foreground class")
    if tolerance_mm_per_class:
        classes = _with_class_tolerances(classes, tolerance_mm_per_class)
    for evaluated in classes:
        if not (math.isfinite(evaluated.tolerance_mm) and evaluated.tolerance_mm >= 0):
            raise ValueError(f"NSD tolerance of class {evaluated.name!r} must be finite and >= 0 mm, "
                             f"got {evaluated.tolerance_mm}")
    return classes


def _with_class_tolerances(classes: List[EvaluatedClass], tolerance_mm_per_class: Mapping[str, float]
                           ) -> List[EvaluatedClass]:
    """classes with the tolerances of tolerance_mm_per_class (keys: class name or single label value) applied."""
    key_to_index = {c.name: i for i, c in enumerate(classes)}
    by_label = {str(c.labels[0]): i for i, c in enumerate(classes) if len(c.labels) == 1}
    ambiguous = [str(k) for k in tolerance_mm_per_class
                 if str(k) in key_to_index and str(k) in by_label and key_to_index[str(k)] != by_label[str(k)]]
    if ambiguous:
        raise ValueError(f"per-class tolerance key(s) {', '.join(ambiguous)} name one class and are the label value of "
                         f"another: give the class by its name, and rename a class named like a label value")
    key_to_index = {**by_label, **key_to_index}
    unknown = [str(k) for k in tolerance_mm_per_class if str(k) not in key_to_index]
    if unknown:
        raise ValueError(f"unknown class(es) in per-class tolerances: {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(key_to_index))}")
    tolerances = [c.tolerance_mm for c in classes]
    for key, tolerance in tolerance_mm_per_class.items():
        tolerances[key_to_index[str(key)]] = float(tolerance)
    return [EvaluatedClass(c.name, c.labels, t) for c, t in zip(classes, tolerances)]


def as_spatial(label_map: np.ndarray, spacing: Sequence[float]) -> Tuple[np.ndarray, Tuple[float, ...]]:
    """2D or 3D label map and its spacing (mm, same axis order); a 3D map with one slice along an axis becomes 2D
    without it."""
    label_map = np.asarray(label_map)
    spacing = tuple(float(s) for s in spacing)
    if label_map.ndim not in (2, 3):
        raise ValueError(f"expected a 2D or 3D label map, got shape {label_map.shape}")
    if len(spacing) != label_map.ndim:
        raise ValueError(f"spacing {spacing} does not match the label map's shape {label_map.shape}")
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be positive, got {spacing}")
    if label_map.ndim == 3 and 1 in label_map.shape:
        axis = label_map.shape.index(1)
        return np.take(label_map, 0, axis=axis), spacing[:axis] + spacing[axis + 1:]
    return label_map, spacing


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length in mm of the diagonal of an image of `shape` voxels with `spacing` mm: sqrt(sum((n_i s_i)^2))."""
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


def check_empty_convention(empty: str) -> None:
    """ValueError unless empty is one of EMPTY_RULES' conventions."""
    if empty not in EMPTY_RULES:
        raise ValueError(f"unknown empty-class convention {empty!r}; choose one of {', '.join(EMPTY_RULES)}")


def binary_metrics(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float], tolerance_mm: float,
                   hausdorff_percentile: float = 95.0, empty: str = DEFAULT_EMPTY) -> Dict[str, float]:
    """Metrics of one binary 2D or 3D prediction against its reference mask; spacing in mm per array axis.

    Returns Dice, IoU, HD95 (mm; the ``hausdorff_percentile``-th percentile, 100 for the maximum), ASSD (mm),
    NSD (at ``tolerance_mm``) and the voxel counts n_ref, n_pred, TP, FP, FN. Empty masks as in the module docstring,
    both empty by the ``empty`` convention ("one" or "nan").
    """
    check_empty_convention(empty)
    reference = np.asarray(reference, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    if reference.shape != prediction.shape:
        raise ValueError(f"reference and prediction shapes differ: {reference.shape} vs {prediction.shape}")
    spacing = [float(s) for s in spacing]
    if len(spacing) != reference.ndim or reference.ndim not in (2, 3):
        raise ValueError(f"expected 2D or 3D masks with one spacing per axis, got shape {reference.shape} and "
                         f"spacing {spacing}")
    true_positives = int(np.count_nonzero(reference & prediction))
    n_ref, n_pred = int(np.count_nonzero(reference)), int(np.count_nonzero(prediction))
    counts = {"n_ref": n_ref, "n_pred": n_pred, "TP": true_positives, "FP": n_pred - true_positives,
              "FN": n_ref - true_positives}
    if n_ref == 0 and n_pred == 0:
        if empty == "nan":
            return {**{m: math.nan for m in METRIC_NAMES}, **counts}
        return {**CORRECT_ABSENCE, **counts}
    if n_ref == 0 or n_pred == 0:
        diagonal = image_diagonal_mm(reference.shape, spacing)
        return {"Dice": 0.0, "IoU": 0.0, "HD95": diagonal, "ASSD": diagonal, "NSD": 0.0, **counts}
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    overlap = {"Dice": 2 * true_positives / (n_ref + n_pred),
               "IoU": true_positives / (n_ref + n_pred - true_positives)}
    reference_crop, prediction_crop = _crop_to_union(reference, prediction)
    y = torch.from_numpy(reference_crop)[None, None]
    y_pred = torch.from_numpy(prediction_crop)[None, None]
    percentile = None if hausdorff_percentile == 100 else hausdorff_percentile
    with warnings.catch_warnings():
        # MONAI 1.5-1.6 passes its own deprecated always_return_as_numpy argument internally
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        surface = {
            "HD95": compute_hausdorff_distance(y_pred, y, include_background=True, percentile=percentile,
                                               spacing=spacing),
            "ASSD": compute_average_surface_distance(y_pred, y, include_background=True, symmetric=True,
                                                     spacing=spacing),
            "NSD": compute_surface_dice(y_pred, y, class_thresholds=[float(tolerance_mm)],
                                        include_background=True, spacing=spacing),
        }
    return {**overlap, **{k: float(v.reshape(-1)[0]) for k, v in surface.items()}, **counts}


def _crop_to_union(reference: np.ndarray, prediction: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to their union's bounding box plus one voxel (clipped at the image), unchanged surfaces."""
    union = reference | prediction
    box = []
    for axis in range(union.ndim):
        occupied = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != axis)))
        box.append(slice(max(int(occupied[0]) - 1, 0), int(occupied[-1]) + 2))
    box = tuple(box)
    return np.ascontiguousarray(reference[box]), np.ascontiguousarray(prediction[box])


def case_metrics(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float],
                 classes: Sequence[EvaluatedClass], ignore_label: Optional[int] = None,
                 empty: str = DEFAULT_EMPTY) -> Dict[str, Dict[str, float]]:
    """Metrics of one case per class: {class name: binary_metrics(...)}.

    reference, prediction: integer label maps of one shape, 2D or 3D (a one-slice 3D map as 2D); spacing in mm per
    axis. Voxels with ``ignore_label`` in the reference are background in both (module docstring). ``empty``: the
    convention for a class empty in both ("one" or "nan").
    """
    reference, spatial_spacing = as_spatial(reference, spacing)
    prediction, _ = as_spatial(prediction, spacing)
    if reference.shape != prediction.shape:
        raise ValueError(f"reference and prediction shapes differ: {reference.shape} vs {prediction.shape}")
    annotated = None if ignore_label is None else reference != ignore_label
    results = {}
    for evaluated in classes:
        reference_mask = np.isin(reference, evaluated.labels)
        prediction_mask = np.isin(prediction, evaluated.labels)
        if annotated is not None:
            reference_mask &= annotated
            prediction_mask &= annotated
        results[evaluated.name] = binary_metrics(reference_mask, prediction_mask, spatial_spacing,
                                                 evaluated.tolerance_mm, empty=empty)
    return results
