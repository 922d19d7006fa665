"""The one place where the ledger reaches the package's dataset builders: a study's ``dataset`` field is a builder
name (``BUILDERS``), an nnU-Net dataset id and the builder's keyword arguments."""
from __future__ import annotations

import inspect
from typing import Callable, Dict, Hashable, Mapping, Optional, Tuple

from nnunetv2_morse.ledger.definition import DatasetDefinition, StudyError

SET_BY_THE_LEDGER = ("raw_dir", "dataset_id", "preprocessed_dir")


def builder_function(name: str) -> Callable[..., str]:
    """make_synthetic_dataset, make_boundary_dataset or make_colin27_dataset."""
    if name == "synthetic":
        from nnunetv2_morse.datasets.synthetic import make_synthetic_dataset
        return make_synthetic_dataset
    if name == "boundary":
        from nnunetv2_morse.datasets.boundary import make_boundary_dataset
        return make_boundary_dataset
    if name == "colin27":
        from nnunetv2_morse.datasets.colin27 import make_colin27_dataset
        return make_colin27_dataset
    raise StudyError(f"unknown dataset builder {name!r}")


def check_arguments(dataset: DatasetDefinition, where: str) -> None:
    """StudyError naming the first argument the builder does not take (or that the ledger sets itself)."""
    parameters = inspect.signature(builder_function(dataset.builder)).parameters
    for key in dataset.arguments:
        if key in SET_BY_THE_LEDGER or key not in parameters:
            allowed = [p for p in parameters if p not in SET_BY_THE_LEDGER]
            raise StudyError(f"{where}: field 'dataset.arguments.{key}' is not an argument of the {dataset.builder} "
                             f"builder (allowed: {', '.join(allowed)})")


def build_dataset(dataset: DatasetDefinition, raw_dir: str, preprocessed_dir: str) -> str:
    """Writes the dataset into raw_dir (Colin27: its splits_final.json into preprocessed_dir); returns its folder."""
    function = builder_function(dataset.builder)
    extra = {"preprocessed_dir": preprocessed_dir} if "preprocessed_dir" in inspect.signature(function).parameters else {}
    try:
        return function(raw_dir, dataset.id, **dataset.arguments, **extra)
    except (FileNotFoundError, ValueError) as error:
        raise StudyError(f"dataset {dataset.id} ({dataset.builder}): {error}") from error


def resampling_units(dataset: DatasetDefinition, case_folds: Mapping[str, int]
                     ) -> Optional[Tuple[str, Dict[str, Hashable]]]:
    """(unit name, case -> unit) where a study's cases are not independent: a Colin27 dataset with validation slabs
    (slices, or slabs, of one volume, each fold validating slabs of consecutive ones: colin27.validation_slabs),
    ("slab", its validation slab); None where each case is its own unit (other builders, or Colin27's contiguous
    folds, which would leave only 5 units)."""
    slab = dataset.arguments.get("validation_slab", 0)
    if dataset.builder != "colin27" or not slab:
        return None
    from nnunetv2_morse.datasets.colin27 import validation_slabs
    return "slab", validation_slabs(case_folds, slab)
