#!/usr/bin/env bash
# Here, before the device calls: the prebuilt binaries in .devbin/ (release rocmforge and the GPU
# test binaries, stripped) and .devcarry/ with the llama.cpp source and SmolLM2 in two halves
# (one call carries at most 64 MiB). Both folders are git-ignored.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet
mkdir -p .devbin .devcarry
cp target/release/rocmforge .devbin/ && strip .devbin/rocmforge
tools/device/build-devbin.sh gpu_runtime gpu_ops gpu_model gpu_tune gpu_gemm_tiles > /dev/null
[ -f .devcarry/llamacpp-src.tar.xz ] || cp .peers/llamacpp-src.tar.xz .devcarry/
smol=$(tools/fetch_smollm2.sh)
half=$(( ($(stat -c %s "$smol") + 1) / 2 ))
head -c "$half" "$smol" > .devcarry/smol.part1
tail -c +"$((half + 1))" "$smol" > .devcarry/smol.part2
sha256sum "$smol"
du -sh .devbin .devcarry/*
