#!/usr/bin/env bash
# Creates .venv and installs nnunetv2-morse with nnU-Net 2.8 and a torch/torchvision pair that import together.
# Idempotent: does nothing when .venv already holds this checkout's install.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
stamp=.venv/.nnunetv2_morse_installed
want="$(cat pyproject.toml setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# nnU-Net's trainer lookup imports timm, which imports torchvision: torch and torchvision must be a matching pair,
# or no trainer but nnUNetTrainer loads. This pair is on PyPI for Linux x86_64 (CUDA builds, which also run on the CPU)
# and aarch64, and resolves with nnunetv2 2.8.1, which excludes torch 2.9.* (docs/installation.md).
.venv/bin/python -m pip install "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -e ".[test]"
echo "$want" > "$stamp"
echo "nnunetv2-morse is installed in $(pwd)/.venv"
