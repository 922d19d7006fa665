"""A real-anatomy boundary benchmark: the Colin27 T1 MRI with its AAL labelling, as an nnU-Net v2 raw dataset.

Source: Debian's ``mricron-data`` package, ``/usr/share/mricron/templates/``: ``ch2.nii.gz`` (Colin27 T1, 181 x 217 x
181 uint8 at 1 mm), ``aal.nii.gz`` (the AAL atlas drawn on it, same grid, region ids 1..116) and ``aal.nii.txt``
(lines ``<id> <name> <code>``, e.g. ``29 Insula_L 3001``).

Classes. The 116 AAL regions are grouped by name into the lobes of AAL's own hierarchy (Tzourio-Mazoyer et al.
2002; the same grouping as the thousands digit of the region codes, 2xxx to 9xxx):

==  ==================  ==========================================================================================
 1  frontal             Precentral, Frontal_*, Rolandic_Oper, Supp_Motor_Area, Olfactory, Rectus
 2  insula              Insula
 3  limbic              Cingulum_* (anterior, middle, posterior), Hippocampus, ParaHippocampal, Amygdala
 4  occipital           Calcarine, Cuneus, Lingual, Occipital_*, Fusiform
 5  parietal            Postcentral, Parietal_*, SupraMarginal, Angular, Precuneus, Paracentral_Lobule
 6  subcortical_grey    Caudate, Putamen, Pallidum, Thalamus
 7  temporal            Heschl, Temporal_* (including the temporal poles)
 8  cerebellum          Cerebelum_* (hemispheres) and Vermis_*
==  ==================  ==========================================================================================

Left and right are merged: the lobes are what a segmentation must separate along anatomical borders, and eight
classes keep every class present in most slices. Background (0) is everything AAL leaves unlabelled: white matter,
CSF, skull and scalp, so the classes are cortical and deep grey matter with the folded grey-white and grey-CSF
borders, and lobe-lobe borders where grey matter of two lobes touches.

Cases. ``mode="2d"``: one case per axial slice (numpy axis 0 of the volume, z), a 2D image of shape (217, 181)
(y, x) at 1 mm. ``mode="3d"``: the same slices stacked into axial slabs of about ``slab_thickness`` slices. Only
the slices from the first to the last one whose labelled area reaches ``min_brain_fraction`` of the largest
slice's are used (2D: slices below that are skipped), every ``every``-th of them (3D: slice spacing ``every`` mm).
``downsample`` F > 1 crops y and x to multiples of F and averages the image / takes the majority label over F x F
blocks (in-plane spacing F mm); z is never resampled.

Folds. All cases are training cases of a single subject, so neighbouring slices are nearly identical, and each case
is validated exactly once. By default (``validation_slab`` 0) the 5 folds' validation sets are contiguous blocks of
cases in z order: fold 0 validates the lowest fifth of the brain with a model that has seen only the rest, so it
measures extrapolation to anatomy never seen (lobes absent from the training slices are missed entirely).
``validation_slab`` N > 0 cuts the cases into slabs of N consecutive cases and deals them to the folds in turn
(slab i to fold i mod 5): every fold validates slabs spread over the whole brain, each validation case of an
interior slab at most about N/2 slices from a training case (up to N at the two ends), which is closer to
segmenting a new scan of anatomy the model has seen (absolute scores are then optimistic; paired comparisons of
trainers stay fair, all trainers seeing the same slices).
``splits_final.json`` is written to ``$nnUNet_preprocessed/Dataset<ID>_<name>/``, where nnU-Net reads it, and to
the raw dataset folder. ``nnUNetv2_plan_and_preprocess`` keeps it: it only replaces its configuration folders
(e.g. ``nnUNetPlans_2d``), and its planner (2.8, the version required here) copies the raw folder's copy there
when it is missing and checks that the two agree.

With validation slabs, ``case_groups.json`` is written beside both copies: each case's validation slab (``slab_000``,
...), for ``nnUNetv2_morse_compare --groups``. Cases of one slab are near-identical neighbours, so paired statistics
should count a slab once. Without validation slabs no groups file is written (one removed if an earlier build left
it): the five contiguous blocks would be too few groups for an interval.
"""

import json
import os
import re
import shutil
import subprocess
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from skimage.measure import block_reduce

from nnunetv2_morse.datasets.raw import majority_downsample, prepare_raw_dataset_folder, write_case, write_dataset_json

__all__ = ["make_colin27_dataset", "read_region_names", "class_of_region", "region_class_lut", "contiguous_folds",
           "interleaved_folds", "validation_slabs", "missing_source_files", "install_source", "CLASS_GROUPS", "LABELS",
           "DEFAULT_SOURCE_DIR", "SOURCE_FILES"]

DEFAULT_SOURCE_DIR = "/usr/share/mricron/templates"
T1_FILE, ATLAS_FILE, NAMES_FILE = "ch2.nii.gz", "aal.nii.gz", "aal.nii.txt"
SOURCE_FILES = (T1_FILE, ATLAS_FILE, NAMES_FILE)
INSTALL_COMMAND = "apt-get install -y mricron-data"
SOURCE_LICENCE = "as Debian's mricron-data package: /usr/share/doc/mricron-data/copyright"

# (class name, AAL region name prefixes), class index = position + 1
CLASS_GROUPS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("frontal", ("Precentral", "Frontal_", "Rolandic_Oper", "Supp_Motor_Area", "Olfactory", "Rectus")),
    ("insula", ("Insula",)),
    ("limbic", ("Cingulum_", "Hippocampus", "ParaHippocampal", "Amygdala")),
    ("occipital", ("Calcarine", "Cuneus", "Lingual", "Occipital_", "Fusiform")),
    ("parietal", ("Postcentral", "Parietal_", "SupraMarginal", "Angular", "Precuneus", "Paracentral_Lobule")),
    ("subcortical_grey", ("Caudate", "Putamen", "Pallidum", "Thalamus")),
    ("temporal", ("Heschl", "Temporal_")),
    ("cerebellum", ("Cerebelum_", "Vermis_")),
)
LABELS: Dict[str, int] = {"background": 0, **{name: i + 1 for i, (name, _) in enumerate(CLASS_GROUPS)}}
NUM_FOLDS = 5
CASE_GROUPS_FILE = "case_groups.json"  # each case's validation slab, for nnUNetv2_morse_compare --groups


def missing_source_files(source_dir: str) -> List[str]:
    """Names of ``SOURCE_FILES`` that are not in ``source_dir``."""
    return [f for f in SOURCE_FILES if not os.path.isfile(os.path.join(source_dir, f))]


def read_region_names(path: str) -> Dict[int, str]:
    """{region id: name} from an ``aal.nii.txt``-style file of lines ``<id> <name> <code>`` (CRLF or LF)."""
    names = {}
    with open(path) as f:
        for line_number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3 or not fields[0].isdigit():
                raise ValueError(f"{path}:{line_number}: expected '<id> <name> <code>', got {line.strip()!r}")
            names[int(fields[0])] = fields[1]
    return names


def class_of_region(name: str) -> int:
    """Class index (1..8, see ``CLASS_GROUPS``) of an AAL region name such as ``Frontal_Sup_Orb_L``."""
    for index, (_, prefixes) in enumerate(CLASS_GROUPS):
        if name.startswith(prefixes):
            return index + 1
    raise ValueError(f"AAL region {name!r} belongs to none of the classes {list(LABELS)[1:]}")


def region_class_lut(names: Dict[int, str]) -> np.ndarray:
    """Lookup table of shape (256,) uint8: region id -> class; 0 -> 0, ids not in ``names`` -> 255 (unknown)."""
    lut = np.full(256, 255, dtype=np.uint8)
    lut[0] = 0
    for region_id, name in names.items():
        if not 1 <= region_id <= 255:
            raise ValueError(f"AAL region id {region_id} ({name}) is outside 1..255")
        lut[region_id] = class_of_region(name)
    return lut


def contiguous_folds(case_ids: Sequence[str], num_folds: int = NUM_FOLDS) -> List[Dict[str, List[str]]]:
    """nnU-Net splits: fold k validates the k-th of ``num_folds`` contiguous, near-equal blocks of ``case_ids``
    (in the given order) and trains on all other cases."""
    if len(case_ids) < num_folds:
        raise ValueError(f"only {len(case_ids)} cases, need at least {num_folds} for {num_folds} folds")
    splits = []
    for block in np.array_split(np.arange(len(case_ids)), num_folds):
        val = set(block.tolist())
        splits.append({"train": [c for i, c in enumerate(case_ids) if i not in val],
                       "val": [case_ids[i] for i in sorted(val)]})
    return splits


def interleaved_folds(case_ids: Sequence[str], slab: int, num_folds: int = NUM_FOLDS) -> List[Dict[str, List[str]]]:
    """nnU-Net splits: ``case_ids`` (in the given order) cut into slabs of ``slab`` consecutive cases (the last may
    be shorter), slab i validated by fold i mod ``num_folds``; every fold trains on all other cases."""
    if slab < 1:
        raise ValueError(f"slab must be >= 1, got {slab}")
    num_slabs = -(-len(case_ids) // slab)
    if num_slabs < num_folds:
        raise ValueError(f"only {num_slabs} slabs of {slab} of the {len(case_ids)} cases, need at least {num_folds} "
                         f"for {num_folds} folds: use thinner validation slabs")
    fold_of = [(i // slab) % num_folds for i in range(len(case_ids))]
    return [{"train": [c for c, f in zip(case_ids, fold_of) if f != k],
             "val": [c for c, f in zip(case_ids, fold_of) if f == k]} for k in range(num_folds)]


def validation_slabs(case_folds: Mapping[str, int], slab: int, num_folds: int = NUM_FOLDS) -> Dict[str, int]:
    """The validation slab of each case of ``case_folds`` (case id -> fold, as interleaved_folds dealt them): its
    index i in interleaved_folds (slab i, validated by fold i mod ``num_folds``), found from the folds alone: a fold
    validates whole slabs of ``slab`` consecutive cases, so its cases, in id order (the slice order: ids are
    zero-padded), fall into slabs of ``slab``, the last maybe shorter. Folds may be missing, not a fold's case:
    ValueError where a slab's cases are not consecutive slices (``colin27_z012``, 3D ``colin27_z012-027``) with one
    step throughout, as they are not when a fold's report lacks one of its cases."""
    if slab < 1:
        raise ValueError(f"slab must be >= 1, got {slab}")
    of_fold: Dict[int, List[str]] = {}
    for case, fold in sorted(case_folds.items()):
        of_fold.setdefault(fold, []).append(case)
    slabs: Dict[str, int] = {}
    steps = {}
    for fold, cases in of_fold.items():
        for start in range(0, len(cases), slab):
            members = cases[start:start + slab]
            slabs.update((case, start // slab * num_folds + fold) for case in members)
            for before, after in zip(members, members[1:]):
                steps.setdefault(_first_and_last_slice(after)[0] - _first_and_last_slice(before)[1], (before, after))
    if len(steps) > 1:
        pairs = " and ".join(f"{a}, {b}" for a, b in list(steps.values())[:2])
        raise ValueError(f"the validation slabs of {slab} cases are not runs of consecutive slices ({pairs} are "
                         "steps of different sizes): a fold's report lacks some of its validation cases")
    return slabs


def _first_and_last_slice(case_id: str) -> Tuple[int, int]:
    """(first, last) slice of a case id: colin27_z012 -> (12, 12), colin27_z012-027 -> (12, 27)."""
    match = re.fullmatch(r"colin27_z(\d+)(?:-(\d+))?", case_id)
    if match is None:
        raise ValueError(f"{case_id} is not a Colin27 case id (colin27_z<slice> or colin27_z<first>-<last>)")
    return int(match.group(1)), int(match.group(2) or match.group(1))


def _load_source(source_dir: str) -> Tuple[sitk.Image, np.ndarray, np.ndarray]:
    """(T1 image, T1 array float32 (z, y, x), class labels uint8 (z, y, x)) from ``source_dir``."""
    missing = missing_source_files(source_dir)
    if missing:
        raise FileNotFoundError(f"Colin27 files missing in {source_dir} ({', '.join(missing)}): install Debian's "
                                f"mricron-data package: sudo {INSTALL_COMMAND} (nnUNetv2_morse_make_colin27 --install "
                                "does it)")
    t1 = sitk.ReadImage(os.path.join(source_dir, T1_FILE))
    atlas = sitk.ReadImage(os.path.join(source_dir, ATLAS_FILE))
    if (t1.GetSize() != atlas.GetSize() or not np.allclose(t1.GetSpacing(), atlas.GetSpacing())
            or not np.allclose(t1.GetOrigin(), atlas.GetOrigin())
            or not np.allclose(t1.GetDirection(), atlas.GetDirection())):
        raise ValueError(f"{T1_FILE} and {ATLAS_FILE} in {source_dir} are not on the same voxel grid")
    regions = sitk.GetArrayFromImage(atlas)
    if regions.dtype != np.uint8:
        raise ValueError(f"{ATLAS_FILE} must hold uint8 region ids, found {regions.dtype}")
    lut = region_class_lut(read_region_names(os.path.join(source_dir, NAMES_FILE)))
    labels = lut[regions]
    if (labels == 255).any():
        unknown = sorted(set(np.unique(regions[labels == 255]).tolist()))
        raise ValueError(f"{ATLAS_FILE} holds region ids {unknown} that {NAMES_FILE} does not name")
    return t1, sitk.GetArrayFromImage(t1).astype(np.float32), labels


def _downsample_in_plane(image: np.ndarray, labels: np.ndarray, factor: int) -> Tuple[np.ndarray, np.ndarray]:
    """Crop y, x (the last two axes) to multiples of ``factor``; block-mean the image, majority-vote the labels."""
    if factor == 1:
        return image, labels
    ny, nx = (n - n % factor for n in image.shape[-2:])
    blocks = (1,) * (image.ndim - 2) + (factor, factor)
    return (block_reduce(image[..., :ny, :nx], blocks, np.mean).astype(np.float32),
            majority_downsample(labels[..., :ny, :nx], blocks, len(LABELS)))


def make_colin27_dataset(raw_dir: str, dataset_id: int, mode: str = "2d", every: int = 1, downsample: int = 1,
                         slab_thickness: int = 16, min_brain_fraction: float = 0.05, validation_slab: int = 0,
                         source_dir: str = DEFAULT_SOURCE_DIR, preprocessed_dir: Optional[str] = None,
                         name: str = "Colin27AAL") -> str:
    """Write ``<raw_dir>/Dataset<ID>_<name>`` (nnU-Net v2 raw format, no imagesTs), ``splits_final.json`` and, with
    validation slabs, ``case_groups.json`` (module doc); return the raw folder.

    mode: "2d" (axial slices) or "3d" (axial slabs of about ``slab_thickness`` kept slices); every: keep every
    every-th slice; downsample: in-plane block size (spacing in mm); min_brain_fraction: labelled area relative to
    the largest slice's below which end slices are dropped; validation_slab: 0 for one contiguous validation block
    per fold, N > 0 for slabs of N cases dealt to the folds in turn (module doc); preprocessed_dir: default
    ``$nnUNet_preprocessed``.
    Case ids are ``colin27_z<first>`` (2D) and ``colin27_z<first>-<last>`` (3D), z being the source slice index.
    """
    if mode not in ("2d", "3d"):
        raise ValueError(f"mode must be '2d' or '3d', got {mode!r}")
    if every < 1 or downsample < 1 or slab_thickness < 1:
        raise ValueError(f"every, downsample and slab_thickness must be >= 1, got {every}, {downsample}, "
                         f"{slab_thickness}")
    if validation_slab < 0:
        raise ValueError(f"validation_slab must be >= 0 (0: contiguous blocks), got {validation_slab}")
    if not 0.0 <= min_brain_fraction <= 1.0:
        raise ValueError(f"min_brain_fraction must be in [0, 1], got {min_brain_fraction}")
    preprocessed_dir = preprocessed_dir or os.environ.get("nnUNet_preprocessed")
    if not preprocessed_dir:
        raise ValueError("nnUNet_preprocessed is not set: export it or pass preprocessed_dir (splits_final.json "
                         "goes there)")
    t1, image, labels = _load_source(source_dir)
    brain_area = (labels > 0).reshape(labels.shape[0], -1).sum(axis=1)
    if brain_area.max() == 0:
        raise ValueError(f"{ATLAS_FILE} in {source_dir} labels no voxel")
    enough_brain = np.nonzero(brain_area >= min_brain_fraction * brain_area.max())[0]
    slices = np.arange(enough_brain[0], enough_brain[-1] + 1, every)
    if mode == "2d":
        slices = slices[brain_area[slices] >= min_brain_fraction * brain_area.max()]
    image, labels = _downsample_in_plane(image[slices], labels[slices], downsample)

    direction = np.array(t1.GetDirection()).reshape(3, 3)
    block_centre = (downsample - 1) / 2.0
    if mode == "2d":
        groups = [[i] for i in range(len(slices))]
        case_ids = [f"colin27_z{z:03d}" for z in slices]
        spacing = (float(downsample) * t1.GetSpacing()[1], float(downsample) * t1.GetSpacing()[0])
        direction_out = direction[:2, :2]
    else:
        num_slabs = max(1, int(round(len(slices) / slab_thickness)))
        groups = [list(g) for g in np.array_split(np.arange(len(slices)), num_slabs)]
        case_ids = [f"colin27_z{slices[g[0]]:03d}-{slices[g[-1]]:03d}" for g in groups]
        spacing = (float(every) * t1.GetSpacing()[2], float(downsample) * t1.GetSpacing()[1],
                   float(downsample) * t1.GetSpacing()[0])
        direction_out = direction
    if len(case_ids) < NUM_FOLDS:
        raise ValueError(f"only {len(case_ids)} {mode} cases, need at least {NUM_FOLDS} for {NUM_FOLDS} folds: lower "
                         f"--every{' or --slab-thickness' if mode == '3d' else ''}")
    splits = interleaved_folds(case_ids, validation_slab) if validation_slab else contiguous_folds(case_ids)

    folder = prepare_raw_dataset_folder(raw_dir, dataset_id, name, ("imagesTr", "labelsTr"))
    for case_id, group in zip(case_ids, groups):
        corner = t1.TransformContinuousIndexToPhysicalPoint((block_centre, block_centre, float(slices[group[0]])))
        if mode == "2d":
            case_image, case_labels, origin = image[group[0]], labels[group[0]], corner[1::-1]
        else:
            case_image, case_labels, origin = image[group], labels[group], corner[::-1]
        write_case(folder, case_id, case_image, case_labels, spacing, origin, direction_out)

    folds = (f"slabs of {validation_slab} cases dealt to the folds in turn" if validation_slab
             else "contiguous blocks in z")
    write_dataset_json(folder, name, f"Colin27 T1 (mricron-data ch2) with AAL regions grouped into lobes; {mode} "
                                     f"axial {'slices' if mode == '2d' else 'slabs'}, every {every}, in-plane "
                                     f"downsampling {downsample}; folds are {folds}.", "T1", LABELS,
                       len(case_ids), licence=SOURCE_LICENCE)
    groups = {case: f"slab_{i // validation_slab:03d}" for i, case in enumerate(case_ids)} if validation_slab else None
    for split_folder in (folder, os.path.join(preprocessed_dir, os.path.basename(folder))):
        os.makedirs(split_folder, exist_ok=True)
        with open(os.path.join(split_folder, "splits_final.json"), "w") as f:
            json.dump(splits, f, indent=2)
        groups_file = os.path.join(split_folder, CASE_GROUPS_FILE)
        if groups is not None:
            with open(groups_file, "w") as f:
                json.dump(groups, f, indent=2)
        elif os.path.exists(groups_file):
            os.remove(groups_file)
    return folder


def install_source(source_dir: str) -> Optional[str]:
    """Run ``apt-get install -y mricron-data`` for the default source folder; return an error line or None."""
    if os.path.abspath(source_dir) != os.path.abspath(DEFAULT_SOURCE_DIR):
        return f"--install fills {DEFAULT_SOURCE_DIR} only; drop --source or --install"
    if shutil.which("apt-get") is None:
        return (f"apt-get not found: mricron-data is a Debian/Ubuntu package; elsewhere pass --source DIR holding "
                f"{', '.join(SOURCE_FILES)}")
    if os.geteuid() != 0:
        return f"--install needs root: run 'sudo {INSTALL_COMMAND}' (or rerun this command as root)"
    result = subprocess.run(INSTALL_COMMAND.split())
    if result.returncode != 0:
        return f"'{INSTALL_COMMAND}' failed with exit code {result.returncode} (try 'apt-get update' first)"
    return None
