#!/usr/bin/env bash
# Run every prebuilt GPU test binary on the GPU machine and keep the logs.
#   usage: tools/device/gpu-check.sh [binary folder, default .devbin] [test binary names...]
#   e.g.   OUT=$OUT tools/device/gpu-check.sh .devbin gpu_runtime gpu_ops
# Writes $OUT/device.txt, $OUT/<test>.log per binary and $OUT/summary.txt; exits non-zero when
# any binary fails. Tests that find no GPU print "skipped: <reason>" into their log.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN_DIR="${1:-.devbin}"
shift || true
OUT="${OUT:-/tmp/rocmforge-gpu-check}"
mkdir -p "$OUT"
# NVRTC and libcuda: the CUDA toolkit's lib folder may not be on the loader path.
for d in /usr/local/cuda/lib64; do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
# Kernels compile at run time into this cache (sources kept beside the binaries).
export ROCMFORGE_CACHE_DIR="${ROCMFORGE_CACHE_DIR:-/tmp/rocmforge-kernel-cache}"
export RUST_BACKTRACE=1
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv 2>&1 || true
    ls -l "$BIN_DIR"
} > "$OUT/device.txt"

status=0
: > "$OUT/summary.txt"
shopt -s nullglob
if [ $# -gt 0 ]; then
    bins=()
    for name in "$@"; do bins+=("$BIN_DIR/$name"); done
else
    bins=("$BIN_DIR"/gpu_*)
fi
if [ ${#bins[@]} -eq 0 ]; then
    echo "no gpu_* binaries in $BIN_DIR (build them with tools/device/build-devbin.sh)" | tee -a "$OUT/summary.txt"
    exit 2
fi
for bin in "${bins[@]}"; do
    name="$(basename "$bin")"
    if [ ! -f "$bin" ]; then
        echo "$name missing from $BIN_DIR" | tee -a "$OUT/summary.txt"
        status=1
        continue
    fi
    chmod +x "$bin"
    start=$(date +%s)
    # One test at a time: tests share the one GPU and time it.
    "$bin" --test-threads=1 --nocapture > "$OUT/$name.log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    result=$(grep -E "^test result:" "$OUT/$name.log" | tail -1)
    skips=$(grep -c "skipped:" "$OUT/$name.log")
    echo "$name rc=$rc ${secs}s skips=$skips ${result}" | tee -a "$OUT/summary.txt"
    [ $rc -ne 0 ] && status=1
done
exit $status
