"""The commands' shared behaviour (nnunetv2_morse.cli): fast --help and argument errors, help that shows defaults
once, nnU-Net's option spelling, one-line errors, report stamps and Markdown tables."""
import os
import subprocess
import sys

import pytest

from nnunetv2_morse import cli
from nnunetv2_morse.trainers import TRAINER_DIR

tomllib = pytest.importorskip("tomllib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))
with open(os.path.join(ROOT, "pyproject.toml"), "rb") as pyproject:
    CONSOLE_SCRIPTS = tomllib.load(pyproject)["project"]["scripts"]
HEAVY_MODULES = ("torch", "monai", "nnunetv2")
# runs every console script's main with the arguments given, then names the heavy modules each one imported
IMPORT_CHECK = """
import importlib, json, sys
scripts, arguments = json.loads(sys.argv[1]), sys.argv[2:]
heavy = {}
for name, target in scripts.items():
    module, function = target.split(":")
    sys.argv = [name, *arguments]
    try:
        getattr(importlib.import_module(module), function)()
    except SystemExit:
        pass
    heavy[name] = sorted(m for m in %r if m in sys.modules)
print(json.dumps(heavy))
""" % (HEAVY_MODULES,)


def run_every_script(*arguments):
    """{console script: heavy modules in sys.modules after it ran}, the scripts run one after another in one process,
    and their output."""
    import json

    process = subprocess.run([sys.executable, "-c", IMPORT_CHECK, json.dumps(CONSOLE_SCRIPTS), *arguments],
                             capture_output=True, text=True, timeout=300, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert process.returncode == 0, process.stderr
    *output, last = process.stdout.splitlines()
    return json.loads(last), "\n".join(output), process.stderr


@pytest.mark.parametrize("arguments", [["--help"], ["--no-such-option"]], ids=["help", "argument-error"])
def test_help_and_argument_errors_import_neither_torch_monai_nor_nnunet(arguments):
    assert CONSOLE_SCRIPTS, "no [project.scripts] in pyproject.toml"
    heavy, _, _ = run_every_script(*arguments)
    assert heavy == {name: [] for name in CONSOLE_SCRIPTS}


def script_command(name, *arguments):
    """The command line that runs console script name with arguments as its installed launcher does."""
    module, function = CONSOLE_SCRIPTS[name].split(":")
    return [sys.executable, "-c", f"import sys; sys.argv = {[name, *arguments]!r}; "
                                  f"from {module} import {function}; sys.exit({function}())"]


@pytest.fixture(scope="module")
def help_texts():
    """{console script: its --help output}, each run in its own process."""
    texts = {}
    for name in CONSOLE_SCRIPTS:
        process = subprocess.run(script_command(name, "--help"), capture_output=True, text=True, timeout=120,
                                 cwd=ROOT)
        assert process.returncode == 0, process.stderr
        texts[name] = process.stdout
    return texts


ERROR_AFTER_OUTPUT = """
import sys
from nnunetv2_morse.cli import console_script

@console_script
def main():
    print("a line")
    sys.exit("prog: error: this message is kept")

main()
"""


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("command, stderr_if_buffered", [
    (script_command("nnUNetv2_morse_trainer_dir"), ""),
    (script_command("nnUNetv2_morse_study", "results/colin27_2d", "--dry-run", "-w", "WORK"), ""),
    ([sys.executable, "-c", ERROR_AFTER_OUTPUT], "prog: error: this message is kept\n"),
], ids=["trainer_dir", "study-dry-run", "error-exit"])
def test_commands_exit_quietly_when_the_reader_of_their_output_has_gone(tmp_path, command, stderr_if_buffered,
                                                                        buffered):
    """As `COMMAND | head -0`: stdout is a pipe whose reading end is closed before the command writes. Exit status
    1 and nothing on stderr but an error exit's own message (unbuffered, the first print already stops the
    command)."""
    reading_end, writing_end = os.pipe()
    os.close(reading_end)
    try:
        process = subprocess.run([str(tmp_path) if a == "WORK" else a for a in command], stdout=writing_end,
                                 stderr=subprocess.PIPE, text=True, timeout=120, cwd=ROOT,
                                 env={**os.environ, "PYTHONUNBUFFERED": "" if buffered else "1"})
    finally:
        os.close(writing_end)
    assert (process.returncode, process.stderr) == (1, stderr_if_buffered if buffered else "")


ANOTHER_PIPE_BROKEN = """
import os
from nnunetv2_morse.cli import console_script

@console_script
def main():
    print("a line")
    reading_end, writing_end = os.pipe()
    os.close(reading_end)
    os.write(writing_end, b"to a reader that has gone")

main()
"""


@pytest.mark.parametrize("stdout", ["file", "open-pipe"])
def test_a_broken_pipe_other_than_stdout_keeps_its_traceback(tmp_path, stdout):
    """A worker's or subprocess's pipe breaking is a failure to report, not the reader of stdout going away."""
    with open(tmp_path / "stdout", "w") as file:
        process = subprocess.run([sys.executable, "-c", ANOTHER_PIPE_BROKEN], stderr=subprocess.PIPE, text=True,
                                 stdout=file if stdout == "file" else subprocess.PIPE, timeout=120, cwd=ROOT)
    assert process.returncode == 1
    assert process.stderr.startswith("Traceback") and process.stderr.splitlines()[-1].startswith("BrokenPipeError")
    assert (process.stdout if stdout == "open-pipe" else (tmp_path / "stdout").read_text()) == "a line\n"


@pytest.mark.parametrize("poll", [True, False], ids=["poll", "without-poll"])
def test_stdout_counts_as_gone_only_as_a_pipe_whose_reader_closed(tmp_path, monkeypatch, poll):
    """Without select.poll any pipe counts as gone: a file never does."""
    if not poll:
        monkeypatch.delattr(cli.select, "poll")
    reading_end, writing_end = os.pipe()
    with open(tmp_path / "file", "w") as file, os.fdopen(writing_end, "w") as pipe:
        monkeypatch.setattr(sys, "stdout", file)
        assert not cli.stdout_reader_gone()
        monkeypatch.setattr(sys, "stdout", pipe)
        assert cli.stdout_reader_gone() is not poll
        os.close(reading_end)
        assert cli.stdout_reader_gone()


def test_every_console_script_is_wrapped_by_console_script():
    import importlib

    wrapper_code = cli.console_script(print).__code__
    for name, target in CONSOLE_SCRIPTS.items():
        module, function = target.split(":")
        assert getattr(importlib.import_module(module), function).__code__ is wrapper_code, name


def test_help_texts_spell_options_as_nnunet_and_show_defaults(help_texts):
    import re

    for name in ("nnUNetv2_morse_picture", "nnUNetv2_morse_test_points", "nnUNetv2_morse_evaluate_cv"):
        for option in ("-d DATASET", "-c CONFIGURATION", "-tr TRAINER", "-p PLANS", "-f FOLD"):
            assert option in help_texts[name], (name, option)
    for name in ("nnUNetv2_morse_picture", "nnUNetv2_morse_test_points"):
        assert re.search(r"-chk FILE +checkpoint file in the fold's folder \(default:\s+checkpoint_final.pth\)",
                         help_texts[name])
        assert re.search(r"-device \{auto,cuda,cpu,mps\}\s+device to run the network on; auto = cuda when\s+"
                         r"available, else cpu \(default: auto\)", help_texts[name])
    assert re.search(r"-f FOLD \[FOLD \.\.\.\]\s+folds \(integers or 'all'\) \(default: 0 1 2 3 4\)",
                     help_texts["nnUNetv2_morse_evaluate_cv"])


def test_ledger_commands_use_the_shared_help(help_texts):
    import re

    for name in ("nnUNetv2_morse_study", "nnUNetv2_morse_results", "nnUNetv2_morse_gpu_evidence"):
        assert "(default: None)" not in help_texts[name] and "(default: False)" not in help_texts[name], name
    assert re.search(r"-np N\s+processes for preprocessing, validation export,\s+scoring \(default: 2\)",
                     help_texts["nnUNetv2_morse_study"])
    assert "-tr TRAINER [TRAINER ...]" in help_texts["nnUNetv2_morse_study"]
    assert "\n    nnUNetv2_morse_study results/colin27_2d --dry-run" in help_texts["nnUNetv2_morse_study"]


@pytest.mark.parametrize("name", CONSOLE_SCRIPTS)
def test_help_text_says_nothing_twice(help_texts, name):
    words = help_texts[name].split()
    runs = [" ".join(words[i:i + 12]) for i in range(len(words) - 11)]
    repeated = sorted({run for run in runs if runs.count(run) > 1})
    assert not repeated, repeated[:1]


def test_help_formatter_shows_defaults_except_for_required_flags_and_none():
    parser = cli.command_parser("prog", "A description.\n\nA second paragraph.", "Example:\n\n    prog -x 1")
    parser.add_argument("-x", type=int, default=0, help="an int")
    parser.add_argument("-l", nargs="+", default=[1, 2], help="a list")
    parser.add_argument("-r", required=True, help="required")
    parser.add_argument("-n", help="none means something")
    parser.add_argument("--flag", action="store_true", help="a flag")
    text = " ".join(parser.format_help().split())
    assert "an int (default: 0)" in text and "a list (default: 1 2)" in text
    assert "required (default" not in text and "none means something (default" not in text
    assert "a flag (default" not in text
    assert "A description.\n\nA second paragraph." in parser.format_help()
    assert "\n    prog -x 1" in parser.format_help()


@pytest.mark.parametrize("value, expected", [("0", 0), ("4", 4), ("all", "all")])
def test_fold_spelling(value, expected):
    assert cli.fold(value) == expected


@pytest.mark.parametrize("value", ["-1", "x", "1.5"])
def test_bad_folds_are_refused(value):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="a fold is an integer >= 0 or 'all'"):
        cli.fold(value)


def test_default_num_processes_follows_nnunet_and_the_cpu_count(monkeypatch):
    monkeypatch.setenv("nnUNet_def_n_proc", "1")
    assert cli.default_num_processes() == 1
    monkeypatch.delenv("nnUNet_def_n_proc")
    assert cli.default_num_processes() == min(8, os.cpu_count())


@pytest.mark.parametrize("value", ["0", "-3"])
def test_processes_are_at_least_one(capsys, value):
    parser = cli.command_parser("prog", "A command.")
    cli.add_processes_argument(parser, "scoring")
    assert parser.parse_args(["-np", "3"]).num_processes == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["-np", value])
    assert capsys.readouterr().err.splitlines()[-1] == f"prog: error: argument -np: give an integer >= 1, got '{value}'"


def test_device_resolution():
    import torch

    assert cli.resolve_device("cpu") == torch.device("cpu")
    assert cli.resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(cli.CommandError, match="-device cuda: no cuda device is available here; use -device cpu"):
            cli.resolve_device("cuda")


def test_nnunet_ext_trainer_is_set_only_when_unset():
    environ = {}
    assert cli.use_package_trainers_if_unset(environ) and environ == {"nnUNet_extTrainer": TRAINER_DIR}
    environ = {"nnUNet_extTrainer": ""}
    assert cli.use_package_trainers_if_unset(environ) and environ == {"nnUNet_extTrainer": TRAINER_DIR}
    environ = {"nnUNet_extTrainer": "/mine"}
    assert not cli.use_package_trainers_if_unset(environ) and environ == {"nnUNet_extTrainer": "/mine"}


def test_errors_are_one_line(capsys):
    assert cli.one_line("Not found. Folders:\nA=1\nB=2\nAdapt them.") == "Not found. Folders: A=1; B=2; Adapt them."
    with pytest.raises(SystemExit) as exit_info:
        with cli.one_line_errors("prog"):
            raise cli.CommandError("first\nsecond")
    assert exit_info.value.code == "prog: error: first; second"
    with pytest.raises(KeyError):
        with cli.one_line_errors("prog"):
            raise KeyError("a bug keeps its traceback")


def test_missing_nnunet_variable_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv("nnUNet_results", raising=False)
    with pytest.raises(cli.CommandError, match="nnUNet_results is not set: export nnUNet_results=/path/to/"):
        cli.trained_model_folder("Dataset001_X", "nnUNetTrainer", "nnUNetPlans", "2d")


def test_markdown_table():
    assert cli.markdown_table(["a", "b", "c"], [[1, "x", 2.5], ["", "y", 3]], "lrr") == (
        "| a | b | c |\n| --- | ---: | ---: |\n| 1 | x | 2.5 |\n|  | y | 3 |")


def test_demo_refuses_an_unavailable_device_before_writing_anything(tmp_path):
    import torch

    from nnunetv2_morse import demo

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--workdir", str(tmp_path / "demo"), "-device", "cuda"])
    assert exit_info.value.code == ("nnUNetv2_morse_demo: error: -device cuda: no cuda device is available here; "
                                    "use -device cpu or -device auto")
    assert not (tmp_path / "demo").exists()
