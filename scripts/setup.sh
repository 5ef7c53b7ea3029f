#!/usr/bin/env bash
# Creates .venv with everything the suite needs (CPU is enough). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$python_bin" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The torch/torchvision pair that imports together on a CPU machine (see README).
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[train,eval,dev]"
