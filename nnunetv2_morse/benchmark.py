"""Step time, peak memory and inference time of MORSE trainers against nnUNetTrainer, in one run.

    nnUNetv2_morse_benchmark --preset 3d_fullres -device cuda
    nnUNetv2_morse_benchmark --preset 2d -device cpu --patch-size 256 256 --batch-size 2
    nnUNetv2_morse_benchmark --preset 3d_fullres -device cpu --image-shape 24 48 48 --steps 1   # smoke
    nnUNetv2_morse_benchmark --plans2d 128 160 256 512 --trainers nnUNetTrainer nnUNetTrainerMORSE --rounds 2

Plans come from nnU-Net's own experiment planner run on a synthetic dataset fingerprint of realistic size (a CT-like
abdominal set: 30 cases of 512 x 512 x ~160 voxels at 0.8 x 0.8 x 2.5 mm, 4 organs; --image-shape changes it), so
no images are needed. Each trainer is measured in a fresh subprocess (peak memory is per process), through the
trainer's own train_step (forward, losses, backward, optimizer step; nnU-Net's fp16 autocast and grad scaler on
CUDA) and nnU-Net's sliding-window predictor. Beside each MORSE trainer's ratios: the point renderer's FLOPs as a
share of the U-Net's (torch's counter, one sample: forward at N_p training points, and at N_test inference points)
and the measured overhead above them (ratio - 1 - share). --plans2d measures several 2D plans in one run, each
nnU-Net's own plan for images of that in-plane size, at batch 2, where the head costs most against the U-Net (at
the planner's larger batches the step ratio is lower), and which keeps a 512x512 step short on a CPU. On the CPU,
peak memory is the process's peak RSS above its RSS once every trainer module is imported (the same modules in
every process), before the network is built. Prints Markdown tables
and writes the report (the raw numbers) as JSON and its tables as Markdown, rendered from the report alone
(benchmark_markdown), as nnUNetv2_morse_results renders them again for the ledger.

The measurements themselves (torch, nnU-Net) are in nnunetv2_morse/cost.py, imported once the options are parsed.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import os
import subprocess
import sys
import tempfile
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from nnunetv2_morse.cli import (CommandError, add_device_argument, command_parser, console_script, integer_at_least,
                                markdown_table, one_line_errors)

PROG = "nnUNetv2_morse_benchmark"
PRESETS = {
    "2d": {"configuration": "2d", "planner": "ExperimentPlanner", "plans_name": "nnUNetPlans"},
    "3d_fullres": {"configuration": "3d_fullres", "planner": "ExperimentPlanner", "plans_name": "nnUNetPlans",
                   "patch_size": [128, 128, 128], "batch_size": 2},
    "resenc": {"configuration": "3d_fullres", "planner": "nnUNetPlannerResEncM", "plans_name": "nnUNetResEncUNetMPlans",
               "patch_size": [128, 128, 128], "batch_size": 2},
}
DEFAULT_TRAINERS = ("nnUNetTrainer", "nnUNetTrainerPointRend", "nnUNetTrainerMoE", "nnUNetTrainerSMoE",
                    "nnUNetTrainerIAR", "nnUNetTrainerIARMoE", "nnUNetTrainerMORSE")
BENCHMARK_DEVICES = ("auto", "cuda", "cpu")
CLOCK_NAMES = ("cpu", "wall")  # nnunetv2_morse.cost.CLOCKS
PLANS2D_BATCH_SIZE = 2
CPU_CLOCK_ON_CUDA = "--clock cpu times the CPU's work: on CUDA use --clock wall"


def positive_number(value: str) -> float:
    """An argparse type: a number > 0."""
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"give a number > 0, got {value!r}")
    return number


# (row key, name, largest ratio to the baseline): step time and peak memory <= 1.05x, inference <= 1.10x
BUDGETS = (("step_s", "step time", 1.05), ("peak_memory_mb", "peak memory", 1.05), ("inference_s", "inference", 1.10))
BUDGET_HEADING = f"Budgets (step, memory <= {BUDGETS[0][2]:.2f}x; inference <= {BUDGETS[2][2]:.2f}x)"


def row_ratios(row: dict, base: dict, key: str) -> List[float]:
    """row's key over base's, round by round (each round measures every trainer in turn, so a round's trainers are
    measured alike) where both rows kept that key in each of their rounds (best_of_rounds keeps the step, inference
    and peak memory): step and inference times vary by several percent between identical rounds on a shared
    machine, peak memory by a few; a ratio of each trainer's fastest round would hide that. Other keys, and rows
    without rounds, the one ratio of the rows."""
    rounds, base_rounds = row.get("rounds", ()), base.get("rounds", ())
    if (len(rounds) > 1 and len(rounds) == len(base_rounds)
            and all(key in r for r in (*rounds, *base_rounds))):
        return [r[key] / b[key] for r, b in zip(rounds, base_rounds)]
    return [row[key] / base[key]]


# how a ledger study's benchmark is measured again: the remedy that caveats_with_remedy ends its caveats with
MEASURE_AGAIN = "to measure it again, delete the study's run.json and run nnUNetv2_morse_study on its folder"


def memory_caveat(rows: Sequence[dict]) -> str:
    """'' or why the rows' peak memory ratios overstate the MORSE trainers': CPU rows recorded without
    cost.MEMORY_MEASURE measured each process's whole peak RSS, and a MORSE trainer's lookup imported about 48 MiB of
    modules (every nnU-Net trainer variant: timm, torchvision, ...) that nnUNetTrainer's did not."""
    if any(r.get("device_name", "").startswith("CPU") and "memory_measure" not in r for r in rows):
        return ("peak memory is each process's whole peak RSS, measured before every process imported the same "
                "modules: a MORSE trainer's process imported about 48 MiB more (timm, torchvision, ...) than "
                "nnUNetTrainer's, so its memory ratios are overstated")
    return ""


def order_caveat(rows: Sequence[dict]) -> str:
    """'' or why the rows' time ratios may understate the other trainers' cost: rows recorded without
    `warm_up_process` were measured with the baseline as the benchmark's first process, which runs slow
    (measurement_order)."""
    if any("warm_up_process" not in r for r in rows):
        return ("measured before the benchmark ran a warm-up process, with the baseline as its first process, which "
                "runs slow (by as much as the baseline's own spread between rounds), so the first round's time ratios "
                "understate the other trainers' cost")
    return ""


def caveats_with_remedy(*caveats: str) -> str:
    """'' or the caveats that apply (memory_caveat, order_caveat; '' for one that does not) joined into one clause,
    ending once with MEASURE_AGAIN."""
    found = [caveat for caveat in caveats if caveat]
    return f"{'; and '.join(found)}; {MEASURE_AGAIN}" if found else ""


def round_spread(row: dict, key: str) -> Optional[float]:
    """A trainer's slowest round over its fastest for a timed key (step_s, inference_s): how much identical
    measurements of one trainer differed; None for a row of fewer than two rounds."""
    values = [r[key] for r in row.get("rounds", ()) if key in r]
    return max(values) / min(values) if len(values) > 1 else None


def row_spreads(row: dict) -> Optional[Tuple[float, float]]:
    """(step, inference): the row's round_spread of step_s and inference_s; None unless both were timed in two
    rounds or more."""
    spreads = round_spread(row, "step_s"), round_spread(row, "inference_s")
    return None if None in spreads else spreads


def spread_line(rows: Sequence[dict]) -> str:
    """'' or one sentence: each trainer's row_spreads, the scale against which a ratio's distance from 1 is read."""
    parts = [f"{row['trainer']} step {spreads[0]:.3f}x, inference {spreads[1]:.3f}x"
             for row in rows for spreads in [row_spreads(row)] if spreads is not None]
    return ("Between identical rounds (each trainer's slowest round over its fastest): " + "; ".join(parts) + "."
            if parts else "")


def table_notes(rows: Sequence[dict]) -> str:
    """'' or the sentences under a plan's table: spread_line, and order_caveat where it applies."""
    caveat = caveats_with_remedy(order_caveat(rows))
    return " ".join(filter(None, [spread_line(rows), f"Careful: {caveat}." if caveat else ""]))


def ratio_range(ratios: Sequence[float], unit: str = "x") -> str:
    """'1.020x', or '1.020-1.050x' where the ratios differ at three decimals."""
    low, high = f"{min(ratios):.3f}", f"{max(ratios):.3f}"
    return f"{low}{unit}" if low == high else f"{low}-{high}{unit}"


def clear_excess(ratios: Sequence[float], budget: float) -> bool:
    """Whether a ratio is over its budget in every round: a clear excess, by the smallest of its ratios. Over in
    some rounds only is no clear excess (times and peak RSS vary this much between identical rounds)."""
    return min(ratios) > budget


def judged_ratios(rows: Sequence[dict], base: dict) -> List[Tuple[dict, str, str, float, List[float]]]:
    """(row, key, name, budget, row_ratios) for each row of one plan but base and each of BUDGETS it is judged on
    against base: peak memory not where memory_caveat(rows)."""
    caveat = memory_caveat(rows)
    return [(row, key, name, budget, row_ratios(row, base, key)) for row in rows if row is not base
            for key, name, budget in BUDGETS if not (caveat and key == "peak_memory_mb")]


def over_budget(rows: List[dict], baseline: str) -> List[str]:
    """The rows' ratios to the baseline that exceed BUDGETS, one line each, each line saying what it is. Each ratio
    is judged in every round (row_ratios): a clear_excess by the smallest of them, over in some rounds only no
    clear excess; a row of several rounds that kept only the first round's memory says so."""
    base = next(r for r in rows if r["trainer"] == baseline)
    caveat = memory_caveat(rows)
    lines = [f"not judged for peak memory: {caveats_with_remedy(caveat)}"] if caveat else []
    for r, key, name, budget, ratios in judged_ratios(rows, base):
        over = sum(x > budget for x in ratios)
        shown = ", ".join(f"{x:.3f}x" for x in ratios)
        if clear_excess(ratios, budget):
            first_only = (" (the first of its rounds only: its table kept no other round's memory)"
                          if key == "peak_memory_mb" and len(ratios) == 1 and len(r.get("rounds", ())) > 1 else "")
            lines.append(f"{r['trainer']}: {name} {shown}, {min(ratios) / budget - 1:.1%} over the {budget}x "
                         f"budget{first_only}")
        elif over:
            lines.append(f"{r['trainer']}: {name} over the {budget}x budget in {over} of {len(ratios)} rounds "
                         f"only ({shown}): the {name} varies this much between identical rounds, so this is "
                         "no clear excess")
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


ARITHMETIC_HEADER = ("head FLOPs / U-Net, training (N_p)", "step overhead above FLOPs",
                     "head FLOPs / U-Net, inference (N_test)", "inference overhead above FLOPs")


def format_table(rows: List[dict], baseline: str) -> str:
    """One plan's table (values, the fastest round's times, and ratios to the baseline, each a range over the rounds
    (row_ratios), FLOP shares beside them) and each N_test sweep."""
    base = next(r for r in rows if r["trainer"] == baseline)
    header = ["trainer", "step (s)", "step ratio (range over the rounds)", "peak memory (MiB)",
              "memory ratio (range over the rounds)", "saved for backward (MiB)", "saved ratio", "inference (s/case)",
              "inference ratio (range over the rounds)", *ARITHMETIC_HEADER]
    cells = [[r["trainer"], f"{r['step_s']:.3f}", ratio_range(row_ratios(r, base, "step_s"), unit=""),
              f"{r['peak_memory_mb']:.0f}", ratio_range(row_ratios(r, base, "peak_memory_mb"), unit=""),
              f"{r['saved_for_backward_mb']:.0f}", f"{r['saved_for_backward_mb'] / base['saved_for_backward_mb']:.3f}",
              f"{r['inference_s']:.3f}", ratio_range(row_ratios(r, base, "inference_s"), unit=""),
              *arithmetic_columns(r, base)] for r in rows]
    sections = [markdown_table(header, cells, "l" + "r" * (len(header) - 1))]
    for r in rows:
        if r["test_points_sweep"]:
            sweep = [[t["num_test_points"], f"{t['coarse_s']:.3f}", f"{t['refined_s']:.3f}", f"{t['ratio']:.3f}",
                      f"{t['unet_gflop']:.1f}", f"{t['head_gflop']:.1f}", f"{t['head_gflop'] / t['unet_gflop']:.3f}"]
                     for t in r["test_points_sweep"]]
            sections += [f"N_test sweep, {r['trainer']}: one patch, eval forward against the coarse U-Net forward",
                         markdown_table(["N_test", "coarse (s)", "refined (s)", "ratio", "U-Net GFLOP", "head GFLOP",
                                         "head / U-Net"], sweep, "r" * 7)]
    return "\n\n".join(sections)


def format_summary(plan_rows: Dict[str, List[dict]], baseline: str) -> str:
    """One table over several plans: the baseline's step, peak memory and inference per plan, every other trainer's
    ratios to it (each a range over the rounds, row_ratios), and the head's FLOP shares beside them."""
    cells = []
    for plan, rows in plan_rows.items():
        base = next(r for r in rows if r["trainer"] == baseline)
        label = f"{plan} ({'x'.join(map(str, base['patch_size']))}, {base['batch_size']})"
        for r in rows:
            if r is base:
                values = [f"{r['step_s']:.3f} s", f"{r['peak_memory_mb']:.0f} MiB", f"{r['inference_s']:.3f} s"]
            else:
                values = [ratio_range(row_ratios(r, base, key)) for key in ("step_s", "peak_memory_mb", "inference_s")]
            cells.append([label, r["trainer"], *values, *arithmetic_columns(r, base)])
    header = ["plan (patch, batch)", "trainer", "step", "peak memory", "inference", *ARITHMETIC_HEADER]
    return markdown_table(header, cells, "ll" + "r" * (len(header) - 2))


ROUND_TIMES = ("step_s", "inference_s")  # a row's timed fields
SWEEP_TIMES = ("coarse_s", "refined_s")  # the timed fields of each N_test of a row's test_points_sweep


def best_sweep(sweeps: List[List[dict]], trainer: str) -> List[dict]:
    """One N_test sweep from several rounds' (each a list of cost.time_test_points rows): per N_test the fastest
    coarse and refined forward, and their ratio; ValueError if the rounds swept different N_test."""
    counts = [[entry["num_test_points"] for entry in sweep] for sweep in sweeps]
    if any(c != counts[0] for c in counts):
        raise ValueError(f"the rounds of {trainer} swept different N_test ({counts}): rerun the benchmark")
    best = []
    for entries in zip(*sweeps):
        entry = dict(entries[0], **{key: min(e[key] for e in entries) for key in SWEEP_TIMES})
        entry["ratio"] = entry["refined_s"] / entry["coarse_s"]
        best.append(entry)
    return best


def best_of_rounds(results: List[dict]) -> dict:
    """One trainer's measurements over several rounds (each a cost.measure_trainer row) as one row: every timed
    field at its minimum over the rounds (a shared machine only ever adds time): the step, inference and, per N_test
    of the sweep, the coarse and refined forward with their ratio. Memory (peak, saved for backward) is the first
    round's: load adds time, not memory, so no round is a disturbed one to leave out (over_budget judges memory in
    every round, as its peak varies by a few percent between identical rounds). The rest (plan, device,
    FLOPs) does not change between rounds. `rounds` keeps every round's times and peak memory."""
    best = dict(results[0], **{key: min(r[key] for r in results) for key in ROUND_TIMES})
    best["test_points_sweep"] = best_sweep([r["test_points_sweep"] for r in results], best["trainer"])
    best["rounds"] = [{**{key: r[key] for key in (*ROUND_TIMES, "peak_memory_mb")},
                       "test_points_sweep": [{key: e[key] for key in ("num_test_points", *SWEEP_TIMES)}
                                             for e in r["test_points_sweep"]]} for r in results]
    return best


def check_trainers(names: Sequence[str]) -> None:
    """CommandError naming every trainer that is neither this package's, nnU-Net's nor on nnUNet_extTrainer."""
    from nnunetv2_morse.ledger.trainers import trainer_class

    unknown = []
    for name in names:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net's search prints every folder it looks in
                trainer_class(name)
        except RuntimeError:
            unknown.append(name)
    if unknown:
        raise CommandError(f"-tr/--trainers {' '.join(unknown)}: no such trainer (neither this package's, nnU-Net's nor "
                           "on nnUNet_extTrainer); e.g. nnUNetTrainer nnUNetTrainerMORSE")


def check_plan(plans_file: str, configuration: str, patch_size: Optional[Sequence[int]], plan: str) -> None:
    """CommandError if nnU-Net's plan cannot be trained (a U-Net of one stage has no decoder and no deep
    supervision) or the patch is not a multiple of the U-Net's downsampling."""
    with open(plans_file) as f:
        architecture = json.load(f)["configurations"][configuration]["architecture"]["arch_kwargs"]
    if architecture["n_stages"] < 2:
        raise CommandError(f"{plan}: nnU-Net plans a U-Net of one stage (no decoder) for images this small; give "
                           "larger images (--plans2d, --image-shape)")
    downsampling = [math.prod(axis) for axis in zip(*architecture["strides"])]
    if patch_size and any(p % d for p, d in zip(patch_size, downsampling)):
        raise CommandError(f"--patch-size {' '.join(map(str, patch_size))}: the {plan} plan's U-Net downsamples by "
                           f"{' '.join(map(str, downsampling))}, give multiples of that")


def worker_command(args: argparse.Namespace, trainer: str, plans_file: str, device: str,
                   patch_size: Optional[Sequence[int]], batch_size: Optional[int]) -> List[str]:
    """The command that measures one trainer in its own process (this module with the hidden --worker)."""
    command = [sys.executable, "-m", "nnunetv2_morse.benchmark", "--worker", trainer, "--plans-file", plans_file,
               "--preset", args.preset, "-device", device, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--case-scale", str(args.case_scale), "--precision", args.precision, "--clock", args.clock,
               "--out", args.out]
    command += ["--patch-size", *map(str, patch_size)] if patch_size else []
    command += ["--batch-size", str(batch_size)] if batch_size else []
    command += ["--no-mirroring"] if args.no_mirroring else []
    command += ["--test-points", *map(str, args.test_points)] if args.test_points else []
    command += ["--profile"] if args.profile else []
    return command


def measurement_order(trainers: Sequence[str], rounds: int) -> List[Tuple[Optional[int], str]]:
    """(round index, trainer) in the order the benchmark measures them: first a warm-up process of the first round's
    first trainer (round None: not counted), then every trainer in each round, each round starting one trainer later
    and the first with the trainer after the baseline (trainers[0]), so that a change in the machine's load reaches
    all of them alike. The first process of a benchmark ran up to 18% slower than the same trainer's later rounds on
    the 2-core CPU: the warm-up takes that, and what it leaves falls on a MORSE trainer, raising its ratio, never on
    the baseline, where it would make every other trainer look cheaper."""
    order = [(r, trainers[(r + 1 + i) % len(trainers)]) for r in range(rounds) for i in range(len(trainers))]
    return [(None, order[0][1])] + order


def run_trainers(args: argparse.Namespace, plans_file: str, device: str, patch_size: Optional[Sequence[int]],
                 batch_size: Optional[int]) -> List[dict]:
    """Every trainer of args.trainers in its own process, in measurement_order (a warm-up process, then
    args.rounds rounds); best_of_rounds per trainer.
    CommandError with the failure's last line if one fails; its whole output is kept in args.out."""
    from nnunetv2_morse.precision import AUTOCAST_ENVIRONMENT_VARIABLE
    from nnunetv2_morse.trainers import TRAINER_DIR

    env = dict(os.environ, nnUNet_extTrainer=os.pathsep.join(filter(None, [TRAINER_DIR, os.environ.get("nnUNet_extTrainer")])))
    env[AUTOCAST_ENVIRONMENT_VARIABLE] = "bfloat16" if args.precision == "bf16" else "float16"
    if args.compile != "auto":
        env["nnUNet_compile"] = "1" if args.compile == "on" else "0"
    results: Dict[str, List[dict]] = {name: [] for name in args.trainers}
    for round_index, name in measurement_order(args.trainers, args.rounds):
        done = subprocess.run(worker_command(args, name, plans_file, device, patch_size, batch_size), env=env,
                              capture_output=True, text=True)
        result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not result:
            log = os.path.join(args.out, f"failed_{name}.log")
            with open(log, "w") as f:
                f.write(done.stdout + done.stderr)
            reason = (f"killed by signal {-done.returncode} (out of memory?)" if done.returncode < 0
                      else (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1])
            raise CommandError(f"the benchmark of {name} failed: {reason} (its whole output: {log})")
        row = json.loads(result[0][len("RESULT "):])
        label = "warm-up, not counted" if round_index is None else f"round {round_index + 1}/{args.rounds}"
        if round_index is not None:
            results[name].append(row)
        print(f"{name} ({label}): step {row['step_s']:.3f} s, "
              f"peak {row['peak_memory_mb']:.0f} MiB, saved for backward {row['saved_for_backward_mb']:.0f} MiB, "
              f"inference {row['inference_s']:.3f} s", flush=True)
    return [dict(best_of_rounds(results[name]), warm_up_process=True) for name in args.trainers]


def describe(args: argparse.Namespace, rows: List[dict], plan: str, device: str) -> str:
    """The heading line of one plan's table: what was measured, where, how."""
    first = rows[0]
    return (f"{plan} ({PRESETS[args.preset]['configuration']}, patch {first['patch_size']}, batch "
            f"{first['batch_size']}, inference case {first['case_shape']}, mirroring "
            f"{'off' if args.no_mirroring else 'on'}) on {first['device_name']}, torch {first['torch']}, "
            f"{datetime.date.today().isoformat()}, precision {first['precision']}, torch.compile "
            f"{'on' if first['compiled'] else 'off'}, a warm-up process, then {args.rounds} round(s) (times: the "
            "fastest; ratios: the range), "
            f"{'one-thread CPU time' if args.clock == 'cpu' else 'elapsed time'}; memory: {first['memory_measure']}")


def build_parser() -> argparse.ArgumentParser:
    paragraphs = __doc__.split("\n\n")
    parser = command_parser(PROG, paragraphs[0], "Examples:\n\n" + "\n\n".join(paragraphs[1:3]))
    parser.add_argument("--preset", choices=sorted(PRESETS), default="2d",
                        help="what nnU-Net plans: 2d or 3d_fullres of nnUNetPlans, or resenc (3d_fullres of "
                             "nnUNetResEncUNetMPlans)")
    add_device_argument(parser, BENCHMARK_DEVICES, ("--device",))
    parser.add_argument("-tr", "--trainers", dest="trainers", metavar="TRAINER", nargs="+",
                        default=list(DEFAULT_TRAINERS),
                        help="each measured in its own process; the first is the baseline of the ratios")
    parser.add_argument("--image-shape", type=integer_at_least(1), nargs=3, default=(160, 512, 512),
                        metavar=("Z", "Y", "X"),
                        help="median image size of the synthetic CT-like dataset that nnU-Net plans for")
    parser.add_argument("--plans2d", type=integer_at_least(1), nargs="+", metavar="S",
                        help="one table per 2D plan: nnU-Net's own 2d plan for images of S x S (and Z of "
                             f"--image-shape), at batch {PLANS2D_BATCH_SIZE} unless --batch-size, plus a summary over "
                             "the plans; without it one table, of --preset's plan")
    parser.add_argument("--patch-size", type=integer_at_least(1), nargs="+", metavar="N",
                        help="override the plan's patch size (2 values for 2d, 3 for 3d_fullres and resenc); without "
                             "it the plan's, or 128^3 for the 3D presets on CUDA")
    parser.add_argument("--batch-size", type=integer_at_least(1), metavar="B",
                        help="override the plan's batch size; without it the plan's, or 2 for the 3D presets on CUDA")
    parser.add_argument("--steps", type=integer_at_least(1), default=10,
                        help="timed training steps per trainer (the step time is their mean)")
    parser.add_argument("--warmup", type=integer_at_least(0), default=3, help="untimed training steps before them")
    parser.add_argument("--rounds", type=integer_at_least(1), default=1,
                        help="measure every trainer this many times in turn, after one warm-up process per plan "
                             "that is not counted, and keep the fastest of each time (step, inference, each "
                             "--test-points forward); memory is the first round's, judged against its budget in "
                             "every round")
    parser.add_argument("--clock", choices=CLOCK_NAMES, default="wall",
                        help="cpu: time by the process's CPU time on one thread (CPU only), less affected than the "
                             "elapsed time by other processes but not immune (vCPUs that share a core's execution "
                             "units slow each other): measure with nothing else running either way")
    parser.add_argument("--case-scale", type=positive_number, default=1.5,
                        help="inference case edge length in patch lengths (1.5 -> 2 tiles per axis)")
    parser.add_argument("--disable_tta", "--no-mirroring", dest="no_mirroring", action="store_true",
                        help="sliding-window inference without mirroring, as nnUNetv2_predict --disable_tta (default: "
                             "mirroring on, as nnUNetv2_predict)")
    parser.add_argument("--test-points", type=integer_at_least(0), nargs="+", metavar="N",
                        help="also time one patch's eval forward of each MORSE trainer at these N_test; without it "
                             "no such sweep")
    parser.add_argument("--precision", choices=("fp16", "bf16"), default="fp16",
                        help="CUDA autocast dtype: fp16 with nnU-Net's grad scaler (its default) or bf16 without")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="torch.compile the network: auto = nnU-Net's default (on for CUDA, off for CPU)")
    parser.add_argument("--profile", action="store_true",
                        help="also write a torch.profiler table of 3 training steps per trainer to --out")
    parser.add_argument("-o", "--out", dest="out", metavar="FOLDER", default="benchmark_results",
                        help="folder for the .md and .json files")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--plans-file", help=argparse.SUPPRESS)
    return parser


def check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """parser.error for options that contradict each other (before anything heavy is imported)."""
    dimensions = 2 if PRESETS[args.preset]["configuration"] == "2d" else 3
    if args.patch_size and len(args.patch_size) != dimensions:
        parser.error(f"--patch-size {' '.join(map(str, args.patch_size))}: --preset {args.preset} takes {dimensions} "
                     "values")
    if args.clock == "cpu" and args.device == "cuda":
        parser.error(CPU_CLOCK_ON_CUDA)
    if args.plans2d and (args.preset != "2d" or args.patch_size):
        parser.error("--plans2d measures nnU-Net's own 2d plans at their own patch sizes: use it with --preset 2d "
                     "and without --patch-size")


def run_worker(args: argparse.Namespace) -> None:
    """Measures the trainer args.worker and prints its row as one line "RESULT {json}"."""
    from nnunetv2_morse.cli import resolve_device
    from nnunetv2_morse.cost import measure_trainer

    profile_file = os.path.join(args.out, f"profile_{args.preset}_{args.worker}.txt") if args.profile else None
    result = measure_trainer(args.worker, args.plans_file, PRESETS[args.preset]["configuration"],
                             resolve_device(args.device), args.patch_size, args.batch_size, args.steps, args.warmup,
                             args.case_scale, not args.no_mirroring, args.test_points or (), args.precision,
                             profile_file, args.clock)
    print("RESULT " + json.dumps(result))


def plan_section(report: Mapping, plan: str) -> str:
    """One plan of a benchmark report (its JSON: per plan a heading and rows, the first row the baseline): the
    heading, format_table and the budget lines."""
    rows = report["plans"][plan]
    budget = over_budget(rows, rows[0]["trainer"])
    notes = table_notes(rows)
    return (report["headers"][plan] + "\n\n" + format_table(rows, rows[0]["trainer"])
            + (f"\n\n{notes}" if notes else "") + f"\n\n{BUDGET_HEADING}:"
            + (" all met." if not budget else "\n" + "\n".join(f"- {line}" for line in budget)))


def summary_section(report: Mapping) -> str:
    """format_summary of a benchmark report's plans under a heading line."""
    baseline = next(iter(report["plans"].values()))[0]["trainer"]
    return (f"{len(report['plans'])} plans ({', '.join(report['plans'])}): ratios to {baseline} per plan\n\n"
            + format_summary(report["plans"], baseline))


def benchmark_markdown(report: Mapping) -> str:
    """The Markdown of a benchmark report: summary_section where it has several plans, then each plan_section. The
    benchmark writes it beside the report, rendered from the report alone."""
    sections = [plan_section(report, plan) for plan in report["plans"]]
    return "\n\n".join(([summary_section(report)] if len(report["plans"]) > 1 else []) + sections) + "\n"


def run_benchmark(args: argparse.Namespace, command: List[str]) -> None:
    """Plans, measures every trainer on every plan, prints the tables and writes the report (.json) and its tables
    (.md)."""
    from nnunetv2_morse.cli import resolve_device
    from nnunetv2_morse.cost import make_plans

    device = resolve_device(args.device).type
    if args.clock == "cpu" and device == "cuda":
        raise CommandError(CPU_CLOCK_ON_CUDA)
    check_trainers(args.trainers)
    preset = PRESETS[args.preset]
    patch_size = args.patch_size or (preset.get("patch_size") if device == "cuda" else None)
    batch_size = args.batch_size or (preset.get("batch_size") if device == "cuda" else None)
    if args.plans2d:
        plans = {f"2d {s}x{s}": (args.image_shape[0], s, s) for s in args.plans2d}
        batch_size = args.batch_size or PLANS2D_BATCH_SIZE
    else:
        plans = {args.preset: tuple(args.image_shape)}
    os.makedirs(args.out, exist_ok=True)
    report = {"command": command, "headers": {}, "plans": {}}
    for plan, image_shape in plans.items():
        plans_file = make_plans(preset["planner"], preset["plans_name"], tempfile.mkdtemp(prefix="morse_benchmark_"),
                                image_shape)
        check_plan(plans_file, preset["configuration"], patch_size, plan)
        rows = report["plans"][plan] = run_trainers(args, plans_file, device, patch_size, batch_size)
        report["headers"][plan] = describe(args, rows, plan, device)
        print("\n" + plan_section(report, plan), flush=True)
    if len(plans) > 1:
        print("\n" + summary_section(report))
    stem = os.path.join(args.out, f"benchmark_{'2d_plans' if args.plans2d else args.preset}_{device}"
                        + ("_bf16" if args.precision == "bf16" and device == "cuda" else ""))
    with open(stem + ".md", "w") as f:
        f.write(benchmark_markdown(report))
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwritten: {stem}.md, {stem}.json")


@console_script
def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    check_options(parser, args)
    if args.worker:
        with one_line_errors(PROG, (CommandError,)):  # anything else: its traceback, which the parent keeps
            run_worker(args)
        return
    with one_line_errors(PROG):
        run_benchmark(args, [PROG, *argv])


if __name__ == "__main__":
    main()
