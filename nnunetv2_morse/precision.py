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


@contextlib.contextmanager
def default_autocast_dtype(device_type: str, dtype: torch.dtype) -> Iterator[None]:
    """Within the block, torch.autocast(device_type) without a dtype (as nnU-Net's code calls it) uses dtype."""
    previous = torch.get_autocast_dtype(device_type)
    torch.set_autocast_dtype(device_type, dtype)
    try:
        yield
    finally:
        torch.set_autocast_dtype(device_type, previous)
