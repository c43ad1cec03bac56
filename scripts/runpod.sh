#!/usr/bin/env bash
# Set up azr on a RunPod PyTorch pod (or any CUDA box with Python 3.11 and a CUDA torch), check
# the sandbox and the GPU, and download the config's model into the Hugging Face cache.
#
#   bash scripts/runpod.sh [CONFIG]          # default: configs/qwen2.5-coder-3b-qlora-24gb.yaml
#
# Environment:
#   AZR_SKIP_DOWNLOAD=1   don't download the model (it downloads on first load when online)
#   AZR_BNB_WHEEL=path    then install this bitsandbytes wheel over PyPI's (e.g. a CUDA 13 build)
#   AZR_VLLM=0            don't install vLLM (the GPU configs' model.engine: vllm then needs
#                         --set model.engine=hf)
#   HF_HOME               where the model cache goes; on RunPod put it on the volume that
#                         survives a restart, e.g. export HF_HOME=/workspace/hf
# Safe to re-run: scripts/setup.sh skips what is done, the download resumes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CONFIG="${1:-configs/qwen2.5-coder-3b-qlora-24gb.yaml}"
PY="$ROOT/.venv/bin/python"
say() { printf '\033[1;34m[runpod]\033[0m %s\n' "$*" >&2; }

[ -f "$CONFIG" ] || { say "no config file $CONFIG"; exit 2; }
SYS_PY="${AZR_PYTHON:-python3}"
if ! "$SYS_PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
    say "warning: $SYS_PY has no CUDA torch here; setup.sh will install the CPU build (wrong image?)"
fi

# apt package for nsjail, .venv seeing the image's torch, azr + nsjail + small models
bash scripts/setup.sh
if [ -n "${AZR_BNB_WHEEL:-}" ]; then
    "$PY" -m pip install -q --disable-pip-version-check --no-deps "$AZR_BNB_WHEEL"
fi

# The vLLM rollout engine (the GPU configs use it). vllm 0.33.0 pins torch 2.13.0 (ours) and
# transformers < 5.20 (the lock's 5.19.0): installed under the lock's constraints and the image's
# own torch, so that it never replaces either; an image with another torch keeps model.engine=hf.
VLLM_GPU="vllm==0.33.0"
if [ "${AZR_VLLM:-1}" = 1 ] && ! "$PY" -c "import vllm" >/dev/null 2>&1; then
    TORCH_V="$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")"
    say "installing $VLLM_GPU (image torch $TORCH_V)"
    if ! "$PY" -m pip install -q --disable-pip-version-check -c locks/base.txt \
            -c <(echo "torch==$TORCH_V") "$VLLM_GPU"; then
        say "warning: $VLLM_GPU did not install next to torch $TORCH_V (it needs torch 2.13.0);"
        say "         run with --set model.engine=hf, or use an image with torch 2.13"
    fi
fi

# sandbox isolation + CUDA, GPU memory, bitsandbytes kernels, disk, caches (exit 1 if broken)
say "azr doctor"
"$ROOT/.venv/bin/azr" doctor

MODEL="$("$PY" -c "import sys; from stages.config import load_config; print(load_config(sys.argv[1], None).model.name)" "$CONFIG")"
if [ "${AZR_SKIP_DOWNLOAD:-0}" = 1 ] || [[ "$MODEL" == builtin:* ]] || [ -d "$MODEL" ]; then
    say "model $MODEL: no download"
else
    say "downloading $MODEL into the Hugging Face cache (${HF_HOME:-~/.cache/huggingface})"
    if ! "$PY" - "$MODEL" <<'PYEOF'
import sys
from huggingface_hub import snapshot_download
try:
    path = snapshot_download(sys.argv[1], allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"])
except Exception as e:
    sys.exit(f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
print(path)
PYEOF
    then
        say "warning: download failed (no network?); azr loads $MODEL from the cache or fails with a hint"
    fi
fi
say "ready: see README.md, 'Training on a RunPod GPU'"
