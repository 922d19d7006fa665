"""Deterministic synthetic nnU-Net v2 raw datasets whose difficulty lies at the boundaries (2D and 3D).

Every case is drawn on a grid ``SUPERSAMPLING[dim]`` times finer than the output grid per axis, in physical units:

- ``parenchyma`` (class 4): one large star-shaped blob with a wavy, strongly curved outline;
- ``vessel`` (class 1): thin tubes of about 1 to 3 voxels diameter along smooth random (cubic Bezier) curves,
  tapering, each with a thinner branch; the first one starts inside the parenchyma;
- ``wall`` (class 2) and ``lumen`` (class 3): cysts, i.e. a thin closed ring (2D) or shell (3D) of 1.2 to 2.5 voxels
  around a lumen that touches it all along its inner border; the first cyst sits on the parenchyma's outline.

They are painted in this order (later ones on top), so objects of different classes share borders: wall-lumen
always, vessel-parenchyma and wall-parenchyma in practice. The label of an output voxel is the majority class of its
fine sub-voxels (ties go to the lower class), so boundaries fall between voxel centres as in real scans and the
thinnest tubes are partly lost in the label, as they would be. The image is the fine class-intensity map blurred
by a Gaussian point-spread function, averaged over each output voxel (partial volume), times a smooth random bias
field, plus Gaussian noise.

``shape`` and ``spacing`` are in numpy axis order ((y, x) in 2D, (z, y, x) in 3D); case streams and files as in
``raw.py``, the same as ``synthetic.py``'s; object sizes scale with the smallest spacing.
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.measure import block_reduce

from nnunetv2_morse.datasets.raw import (GENERATED_DATA_LICENCE, majority_downsample, prepare_raw_dataset_folder,
                                         random_rotation, write_dataset_json, write_generated_cases)

__all__ = ["make_boundary_dataset", "generate_boundary_case", "LABELS", "DEFAULT_SHAPES", "DEFAULT_SPACINGS",
           "DEFAULT_NUM_TRAINING", "DEFAULT_NUM_TEST", "SUPERSAMPLING"]

LABELS = {"background": 0, "vessel": 1, "wall": 2, "lumen": 3, "parenchyma": 4}
DEFAULT_SHAPES = {2: (128, 128), 3: (48, 48, 48)}
DEFAULT_SPACINGS = {2: (1.0, 1.0), 3: (1.0, 1.0, 1.0)}
DEFAULT_NUM_TRAINING = {2: 40, 3: 20}
DEFAULT_NUM_TEST = {2: 10, 3: 5}
SUPERSAMPLING = {2: 4, 3: 3}
# mean intensity per class (index = label); touching classes differ by 0.6 to 1.2, noise std is 0.12 to 0.2
CLASS_INTENSITY = np.array([0.0, 2.2, 1.6, 0.45, 1.0])
# per dim: number of cysts and of vessels (inclusive ranges), parenchyma radius as a fraction of the smallest extent
OBJECT_COUNTS = {2: {"cysts": (2, 3), "vessels": (4, 6), "parenchyma": (0.15, 0.22)},
                 3: {"cysts": (1, 2), "vessels": (4, 6), "parenchyma": (0.13, 0.2)}}


class _FineGrid:
    """Sub-voxel centres of the fine grid: ``axes[d]`` holds the physical coordinates along axis d (numpy order)."""

    def __init__(self, shape: Sequence[int], spacing: Sequence[float], factor: int):
        self.shape = tuple(int(n) * factor for n in shape)
        self.axes = [(np.arange(n) + 0.5) * (s / factor) for n, s in zip(self.shape, spacing)]

    def window(self, low: np.ndarray, high: np.ndarray) -> Tuple[Tuple[slice, ...], List[np.ndarray]]:
        """Index window of the sub-voxels with low <= centre <= high per axis, and their open-grid coordinates."""
        window = tuple(slice(int(np.searchsorted(a, lo)), int(np.searchsorted(a, hi, side="right")))
                       for a, lo, hi in zip(self.axes, low, high))
        coords = np.meshgrid(*[a[w] for a, w in zip(self.axes, window)], indexing="ij", sparse=True)
        return window, coords


def _star_signed_distance(coords: List[np.ndarray], center: np.ndarray, semi_axes: np.ndarray,
                          rotation: np.ndarray, wave_vectors: np.ndarray, wave_amplitudes: np.ndarray,
                          wave_phases: np.ndarray) -> np.ndarray:
    """Approximate signed distance (physical units, negative inside) to a wavy star-shaped outline.

    In the object's frame q = R^T (x - c) / semi_axes, the outline is |q| = 1 + sum_j a_j cos(2 pi w_j . u + phi_j)
    with u = q / |q|; the radial gap is converted to physical units by the local radius |semi_axes * u|.
    """
    dim = len(coords)
    rel = [coords[d] - center[d] for d in range(dim)]
    local = [sum(rotation[d, e] * rel[d] for d in range(dim)) / semi_axes[e] for e in range(dim)]
    rho = np.sqrt(sum(q * q for q in local))
    safe_rho = np.maximum(rho, 1e-9)
    unit = [q / safe_rho for q in local]
    outline = 1.0 + sum(a * np.cos(2.0 * np.pi * sum(w[e] * unit[e] for e in range(dim)) + p)
                        for w, a, p in zip(wave_vectors, wave_amplitudes, wave_phases))
    local_radius = np.sqrt(sum((semi_axes[e] * unit[e]) ** 2 for e in range(dim)))
    return (rho - outline) * local_radius


def _random_star(rng: np.random.Generator, dim: int, center: np.ndarray, radius: float, elongation: float,
                 num_waves: int, wave_amplitude: float, wave_frequency: float) -> dict:
    """Parameters of a random star-shaped object of mean radius ``radius`` (physical units) around ``center``."""
    semi_axes = radius * rng.uniform(1.0 - elongation, 1.0 + elongation, size=dim)
    directions = rng.normal(size=(num_waves, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return {"center": center, "semi_axes": semi_axes, "rotation": random_rotation(rng, dim),
            "wave_vectors": directions * rng.uniform(0.5, 1.0, size=(num_waves, 1)) * wave_frequency,
            "wave_amplitudes": rng.uniform(0.3, 1.0, size=num_waves) * wave_amplitude / np.sqrt(num_waves),
            "wave_phases": rng.uniform(0.0, 2.0 * np.pi, size=num_waves)}


def _paint_star(label: np.ndarray, grid: _FineGrid, star: dict, inner_class: int, wall_class: Optional[int] = None,
                wall_thickness: float = 0.0) -> None:
    """Paint a star-shaped object into the fine label: ``inner_class`` inside, ``wall_class`` in a band of
    ``wall_thickness`` (physical units) just outside the outline."""
    reach = star["semi_axes"].max() * (1.0 + np.abs(star["wave_amplitudes"]).sum()) + wall_thickness + 1e-6
    window, coords = grid.window(star["center"] - reach, star["center"] + reach)
    signed = _star_signed_distance(coords, **star)
    patch = label[window]
    if wall_class is not None:
        patch[signed < wall_thickness] = wall_class
    patch[signed < 0.0] = inner_class


def _bezier(control: np.ndarray, num_points: int) -> np.ndarray:
    """Points of shape (num_points, dim) on the cubic Bezier curve with control points of shape (4, dim)."""
    t = np.linspace(0.0, 1.0, num_points)[:, None]
    return ((1 - t) ** 3 * control[0] + 3 * (1 - t) ** 2 * t * control[1] + 3 * (1 - t) * t ** 2 * control[2]
            + t ** 3 * control[3])


def _paint_tube(label: np.ndarray, grid: _FineGrid, points: np.ndarray, radii: np.ndarray, tube_class: int) -> None:
    """Paint the tube around the polyline ``points`` (n, dim) with radius ``radii`` (n,) interpolated along it."""
    dim = points.shape[1]
    for a, b, ra, rb in zip(points[:-1], points[1:], radii[:-1], radii[1:]):
        reach = max(ra, rb) + 1e-6
        window, coords = grid.window(np.minimum(a, b) - reach, np.maximum(a, b) + reach)
        direction = b - a
        length_sq = max(float(direction @ direction), 1e-12)
        t = np.clip(sum((coords[d] - a[d]) * direction[d] for d in range(dim)) / length_sq, 0.0, 1.0)
        dist_sq = sum((coords[d] - (a[d] + t * direction[d])) ** 2 for d in range(dim))
        label[window][dist_sq < (ra + t * (rb - ra)) ** 2] = tube_class


def _random_vessel(rng: np.random.Generator, extent: np.ndarray, start: np.ndarray, radius: float,
                   length: float, min_radius: float) -> Tuple[np.ndarray, np.ndarray]:
    """A smooth random curve from ``start`` of about ``length`` (physical units), tapering from ``radius`` to no
    less than ``min_radius``.

    Returns (points of shape (n, dim), radii of shape (n,)); control points are kept inside the field of view.
    """
    dim = len(extent)
    heading = rng.normal(size=dim)
    heading /= np.linalg.norm(heading)
    control = [start]
    for _ in range(3):
        bend = rng.normal(size=dim)
        heading = heading + 0.9 * bend / np.linalg.norm(bend)
        heading /= np.linalg.norm(heading)
        control.append(np.clip(control[-1] + heading * length / 3.0, 0.05 * extent, 0.95 * extent))
    num_points = max(8, int(np.ceil(length / (0.5 * radius))))
    points = _bezier(np.array(control), num_points)
    radii = np.maximum(radius * np.linspace(1.0, rng.uniform(0.55, 0.8), num_points), min_radius)
    return points, radii


def _smooth_bias_field(shape: Sequence[int], rng: np.random.Generator, strength: float) -> np.ndarray:
    """Multiplicative bias field of shape ``shape``: exp of a few random low-frequency cosines, std about
    ``strength``."""
    dim = len(shape)
    unit_coords = np.meshgrid(*[(np.arange(n) + 0.5) / n for n in shape], indexing="ij", sparse=True)
    log_field = np.zeros(shape)
    num_waves = 4
    for _ in range(num_waves):
        frequency = rng.uniform(0.3, 1.2, size=dim) * rng.choice([-1.0, 1.0], size=dim)
        phase = rng.uniform(0.0, 2.0 * np.pi)
        log_field = log_field + np.cos(2.0 * np.pi * sum(f * c for f, c in zip(frequency, unit_coords)) + phase)
    return np.exp(strength * np.sqrt(2.0 / num_waves) * log_field)


def generate_boundary_case(shape: Sequence[int], spacing: Sequence[float],
                           rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """One boundary-benchmark case.

    shape, spacing: numpy axis order, length 2 or 3 (spacing in mm). Returns ``(image, label)``: image float32 of
    shape ``shape``, label uint8 of shape ``shape`` with the values of ``LABELS``.
    """
    shape = tuple(int(s) for s in shape)
    spacing = np.asarray(spacing, dtype=np.float64)
    dim = len(shape)
    if dim not in (2, 3) or len(spacing) != dim:
        raise ValueError(f"shape {shape} and spacing {tuple(spacing)} must both have 2 or 3 entries")
    factor = SUPERSAMPLING[dim]
    grid = _FineGrid(shape, spacing, factor)
    extent = np.asarray(shape) * spacing
    voxel = float(spacing.min())
    counts = OBJECT_COUNTS[dim]
    label = np.zeros(grid.shape, dtype=np.uint8)

    organ_center = extent * rng.uniform(0.35, 0.65, size=dim)
    organ = _random_star(rng, dim, organ_center, rng.uniform(*counts["parenchyma"]) * extent.min(), elongation=0.25,
                         num_waves=6, wave_amplitude=0.25, wave_frequency=3.0)
    _paint_star(label, grid, organ, LABELS["parenchyma"])

    for v in range(int(rng.integers(counts["vessels"][0], counts["vessels"][1] + 1))):
        start = organ_center if v == 0 else extent * rng.uniform(0.1, 0.9, size=dim)
        radius = voxel * rng.uniform(0.6, 1.5) if dim == 2 else voxel * rng.uniform(0.8, 1.6)
        points, radii = _random_vessel(rng, extent, start, radius, rng.uniform(0.5, 0.9) * extent.min(),
                                       min_radius=0.55 * voxel)
        _paint_tube(label, grid, points, radii, LABELS["vessel"])
        branch_at = int(rng.integers(len(points) // 4, 3 * len(points) // 4))
        points, radii = _random_vessel(rng, extent, points[branch_at], 0.75 * radii[branch_at],
                                       rng.uniform(0.25, 0.45) * extent.min(), min_radius=0.55 * voxel)
        _paint_tube(label, grid, points, radii, LABELS["vessel"])

    for c in range(int(rng.integers(counts["cysts"][0], counts["cysts"][1] + 1))):
        radius = voxel * rng.uniform(3.0, 8.0 if dim == 2 else 6.0)
        if c == 0:
            direction = rng.normal(size=dim)
            direction /= np.linalg.norm(direction)
            center = organ_center + direction * organ["semi_axes"].mean()
        else:
            center = extent * rng.uniform(0.15, 0.85, size=dim)
        cyst = _random_star(rng, dim, center, radius, elongation=0.2, num_waves=3, wave_amplitude=0.12,
                            wave_frequency=1.5)
        _paint_star(label, grid, cyst, LABELS["lumen"], LABELS["wall"], voxel * rng.uniform(1.2, 2.5))

    intensity = CLASS_INTENSITY + np.concatenate([[0.0], rng.uniform(-0.1, 0.1, size=len(CLASS_INTENSITY) - 1)])
    psf_sigma_fine = rng.uniform(0.4, 0.7) * factor  # in fine voxels: 0.4 to 0.7 output voxels
    fine_image = gaussian_filter(intensity[label], psf_sigma_fine, mode="nearest")
    image = block_reduce(fine_image, (factor,) * dim, np.mean)
    image = image * _smooth_bias_field(shape, rng, strength=0.15)
    image = image + rng.normal(0.0, rng.uniform(0.12, 0.2), size=shape) + rng.uniform(-0.2, 0.2)
    return image.astype(np.float32), majority_downsample(label, (factor,) * dim, len(LABELS))


def make_boundary_dataset(raw_dir: str, dataset_id: int, dim: int = 2, num_training: Optional[int] = None,
                          num_test: Optional[int] = None, shape: Optional[tuple] = None,
                          spacing: Optional[tuple] = None, seed: int = 0, name: str = "MorseBoundary") -> str:
    """Write ``<raw_dir>/Dataset<ID>_<name>`` in nnU-Net v2 raw format and return that folder.

    Same layout as ``synthetic.make_synthetic_dataset``: ``imagesTr``/``labelsTr`` for ``num_training`` cases
    (default 40 in 2D, 20 in 3D), ``imagesTs`` for ``num_test`` more (default 10 / 5), ``dataset.json`` with
    ``LABELS``. ``shape``/``spacing`` in numpy axis order; defaults (128, 128) / (48, 48, 48) at 1 mm. The same
    ``seed`` always gives identical arrays. An existing folder of the same name is replaced.
    """
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    num_training = DEFAULT_NUM_TRAINING[dim] if num_training is None else int(num_training)
    num_test = DEFAULT_NUM_TEST[dim] if num_test is None else int(num_test)
    if num_training < 1 or num_test < 0:
        raise ValueError(f"need num_training >= 1 and num_test >= 0, got {num_training} and {num_test}")
    shape = tuple(int(s) for s in (DEFAULT_SHAPES[dim] if shape is None else shape))
    spacing = tuple(float(s) for s in (DEFAULT_SPACINGS[dim] if spacing is None else spacing))
    if len(shape) != dim or len(spacing) != dim:
        raise ValueError(f"shape {shape} and spacing {spacing} must both have {dim} entries")
    if min(shape) < 16:
        raise ValueError(f"shape {shape} is too small for the boundary benchmark; use at least 16 voxels per axis")
    folder = prepare_raw_dataset_folder(raw_dir, dataset_id, name, ("imagesTr", "labelsTr", "imagesTs"))

    write_generated_cases(folder, lambda rng: generate_boundary_case(shape, spacing, rng), spacing, num_training,
                          num_test, seed)
    write_dataset_json(folder, name, f"Synthetic {dim}D boundary benchmark for MORSE: thin vessels, thin-walled "
                                     f"cysts touching their lumen, wavy parenchyma; labels by sub-voxel majority "
                                     f"(seed {seed}).", "boundary_synthetic", LABELS, num_training,
                       licence=GENERATED_DATA_LICENCE)
    return folder
