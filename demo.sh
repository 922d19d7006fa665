#!/usr/bin/env bash
# Makes a small synthetic dataset, plans, preprocesses, trains nnUNetTrainerMORSE briefly and predicts.
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh
exec .venv/bin/nnUNetv2_morse_demo "$@"
