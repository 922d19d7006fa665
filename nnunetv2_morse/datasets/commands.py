"""The dataset builders' console scripts. Arguments are parsed before the builders (numpy, SimpleITK, scipy,
nnU-Net) are imported, so ``--help`` and argument errors answer at once."""

import argparse
import os
import sys
from typing import Callable, Optional, Sequence

from nnunetv2_morse.cli import console_script

__all__ = ["make_boundary_dataset_entry", "make_colin27_entry", "run_dataset_builder"]

CONFIGURATIONS = {2: "2d", 3: "3d_fullres"}  # the configuration a builder's next command plans, per dimension


def run_dataset_builder(build: Callable[[], str], dataset_id: int, configuration: str,
                        variables: Sequence[str] = ("nnUNet_raw",)) -> int:
    """Body of the dataset builders' console scripts: refuse unset nnU-Net path variables, run build, print the
    folder it wrote on stdout and nnU-Net's next command on stderr (exit code 0), or its error in one line (exit
    code 1)."""
    for variable in variables:
        if not os.environ.get(variable):
            print(f"{variable} is not set: export {variable}=/path/to/{variable} first", file=sys.stderr)
            return 1
    try:
        folder = build()
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(folder)
    print(f"next: nnUNetv2_plan_and_preprocess -d {dataset_id} -c {configuration} --verify_dataset_integrity",
          file=sys.stderr)
    return 0


def _parser(description: str) -> argparse.ArgumentParser:
    """A builder's parser with its required ``-d``; every option's help shows its default."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-d", "--dataset-id", type=int, required=True, default=argparse.SUPPRESS,
                        help="nnU-Net dataset id (1..999)")
    return parser


@console_script
def make_boundary_dataset_entry(argv: Optional[Sequence[str]] = None) -> int:
    """Console script ``nnUNetv2_morse_make_boundary_dataset``: writes the dataset into ``$nnUNet_raw``."""
    parser = _parser("Write the synthetic boundary benchmark (thin vessels, thin-walled cysts, touching classes, "
                     "partial volume, noise, bias field) as an nnU-Net v2 raw dataset into $nnUNet_raw.")
    parser.add_argument("--dim", type=int, choices=(2, 3), required=True, default=argparse.SUPPRESS,
                        help="2D images or 3D volumes")
    parser.add_argument("-n", "--num-training", type=int, default=argparse.SUPPRESS,
                        help="training cases (default: 40 in 2D, 20 in 3D)")
    parser.add_argument("--num-test", type=int, default=argparse.SUPPRESS,
                        help="cases in imagesTs (default: 10 in 2D, 5 in 3D)")
    parser.add_argument("--shape", type=int, nargs="+", default=argparse.SUPPRESS,
                        help="image shape in numpy order, y x or z y x (default: 128 128 in 2D, 48 48 48 in 3D)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same data")
    parser.add_argument("--name", default="MorseBoundary", help="dataset name: Dataset<ID>_<name>")
    options = vars(parser.parse_args(argv))

    def build() -> str:
        from nnunetv2_morse.datasets.boundary import make_boundary_dataset
        return make_boundary_dataset(os.environ["nnUNet_raw"], **options)

    return run_dataset_builder(build, options["dataset_id"], CONFIGURATIONS[options["dim"]])


@console_script
def make_colin27_entry(argv: Optional[Sequence[str]] = None) -> int:
    """Console script ``nnUNetv2_morse_make_colin27``: writes into ``$nnUNet_raw`` and ``$nnUNet_preprocessed``."""
    parser = _parser("Write the Colin27 T1 + AAL lobes benchmark (Debian mricron-data) as an nnU-Net v2 raw dataset "
                     "into $nnUNet_raw, with its 5 folds in $nnUNet_preprocessed/<dataset>/splits_final.json.")
    parser.add_argument("--mode", choices=("2d", "3d"), required=True, default=argparse.SUPPRESS,
                        help="axial slices or axial slabs")
    parser.add_argument("--every", type=int, default=1, help="keep every K-th axial slice")
    parser.add_argument("--downsample", type=int, default=1,
                        help="in-plane block size F: F x F voxels become one, spacing F mm (2 on a CPU)")
    parser.add_argument("--slab-thickness", type=int, default=16, help="3D: kept slices per slab")
    parser.add_argument("--validation-slab", type=int, default=0,
                        help="0: each fold validates one contiguous block of cases (extrapolation to unseen "
                             "anatomy); N: slabs of N consecutive cases dealt to the folds in turn, each case's "
                             "slab written as case_groups.json for nnUNetv2_morse_compare --groups")
    parser.add_argument("--source", dest="source_dir", default="/usr/share/mricron/templates",
                        help="folder holding mricron-data's ch2.nii.gz, aal.nii.gz and aal.nii.txt")
    parser.add_argument("--install", action="store_true",
                        help="install Debian's mricron-data with apt-get if the files are missing (needs root)")
    parser.add_argument("--name", default="Colin27AAL", help="dataset name: Dataset<ID>_<name>")
    options = vars(parser.parse_args(argv))
    install = options.pop("install")

    def build() -> str:
        from nnunetv2_morse.datasets.colin27 import install_source, make_colin27_dataset, missing_source_files
        if install and missing_source_files(options["source_dir"]):
            error = install_source(options["source_dir"])
            if error:
                raise RuntimeError(error)
        return make_colin27_dataset(os.environ["nnUNet_raw"], **options)

    return run_dataset_builder(build, options["dataset_id"], CONFIGURATIONS[2 if options["mode"] == "2d" else 3],
                               ("nnUNet_raw", "nnUNet_preprocessed"))

