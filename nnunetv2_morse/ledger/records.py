"""What the ledger writes: JSON files written atomically, the machine and versions a result was made with, and a
training's per-epoch curves read from its checkpoint."""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from typing import Any, Dict, List, Optional

PACKAGES = ("nnunetv2-morse", "nnunetv2", "torch", "monai", "numpy", "scipy")
CURVE_KEYS = ("train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice", "dice_per_class_or_region", "lrs",
              "epoch_start_timestamps", "epoch_end_timestamps", "rend_losses", "awa_weights")


def _plain(value: Any) -> Any:
    """value with numpy scalars / arrays as Python numbers / lists and NaN or infinity as None (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_text(path: str) -> str:
    """The text of path, line endings as they are."""
    with open(path, newline="") as f:
        return f.read()


def write_text(text: str, path: str) -> None:
    """Writes text to path through a temporary file and os.replace: never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp_")
    try:
        with os.fdopen(handle, "w") as f:
            f.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_json(data: Any, path: str) -> None:
    """Writes data as indented JSON (NaN and infinity as null) to path, atomically."""
    write_text(json.dumps(_plain(data), indent=2, allow_nan=False) + "\n", path)


def copy_file(source: str, path: str) -> None:
    """Copies source to path through a temporary file and os.replace."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp_")
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def now() -> str:
    """The local time with its offset, to the second (ISO 8601)."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def package_commit() -> Optional[str]:
    """The git commit of this package's checkout, '+dirty' when it has uncommitted changes; None outside git."""
    folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo's first "model name"), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_record() -> Dict[str, Any]:
    """Versions (python, PACKAGES), the package's git commit, and the machine: platform, CPU model and the vector
    instructions torch's CPU kernels use (a training repeats bit for bit only where both are the same), CPUs, GPU if
    any."""
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu": cpu_model(), "cpu_count": os.cpu_count(), "gpu": None}
    if "torch" in sys.modules or versions["torch"]:
        import torch
        machine["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if torch.cuda.is_available():
            machine["gpu"] = torch.cuda.get_device_name(0)
    return {"versions": versions, "package_commit": package_commit(), "machine": machine}


def training_curves(checkpoint_file: str) -> Dict[str, List[Any]]:
    """The per-epoch curves nnU-Net keeps in a checkpoint's 'logging' entry (CURVE_KEYS present there): train and
    validation loss, pseudo-Dice (mean_fg_dice) and its EMA, per-class pseudo-Dice, learning rate, epoch start / end
    time stamps (s), and MORSE's rendering loss and lambda_t."""
    import torch
    logging = torch.load(checkpoint_file, map_location="cpu", weights_only=False)["logging"]
    return {key: _plain(logging[key]) for key in CURVE_KEYS if key in logging}
