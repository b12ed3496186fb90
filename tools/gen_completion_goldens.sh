#!/usr/bin/env bash
# Regenerates tests/data/completion/smollm2{,-f32}.json: llama.cpp's greedy continuations (32
# tokens, plain completion, no chat template) of tests/data/completion/prompts.txt on SmolLM2 and
# on its F32 copy (gguf-edit requant F32), where llama.cpp makes no quantized dot products.
# Needs the CPU build of llama.cpp in .peers/llama/build and the SmolLM2 file.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${LLAMA_DIR:-.peers/llama}/build/bin/llama-completion
smol=$(tools/fetch_smollm2.sh)
cargo build --release --quiet
f32=$(mktemp --suffix=.gguf)
trap 'rm -f "$f32"' EXIT
target/release/gguf-edit requant F32 "$smol" "$f32"
for pair in "$smol:smollm2" "$f32:smollm2-f32"; do
python3 - "$bin" "${pair%%:*}" tests/data/completion/prompts.txt "tests/data/completion/${pair##*:}.json" <<'PY'
import json, subprocess, sys
bin_, model, prompts, out = sys.argv[1:]
rows = []
for p in open(prompts, encoding="utf-8").read().splitlines():
    if not p:
        continue
    r = subprocess.run([bin_, "-m", model, "-p", p, "-n", "32", "--temp", "0", "-no-cnv",
                        "--no-display-prompt", "--no-warmup", "-c", "512", "-t", "2"],
                       capture_output=True, check=True, stdin=subprocess.DEVNULL)
    text = r.stdout.decode("utf-8", "replace")
    # llama-completion prints a blank line after the generated text when it stops.
    rows.append({"prompt": p, "completion": text.removesuffix("\n\n")})
json.dump(rows, open(out, "w", encoding="utf-8"), indent=1, ensure_ascii=False)
print(out, len(rows), "prompts")
PY
done
