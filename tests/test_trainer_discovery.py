"""The trainers/ folder that nnUNet_extTrainer points at, from a checkout and from a built wheel: nnU-Net's trainer
lookup (the one nnUNetv2_train and nnUNetv2_predict use) finds every trainer of the family as the package's own class,
whatever modules named morse, family or short are already imported."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_morse import trainers
from nnunetv2_morse.trainers import TRAINER_DIR, TRAINER_MODULE, family, morse, short

ROOT = Path(__file__).resolve().parents[1]
# source folder -> installed package
PACKAGE_FOLDERS = {"nnunetv2_morse": "nnunetv2_morse", "trainers": "nnunetv2_morse_trainers"}

# Runs in a fresh process: modules named like the trainer modules are imported first, then nnU-Net's lookup runs
# for every name in argv[1], then the trainer modules are imported the normal way.
LOOKUP_SCRIPT = '''
import contextlib, importlib, io, json, sys, types
fakes = {name: types.ModuleType(name) for name in ("morse", "family", "short")}
sys.modules.update(fakes)
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
found, not_found = {}, []
with contextlib.redirect_stdout(io.StringIO()):
    for name in json.loads(sys.argv[1]):
        try:
            found[name] = recursive_find_trainer_class_by_name(name)
        except RuntimeError:
            not_found.append(name)
modules = [importlib.import_module("nnunetv2_morse.trainers." + name) for name in ("morse", "family", "short")]
print("RESULT " + json.dumps({
    "package": importlib.import_module("nnunetv2_morse").__file__,
    "not_found": not_found,
    "not_identical": [name for name, cls in found.items() if not any(getattr(m, name, None) is cls for m in modules)],
    "fakes_replaced": [name for name, fake in fakes.items() if sys.modules.get(name) is not fake],
}))
'''


def family_trainer_names():
    """Every trainer class that morse, family and short hold, by name (nnU-Net's own nnUNetTrainer left out)."""
    return sorted({name for module in (morse, family, short) for name, obj in vars(module).items()
                   if isinstance(obj, type) and issubclass(obj, nnUNetTrainer) and obj is not nnUNetTrainer
                   and obj.__name__ == name})


def clean_env(python_path: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    return dict(env, PYTHONPATH=python_path, PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)


def run(command, cwd, env) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command[:4]} exited with {done.returncode}:\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory) -> Path:
    """The project built as a wheel (from a copy of its sources, offline) and installed with pip --target."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in PACKAGE_FOLDERS:
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = clean_env("")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp / "dist"), str(source)], tmp, env)
    (wheel,) = (tmp / "dist").glob("*.whl")
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(tmp / "site"),
         str(wheel)], tmp, env)
    return tmp / "site"


def lookup(trainer_dir: str, python_path: str, cwd) -> dict:
    out = run([sys.executable, "-c", LOOKUP_SCRIPT, json.dumps(family_trainer_names())], cwd,
              clean_env(python_path, nnUNet_extTrainer=trainer_dir))
    (line,) = [line for line in out.splitlines() if line.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


def test_family_names_include_every_kind_of_trainer():
    names = family_trainer_names()
    for name in ("nnUNetTrainerMORSE", "nnUNetTrainerPointRend", "nnUNetTrainerMORSE_lean",
                 "nnUNetTrainerMORSE_1epoch", "nnUNetTrainerIARMoE_50epochs", "nnUNetTrainerMORSE_demo"):
        assert name in names
    for base in short.FAMILY:
        for suffix in ("_1epoch", "_5epochs", "_10epochs", "_20epochs", "_50epochs", "_100epochs", "_250epochs",
                       "_500epochs"):
            assert base.__name__ + suffix in names


def test_checkout_trainer_dir_is_the_top_level_trainers_folder():
    assert Path(TRAINER_DIR) == ROOT / "trainers"
    assert (ROOT / "trainers" / f"{TRAINER_MODULE}.py").is_file()


def test_trainer_dir_without_the_reexport_module_is_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(trainers, "TRAINER_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match=r"^error: .* holds no nnunetv2_morse_trainer_classes\.py: reinstall"):
        trainers.print_trainer_dir()
    assert capsys.readouterr().out == ""


def test_wheel_ships_every_module_and_prints_its_installed_trainer_dir(wheel_site):
    for source, package in PACKAGE_FOLDERS.items():
        missing = [str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")
                   if not (wheel_site / package / p.relative_to(ROOT / source)).is_file()]
        assert not missing, f"not in the wheel: {missing} (add the package to [tool.setuptools] packages)"
    printed = run([str(wheel_site / "bin" / "nnUNetv2_morse_trainer_dir")], wheel_site.parent,
                  clean_env(str(wheel_site))).strip()
    assert Path(printed) == wheel_site / "nnunetv2_morse_trainers"


@pytest.mark.parametrize("install", ["checkout", "wheel"])
def test_nnunet_lookup_finds_the_package_classes_despite_colliding_modules(install, request, tmp_path):
    if install == "wheel":
        site = request.getfixturevalue("wheel_site")
        trainer_dir, python_path = str(site / "nnunetv2_morse_trainers"), str(site)
    else:
        site, trainer_dir, python_path = ROOT, TRAINER_DIR, str(ROOT)
    result = lookup(trainer_dir, python_path, tmp_path)
    assert Path(result["package"]).is_relative_to(site)
    assert result["not_found"] == []
    assert result["not_identical"] == []
    assert result["fakes_replaced"] == []
