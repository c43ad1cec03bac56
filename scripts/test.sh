#!/usr/bin/env bash
# The test command: sets everything up (idempotent), then lint + the offline test suite.
# Extra arguments go to pytest (e.g. `scripts/test.sh -k sandbox`). AZR_SLOW=1 adds the slow
# tests on the real small model.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
