"""The method at work on one case (the paper's Fig. 4), as a PNG (``nnUNetv2_morse_picture``): image, coarse
prediction, uncertainty with the re-predicted points, refined prediction, what the head changed (and the reference,
if given with -r; otherwise the title says "no reference given"), for one slice of one network patch, with a class
legend and the uncertainty's colour bar.
"""
import os
from typing import Dict, Optional, Sequence

import numpy as np

from nnunetv2_morse.cli import (DEFAULT_CHECKPOINT, CommandError, Fold, add_device_argument, add_model_arguments,
                                command_parser, console_script, morse_network, one_line_errors, resolve_device,
                                trained_model_folder, trained_predictor)

PANEL_INCHES = 3.2
DPI = 120
POINT_COLOUR = (0.0, 1.0, 1.0)  # cyan: stands out on the magma uncertainty map
MIN_POINT_SIDE_PT = 2.0  # the re-predicted points' marker side: a voxel, but at least this (visible in large patches)


def load_trained_network(model_folder: str, fold: Fold, checkpoint: str, device):
    """(MorseNetwork in eval mode on device, plans_manager, configuration_manager, dataset_json) of a trained fold;
    CommandError if it is not a MORSE model."""
    predictor = trained_predictor(model_folder, fold, checkpoint, device)
    network = morse_network(predictor).to(device).eval()
    return network, predictor.plans_manager, predictor.configuration_manager, predictor.dataset_json


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
    """Coarse and refined logits, uncertainty and re-predicted voxel coords of one patch (C, *P), batch of one, on
    the network's device."""
    import torch

    from nnunetv2_morse.points import select_uncertain_voxels, uncertainty, voxel_centres

    x = torch.from_numpy(patch)[None].to(next(network.parameters()).device)
    with torch.no_grad():
        stage_features, seg_outputs = network.decode(network.encoder(x))
        coarse = seg_outputs[0]
        regions = network.rendering.region_outputs
        chosen = select_uncertain_voxels(coarse, network.rendering.test_points_for(coarse.shape[2:]), regions)
        refined = network.rendering.refine(stage_features, coarse)
    sizes = np.array(coarse.shape[2:])
    points = np.round(voxel_centres(chosen, coarse.shape[2:])[0].cpu().numpy() * sizes - 0.5).astype(int)
    return {"coarse": coarse[0].cpu().numpy(), "refined": refined[0].cpu().numpy(), "points": points,
            "uncertainty": uncertainty(coarse, regions)[0].cpu().numpy(), "regions": regions}


def slice_of(rendered: dict, k: int) -> dict:
    """The 3D render_patch result cut at slice k of its first axis; points kept if they lie in that slice."""
    points = rendered["points"]
    return {**rendered, "coarse": rendered["coarse"][:, k], "refined": rendered["refined"][:, k],
            "uncertainty": rendered["uncertainty"][k], "points": points[points[:, 0] == k][:, 1:]}


def segmentation(logits: np.ndarray, regions: bool) -> np.ndarray:
    """Label map from logits (K, *S): argmax, or for regions the number of regions above 0.5 (nested regions)."""
    return (logits > 0).sum(0) if regions else logits.argmax(0)


def foreground_classes(dataset_json: dict) -> Dict[str, list]:
    """{name: label values} of dataset.json's foreground classes or regions, in order (background, ignore left out)."""
    classes = {}
    for name, value in dataset_json["labels"].items():
        values = [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        if name != "ignore" and values != [0]:
            classes[name] = values
    return classes


def class_names(dataset_json: dict, regions: bool) -> Dict[int, str]:
    """{value in a shown label map: class name}: a label-based class's label, or for regions k for the k-th region
    (segmentation counts the nested regions a voxel is in)."""
    classes = foreground_classes(dataset_json)
    if regions:
        return {k: name for k, name in enumerate(classes, start=1)}
    return {values[0]: name for name, values in classes.items()}


def as_region_counts(reference: np.ndarray, dataset_json: dict) -> np.ndarray:
    """A label map turned into the number of dataset.json regions each voxel lies in, as segmentation() shows
    region predictions."""
    return sum(np.isin(reference, values).astype(np.int64) for values in foreground_classes(dataset_json).values())


def class_colours(num_values: int) -> np.ndarray:
    """(num_values, 3) RGB: black for background (0), then matplotlib's tab10 colours (tab20's for more than ten
    classes, repeating after twenty)."""
    from matplotlib import colormaps

    palette = colormaps["tab10" if num_values <= 11 else "tab20"]
    return np.array([(0.0, 0.0, 0.0)] + [palette(i % palette.N)[:3] for i in range(num_values - 1)])


def draw(image: np.ndarray, rendered: dict, reference: Optional[np.ndarray], title: str, out_file: str,
         names: Dict[int, str]) -> None:
    """Writes the panels for one 2D slice: image (Y, X), rendered 2D maps, optional reference (Y, X) as label values
    named by names; without a reference, no reference panel and "no reference given" in the title."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    coarse = segmentation(rendered["coarse"], rendered["regions"])
    refined = segmentation(rendered["refined"], rendered["regions"])
    label_maps = [coarse, refined] + ([] if reference is None else [reference])
    colours = class_colours(max(max(int(m.max()) for m in label_maps), *names, 1) + 1)
    points = rendered["points"]
    panels = [("image", image), ("coarse prediction", colours[coarse]),
              (f"uncertainty, {len(points)} points re-predicted", rendered["uncertainty"]),
              ("refined prediction", colours[refined]), ("changed by the head", (coarse != refined).astype(float))]
    if reference is not None:
        panels.insert(1, ("reference", colours[reference]))
    figure, axes = plt.subplots(1, len(panels), figsize=(PANEL_INCHES * len(panels), PANEL_INCHES + 1.4), dpi=DPI)
    for axis, (name, values) in zip(axes, panels):
        if name == "image":
            axis.imshow(values, cmap="gray", interpolation="nearest")
        elif name.startswith("uncertainty"):
            uncertainty_axis, shown = axis, axis.imshow(values, cmap="magma", interpolation="nearest")
            figure.colorbar(shown, ax=axis, orientation="horizontal", fraction=0.05, pad=0.04,
                            label="uncertainty (higher: less certain)")
        elif name.startswith("changed"):
            axis.imshow(values, cmap="Reds", vmin=0, vmax=1, interpolation="nearest")
        else:
            axis.imshow(values, interpolation="nearest")
        axis.set_title(name, fontsize=9)
        axis.axis("off")
    figure.suptitle(title if reference is not None else f"{title}; no reference given", fontsize=10)
    shown_values = sorted(set(np.unique(np.concatenate([m.ravel() for m in label_maps]))) - {0})
    figure.legend(handles=[Patch(facecolor=colours[v], label=names.get(int(v), f"label {v}")) for v in shown_values],
                  loc="lower center", ncol=max(1, min(len(shown_values), 8)), fontsize=9, frameon=False)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    # after the layout, which sets the panel's size: one voxel wide, at least MIN_POINT_SIDE_PT
    side = max(uncertainty_axis.bbox.width * 72 / DPI / image.shape[1], MIN_POINT_SIDE_PT)
    uncertainty_axis.scatter(points[:, 1], points[:, 0], s=side ** 2, marker="s", color=POINT_COLOUR, linewidths=0)
    os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
    figure.savefig(out_file, dpi=DPI)
    plt.close(figure)


def make_picture(model_folder: str, image_files: Sequence[str], out_file: str, fold: Fold = 0,
                 slice_index: Optional[int] = None, reference_file: Optional[str] = None,
                 checkpoint: str = DEFAULT_CHECKPOINT, device: str = "auto") -> str:
    """Preprocesses the case as nnU-Net does, takes the network patch around the slice and draws it; returns
    out_file (its folder is created). CommandError for a missing image or reference file, a wrong number of image
    channels, a slice outside the case, or a model that is missing or not MORSE's.

    nnU-Net's preprocessor returns a placeholder segmentation (all background) without a reference file: only
    reference_file decides whether a reference panel is drawn.
    """
    missing = [f for f in [*image_files, *([reference_file] if reference_file else [])] if not os.path.isfile(f)]
    if missing:
        raise CommandError(f"file(s) not found: {', '.join(missing)}")
    network, plans_manager, configuration_manager, dataset_json = load_trained_network(
        model_folder, fold, checkpoint, resolve_device(device))
    channels = dataset_json["channel_names"]
    if len(image_files) != len(channels):
        raise CommandError(f"the model takes {len(channels)} image channel(s) ({', '.join(channels.values())}), got "
                           f"{len(image_files)} file(s) with -i: give one file per channel, in this order")
    preprocessor = configuration_manager.preprocessor_class(verbose=False)
    data, seg, _ = preprocessor.run_case(list(image_files), reference_file, plans_manager, configuration_manager,
                                         dataset_json)
    patch_size = list(configuration_manager.patch_size)
    depth = data.shape[1]
    z = depth // 2 if slice_index is None else slice_index
    if not 0 <= z < depth:
        raise CommandError(f"--slice {z} is outside the preprocessed case's {depth} slice(s) (0 to {depth - 1})")
    in_plane_centre = [s // 2 for s in data.shape[2:]]
    reference = None
    if len(patch_size) == 2:
        patch = central_patch(data[:, z], in_plane_centre, patch_size)
        rendered, image = render_patch(network, patch), patch[0]
        if reference_file is not None:
            reference = central_patch(seg[:, z].astype(np.float32), in_plane_centre, patch_size)[0]
    else:
        patch = central_patch(data, [z, *in_plane_centre], patch_size)
        k = patch_size[0] // 2
        rendered, image = slice_of(render_patch(network, patch), k), patch[0, k]
        if reference_file is not None:
            reference = central_patch(seg.astype(np.float32), [z, *in_plane_centre], patch_size)[0, k]
    if reference is not None:
        reference = np.maximum(reference, 0).astype(np.int64)
        if rendered["regions"]:
            reference = as_region_counts(reference, dataset_json)
    name = os.path.basename(image_files[0])
    draw(image, rendered, reference, f"{name}, slice {z}, patch {patch_size} ({os.path.basename(model_folder)})",
         out_file, class_names(dataset_json, rendered["regions"]))
    return out_file


@console_script
def main(argv: Optional[Sequence[str]] = None) -> None:
    prog = "nnUNetv2_morse_picture"
    parser = command_parser(
        prog, "The method at work on one case (the paper's Fig. 4): image, coarse prediction, uncertainty with the "
              "re-predicted points, refined prediction and what the head changed (and the reference, with -r) for "
              "one slice of one network patch, with a class legend and the uncertainty's colour bar, as PNG.",
        "Example:\n\n    nnUNetv2_morse_picture -d 4 -c 2d -f 0 -i imagesTs/case_0000_0000.nii.gz --slice 20 "
        "-o fig.png")
    add_model_arguments(parser, trainer_default="nnUNetTrainerMORSE", multiple_folds=False)
    add_device_argument(parser)
    parser.add_argument("-i", nargs="+", metavar="IMAGE", required=True,
                        help="the case's image files, one per channel (CASE_0000.nii.gz ...)")
    parser.add_argument("-r", metavar="LABEL_FILE", help="the case's reference label file (optional; without it no "
                                                         "reference panel)")
    parser.add_argument("--slice", type=int, help="slice index along the first axis of the preprocessed case "
                                                  "(default: the middle one)")
    parser.add_argument("-o", metavar="PNG", required=True, help="output PNG (its folder is created)")
    args = parser.parse_args(argv)
    with one_line_errors(prog):
        folder = trained_model_folder(args.dataset, args.trainer, args.plans, args.configuration)
        print(make_picture(folder, args.i, args.o, args.fold, args.slice, args.r, args.checkpoint, args.device))


if __name__ == "__main__":
    main()
