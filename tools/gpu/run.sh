#!/usr/bin/env bash
# The GPU script, run on a machine with an NVIDIA GPU from the folder tools/gpu/prepare.sh filled:
#   bash .gpu/run.sh OUTPUT_DIR
# In order: the engine's CUDA parity suite, whole-model checks and timings (bin/Engine.GpuCheck), then
# the same models and shapes through PyTorch on the same GPU, the engine's outputs checked against
# Hugging Face transformers, and a table of ratios (pytorch_compare.py). Full logs go to OUTPUT_DIR.
# Without a GPU it still runs: both halves say so and skip the CUDA work.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-gpu-results}"
mkdir -p "$out"

# ILGPU opens the driver as libcuda.so; drivers often install only libcuda.so.1.
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so '; then
  driver=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 / {print $NF; exit}')
  if [ -n "$driver" ]; then
    mkdir -p "$out/lib" && ln -sf "$driver" "$out/lib/libcuda.so"
    export LD_LIBRARY_PATH="$out/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
fi
# The checks use no culture-specific text; the GPU machine may lack ICU.
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1

"$here/bin/Engine.GpuCheck" --output "$out" 2>&1 | tee "$out/engine.log"
engine_status=${PIPESTATUS[0]}
python3 "$here/pytorch_compare.py" "$out" 2>&1 | tee "$out/pytorch.log"
python_status=${PIPESTATUS[0]}
[ "$engine_status" -eq 0 ] && [ "$python_status" -eq 0 ]
