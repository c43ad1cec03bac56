#!/usr/bin/env bash
# The main job on the embedded default. Sets everything up first (idempotent).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RUN="${AZR_RUN:-runs/demo}"
.venv/bin/azr seed --run "$RUN" --config configs/tiny.yaml --force
.venv/bin/azr status --run "$RUN"
