"""Step time, peak memory and inference time of MORSE trainers against nnUNetTrainer, in one run.

    python -m nnunetv2_morse.benchmark --preset 3d_fullres --device cuda
    python -m nnunetv2_morse.benchmark --preset 2d --device cpu --patch-size 256 256 --batch-size 2
    python -m nnunetv2_morse.benchmark --preset 3d_fullres --device cpu --image-shape 24 48 48 --steps 1   # smoke
    python -m nnunetv2_morse.benchmark --plans2d 128 160 256 512 --trainers nnUNetTrainer nnUNetTrainerMORSE --rounds 2

Plans come from nnU-Net's own experiment planner run on a synthetic dataset fingerprint of realistic size (a CT-like
abdominal set: 30 cases of 512 x 512 x ~160 voxels at 0.8 x 0.8 x 2.5 mm, 4 organs; --image-shape changes it), so
no images are needed. Each trainer is measured in a fresh subprocess (peak memory is per process), through the
trainer's own train_step (forward, losses, backward, optimizer step; nnU-Net's fp16 autocast and grad scaler on
CUDA) and nnU-Net's sliding-window predictor. Beside each MORSE trainer's ratios: the point renderer's FLOPs as a
share of the U-Net's (torch's counter, one sample: forward at N_p training points, and at N_test inference points)
and the measured overhead above them (ratio - 1 - share). --plans2d measures several 2D plans in one run, each
nnU-Net's own plan for images of that in-plane size, at batch 2: the ratios do not depend on the batch to first
order (U-Net and head both scale with it), and batch 2 keeps a 512x512 step short on a CPU. Prints Markdown tables
and writes them with the raw numbers as JSON.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from nnunetv2_morse.precision import AUTOCAST_ENVIRONMENT_VARIABLE

PRESETS = {
    "2d": {"configuration": "2d", "planner": "ExperimentPlanner", "plans_name": "nnUNetPlans"},
    "3d_fullres": {"configuration": "3d_fullres", "planner": "ExperimentPlanner", "plans_name": "nnUNetPlans",
                   "patch_size": [128, 128, 128], "batch_size": 2},
    "resenc": {"configuration": "3d_fullres", "planner": "nnUNetPlannerResEncM", "plans_name": "nnUNetResEncUNetMPlans",
               "patch_size": [128, 128, 128], "batch_size": 2},
}
DEFAULT_TRAINERS = ("nnUNetTrainer", "nnUNetTrainerPointRend", "nnUNetTrainerMoE", "nnUNetTrainerSMoE",
                    "nnUNetTrainerIAR", "nnUNetTrainerIARMoE", "nnUNetTrainerMORSE")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
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


def make_plans(preset: str, workdir: str, image_shape: Sequence[int]) -> str:
    """Runs nnU-Net's planner for the preset on the synthetic fingerprint; returns the plans file."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiment_dataset
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    import nnunetv2

    raw, preprocessed = os.path.join(workdir, "raw"), os.path.join(workdir, "preprocessed")
    os.environ.update(nnUNet_raw=raw, nnUNet_preprocessed=preprocessed, nnUNet_results=os.path.join(workdir, "results"))
    write_synthetic_fingerprint(raw, preprocessed, image_shape)
    planner = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "experiment_planning"),
                                          PRESETS[preset]["planner"], "nnunetv2.experiment_planning")
    plan_experiment_dataset(DATASET_ID, planner)
    return os.path.join(preprocessed, DATASET_NAME, PRESETS[preset]["plans_name"] + ".json")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def saved_for_backward_mb(network: torch.nn.Module, data: torch.Tensor) -> float:
    """MiB of tensors the training forward keeps for backward (each storage counted once)."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
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
    """Eval forward time of one patch for each N_test against the coarse U-Net forward alone, and the head's FLOPs
    against the U-Net's."""
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
    with torch.no_grad():
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

    clock_name 'wall': elapsed time; 'cpu': this process's CPU time on one thread, which other processes on a
    shared machine do not add to (the U-Net and the head then run single-threaded).

    precision bf16: autocast to bfloat16 without grad scaler, for every trainer (MORSE trainers read
    $nnUNet_morse_autocast, which main() sets; nnUNetTrainer gets the process-wide default autocast dtype)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
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
        torch.set_autocast_dtype("cuda", torch.bfloat16)
    trainer = recursive_find_trainer_class_by_name(trainer_name)(plans, configuration, 0, dataset_json, device)
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
    train_memory = peak_memory_mb(device)
    if profile_file:
        write_profile(lambda: trainer.train_step(sample), device, profile_file)
    saved_mb = saved_for_backward_mb(trainer.network, data.to(device))
    flops = flop_shares(unwrap_network(trainer.network), patch) if hasattr(trainer, "morse_config") else None

    trainer.set_deep_supervision_enabled(False)
    trainer.network.eval()
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                perform_everything_on_device=device.type == "cuda", device=device, allow_tqdm=False)
    axes = tuple(range(len(patch)))
    predictor.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager, None,
                                    dataset_json, trainer_name, axes if mirroring else None)
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
    return {"trainer": trainer_name, "compiled": compiled, "precision": precision if device.type == "cuda" else "fp32",
            "patch_size": list(patch), "batch_size": batch, "step_s": step_time,
            "peak_memory_mb": train_memory, "saved_for_backward_mb": saved_mb, "inference_s": inference_time,
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


def over_budget(rows: List[dict], baseline: str) -> List[str]:
    """The issue's budgets against the baseline: step time and peak memory <= 1.05x, inference <= 1.10x."""
    base = next(r for r in rows if r["trainer"] == baseline)
    lines = []
    for r in rows:
        for key, name, budget in (("step_s", "step time", 1.05), ("peak_memory_mb", "peak memory", 1.05),
                                  ("inference_s", "inference", 1.10)):
            ratio = r[key] / base[key]
            if r is not base and ratio > budget:
                lines.append(f"{r['trainer']}: {name} {ratio:.3f}x, {ratio / budget - 1:.1%} over the {budget}x budget")
    return lines


def arithmetic_columns(row: dict, base: dict) -> List[str]:
    """The head's FLOPs as a share of the U-Net's (training at N_p, inference at N_test) and the measured overhead
    above that arithmetic (ratio - 1 - share), for the step and for inference; dashes for a row without a head."""
    flops = row.get("flops")
    if not flops:
        return ["–"] * 4
    step_ratio, inference_ratio = row["step_s"] / base["step_s"], row["inference_s"] / base["inference_s"]
    return [f"{flops['train_flop_share']:.1%} ({flops['train_points']})",
            f"{step_ratio - 1 - flops['train_flop_share']:+.1%}",
            f"{flops['test_flop_share']:.1%} ({flops['test_points']})",
            f"{inference_ratio - 1 - flops['test_flop_share']:+.1%}"]


ARITHMETIC_HEADER = ("head FLOPs / U-Net, training (N_p) | step overhead above FLOPs | "
                     "head FLOPs / U-Net, inference (N_test) | inference overhead above FLOPs")


def format_table(rows: List[dict], baseline: str) -> str:
    base = next(r for r in rows if r["trainer"] == baseline)
    lines = ["| trainer | step (s) | step ratio | peak memory (MiB) | memory ratio | saved for backward (MiB) | "
             f"saved ratio | inference (s/case) | inference ratio | {ARITHMETIC_HEADER} |",
             "|" + " --- |" * 13]
    for r in rows:
        lines.append(f"| {r['trainer']} | {r['step_s']:.3f} | {r['step_s'] / base['step_s']:.3f} | "
                     f"{r['peak_memory_mb']:.0f} | {r['peak_memory_mb'] / base['peak_memory_mb']:.3f} | "
                     f"{r['saved_for_backward_mb']:.0f} | {r['saved_for_backward_mb'] / base['saved_for_backward_mb']:.3f} | "
                     f"{r['inference_s']:.3f} | {r['inference_s'] / base['inference_s']:.3f} | "
                     + " | ".join(arithmetic_columns(r, base)) + " |")
    for r in rows:
        if r["test_points_sweep"]:
            lines += ["", f"N_test sweep, {r['trainer']}: one patch, eval forward against the coarse U-Net forward",
                      "", "| N_test | coarse (s) | refined (s) | ratio | U-Net GFLOP | head GFLOP | head / U-Net |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            lines += [f"| {t['num_test_points']} | {t['coarse_s']:.3f} | {t['refined_s']:.3f} | {t['ratio']:.3f} | "
                      f"{t['unet_gflop']:.1f} | {t['head_gflop']:.1f} | {t['head_gflop'] / t['unet_gflop']:.3f} |"
                      for t in r["test_points_sweep"]]
    return "\n".join(lines)


def format_summary(plan_rows: Dict[str, List[dict]], baseline: str) -> str:
    """One table over several plans: the baseline's step, peak memory and inference per plan, every other trainer's
    ratios to it, and the head's FLOP shares beside them."""
    lines = [f"| plan (patch, batch) | trainer | step | peak memory | inference | {ARITHMETIC_HEADER} |",
             "|" + " --- |" * 9]
    for plan, rows in plan_rows.items():
        base = next(r for r in rows if r["trainer"] == baseline)
        label = f"{plan} ({'x'.join(map(str, base['patch_size']))}, {base['batch_size']})"
        for r in rows:
            if r is base:
                cells = [f"{r['step_s']:.3f} s", f"{r['peak_memory_mb']:.0f} MiB", f"{r['inference_s']:.3f} s"]
            else:
                cells = [f"{r[key] / base[key]:.3f}x" for key in ("step_s", "peak_memory_mb", "inference_s")]
            lines.append(f"| {label} | {r['trainer']} | " + " | ".join(cells + arithmetic_columns(r, base)) + " |")
    return "\n".join(lines)


def best_of_rounds(results: List[dict]) -> dict:
    """One trainer's measurements over several rounds: the fastest step and inference (a shared machine only ever
    adds time), the first round's memory; `rounds` keeps every round's times."""
    best = dict(results[0])
    best["step_s"] = min(r["step_s"] for r in results)
    best["inference_s"] = min(r["inference_s"] for r in results)
    best["rounds"] = [{"step_s": r["step_s"], "inference_s": r["inference_s"]} for r in results]
    return best


def run_trainers(args: argparse.Namespace, plans_file: str, batch_size: Optional[int]) -> List[dict]:
    """Every trainer of args.trainers in its own process, args.rounds times in turn (baseline, A, B, baseline, A,
    B, ...), so that a change in the machine's load reaches all of them alike; best_of_rounds per trainer."""
    from nnunetv2_morse.trainers import TRAINER_DIR

    env = dict(os.environ, nnUNet_extTrainer=os.pathsep.join(filter(None, [TRAINER_DIR, os.environ.get("nnUNet_extTrainer")])))
    env[AUTOCAST_ENVIRONMENT_VARIABLE] = "bfloat16" if args.precision == "bf16" else "float16"
    if args.compile != "auto":
        env["nnUNet_compile"] = "1" if args.compile == "on" else "0"
    results: Dict[str, List[dict]] = {name: [] for name in args.trainers}
    for round_index in range(args.rounds):
        for name in args.trainers:
            command = [sys.executable, "-m", "nnunetv2_morse.benchmark", "--worker", name, "--plans-file", plans_file,
                       "--preset", args.preset, "--device", args.device, "--steps", str(args.steps),
                       "--warmup", str(args.warmup), "--case-scale", str(args.case_scale),
                       "--precision", args.precision, "--clock", args.clock, "--out", args.out]
            command += ["--patch-size", *map(str, args.patch_size)] if args.patch_size else []
            command += ["--batch-size", str(batch_size)] if batch_size else []
            command += ["--no-mirroring"] if args.no_mirroring else []
            command += ["--test-points", *map(str, args.test_points)] if args.test_points else []
            command += ["--profile"] if args.profile else []
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode != 0 or not result:
                sys.exit(f"benchmark of {name} failed:\n{done.stderr[-3000:]}")
            row = json.loads(result[0][len("RESULT "):])
            results[name].append(row)
            print(f"{name} (round {round_index + 1}/{args.rounds}): step {row['step_s']:.3f} s, "
                  f"peak {row['peak_memory_mb']:.0f} MiB, saved for backward {row['saved_for_backward_mb']:.0f} MiB, "
                  f"inference {row['inference_s']:.3f} s", flush=True)
    return [best_of_rounds(results[name]) for name in args.trainers]


def describe(args: argparse.Namespace, rows: List[dict], plan: str) -> str:
    """The heading line of one plan's table: what was measured, where, how."""
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    return (f"{plan} ({PRESETS[args.preset]['configuration']}, patch {rows[0]['patch_size']}, batch "
            f"{rows[0]['batch_size']}, inference case {rows[0]['case_shape']}, mirroring "
            f"{'off' if args.no_mirroring else 'on'}) on {device_name}, torch {torch.__version__}, "
            f"{datetime.date.today().isoformat()}, precision {rows[0]['precision']}, torch.compile "
            f"{'on' if rows[0]['compiled'] else 'off'}, best of {args.rounds} round(s), "
            f"{'one-thread CPU time' if args.clock == 'cpu' else 'elapsed time'}; memory: "
            f"{'torch.cuda.max_memory_allocated' if device.type == 'cuda' else 'peak process RSS'}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="2d")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--trainers", nargs="+", default=list(DEFAULT_TRAINERS),
                        help="the first is the baseline of the ratios")
    parser.add_argument("--image-shape", type=int, nargs=3, default=(160, 512, 512), metavar=("Z", "Y", "X"),
                        help="median image size of the synthetic CT-like dataset that nnU-Net plans for")
    parser.add_argument("--plans2d", type=int, nargs="+", metavar="S",
                        help="one table per 2D plan: nnU-Net's own 2d plan for images of S x S (and Z of "
                             "--image-shape), at batch 2 unless --batch-size, plus a summary over the plans")
    parser.add_argument("--patch-size", type=int, nargs="+", help="override the plan's patch size")
    parser.add_argument("--batch-size", type=int, help="override the plan's batch size")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every trainer this many times in turn and keep its fastest times")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="cpu: time by the process's CPU time on one thread (CPU only), for a machine that other "
                             "processes share: they slow the elapsed time, not the CPU time")
    parser.add_argument("--case-scale", type=float, default=1.5,
                        help="inference case edge length in patch lengths (1.5 -> 2 tiles per axis)")
    parser.add_argument("--no-mirroring", action="store_true")
    parser.add_argument("--test-points", type=int, nargs="*", default=[],
                        help="also time one patch's eval forward of each MORSE trainer at these N_test")
    parser.add_argument("--precision", choices=("fp16", "bf16"), default="fp16",
                        help="CUDA autocast dtype: fp16 with nnU-Net's grad scaler (its default) or bf16 without")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="torch.compile the network: auto = nnU-Net's default (on for CUDA, off for CPU)")
    parser.add_argument("--profile", action="store_true",
                        help="also write a torch.profiler table of 3 training steps per trainer to --out")
    parser.add_argument("--out", default="benchmark_results", help="folder for the .md and .json files")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--plans-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: give 1 or more")
    if args.clock == "cpu" and args.device == "cuda":
        parser.error("--clock cpu times the CPU's work: on CUDA use --clock wall")
    if args.plans2d and (args.preset != "2d" or args.patch_size):
        parser.error("--plans2d measures nnU-Net's own 2d plans at their own patch sizes: use it with --preset 2d "
                     "and without --patch-size")
    device = torch.device(args.device)
    configuration = PRESETS[args.preset]["configuration"]
    patch_size = args.patch_size or (PRESETS[args.preset].get("patch_size") if args.device == "cuda" else None)
    batch_size = args.batch_size or (PRESETS[args.preset].get("batch_size") if args.device == "cuda" else None)

    if args.worker:
        profile_file = os.path.join(args.out, f"profile_{args.preset}_{args.worker}.txt") if args.profile else None
        result = measure_trainer(args.worker, args.plans_file, configuration, device, patch_size, batch_size,
                                 args.steps, args.warmup, args.case_scale, not args.no_mirroring, args.test_points,
                                 args.precision, profile_file, args.clock)
        print("RESULT " + json.dumps(result))
        return

    if args.plans2d:
        plans = {f"2d {s}x{s}": (args.image_shape[0], s, s) for s in args.plans2d}
        batch_size = args.batch_size or 2
    else:
        plans = {args.preset: tuple(args.image_shape)}
    os.makedirs(args.out, exist_ok=True)
    plan_rows, sections = {}, []
    for plan, image_shape in plans.items():
        plans_file = make_plans(args.preset, tempfile.mkdtemp(prefix="morse_benchmark_"), image_shape)
        rows = plan_rows[plan] = run_trainers(args, plans_file, batch_size)
        table = format_table(rows, args.trainers[0])
        budget = over_budget(rows, args.trainers[0])
        table += "\n\nBudgets (step, memory <= 1.05x; inference <= 1.10x): " + (
            "all met." if not budget else "over budget:\n" + "\n".join(f"- {line}" for line in budget))
        sections.append(describe(args, rows, plan) + "\n\n" + table)
        print("\n" + sections[-1], flush=True)
    if args.plans2d:
        sections.insert(0, f"2d plans {', '.join(plans)}: ratios to {args.trainers[0]} per plan\n\n"
                        + format_summary(plan_rows, args.trainers[0]))
        print("\n" + sections[0])
    stem = os.path.join(args.out, f"benchmark_{'2d_plans' if args.plans2d else args.preset}_{args.device}"
                        + ("_bf16" if args.precision == "bf16" and args.device == "cuda" else ""))
    with open(stem + ".md", "w") as f:
        f.write("\n\n".join(sections) + "\n")
    with open(stem + ".json", "w") as f:
        json.dump({"sections": sections, "command": sys.argv, "plans": plan_rows}, f, indent=2)
    print(f"\nwritten: {stem}.md, {stem}.json")


if __name__ == "__main__":
    main()
