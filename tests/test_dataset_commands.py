"""The dataset builders' console scripts: fast answers before the builders are imported, one-line errors."""
import os
import re
import subprocess
import sys

import pytest

import nnunetv2_morse
from nnunetv2_morse.datasets.commands import make_boundary_dataset_entry, make_colin27_entry

ENTRIES = (make_boundary_dataset_entry, make_colin27_entry)
HEAVY_MODULES = {"numpy", "SimpleITK", "scipy", "skimage", "nnunetv2", "torch"}


def test_help_and_argument_errors_import_no_builder():
    """--help and argument errors answer before numpy, SimpleITK, scipy or nnU-Net are imported."""
    code = "\n".join([
        "import sys",
        "from nnunetv2_morse.datasets import commands",
        "for entry in (commands.make_boundary_dataset_entry, commands.make_colin27_entry):",
        "    for argv in (['--help'], ['-d', '5'], ['-d', 'x', '--dim', '2', '--mode', '2d']):",
        "        try:",
        "            entry(argv)",
        "        except SystemExit as stop:",
        "            assert stop.code in (0, 2), stop.code",
        f"print(sorted(set({sorted(HEAVY_MODULES)!r}) & set(sys.modules)))",
    ])
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(nnunetv2_morse.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize("entry", ENTRIES)
def test_help_shows_the_default_of_every_option(entry, capsys):
    with pytest.raises(SystemExit) as stop:
        entry(["--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    usage = text[:text.index(" options:")]
    optional = usage.count("[-") - 1  # the options in [...] but -h
    assert optional >= 5 and text.count("(default: ") == optional
    assert "(default: None)" not in text


def test_file_system_errors_are_one_line(tmp_path, monkeypatch, capsys):
    not_a_folder = tmp_path / "raw"
    not_a_folder.write_text("a file where nnUNet_raw should be")
    monkeypatch.setenv("nnUNet_raw", str(not_a_folder / "sub"))
    assert make_boundary_dataset_entry(["-d", "31", "--dim", "2"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1


def test_console_scripts_point_at_the_entries():
    pyproject = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")
    with open(pyproject) as f:
        scripts = dict(re.findall(r'^(nnUNetv2_morse_make_\w+) = "nnunetv2_morse\.datasets\.commands:(\w+)"$', f.read(),
                                  re.MULTILINE))
    assert scripts == {"nnUNetv2_morse_make_boundary_dataset": make_boundary_dataset_entry.__name__,
                       "nnUNetv2_morse_make_colin27": make_colin27_entry.__name__}
