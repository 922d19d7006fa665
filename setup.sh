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
# or no trainer but nnUNetTrainer loads. These pairs are on PyPI (CUDA builds on x86_64, which also run on the CPU).
case "$(uname -m)" in
  aarch64|arm64) torch_pair="torch==2.9.1 torchvision==0.24.1" ;;
  *) torch_pair="torch==2.14.1 torchvision==0.29.1" ;;
esac
.venv/bin/python -m pip install $torch_pair
.venv/bin/python -m pip install -e ".[test]"
echo "$want" > "$stamp"
echo "nnunetv2-morse is installed in $(pwd)/.venv"
