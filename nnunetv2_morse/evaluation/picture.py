"""The method at work on one case (the paper's Fig. 4): image, coarse prediction, uncertainty with the re-predicted
points, refined prediction (and the reference, if given with -r; otherwise the title says "no reference given"), for
one slice of one network patch, as PNG.

    nnUNetv2_morse_picture -d 4 -c 2d -tr nnUNetTrainerMORSE -f 0 -i imagesTs/case_0000_0000.nii.gz --slice 40 -o fig.png
"""
from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

import numpy as np
import torch

from nnunetv2_morse.points import select_uncertain_voxels, uncertainty, voxel_centres


def load_trained_network(model_folder: str, fold: str, checkpoint: str):
    """(network in eval mode, plans_manager, configuration_manager, dataset_json) of a trained MORSE fold."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(model_folder, (fold,), checkpoint)
    if not hasattr(predictor.network, "rendering"):
        raise SystemExit(f"{model_folder} holds a {predictor.trainer_name} model, which has no point head to show")
    return predictor.network.eval(), predictor.plans_manager, predictor.configuration_manager, predictor.dataset_json


def central_patch(volume: np.ndarray, centre: Sequence[int], patch_size: Sequence[int]) -> np.ndarray:
    """The patch_size window (zero-padded where it leaves the volume) of volume (C, *S) centred at centre."""
    out = np.zeros((volume.shape[0], *patch_size), dtype=np.float32)
    src, dst = [slice(None)], [slice(None)]
    for c, p, s in zip(centre, patch_size, volume.shape[1:]):
        start = int(c) - p // 2
        lo, hi = max(start, 0), min(start + p, s)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def render_patch(network, patch: np.ndarray) -> dict:
    """Coarse and refined logits, uncertainty and re-predicted voxel coords of one patch (C, *P), batch of one."""
    x = torch.from_numpy(patch)[None]
    with torch.no_grad():
        stage_features, seg_outputs = network.decode(network.encoder(x))
        coarse = seg_outputs[0]
        regions = network.rendering.region_outputs
        chosen = select_uncertain_voxels(coarse, network.rendering.test_points_for(coarse.shape[2:]), regions)
        refined = network.rendering.refine(stage_features, coarse)
    sizes = np.array(coarse.shape[2:])
    points = np.round(voxel_centres(chosen, coarse.shape[2:])[0].numpy() * sizes - 0.5).astype(int)
    return {"coarse": coarse[0].numpy(), "refined": refined[0].numpy(), "points": points,
            "uncertainty": uncertainty(coarse, regions)[0].numpy(), "regions": regions}


def slice_of(rendered: dict, k: int) -> dict:
    """The 3D render_patch result cut at slice k of its first axis; points kept if they lie in that slice."""
    points = rendered["points"]
    return {**rendered, "coarse": rendered["coarse"][:, k], "refined": rendered["refined"][:, k],
            "uncertainty": rendered["uncertainty"][k], "points": points[points[:, 0] == k][:, 1:]}


def segmentation(logits: np.ndarray, regions: bool) -> np.ndarray:
    """Label map from logits (K, *S): argmax, or for regions the number of regions above 0.5 (nested regions)."""
    return (logits > 0).sum(0) if regions else logits.argmax(0)


def draw(image: np.ndarray, rendered: dict, reference: Optional[np.ndarray], title: str, out_file: str) -> None:
    """Writes the panels for one 2D slice: image (Y, X), rendered 2D maps, optional reference (Y, X); without a
    reference, no reference panel and "no reference given" in the title."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    coarse = segmentation(rendered["coarse"], rendered["regions"])
    refined = segmentation(rendered["refined"], rendered["regions"])
    num_classes = max(int(coarse.max()), int(refined.max()), int(reference.max()) if reference is not None else 0, 1)
    panels = [("image", image, "gray", None), ("coarse prediction", coarse, "tab10", num_classes),
              (f"uncertainty, {len(rendered['points'])} points re-predicted", rendered["uncertainty"], "magma", None),
              ("refined prediction", refined, "tab10", num_classes),
              ("changed by the head", (coarse != refined).astype(float), "Reds", 1)]
    if reference is not None:
        panels.insert(1, ("reference", reference, "tab10", num_classes))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
    for ax, (name, values, cmap, vmax) in zip(axes, panels):
        ax.imshow(values, cmap=cmap, vmin=0 if vmax is not None else None, vmax=vmax, interpolation="nearest")
        if name.startswith("uncertainty"):
            ax.scatter(rendered["points"][:, 1], rendered["points"][:, 0], s=1.5, c="cyan", linewidths=0)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title if reference is not None else f"{title}; no reference given", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_file, dpi=120)
    plt.close(fig)


def make_picture(model_folder: str, image_files: Sequence[str], out_file: str, fold: str = "0",
                 slice_index: Optional[int] = None, reference_file: Optional[str] = None,
                 checkpoint: str = "checkpoint_final.pth") -> str:
    """Preprocesses the case as nnU-Net does, takes the network patch around the slice and draws it.

    nnU-Net's preprocessor returns a placeholder segmentation (all background) without a reference file: only
    reference_file decides whether a reference panel is drawn.
    """
    network, plans_manager, configuration_manager, dataset_json = load_trained_network(model_folder, fold, checkpoint)
    preprocessor = configuration_manager.preprocessor_class(verbose=False)
    data, seg, _ = preprocessor.run_case(list(image_files), reference_file, plans_manager, configuration_manager,
                                         dataset_json)
    patch_size = list(configuration_manager.patch_size)
    depth = data.shape[1]
    z = depth // 2 if slice_index is None else slice_index
    if not 0 <= z < depth:
        raise SystemExit(f"--slice {z} is outside the preprocessed case's {depth} slices")
    in_plane_centre = [s // 2 for s in data.shape[2:]]
    reference = None
    if len(patch_size) == 2:
        patch = central_patch(data[:, z], in_plane_centre, patch_size)
        rendered, image = render_patch(network, patch), patch[0]
        if reference_file is not None:
            reference = np.maximum(central_patch(seg[:, z].astype(np.float32), in_plane_centre, patch_size)[0], 0)
    else:
        patch = central_patch(data, [z, *in_plane_centre], patch_size)
        k = patch_size[0] // 2
        rendered, image = slice_of(render_patch(network, patch), k), patch[0, k]
        if reference_file is not None:
            reference = np.maximum(central_patch(seg.astype(np.float32), [z, *in_plane_centre], patch_size)[0, k], 0)
    name = os.path.basename(image_files[0])
    draw(image, rendered, reference, f"{name}, slice {z}, patch {patch_size} ({os.path.basename(model_folder)})",
         out_file)
    return out_file


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("-d", required=True, help="dataset name or id")
    parser.add_argument("-c", required=True, help="configuration, e.g. 2d or 3d_fullres")
    parser.add_argument("-tr", default="nnUNetTrainerMORSE")
    parser.add_argument("-p", default="nnUNetPlans")
    parser.add_argument("-f", default="0", help="fold")
    parser.add_argument("-i", nargs="+", required=True, help="the case's image files, one per channel")
    parser.add_argument("-r", help="the case's reference label file (optional; without it no reference panel)")
    parser.add_argument("--slice", type=int, help="slice index along the first axis of the preprocessed case")
    parser.add_argument("-chk", default="checkpoint_final.pth")
    parser.add_argument("-o", required=True, help="output PNG")
    args = parser.parse_args(argv)
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    print(make_picture(get_output_folder(args.d, args.tr, args.p, args.c), args.i, args.o, args.f, args.slice, args.r,
                       args.chk))


if __name__ == "__main__":
    main()
