#!/usr/bin/env bash
# Build the GPU test binaries here (no GPU needed) and collect them, stripped, in .devbin/ for
# the GPU machine, which has no Rust toolchain. Then run tools/device/gpu-check.sh there.
#   usage: tools/device/build-devbin.sh [test names...]   (default: every tests/gpu_*.rs)
set -euo pipefail
cd "$(dirname "$0")/../.."
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    for f in tests/gpu_*.rs; do tests+=("$(basename "$f" .rs)"); done
fi
args=()
for t in "${tests[@]}"; do args+=(--test "$t"); done
mkdir -p .devbin
# Debug info is stripped after the build (the binaries travel under a size limit); building
# without it would rebuild every dependency in another profile.
cargo test --no-run --message-format=json "${args[@]}" \
    | python3 -c '
import json, sys, shutil, os
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    exe = msg.get("executable")
    if msg.get("reason") == "compiler-artifact" and exe and msg["target"]["kind"] == ["test"]:
        dst = os.path.join(".devbin", msg["target"]["name"])
        shutil.copy2(exe, dst)
        print(dst)
' | while read -r bin; do
    strip --strip-debug "$bin"
    ls -l "$bin"
done
