"""What the package's commands share: nnU-Net's option spelling, help that shows every default, one-line errors,
a quiet exit when the reader of their output goes away, Markdown tables and the stamp of JSON reports.

This module imports only the standard library. A command declares its options here, parses them and only then
imports torch, MONAI or nnU-Net, so that ``--help`` and argument errors answer at once.
"""
import argparse
import contextlib
import datetime
import functools
import importlib.metadata
import json
import os
import select
import stat
import sys
import textwrap
from typing import Callable, Iterator, Mapping, NoReturn, Optional, Sequence, Tuple, TypeVar, Union

DEFAULT_FOLDS = (0, 1, 2, 3, 4)
DEFAULT_PLANS = "nnUNetPlans"
DEFAULT_CHECKPOINT = "checkpoint_final.pth"
DEVICES = ("auto", "cuda", "cpu", "mps")
# name in a report's "versions" -> distribution whose version is recorded
VERSIONED_DISTRIBUTIONS = {"nnunetv2_morse": "nnunetv2-morse", "nnunetv2": "nnunetv2", "monai": "monai",
                           "torch": "torch"}

Fold = Union[int, str]
Main = TypeVar("Main", bound=Callable)


class CommandError(Exception):
    """A problem with a command's inputs, reported as one line that says what to do instead."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """nnU-Net-style help: every option shows its default (sequences space-separated; not for required options,
    flags or defaults of None, whose help says what happens). Description and epilog are filled paragraph by
    paragraph; an indented paragraph (an example command) is kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if action.required or default is None or default is False or default == argparse.SUPPRESS \
                or not action.option_strings:
            return action.help or ""
        if isinstance(default, (list, tuple)):
            default = " ".join(map(str, default))
        return f"{action.help or ''} (default: {str(default).replace('%', '%%')})"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = textwrap.dedent(text).strip("\n").split("\n\n")
        return "\n\n".join(paragraph if paragraph.startswith(" ") else
                           textwrap.fill(" ".join(paragraph.split()), width, initial_indent=indent,
                                         subsequent_indent=indent) for paragraph in paragraphs)


def command_parser(prog: str, description: str, epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """An ArgumentParser with HelpFormatter; put example commands, indented, in epilog."""
    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)


def fold(value: str) -> Fold:
    """A fold as nnU-Net spells it: an integer >= 0 or "all"."""
    if value == "all":
        return value
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"a fold is an integer >= 0 or 'all', got {value!r}")
    return number


def integer_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= minimum."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"give an integer >= {minimum}, got {value!r}")
        return number
    return parse


def add_model_arguments(parser: argparse.ArgumentParser, trainer_default: str = "nnUNetTrainer",
                        multiple_folds: bool = True, checkpoint: bool = True) -> None:
    """The options that select a trained model, spelled as nnUNetv2_predict spells them: -d, -c, -tr, -p, -f and,
    with checkpoint, -chk. Parsed as dataset, configuration, trainer, plans, folds (a list) or fold, checkpoint."""
    group = parser.add_argument_group("model (as in nnUNetv2_predict)")
    group.add_argument("-d", dest="dataset", metavar="DATASET", required=True,
                       help="dataset name or ID, e.g. 4 or Dataset004_Hippocampus")
    group.add_argument("-c", dest="configuration", required=True, help="configuration, e.g. 2d or 3d_fullres")
    group.add_argument("-tr", dest="trainer", metavar="TRAINER", default=trainer_default, help="trainer class")
    group.add_argument("-p", dest="plans", metavar="PLANS", default=DEFAULT_PLANS, help="plans identifier")
    if multiple_folds:
        group.add_argument("-f", dest="folds", metavar="FOLD", type=fold, nargs="+", default=list(DEFAULT_FOLDS),
                           help="folds (integers or 'all')")
    else:
        group.add_argument("-f", dest="fold", metavar="FOLD", type=fold, default=0, help="fold (an integer or 'all')")
    if checkpoint:
        group.add_argument("-chk", dest="checkpoint", metavar="FILE", default=DEFAULT_CHECKPOINT,
                           help="checkpoint file in the fold's folder")


def add_device_argument(parser: argparse.ArgumentParser, choices: Sequence[str] = DEVICES,
                        aliases: Sequence[str] = ()) -> None:
    """-device (also spelled as aliases): auto (cuda when available, else cpu) or one of choices (default: cuda, cpu
    or mps); resolve it with resolve_device."""
    parser.add_argument("-device", *aliases, dest="device", choices=choices, default="auto",
                        help="device to run the network on; auto = cuda when available, else cpu")


def resolve_device(name: str):
    """The torch.device for a -device value; CommandError if the device is not available here."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}.get(name, lambda: True)
    if not available():
        raise CommandError(f"-device {name}: no {name} device is available here; use -device cpu or -device auto")
    return torch.device(name)


def default_num_processes() -> int:
    """nnU-Net's default number of worker processes ($nnUNet_def_n_proc, else 8), at most the number of CPUs."""
    return max(1, min(int(os.environ.get("nnUNet_def_n_proc", 8)), os.cpu_count() or 1))


def add_processes_argument(parser: argparse.ArgumentParser, purpose: str) -> None:
    """-np, defaulting to default_num_processes(); purpose completes "processes for ..."."""
    parser.add_argument("-np", dest="num_processes", metavar="N", type=integer_at_least(1),
                        default=default_num_processes(),
                        help=f"processes for {purpose}; nnU-Net's default ($nnUNet_def_n_proc, else 8) capped at "
                             "the CPU count")


def use_package_trainers_if_unset(environ=os.environ) -> bool:
    """Point nnUNet_extTrainer at this package's trainer folder if it is unset or empty; True if it was set here.

    Without it nnU-Net cannot find any MORSE trainer, the commonest newcomer mistake.
    """
    if environ.get("nnUNet_extTrainer"):
        return False
    from nnunetv2_morse.trainers import TRAINER_DIR
    environ["nnUNet_extTrainer"] = TRAINER_DIR
    return True


def one_line(message: object) -> str:
    """message on one line: its lines stripped and joined ("folders:\\nA\\nB" -> "folders: A; B")."""
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    return "".join(line + ("" if i == len(lines) - 1 else " " if line.endswith(":") else "; ")
                   for i, line in enumerate(lines))


def relative_to_here(path: str) -> str:
    """For a message about a missing path: ' (from <cwd>: run from the repository root)' where path is relative and
    the current folder has no results/ (so it is likely not the repository root), else ''."""
    if os.path.isabs(path) or os.path.isdir("results"):
        return ""
    return f" (from {os.getcwd()}: run from the repository root)"


def fail(prog: str, message: object) -> NoReturn:
    """Exit with status 1 and "PROG: error: MESSAGE" as one line on stderr."""
    sys.exit(f"{prog}: error: {one_line(message)}")


@contextlib.contextmanager
def one_line_errors(prog: str, errors: Tuple[type, ...] = (CommandError, ValueError)) -> Iterator[None]:
    """Turns the given exceptions raised inside into fail(prog, error): no traceback."""
    try:
        yield
    except errors as error:
        fail(prog, error)


def _silence_stdout() -> None:
    """Point stdout's file descriptor at os.devnull, so that writing what is still buffered cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _stdout_flushed() -> bool:
    """Flush stdout; False (and stdout silenced) if its reader has gone."""
    try:
        sys.stdout.flush()
        return True
    except BrokenPipeError:
        _silence_stdout()
        return False


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader has closed. Where select.poll exists, stdout's file descriptor
    registered for no events then polls POLLERR (a pipe) or POLLHUP (a socket); elsewhere any pipe or socket is taken
    for closed. A file or a terminal never is."""
    try:
        descriptor = sys.stdout.fileno()
        mode = os.fstat(descriptor).st_mode
    except (AttributeError, OSError, ValueError):
        return False
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return False
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(descriptor, 0)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def console_script(main: Main) -> Main:
    """Decorator of every console script's main: when the reader of stdout goes away early
    (``nnUNetv2_morse_study results/colin27_2d --dry-run | head -3``) and a write to stdout fails, the command exits
    quietly with status 1, as Python's documentation recommends (signal module, "Note on SIGPIPE"), instead of a
    BrokenPipeError traceback. A BrokenPipeError from another pipe keeps its traceback (stdout_reader_gone); an
    error exit keeps its own status and message."""
    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            result = main(*args, **kwargs)
        except BrokenPipeError:
            if not stdout_reader_gone():
                raise
            _silence_stdout()
            sys.exit(1)
        except SystemExit as stop:
            if not _stdout_flushed() and not stop.code:
                sys.exit(1)
            raise
        if not _stdout_flushed():
            sys.exit(1)
        return result
    return run


def dataset_name(dataset: str) -> str:
    """nnU-Net's dataset name for a name or ID; CommandError (one line, with nnU-Net's list of the folders it
    searched) if there is none."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    try:
        return maybe_convert_to_dataset_name(dataset)
    except (RuntimeError, ValueError) as error:
        raise CommandError(one_line(error)) from None


def required_environment_folder(variable: str) -> str:
    """The folder in $variable; CommandError saying how to set it if it is unset."""
    folder = os.environ.get(variable)
    if not folder:
        raise CommandError(f"{variable} is not set: export {variable}=/path/to/{variable} (see nnU-Net's "
                           "documentation/setting_up_paths.md)")
    return folder


def trained_model_folder(dataset: str, trainer: str, plans: str, configuration: str) -> str:
    """$nnUNet_results/DATASET/TRAINER__PLANS__CONFIGURATION; CommandError naming the trained models there if it
    does not exist."""
    results = required_environment_folder("nnUNet_results")
    name = dataset_name(dataset)
    model = f"{trainer}__{plans}__{configuration}"
    folder = os.path.join(results, name, model)
    if not os.path.isdir(folder):
        dataset_folder = os.path.join(results, name)
        present = sorted(os.listdir(dataset_folder)) if os.path.isdir(dataset_folder) else []
        raise CommandError(f"model folder not found: {folder} (trained models of {name}: "
                           f"{', '.join(present) or 'none'}); check -tr, -p and -c, or train it with nnUNetv2_train")
    return folder


def fold_checkpoint(model_folder: str, fold: Fold, checkpoint: str) -> str:
    """The checkpoint file of a fold; CommandError naming the folds or checkpoints present if it does not exist."""
    fold_folder = os.path.join(model_folder, f"fold_{fold}")
    if not os.path.isdir(fold_folder):
        folds = sorted(n[len("fold_"):] for n in os.listdir(model_folder) if n.startswith("fold_"))
        raise CommandError(f"fold {fold} of {model_folder} is not trained (no fold_{fold}; trained folds: "
                           f"{', '.join(folds) or 'none'}): give another -f")
    path = os.path.join(fold_folder, checkpoint)
    if not os.path.isfile(path):
        present = sorted(n for n in os.listdir(fold_folder) if n.endswith(".pth"))
        raise CommandError(f"no {checkpoint} in {fold_folder} (checkpoints there: {', '.join(present) or 'none'}): "
                           "give one of them with -chk, or finish the training")
    return path


def trained_predictor(model_folder: str, fold: Fold, checkpoint: str, device, use_mirroring: bool = True):
    """nnU-Net's predictor (as nnUNetv2_predict sets it up) for one trained fold; one-line errors for a missing fold
    or checkpoint. nnUNet_extTrainer defaults to this package's trainers (use_package_trainers_if_unset)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    fold_checkpoint(model_folder, fold, checkpoint)
    use_package_trainers_if_unset()
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=use_mirroring,
                                perform_everything_on_device=device.type == "cuda", device=device, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(model_folder, (fold,), checkpoint)
    return predictor


def morse_network(predictor):
    """The MorseNetwork of a predictor (unwrapped); CommandError if its trainer has no point head."""
    from nnunetv2_morse.network import MorseNetwork
    from nnunetv2_morse.trainers.morse import unwrap_network

    network = unwrap_network(predictor.network)
    if not isinstance(network, MorseNetwork):
        raise CommandError(f"{predictor.trainer_name} is not a MORSE trainer: its network has no point head; give a "
                           "MORSE trainer with -tr, e.g. nnUNetTrainerMORSE")
    return network


def report_stamp() -> dict:
    """{"versions": {package: version or None}, "created": UTC time, ISO 8601} for a JSON report."""
    versions = {}
    for name, distribution in VERSIONED_DISTRIBUTIONS.items():
        try:
            versions[name] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"versions": versions, "created": created}


def write_json(report: Mapping, path: str) -> None:
    """report as indented JSON at path (its folder created); refuses NaN and infinity."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2, allow_nan=False)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A Markdown table (no final newline); align holds "l" or "r" per column (missing: "l")."""
    separator = ["---:" if align[i:i + 1] == "r" else "---" for i in range(len(header))]
    return "\n".join("| " + " | ".join(map(str, cells)) + " |" for cells in (header, separator, *rows))
