#!/usr/bin/env bash
# One device session in three back-to-back calls (one call carries at most 64 MiB: the binaries
# and the two halves of SmolLM2 travel separately, see tools/device/pack.sh). Builds nothing of
# ours: the binaries come prebuilt in .devbin/.
#   phase1 (carry .devbin, .devcarry/llamacpp-src.tar.xz): start the llama.cpp CUDA build and the
#           8B model files (both outlive the call), write the small synthetic models, run the GPU
#           test binaries and `rocmforge verify` on the synthetic models.
#   phase2 (carry .devcarry/smol.part1, optionally .devbin/rocmforge): after all, verify and
#           bench the defaults of the binary it brings, then tune qwen2.5-0.5b's matmuls.
#   phase3 (carry .devcarry/smol.part2): join SmolLM2, verify it, bench it, time to first token.
#   all (carry .devbin, .devcarry/llamacpp-src.tar.xz): phase1, then the benches of every
#           synthetic model side by side with llama.cpp, dependent launch on and off, a profile of
#           the 8B and tuning of qwen2.5-0.5b's matmuls (no SmolLM2).
#   check (carry .devbin): GPU tests, verify and rocmforge's bench on two models; no peer.
#   quick (carry .devbin, .devcarry/llamacpp-src.tar.xz): gpu_model, gpu_tune, two verifies and
#           the benches beside llama.cpp, prefill on the tile kernels too.
#   final (carry .devbin, .devcarry/llamacpp-src.tar.xz): gpu_ops, gpu_model, gpu_tune, verify,
#           the benches beside llama.cpp, tuning of the 8B's decode GEMVs.
#   tune (right after all, machine still warm): rocmforge tune on qwen2.5-0.5b and llama3-8b,
#           Q4_0 and Q4_K_M, each followed by a bench that applies the database it wrote.
# Everything persists under /tmp/rf while the machine stays warm; results land in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
W=/tmp/rf
OUT=${OUT:-$W/out}
mkdir -p "$W/models" "$W/logs" "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export ROCMFORGE_CUDA_INCLUDE=/usr/local/cuda/include ROCMFORGE_CACHE_DIR=$W/kcache RUST_BACKTRACE=1
export ROCMFORGE_BIN=$W/bin/rocmforge
mkdir -p "$W/bin" && cp .devbin/* "$W/bin/" 2>/dev/null && chmod +x "$W"/bin/*
RF=$W/bin/rocmforge
S=$W/logs/summary.md
# Results are copied out at every step, so a call cut off at its limit still returns them.
log() {
    echo "[$(date -u +%T)] $*" | tee -a "$W/logs/session.log"
    cp "$S" "$OUT/summary.md" 2>/dev/null
    cp "$W/logs/session.log" "$OUT/" 2>/dev/null
}
M=$W/models

synth() { # name preset type [extra args]
    local name=$1 preset=$2 ty=$3; shift 3
    [ -f "$M/$name.gguf" ] || $RF synth --preset "$preset" --type "$ty" --out "$M/$name.gguf" "$@" >> "$W/logs/synth.log" 2>&1
}

verify() { # model [extra args]
    local m=$1; shift
    echo "### verify $m" >> "$W/logs/verify.log"
    if timeout 120 $RF verify --gguf "$M/$m.gguf" --device cuda "$@" >> "$W/logs/verify.log" 2>&1; then
        echo "| $m | ok | $(grep -E '^cuda.*logits' "$W/logs/verify.log" | tail -1 | sed 's/.*positions: //') | $(grep '^greedy' "$W/logs/verify.log" | tail -1) |" >> "$S"
    else
        echo "| $m | FAILED | $(tail -1 "$W/logs/verify.log") | |" >> "$S"
    fi
}

bench() { # model: rocmforge and llama-bench on the same card, one row of the table
    local m=$1
    [ -f "$M/$m.gguf" ] || { echo "| $m | missing | | | | | | |" >> "$S"; return; }
    log "bench $m"
    timeout 200 $RF bench --gguf "$M/$m.gguf" --device cuda -p 512 -n 128 -r 5 --json "$W/logs/rf-$m.json" > "$W/logs/rf-$m.txt" 2>&1
    timeout 200 "$W/llama/build/bin/llama-bench" -m "$M/$m.gguf" -ngl 99 -fa 1 -p 512 -n 128 -r 5 -o json > "$W/logs/lc-$m.json" 2> "$W/logs/lc-$m.err"
    python3 tools/device/compare.py "$m" "$W/logs/rf-$m.json" "$W/logs/lc-$m.json" >> "$S"
}

tune() { # model budget [tune args]: rocmforge tune, then rocmforge bench with the database it wrote
    local m=$1 budget=$2; shift 2
    log "tune $m (budget $budget s) $*"
    echo -e "\n### rocmforge tune $m (--budget-seconds $budget $*)" >> "$S"
    /usr/bin/time -f "tune wall time %e s" timeout $((budget + 90)) $RF tune --gguf "$M/$m.gguf" --device cuda \
        --budget-seconds "$budget" --candidates "$@" > "$W/logs/tune-$m.txt" 2> "$W/logs/tune-$m.err"
    cat "$W/logs/tune-$m.txt" >> "$S"; tail -3 "$W/logs/tune-$m.err" >> "$S"
    timeout 200 $RF bench --gguf "$M/$m.gguf" --device cuda -p 512 -n 128 -r 5 > "$W/logs/rf-tuned-$m.txt" 2>&1
    echo '```' >> "$S"; grep -E "tuning|pp512|tg128" "$W/logs/rf-tuned-$m.txt" >> "$S"; echo '```' >> "$S"
}

start_llama_build() {
    log "llama.cpp CUDA build starts"
    mkdir -p "$W/llama" && tar xJf .devcarry/llamacpp-src.tar.xz -C "$W/llama"
    setsid nohup bash -c "cmake -S $W/llama -B $W/llama/build -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
        && cmake --build $W/llama/build -j 12 --target llama-bench; echo BUILD_EXIT \$?" \
        > "$W/logs/llama-build.log" 2>&1 < /dev/null &
}

tiles_prefill() { # prefill on our tile kernels instead of the vendor GEMM (the default where cuBLASLt loads)
    echo -e "\n### prefill on the tile kernels (ROCMFORGE_PREFILL_GEMM=tiles)" >> "$S"
    for m in qwen05-Q4_0 l8b-Q4_0 l8b-Q4_K_M; do
        ROCMFORGE_PREFILL_GEMM=tiles timeout 120 $RF bench --gguf "$M/$m.gguf" --device cuda -p 512 -n 16 -r 5 > "$W/logs/rf-tiles-$m.txt" 2>&1
        echo '```' >> "$S"; echo "$m" >> "$S"; grep -E "prefill GEMM|pp512" "$W/logs/rf-tiles-$m.txt" >> "$S"; echo '```' >> "$S"
    done
}

profile() { # model: per-kernel GPU time of a short bench run (decode inside its graph included)
    local m=$1
    log "profile $m"
    timeout 150 ncu --metrics gpu__time_duration.sum --print-summary per-kernel --csv \
        $RF bench --gguf "$M/$m.gguf" --device cuda -p 8 -n 4 -r 1 > "$W/logs/ncu-$m.csv" 2>&1
    python3 tools/device/kernel_times.py "$W/logs/ncu-$m.csv" "$m" >> "$S" 2>&1
}

case ${1:-} in
all)
    nvidia-smi > "$W/logs/nvidia-smi.txt" 2>&1
    start_llama_build
    for t in Q8_0 Q4_0 Q4_K_M; do synth "qwen05-$t" qwen2.5-0.5b $t; synth "l8b4-$t" llama3-8b $t --layers 4; done
    synth qwen3-Q8_0 qwen3-0.6b Q8_0
    setsid nohup bash -c "for t in Q4_0 Q4_K_M Q8_0; do [ -f $M/l8b-\$t.gguf ] || $RF synth --preset llama3-8b --type \$t --out $M/l8b-\$t.gguf; done; echo SYNTH_DONE" \
        > "$W/logs/synth8b.log" 2>&1 < /dev/null &
    log "GPU test binaries"
    OUT=$W/gpucheck timeout 240 tools/device/gpu-check.sh "$W/bin" gpu_runtime gpu_ops gpu_model gpu_tune gpu_gemm_tiles > "$W/logs/gpu-check.log" 2>&1
    echo "## GPU tests" >> "$S"; cat "$W/gpucheck/summary.txt" >> "$S" 2>/dev/null
    echo -e "\n## verify: GPU vs CPU reference\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    for m in qwen05-Q8_0 qwen05-Q4_0 qwen05-Q4_K_M qwen3-Q8_0; do verify "$m"; done
    for t in Q8_0 Q4_0 Q4_K_M; do verify "l8b4-$t" --gen-tokens 64; done
    for _ in $(seq 150); do grep -q BUILD_EXIT "$W/logs/llama-build.log" && grep -q SYNTH_DONE "$W/logs/synth8b.log" && break; sleep 2; done
    echo -e "\n## bench (tok/s, median of 5; rocmforge / llama.cpp on this card)\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    for m in qwen05-Q8_0 qwen05-Q4_0 qwen05-Q4_K_M l8b-Q4_0 l8b-Q4_K_M l8b-Q8_0; do bench "$m"; done
    tiles_prefill
    # Programmatic dependent launch (opt-in), rocmforge alone: what the overlap brings.
    echo -e "\n### with dependent launch (ROCMFORGE_DEPENDENT_LAUNCH=1)" >> "$S"
    for m in qwen05-Q4_0 l8b-Q4_0; do
        ROCMFORGE_DEPENDENT_LAUNCH=1 timeout 120 $RF bench --gguf "$M/$m.gguf" --device cuda -p 512 -n 128 -r 5 > "$W/logs/rf-dep-$m.txt" 2>&1
        echo '```' >> "$S"; echo "$m" >> "$S"; grep -E "pp512|tg128" "$W/logs/rf-dep-$m.txt" >> "$S"; echo '```' >> "$S"
    done
    profile l8b-Q4_0
    # The decode GEMV and prefill GEMM candidates on qwen2.5-0.5b (last: the database it writes
    # applies from here on).
    tune qwen05-Q4_0 120 --only matmul_gemv --only matmul_gemm_tiles
    log "all done"
    ;;
quick)
    # The whole-model checks and every bench beside llama.cpp, without the op tests and tuning.
    start_llama_build
    for t in Q8_0 Q4_0 Q4_K_M; do synth "qwen05-$t" qwen2.5-0.5b $t; done
    synth l8b4-Q4_K_M llama3-8b Q4_K_M --layers 4
    setsid nohup bash -c "for t in Q4_0 Q4_K_M Q8_0; do [ -f $M/l8b-\$t.gguf ] || $RF synth --preset llama3-8b --type \$t --out $M/l8b-\$t.gguf; done; echo SYNTH_DONE" \
        > "$W/logs/synth8b.log" 2>&1 < /dev/null &
    OUT=$W/gpucheck timeout 200 tools/device/gpu-check.sh "$W/bin" gpu_model gpu_tune > "$W/logs/gpu-check.log" 2>&1
    echo "## GPU tests" >> "$S"; cat "$W/gpucheck/summary.txt" >> "$S" 2>/dev/null
    echo -e "\n## verify: GPU vs CPU reference\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    verify qwen05-Q4_K_M; verify l8b4-Q4_K_M --gen-tokens 64
    for _ in $(seq 150); do grep -q BUILD_EXIT "$W/logs/llama-build.log" && grep -q SYNTH_DONE "$W/logs/synth8b.log" && break; sleep 2; done
    echo -e "\n## bench (tok/s, median of 5; rocmforge / llama.cpp on this card)\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    for m in qwen05-Q8_0 qwen05-Q4_0 qwen05-Q4_K_M l8b-Q4_0 l8b-Q4_K_M l8b-Q8_0; do bench "$m"; done
    tiles_prefill
    log "quick done"
    ;;
final)
    # Everything the last changes touch, beside llama.cpp: op and model tests, verify, the
    # benches, then tuning of attention and the decode GEMVs with a bench after each.
    [ -x "$W/llama/build/bin/llama-bench" ] || start_llama_build
    for t in Q8_0 Q4_0 Q4_K_M; do synth "qwen05-$t" qwen2.5-0.5b $t; done
    synth qwen3-Q8_0 qwen3-0.6b Q8_0
    for t in Q4_0 Q4_K_M; do synth "l8b4-$t" llama3-8b $t --layers 4; done
    setsid nohup bash -c "for t in Q4_0 Q4_K_M Q8_0; do [ -f $M/l8b-\$t.gguf ] || $RF synth --preset llama3-8b --type \$t --out $M/l8b-\$t.gguf; done; echo SYNTH_DONE" \
        > "$W/logs/synth8b.log" 2>&1 < /dev/null &
    OUT=$W/gpucheck timeout 240 tools/device/gpu-check.sh "$W/bin" gpu_ops gpu_model gpu_tune > "$W/logs/gpu-check.log" 2>&1
    echo "## GPU tests" >> "$S"; cat "$W/gpucheck/summary.txt" >> "$S" 2>/dev/null
    echo -e "\n## verify: GPU vs CPU reference\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    for m in qwen05-Q4_0 qwen3-Q8_0; do verify "$m"; done
    verify l8b4-Q4_K_M --gen-tokens 64
    for _ in $(seq 150); do { [ -x "$W/llama/build/bin/llama-bench" ] || grep -q BUILD_EXIT "$W/logs/llama-build.log"; } && grep -q SYNTH_DONE "$W/logs/synth8b.log" && break; sleep 2; done
    echo -e "\n## bench (tok/s, median of 5; rocmforge / llama.cpp on this card)\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    for m in qwen05-Q8_0 qwen05-Q4_0 qwen05-Q4_K_M l8b-Q4_0 l8b-Q4_K_M l8b-Q8_0; do bench "$m"; done
    tune l8b-Q4_0 60 --only matmul_gemv
    log "final done"
    ;;
tune)
    echo -e "\n## tune (then bench with the database applied)" >> "$S"
    for m in qwen05-Q4_0 qwen05-Q4_K_M l8b-Q4_0 l8b-Q4_K_M; do tune "$m" 240; done
    log "tune done"
    ;;
check)
    # A short call: the GPU tests and verify on the current defaults, and rocmforge's own bench
    # (no llama.cpp build: for ratios use `all`, which runs the peer in the same call).
    nvidia-smi > "$W/logs/nvidia-smi.txt" 2>&1
    synth qwen05-Q4_0 qwen2.5-0.5b Q4_0; synth l8b4-Q4_K_M llama3-8b Q4_K_M --layers 4; synth l8b-Q4_0 llama3-8b Q4_0
    log "GPU test binaries"
    OUT=$W/gpucheck timeout 150 tools/device/gpu-check.sh "$W/bin" gpu_ops gpu_model > "$W/logs/gpu-check.log" 2>&1
    echo "## GPU tests" >> "$S"; cat "$W/gpucheck/summary.txt" >> "$S" 2>/dev/null
    echo -e "\n## verify: GPU vs CPU reference\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    verify qwen05-Q4_0; verify l8b4-Q4_K_M --gen-tokens 64
    for m in qwen05-Q4_0 l8b-Q4_0; do
        log "bench $m"
        timeout 120 $RF bench --gguf "$M/$m.gguf" --device cuda -p 512 -n 128 -r 5 > "$W/logs/rf-$m.txt" 2>&1
        echo '```' >> "$S"; grep -E "tuning|pp512|tg128|roofline" "$W/logs/rf-$m.txt" >> "$S"; echo '```' >> "$S"
    done
    log "check done"
    ;;
phase1)
    nvidia-smi > "$W/logs/nvidia-smi.txt" 2>&1
    start_llama_build
    log "synthetic models"
    for t in Q8_0 Q4_0 Q4_K_M F16; do
        synth "qwen05-$t" qwen2.5-0.5b $t
        synth "l8b4-$t" llama3-8b $t --layers 4
    done
    # Full 8B models for the benchmark: written in the background while the tests run.
    setsid nohup bash -c "for t in Q4_0 Q4_K_M Q8_0; do [ -f $M/l8b-\$t.gguf ] || $RF synth --preset llama3-8b --type \$t --out $M/l8b-\$t.gguf; done; echo SYNTH_DONE" \
        > "$W/logs/synth8b.log" 2>&1 < /dev/null &
    log "GPU test binaries"
    OUT=$W/gpucheck timeout 300 tools/device/gpu-check.sh "$W/bin" gpu_runtime gpu_ops gpu_model > "$W/logs/gpu-check.log" 2>&1
    echo "## GPU tests" >> "$S"; cat "$W/gpucheck/summary.txt" >> "$S" 2>/dev/null
    echo -e "\n## verify: GPU vs CPU reference\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    for t in Q8_0 Q4_0 Q4_K_M F16; do verify "qwen05-$t"; verify "l8b4-$t" --gen-tokens 64; done
    log "phase1 done"
    ;;
phase2)
    # After all, machine still warm: the first half of SmolLM2 arrives (with, optionally, a new
    # rocmforge in .devbin/); verify and bench the defaults, then tune qwen2.5-0.5b's matmuls.
    cp .devcarry/smol.part1 "$W/"
    echo -e "\n## phase2: verify\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    for m in qwen05-Q4_0 qwen05-Q8_0; do verify "$m"; done
    for t in Q4_0 Q8_0; do verify "l8b4-$t" --gen-tokens 64; done
    echo -e "\n## phase2: bench\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    for m in qwen05-Q8_0 qwen05-Q4_0 l8b-Q4_0 l8b-Q8_0; do bench "$m"; done
    tune qwen05-Q4_0 150 --only matmul_gemv --only matmul_gemm_tiles
    log "phase2 done"
    ;;
phase3)
    cat "$W/smol.part1" .devcarry/smol.part2 > "$M/smollm2.gguf"
    sha256sum "$M/smollm2.gguf" | tee -a "$W/logs/session.log"
    verify smollm2
    bench smollm2
    log "time to first token, cold and warm cache (qwen2.5-0.5b Q4_0)"
    rm -rf "$W/kcache-cold"
    for run in cold warm; do
        ROCMFORGE_CACHE_DIR=$W/kcache-cold timeout 120 $RF bench --gguf "$M/qwen05-Q4_0.gguf" --device cuda -p 16 -n 4 -r 1 2>&1 \
            | grep 'time to first token' | sed "s/^/$run: /" >> "$S"
    done
    tune smollm2 40 --only matmul_gemv
    log "phase3 done"
    ;;
*) echo "usage: $0 all|tune|check|phase1|phase2|phase3"; exit 2 ;;
esac
cp "$S" "$OUT/summary.md" 2>/dev/null
tar czf "$OUT/logs.tgz" -C "$W" logs gpucheck 2>/dev/null
cat "$S"
