"""What nnUNetv2_morse_benchmark measures, in torch and nnU-Net (the command itself is nnunetv2_morse/benchmark.py):
nnU-Net's plans for a synthetic dataset fingerprint, and in one process per trainer its train_step time, peak
memory, memory saved for backward, sliding-window inference time and the point renderer's FLOPs against the
U-Net's."""
from __future__ import annotations

import json
import os
import resource
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
# what a report's peak_memory_mb is, recorded with it (reports without it: CPU peak RSS of the whole process, with
# the modules that trainer's lookup happened to import)
MEMORY_MEASURE = {"cuda": "torch.cuda.max_memory_allocated",
                  "cpu": "peak RSS above the RSS with every trainer module imported, before the network is built"}
DATASET_ID = 990
DATASET_NAME = f"Dataset{DATASET_ID}_BenchmarkCT"
NUM_CLASSES = 5


def write_synthetic_fingerprint(raw_dir: str, preprocessed_dir: str, image_shape: Sequence[int] = (160, 512, 512),
                                num_cases: int = 30, seed: int = 0) -> None:
    """dataset.json and dataset_fingerprint.json of a CT-like dataset with images of about image_shape (z, y, x)
    voxels at 0.7-0.9 mm in-plane and 2.5-3 mm between slices; planning needs nothing else."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(raw_dir, DATASET_NAME), exist_ok=True)
    os.makedirs(os.path.join(preprocessed_dir, DATASET_NAME), exist_ok=True)
    cases = {f"case_{i:03d}": {"images": [f"imagesTr/case_{i:03d}_0000.nii.gz"], "label": f"labelsTr/case_{i:03d}.nii.gz"}
             for i in range(num_cases)}
    dataset_json = {
        "channel_names": {"0": "CT"}, "labels": {"background": 0, **{f"organ{i}": i for i in range(1, NUM_CLASSES)}},
        "numTraining": num_cases, "file_ending": ".nii.gz", "overwrite_image_reader_writer": "SimpleITKIO",
        "dataset": cases,
    }
    spacings = [[float(rng.choice([2.5, 3.0])), float(rng.uniform(0.7, 0.9))] for _ in range(num_cases)]
    fingerprint = {
        "spacings": [[z, xy, xy] for z, xy in spacings],
        "shapes_after_crop": [[max(1, int(image_shape[0] * rng.uniform(0.75, 1.25))), *map(int, image_shape[1:])]
                              for _ in range(num_cases)],
        "foreground_intensity_properties_per_channel": {"0": {
            "max": 1500.0, "mean": 80.0, "median": 70.0, "min": -1000.0, "percentile_00_5": -150.0,
            "percentile_99_5": 300.0, "std": 70.0}},
        "median_relative_size_after_cropping": 1.0,
    }
    with open(os.path.join(raw_dir, DATASET_NAME, "dataset.json"), "w") as f:
        json.dump(dataset_json, f)
    with open(os.path.join(preprocessed_dir, DATASET_NAME, "dataset_fingerprint.json"), "w") as f:
        json.dump(fingerprint, f)


def make_plans(planner_name: str, plans_name: str, workdir: str, image_shape: Sequence[int]) -> str:
    """Runs nnU-Net's experiment planner planner_name on the synthetic fingerprint of images of about image_shape
    in workdir (nnU-Net's three folders are set to its subfolders); returns the plans file plans_name.json."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiment_dataset
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    import nnunetv2

    raw, preprocessed = os.path.join(workdir, "raw"), os.path.join(workdir, "preprocessed")
    os.environ.update(nnUNet_raw=raw, nnUNet_preprocessed=preprocessed, nnUNet_results=os.path.join(workdir, "results"))
    write_synthetic_fingerprint(raw, preprocessed, image_shape)
    planner = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "experiment_planning"), planner_name,
                                          "nnunetv2.experiment_planning")
    plan_experiment_dataset(DATASET_ID, planner)
    return os.path.join(preprocessed, DATASET_NAME, plans_name + ".json")


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: the peak of torch's allocated memory since its last reset; CPU: this process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """This process's resident memory now (Linux /proc; elsewhere its peak so far, an upper bound)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError):
        return peak_memory_mb(torch.device("cpu"))


def import_every_trainer() -> None:
    """Imports every module of nnU-Net's trainer tree and this package's trainers, as nnU-Net's lookup of a trainer
    outside its first modules does: every measured process then holds the same libraries (timm, torchvision, ...,
    about 48 MiB of RSS), whichever trainer it measures."""
    import importlib
    import pkgutil

    import nnunetv2.training.nnUNetTrainer as trainer_tree
    import nnunetv2_morse.trainers  # noqa: F401

    for module in pkgutil.walk_packages(trainer_tree.__path__, trainer_tree.__name__ + "."):
        importlib.import_module(module.name)


def saved_for_backward_mb(network: torch.nn.Module, data: torch.Tensor) -> float:
    """MiB of tensors the training forward keeps for backward (each storage counted once), under autocast on CUDA
    as nnU-Net trains there."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
            torch.autocast(data.device.type, enabled=data.device.type == "cuda"):
        network(data)
    return sum(storages.values()) / 2 ** 20


def point_flop_counts(morse: torch.nn.Module, patch: Sequence[int], counts: Sequence[int]) -> Tuple[int, List[int]]:
    """FLOPs (torch's counter) of the U-Net forward of one patch, and of the point renderer's forward at each of
    `counts` points of it, fed with that patch's own stage features (so a dense gate's full-resolution work counts)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(morse.parameters()).device
    in_channels = next(m for m in morse.encoder.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)).in_channels
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            stage_features, seg_outputs = morse.decode(morse.encoder(torch.randn(1, in_channels, *patch, device=device)))
        unet = counter.get_total_flops()
        heads = []
        for count in counts:
            with FlopCounterMode(display=False) as counter:
                morse.rendering(stage_features, seg_outputs[0], torch.rand(1, count, len(patch), device=device))
            heads.append(counter.get_total_flops())
    return unet, heads


def flop_shares(morse: torch.nn.Module, patch: Sequence[int]) -> dict:
    """The point renderer's FLOPs against the U-Net's, per sample: training (forward at N_p points) and inference
    (N_test points), for a patch of spatial size `patch`."""
    train_points = morse.config.training_points_for(patch)
    test_points = morse.rendering.test_points_for(patch)
    unet, (train_head, test_head) = point_flop_counts(morse, patch, [train_points, test_points])
    return {"unet_gflop": unet / 1e9, "train_points": train_points, "train_head_gflop": train_head / 1e9,
            "train_flop_share": train_head / unet, "test_points": test_points, "test_head_gflop": test_head / 1e9,
            "test_flop_share": test_head / unet}


def time_test_points(network: torch.nn.Module, patch: Sequence[int], counts: Sequence[int],
                     device: torch.device, repeats: int = 3, clock=time.perf_counter) -> List[dict]:
    """Eval forward time of one patch for each N_test against the coarse U-Net forward alone (under autocast on
    CUDA, as nnU-Net's predictor runs), and the head's FLOPs against the U-Net's."""
    from nnunetv2_morse.trainers.morse import unwrap_network

    morse = unwrap_network(network)
    x = torch.randn(1, 1, *patch, device=device)

    def best_time(fn):
        times = []
        for _ in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = clock()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(clock() - start)
        return min(times[1:])

    rows = []
    unet, heads = point_flop_counts(morse, patch, counts)
    with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
        coarse = best_time(lambda: morse.decode(morse.encoder(x)))
        for count, head in zip(counts, heads):
            morse.set_num_test_points(count)
            full = best_time(lambda: morse(x))
            rows.append({"num_test_points": count, "coarse_s": coarse, "refined_s": full, "ratio": full / coarse,
                         "unet_gflop": unet / 1e9, "head_gflop": head / 1e9})
    return rows


def initialize_without_data(trainer, num_input_channels: int, num_classes: int) -> bool:
    """What nnUNetTrainer.initialize does, without a preprocessed dataset: network (compiled where nnU-Net would
    compile it), optimizer, scheduler, loss. Returns whether the network was compiled."""
    trainer.num_input_channels = num_input_channels
    trainer.network = trainer.build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, num_input_channels, num_classes, True).to(trainer.device)
    compiled = trainer._do_i_compile()
    if compiled:
        trainer.network = torch.compile(trainer.network)
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    trainer.loss = trainer._build_loss()
    trainer.was_initialized = True
    trainer.network.train()
    return compiled


def random_batch(trainer, num_input_channels: int, num_classes: int, generator: torch.Generator) -> dict:
    """A training batch of the trainer's patch and batch size: random images, random labels at every
    deep-supervision scale, as nnU-Net's dataloader delivers it."""
    patch = trainer.configuration_manager.patch_size
    batch = trainer.configuration_manager.batch_size
    data = torch.randn(batch, num_input_channels, *patch, generator=generator)
    label = torch.randint(0, num_classes, (batch, 1, *patch), generator=generator).float()
    targets = [torch.nn.functional.interpolate(label, size=[round(p * s) for p, s in zip(patch, scale)], mode="nearest")
               for scale in trainer._get_deep_supervision_scales()]
    return {"data": data, "target": targets}


def measure_trainer(trainer_name: str, plans_file: str, configuration: str, device: torch.device,
                    patch_size: Optional[Sequence[int]], batch_size: Optional[int], steps: int, warmup: int,
                    case_scale: float, mirroring: bool, test_points: Sequence[int] = (), precision: str = "fp16",
                    profile_file: Optional[str] = None, clock_name: str = "wall") -> dict:
    """Times train_step and sliding-window inference of one trainer (run in its own process).

    clock_name 'wall': elapsed time; 'cpu': this process's CPU time on one thread (the U-Net and the head then run
    single-threaded), which other processes slow less than the elapsed time but still do where they share the core's
    execution units.

    precision bf16: autocast to bfloat16 without grad scaler, for every trainer (MORSE trainers read
    $nnUNet_morse_autocast, which main() sets; nnUNetTrainer gets the process-wide default autocast dtype), in
    training; inference runs as nnUNetv2_predict does: fp16 autocast, the network compiled only where
    $nnUNet_compile asks for it.

    Peak memory on the CPU: the peak RSS above the RSS once every trainer module is imported (import_every_trainer),
    before the network is built, so that neither the libraries nor which of them a trainer's lookup imported count."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2_morse.precision import set_autocast_dtype
    from nnunetv2_morse.trainers.morse import unwrap_network

    clock = CLOCKS[clock_name]
    if clock_name == "cpu":
        torch.set_num_threads(1)
    with open(plans_file) as f:
        plans = json.load(f)
    cfg = plans["configurations"][configuration]
    if patch_size:
        cfg["patch_size"] = list(patch_size)
    if batch_size:
        cfg["batch_size"] = batch_size
    plans["continue_training"] = False
    with open(os.path.join(os.environ["nnUNet_raw"], DATASET_NAME, "dataset.json")) as f:
        dataset_json = json.load(f)
    if precision == "bf16" and device.type == "cuda":
        set_autocast_dtype("cuda", torch.bfloat16)
    import_every_trainer()
    trainer = recursive_find_trainer_class_by_name(trainer_name)(plans, configuration, 0, dataset_json, device)
    rss_floor = current_rss_mb()
    if precision == "bf16":
        trainer.grad_scaler = None
    compiled = initialize_without_data(trainer, 1, NUM_CLASSES)
    patch = trainer.configuration_manager.patch_size
    batch = trainer.configuration_manager.batch_size
    generator = torch.Generator().manual_seed(0)
    sample = random_batch(trainer, 1, NUM_CLASSES, generator)
    data = sample["data"]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        trainer.train_step(sample)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync()
    start = clock()
    for _ in range(steps):
        trainer.train_step(sample)
    sync()
    step_time = (clock() - start) / steps
    train_memory = peak_memory_mb(device) - (rss_floor if device.type == "cpu" else 0.0)
    if profile_file:
        write_profile(lambda: trainer.train_step(sample), device, profile_file)
    saved_mb = saved_for_backward_mb(trainer.network, data.to(device))
    flops = flop_shares(unwrap_network(trainer.network), patch) if hasattr(trainer, "morse_config") else None

    trainer.set_deep_supervision_enabled(False)
    trainer.network.eval()
    if device.type == "cuda":
        set_autocast_dtype("cuda", torch.float16)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                perform_everything_on_device=device.type == "cuda", device=device, allow_tqdm=False)
    axes = tuple(range(len(patch)))
    # uncompiled: the predictor compiles as $nnUNet_compile says
    predictor.manual_initialization(unwrap_network(trainer.network), trainer.plans_manager,
                                    trainer.configuration_manager, None, dataset_json, trainer_name,
                                    axes if mirroring else None)
    case_shape = [int(round(p * case_scale)) for p in patch]
    case = torch.randn(1, *([2] if len(patch) == 2 else []), *case_shape, generator=generator)  # 2D: two slices
    with torch.no_grad():
        predictor.predict_sliding_window_return_logits(case)  # warm-up
        sync()
        start = clock()
        predictor.predict_sliding_window_return_logits(case)
        sync()
    inference_time = clock() - start
    sweep = time_test_points(trainer.network, patch, test_points, device, clock=clock) \
        if test_points and hasattr(trainer, "morse_config") else []
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    return {"trainer": trainer_name, "device_name": device_name, "torch": torch.__version__, "compiled": compiled,
            "precision": precision if device.type == "cuda" else "fp32",
            "patch_size": list(patch), "batch_size": batch, "step_s": step_time,
            "peak_memory_mb": train_memory, "memory_measure": MEMORY_MEASURE[device.type],
            "saved_for_backward_mb": saved_mb, "inference_s": inference_time,
            "case_shape": list(case.shape[1:]), "flops": flops, "test_points_sweep": sweep}


def write_profile(step, device: torch.device, path: str, steps: int = 3) -> None:
    """torch.profiler table of `steps` training steps, operators sorted by their own device (or CPU) time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    with open(path, "w") as f:
        f.write(profiler.key_averages().table(sort_by=sort_by, row_limit=40, max_name_column_width=80))
