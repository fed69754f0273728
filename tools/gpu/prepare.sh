#!/usr/bin/env bash
# Prepares the GPU run on a development machine: a self-contained single-file build of the engine's
# checks (no .NET needed on the GPU machine) and the scripts, all in .gpu/ (ignored by git, at most
# 64 MiB so the device tool can carry it). Then, on the GPU machine: bash .gpu/run.sh OUTPUT_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu
dotnet publish tools/Engine.GpuCheck -c Release -r linux-x64 --self-contained \
  -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true -p:DebugType=none -p:AllowedReferenceRelatedFileExtensions=none -o .gpu/bin
cp tools/gpu/run.sh tools/gpu/pytorch_compare.py .gpu/
du -sh .gpu
