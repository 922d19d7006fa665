"""Mixed-precision choice for training on CUDA: nnU-Net's fp16 with its grad scaler (default) or bf16."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Mapping, Optional

import torch

AUTOCAST_ENVIRONMENT_VARIABLE = "nnUNet_morse_autocast"
AUTOCAST_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def autocast_dtype_from_environment(environ: Optional[Mapping[str, str]] = None) -> torch.dtype:
    """torch.float16 (unset, nnU-Net's default) or torch.bfloat16 from $nnUNet_morse_autocast."""
    environ = os.environ if environ is None else environ
    value = environ.get(AUTOCAST_ENVIRONMENT_VARIABLE, "float16")
    if value.lower() not in AUTOCAST_DTYPES:
        raise ValueError(f"{AUTOCAST_ENVIRONMENT_VARIABLE}={value!r} is invalid: allowed float16 (nnU-Net's default, "
                         "with its grad scaler) or bfloat16 (no grad scaler needed)")
    return AUTOCAST_DTYPES[value.lower()]


def get_autocast_dtype(device_type: str) -> torch.dtype:
    """torch.get_autocast_dtype(device_type); before torch 2.4, the per-device functions (CUDA and CPU only)."""
    if hasattr(torch, "get_autocast_dtype"):
        return torch.get_autocast_dtype(device_type)
    return _per_device_autocast_functions(device_type)[0]()


def set_autocast_dtype(device_type: str, dtype: torch.dtype) -> None:
    """torch.set_autocast_dtype(device_type, dtype); before torch 2.4, the per-device functions (CUDA and CPU only)."""
    if hasattr(torch, "set_autocast_dtype"):
        torch.set_autocast_dtype(device_type, dtype)
    else:
        _per_device_autocast_functions(device_type)[1](dtype)


def _per_device_autocast_functions(device_type: str):
    functions = {"cuda": ("get_autocast_gpu_dtype", "set_autocast_gpu_dtype"),
                 "cpu": ("get_autocast_cpu_dtype", "set_autocast_cpu_dtype")}
    if device_type not in functions:
        raise ValueError(f"autocast dtype for {device_type!r} needs torch >= 2.4 (this is {torch.__version__}); "
                         "with older torch only 'cuda' and 'cpu' are supported")
    return tuple(getattr(torch, name) for name in functions[device_type])


@contextlib.contextmanager
def default_autocast_dtype(device_type: str, dtype: torch.dtype) -> Iterator[None]:
    """Within the block, torch.autocast(device_type) without a dtype (as nnU-Net's code calls it) uses dtype."""
    previous = get_autocast_dtype(device_type)
    set_autocast_dtype(device_type, dtype)
    try:
        yield
    finally:
        set_autocast_dtype(device_type, previous)
