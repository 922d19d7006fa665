"""Deterministic synthetic nnU-Net v2 raw datasets (2D and 3D) for tests and the demo.

Every case is a noisy single-channel image holding a few smooth ellipses (2D) or ellipsoids (3D), one or more per
foreground class. Object edges are blurred (partial volume), so there are real boundaries to learn. The label of a
voxel is the class of the topmost object covering at least half of it, 0 (background) elsewhere.

Conventions (numpy axis order for shapes and spacings) and file layout: see ``raw.py``.
"""

from typing import Optional, Sequence, Tuple

import numpy as np

from nnunetv2_morse.datasets.raw import (GENERATED_DATA_LICENCE, prepare_raw_dataset_folder, random_rotation,
                                         write_dataset_json, write_generated_cases)

__all__ = ["make_synthetic_dataset", "generate_case", "DEFAULT_SHAPES", "DEFAULT_SPACINGS"]

DEFAULT_SHAPES = {2: (64, 64), 3: (32, 32, 32)}
DEFAULT_SPACINGS = {2: (1.0, 1.0), 3: (1.5, 1.0, 1.0)}


def _object_occupancy(coords: np.ndarray, center: np.ndarray, semi_axes: np.ndarray, rotation: np.ndarray,
                      edge_width: float) -> np.ndarray:
    """Soft occupancy in [0, 1] of one ellipse/ellipsoid.

    coords: physical coordinates, shape (dim, *shape). Returns an array of shape ``shape``; 0.5 on the surface,
    rising to 1 inside over roughly ``edge_width`` physical units.
    """
    dim = coords.shape[0]
    rel = coords - center.reshape((dim,) + (1,) * dim)
    local = np.tensordot(rotation.T, rel, axes=1)  # coordinates in the object's own frame
    radius = np.sqrt(sum((local[i] / semi_axes[i]) ** 2 for i in range(dim)))
    # signed distance approximation (positive inside), scaled by the mean semi-axis
    signed = (1.0 - radius) * float(np.mean(semi_axes))
    return 1.0 / (1.0 + np.exp(-signed / (edge_width / 4.0)))


def generate_case(shape: Sequence[int], spacing: Sequence[float], num_foreground_classes: int,
                  rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """One synthetic case.

    shape, spacing: numpy axis order, length 2 or 3. Returns ``(image, label)``: image float32 of shape ``shape``,
    label uint8 of shape ``shape`` with values in {0, ..., num_foreground_classes}.
    """
    shape = tuple(int(s) for s in shape)
    spacing = np.asarray(spacing, dtype=np.float64)
    dim = len(shape)
    if len(spacing) != dim:
        raise ValueError(f"spacing {tuple(spacing)} does not match shape {shape}")
    extent = np.asarray(shape, dtype=np.float64) * spacing  # physical size per axis
    coords = np.stack(np.meshgrid(*[(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing)], indexing="ij"))

    # intensities: background 0, classes evenly spaced, jittered per case
    class_intensity = np.arange(num_foreground_classes + 1, dtype=np.float64) * 1.0
    class_intensity[1:] += rng.uniform(-0.15, 0.15, size=num_foreground_classes)

    # every foreground class appears at least once; up to two extra objects of random classes
    classes = list(range(1, num_foreground_classes + 1)) + list(
        rng.integers(1, num_foreground_classes + 1, size=int(rng.integers(0, 3))))
    rng.shuffle(classes)
    min_extent = float(extent.min())
    objects = []
    for c in classes:
        semi_axes = (rng.uniform(0.10, 0.22, size=dim) if dim == 2 else rng.uniform(0.12, 0.25, size=dim)) * min_extent
        margin = semi_axes.max() + 1.0 * spacing.max()
        center = np.array([rng.uniform(min(margin, e / 2), max(e - margin, e / 2)) for e in extent])
        objects.append((int(c), center, semi_axes, random_rotation(rng, dim)))
    # larger objects first so that smaller ones stay visible on top
    objects.sort(key=lambda o: -float(np.prod(o[2])))

    edge_width = 1.5 * float(spacing.max())
    image = np.full(shape, class_intensity[0], dtype=np.float64)
    label = np.zeros(shape, dtype=np.uint8)
    for c, center, semi_axes, rotation in objects:
        occ = _object_occupancy(coords, center, semi_axes, rotation, edge_width)
        image = image * (1.0 - occ) + class_intensity[c] * occ  # partial-volume blending
        label[occ >= 0.5] = c

    # smooth low-frequency bias plus white noise
    normed = coords / extent.reshape((dim,) + (1,) * dim) - 0.5
    bias = 1.0 + np.tensordot(rng.uniform(-0.15, 0.15, size=dim), normed, axes=1)
    image = image * bias + rng.normal(0.0, 0.25, size=shape) + rng.uniform(-0.2, 0.2)
    return image.astype(np.float32), label


def make_synthetic_dataset(raw_dir: str, dataset_id: int, name: str = "MorseSynthetic", dim: int = 2,
                           num_training: int = 8, num_test: int = 2, shape: Optional[tuple] = None,
                           num_foreground_classes: int = 2, spacing: Optional[tuple] = None, seed: int = 0) -> str:
    """Write ``<raw_dir>/Dataset<ID>_<name>`` in nnU-Net v2 raw format and return that folder.

    Contents: ``imagesTr/case_XXXX_0000.nii.gz`` and ``labelsTr/case_XXXX.nii.gz`` for ``num_training`` cases,
    ``imagesTs/case_XXXX_0000.nii.gz`` for ``num_test`` further cases (numbered after the training ones) and
    ``dataset.json``. ``shape``/``spacing`` are in numpy axis order; defaults: 2D (64, 64) at (1.0, 1.0),
    3D (32, 32, 32) at (1.5, 1.0, 1.0) (z, y, x). The same ``seed`` always gives identical files' content.
    An existing folder of the same name is replaced.
    """
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    if num_foreground_classes < 1 or num_foreground_classes > 250:
        raise ValueError("num_foreground_classes must be in 1..250")
    if num_training < 1 or num_test < 0:
        raise ValueError("need num_training >= 1 and num_test >= 0")
    shape = tuple(int(s) for s in (DEFAULT_SHAPES[dim] if shape is None else shape))
    spacing = tuple(float(s) for s in (DEFAULT_SPACINGS[dim] if spacing is None else spacing))
    if len(shape) != dim or len(spacing) != dim:
        raise ValueError(f"shape {shape} and spacing {spacing} must both have {dim} entries")

    folder = prepare_raw_dataset_folder(raw_dir, dataset_id, name, ("imagesTr", "labelsTr", "imagesTs"))

    write_generated_cases(folder, lambda rng: generate_case(shape, spacing, num_foreground_classes, rng), spacing,
                          num_training, num_test, seed)
    labels = {"background": 0, **{f"class_{c}": c for c in range(1, num_foreground_classes + 1)}}
    write_dataset_json(folder, name, f"Synthetic {dim}D ellipse/ellipsoid dataset for MORSE (seed {seed}).",
                       "synthetic", labels, num_training, licence=GENERATED_DATA_LICENCE)
    return folder
