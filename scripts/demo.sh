#!/usr/bin/env bash
# The main job on the embedded default: a few AZR iterations of Qwen2.5-Coder-0.5B-Instruct on the
# CPU (configs/qwen2.5-coder-0.5b-cpu.yaml; AZR_CONFIG picks another), then the report. Sets
# everything up first (idempotent). Rerunning resumes the run where it stopped; a finished run only
# refreshes the report.
#   AZR_RUN=runs/other AZR_ITERS=5 AZR_CONFIG=configs/smollm2-cpu.yaml bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RUN="${AZR_RUN:-runs/demo}"
ITERS="${AZR_ITERS:-3}"
CONFIG="${AZR_CONFIG:-configs/qwen2.5-coder-0.5b-cpu.yaml}"
.venv/bin/azr loop --run "$RUN" --config "$CONFIG" --iters "$ITERS"
.venv/bin/azr report --run "$RUN"
.venv/bin/azr status --run "$RUN"
