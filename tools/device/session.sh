#!/usr/bin/env bash
# One device session in three back-to-back calls (one call carries at most 64 MiB: the binaries
# and the two halves of SmolLM2 travel separately, see tools/device/pack.sh). Builds nothing of
# ours: the binaries come prebuilt in .devbin/. Each call stays under the 10-minute limit.
#   main  (carry .devbin, .devcarry/llamacpp-src.tar.xz): start the llama.cpp CUDA build and the
#         8B model files, write the small synthetic models, run the GPU test binaries and
#         `rocmforge verify`, then three benches beside llama.cpp.
#   tune  (carry .devcarry/smol.part1, machine still warm): tune the decode GEMVs and attention of
#         qwen2.5-0.5b Q4_0 and the GEMVs of llama3-8b Q4_0, each followed by both benches; a
#         per-kernel profile of qwen2.5-0.5b's decode.
#   retune, resmol: the same again after a fix to tuning, in two calls (see their comments).
#   final1, final2: defaults and tuned benches, the GPU op tests and SmolLM2, in two calls.
#   probe (carry .devbin; needs no peer): per-kernel decode times (ncu), decode attention
#         candidates at positions 64 and 512 (`tune --decode-pos`), ncu sections of llama3-8b.
#   s6a, s6b, s6c: session 6's triplet (tests, verify and defaults beside llama.cpp; tune and
#         benches; SmolLM2 and time to first token); s6d: one call on a fresh machine, defaults
#         beside llama.cpp with the GPU model tests.
#   s7a, s7b, s7c: session 7's triplet: tests, verify, decode attention candidates and defaults
#         beside llama.cpp (fresh machine); tune and benches, verify under the tuned launches;
#         SmolLM2, time to first token and llama3-8b Q8_0.
#   s7e, s7f: session 7's last pair on a fresh machine: defaults (dependent launches, one split
#         for short ranges) beside llama.cpp, verify under them, plain launches for comparison;
#         then SmolLM2, the decode attention candidates on the GPU, and a tuned qwen2.5-0.5b.
#   smol  (carry .devcarry/smol.part2, machine still warm): join SmolLM2, verify, bench it and the
#         other models, time to first token (qwen2.5-0.5b, empty and filled kernel cache), tune
#         SmolLM2, bench it again.
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

rf_bench() { # model tag: rocmforge's bench alone, as JSON for a later row beside llama.cpp
    local m=$1 tag=$2
    log "rocmforge bench $m ($tag)"
    timeout 200 $RF bench --gguf "$M/$m.gguf" --device cuda -p 512 -n 128 -r 5 --json "$W/logs/rf-$tag-$m.json" > "$W/logs/rf-$tag-$m.txt" 2>&1
}

tune() { # model budget [tune args]: rocmforge tune (its database applies to every later run)
    local m=$1 budget=$2; shift 2
    log "tune $m (budget $budget s) $*"
    echo -e "\n### rocmforge tune $m (--budget-seconds $budget $*)" >> "$S"
    /usr/bin/time -f "tune wall time %e s" timeout $((budget + 90)) $RF tune --gguf "$M/$m.gguf" --device cuda \
        --budget-seconds "$budget" --candidates "$@" > "$W/logs/tune-$m.txt" 2> "$W/logs/tune-$m.err"
    cat "$W/logs/tune-$m.txt" >> "$S"; tail -3 "$W/logs/tune-$m.err" >> "$S"
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

fresh_machine() { # session 6: llama.cpp's build and the 8B files in the background, qwen2.5 now
    nvidia-smi > "$W/logs/nvidia-smi.txt" 2>&1
    start_llama_build
    for t in Q4_0 Q8_0; do synth "qwen05-$t" qwen2.5-0.5b $t; done
    # Both 8B files before any bench: a synth running beside llama-bench would slow its host side.
    setsid nohup bash -c "for t in Q4_0 Q4_K_M; do [ -f $M/l8b-\$t.gguf ] || $RF synth --preset llama3-8b --type \$t --out $M/l8b-\$t.gguf; done; echo SYNTH_DONE" \
        > "$W/logs/synth8b.log" 2>&1 < /dev/null &
}

smol_round() { # SmolLM2 joined from its halves, verified, benched, tuned and benched again
    cat "$W/smol.part1" .devcarry/smol.part2 > "$M/smollm2.gguf"
    sha256sum "$M/smollm2.gguf" | tee -a "$W/logs/session.log"
    echo -e "\n## SmolLM2 (real file)\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    verify smollm2
    rf_bench smollm2 def
    tune smollm2 30 --only matmul_gemv --only attention
    echo -e "\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    bench smollm2
    python3 tools/device/compare.py "smollm2 (default)" "$W/logs/rf-def-smollm2.json" "$W/logs/lc-smollm2.json" >> "$S"
}

first_token_times() { # time to first token of qwen2.5-0.5b Q4_0, empty and filled kernel cache
    log "time to first token, cold and warm cache (qwen2.5-0.5b Q4_0)"
    rm -rf "$W/kcache-cold"
    for run in cold warm; do
        ROCMFORGE_CACHE_DIR=$W/kcache-cold timeout 120 $RF bench --gguf "$M/qwen05-Q4_0.gguf" --device cuda -p 16 -n 4 -r 1 2>&1 \
            | grep 'time to first token' | sed "s/^/$run: /" >> "$S"
    done
}

attention_candidates() { # model pos...: decode attention candidates timed at each position
    local m=$1; shift
    for pos in "$@"; do
        log "attention candidates of $m at $pos"
        echo -e "\n### $m attention candidates at position $pos" >> "$S"
        ROCMFORGE_CACHE_DIR=$W/kcache-probe timeout 150 $RF tune --gguf "$M/$m.gguf" --device cuda --only attention \
            --decode-pos "$pos" --candidates --bench-repeats 0 --budget-seconds 90 > "$W/logs/tune-attn-$m-$pos.txt" 2>&1
        grep -E "^attention|^  *#|best|default" "$W/logs/tune-attn-$m-$pos.txt" | head -70 >> "$S"
    done
}

table_header() { # title
    echo -e "\n## $1\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
}

wait_for_peer() { # the llama.cpp build and the 8B files
    for _ in $(seq 200); do grep -q BUILD_EXIT "$W/logs/llama-build.log" && grep -q SYNTH_DONE "$W/logs/synth8b.log" && break; sleep 2; done
}

profile() { # model: per-kernel GPU time of a short bench run (decode inside its graph included)
    local m=$1
    log "profile $m"
    timeout 150 ncu --metrics gpu__time_duration.sum --print-summary per-kernel --csv \
        $RF bench --gguf "$M/$m.gguf" --device cuda -p 8 -n 4 -r 1 > "$W/logs/ncu-$m.csv" 2>&1
    python3 tools/device/kernel_times.py "$W/logs/ncu-$m.csv" "$m" >> "$S" 2>&1
}

case ${1:-} in
main)
    nvidia-smi > "$W/logs/nvidia-smi.txt" 2>&1
    [ -x "$W/llama/build/bin/llama-bench" ] || start_llama_build
    for t in Q8_0 Q4_0 Q4_K_M; do synth "qwen05-$t" qwen2.5-0.5b $t; done
    synth qwen3-Q8_0 qwen3-0.6b Q8_0
    synth l8b4-Q4_K_M llama3-8b Q4_K_M --layers 4
    setsid nohup bash -c "for t in Q4_0 Q4_K_M Q8_0; do [ -f $M/l8b-\$t.gguf ] || $RF synth --preset llama3-8b --type \$t --out $M/l8b-\$t.gguf; done; echo SYNTH_DONE" \
        > "$W/logs/synth8b.log" 2>&1 < /dev/null &
    log "GPU test binaries"
    OUT=$W/gpucheck timeout 280 tools/device/gpu-check.sh "$W/bin" gpu_model gpu_tune gpu_ops > "$W/logs/gpu-check.log" 2>&1
    echo "## GPU tests" >> "$S"; cat "$W/gpucheck/summary.txt" >> "$S" 2>/dev/null
    grep -h "greedy run" "$W"/gpucheck/gpu_model.log >> "$S" 2>/dev/null
    echo -e "\n## verify: GPU vs CPU reference\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    for m in qwen05-Q4_0 qwen3-Q8_0; do verify "$m"; done
    verify l8b4-Q4_K_M --gen-tokens 64
    for _ in $(seq 150); do { [ -x "$W/llama/build/bin/llama-bench" ] || grep -q BUILD_EXIT "$W/logs/llama-build.log"; } && grep -q SYNTH_DONE "$W/logs/synth8b.log" && break; sleep 2; done
    echo -e "\n## bench, defaults (tok/s, median of 5; rocmforge / llama.cpp on this card)\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    for m in qwen05-Q4_0 qwen05-Q8_0 l8b-Q4_0; do bench "$m"; done
    log "main done"
    ;;
tune)
    [ -f .devcarry/smol.part1 ] && cp .devcarry/smol.part1 "$W/"
    tune qwen05-Q4_0 60 --only matmul_gemv --only attention
    echo -e "\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    bench qwen05-Q4_0
    tune l8b-Q4_0 90 --only matmul_gemv --only attention
    echo -e "\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    bench l8b-Q4_0
    profile qwen05-Q4_0
    log "tune done"
    ;;
smol)
    cat "$W/smol.part1" .devcarry/smol.part2 > "$M/smollm2.gguf"
    sha256sum "$M/smollm2.gguf" | tee -a "$W/logs/session.log"
    verify smollm2
    echo -e "\n## SmolLM2, then the other models (8B attention tuned above)\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    bench smollm2
    for m in qwen05-Q4_K_M l8b-Q4_K_M l8b-Q8_0; do bench "$m"; done
    first_token_times
    tune smollm2 40 --only matmul_gemv --only attention
    echo -e "\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    bench smollm2
    log "smol done"
    ;;
retune)
    # A fresh machine after a fix to tuning: rocmforge only (.devcarry/bin), the llama.cpp source
    # and the first half of SmolLM2 (the second comes with `resmol`); no room for test binaries.
    cp .devcarry/bin/* "$W/bin/" && chmod +x "$W"/bin/*
    cp .devcarry/smol.part1 "$W/"
    start_llama_build
    for t in Q8_0 Q4_0; do synth "qwen05-$t" qwen2.5-0.5b $t; done
    setsid nohup bash -c "[ -f $M/l8b-Q4_0.gguf ] || $RF synth --preset llama3-8b --type Q4_0 --out $M/l8b-Q4_0.gguf; echo SYNTH_DONE" \
        > "$W/logs/synth8b.log" 2>&1 < /dev/null &
    echo -e "\n## tune (each database entry applies to every later run)" >> "$S"
    tune qwen05-Q4_0 60 --only matmul_gemv --only attention
    tune qwen05-Q8_0 60 --only matmul_gemv --only attention
    for _ in $(seq 100); do grep -q SYNTH_DONE "$W/logs/synth8b.log" && break; sleep 2; done
    tune l8b-Q4_0 90 --only matmul_gemv --only attention
    for _ in $(seq 150); do grep -q BUILD_EXIT "$W/logs/llama-build.log" && break; sleep 2; done
    echo -e "\n## bench after tune (tok/s, median of 5; rocmforge / llama.cpp on this card)\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    for m in qwen05-Q4_0 qwen05-Q8_0 l8b-Q4_0; do bench "$m"; grep -h "^tuning" "$W/logs/rf-$m.txt" >> "$S"; done
    log "retune done"
    ;;
resmol)
    cat "$W/smol.part1" .devcarry/smol.part2 > "$M/smollm2.gguf"
    sha256sum "$M/smollm2.gguf" | tee -a "$W/logs/session.log"
    tune smollm2 40 --only matmul_gemv --only attention
    echo -e "\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    bench smollm2; grep -h "^tuning" "$W/logs/rf-smollm2.txt" >> "$S"
    verify smollm2
    log "resmol done"
    ;;
probe)
    # Where decode time goes, before changing kernels (rocmforge alone, no peer needed): per-kernel
    # GPU time of qwen2.5-0.5b's decode at tg positions (ncu, caches and clocks left alone), the
    # decode attention candidates at positions 64 and 512, and ncu's full sections on one layer
    # of llama3-8b's decode kernels.
    nvidia-smi > "$W/logs/nvidia-smi.txt" 2>&1
    synth qwen05-Q4_0 qwen2.5-0.5b Q4_0
    setsid nohup bash -c "[ -f $M/l8b-Q4_0.gguf ] || $RF synth --preset llama3-8b --type Q4_0 --out $M/l8b-Q4_0.gguf; echo SYNTH_DONE" \
        > "$W/logs/synth8b.log" 2>&1 < /dev/null &
    rf_bench qwen05-Q4_0 def
    grep -E "^\| *(pp|tg)" "$W/logs/rf-def-qwen05-Q4_0.txt" >> "$S"
    log "ncu durations, qwen decode"
    timeout 200 ncu --cache-control none --clock-control none --metrics gpu__time_duration.sum --csv \
        $RF bench --gguf "$M/qwen05-Q4_0.gguf" --device cuda -p 1 -n 24 -r 1 > "$W/logs/ncu-qwen-decode.csv" 2>&1
    for pos in 64 512; do
        log "attention candidates at $pos"
        echo -e "\n### qwen attention candidates at position $pos" >> "$S"
        ROCMFORGE_CACHE_DIR=$W/kcache-probe timeout 120 $RF tune --gguf "$M/qwen05-Q4_0.gguf" --device cuda --only attention \
            --decode-pos $pos --candidates --bench-repeats 0 --budget-seconds 60 > "$W/logs/tune-attn-$pos.txt" 2>&1
        cat "$W/logs/tune-attn-$pos.txt" >> "$S"
    done
    for _ in $(seq 100); do grep -q SYNTH_DONE "$W/logs/synth8b.log" && break; sleep 2; done
    rf_bench l8b-Q4_0 def
    grep -E "^\| *(pp|tg)" "$W/logs/rf-def-l8b-Q4_0.txt" >> "$S"
    log "ncu full sections, llama3-8b decode"
    timeout 240 ncu --cache-control none --clock-control none --set full -k 'regex:gemv|attention' --launch-skip 400 -c 6 \
        -o "$W/logs/l8b" $RF bench --gguf "$M/l8b-Q4_0.gguf" --device cuda -p 1 -n 4 -r 1 > "$W/logs/ncu-l8b.log" 2>&1
    ncu --import "$W/logs/l8b.ncu-rep" --page details > "$W/logs/ncu-l8b-details.txt" 2>&1
    cp "$W/logs/ncu-qwen-decode.csv" "$W/logs/ncu-l8b-details.txt" "$OUT/" 2>/dev/null
    log "probe done"
    ;;
s6a)
    # Session 6, first call on a fresh machine (carry .devbin, .devcarry/llamacpp-src.tar.xz):
    # llama.cpp's CUDA build and the 8B file in the background; the GPU op and model tests and
    # verify; then the defaults of this commit beside llama.cpp.
    fresh_machine
    synth l8b4-Q4_K_M llama3-8b Q4_K_M --layers 4
    log "GPU test binaries"
    OUT=$W/gpucheck timeout 200 tools/device/gpu-check.sh "$W/bin" gpu_ops gpu_model > "$W/logs/gpu-check.log" 2>&1
    echo "## GPU tests" >> "$S"; cat "$W/gpucheck/summary.txt" >> "$S" 2>/dev/null
    echo -e "\n## verify: GPU vs CPU reference\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    verify qwen05-Q4_0; verify l8b4-Q4_K_M --gen-tokens 64
    for _ in $(seq 150); do { grep -q BUILD_EXIT "$W/logs/llama-build.log"; } && grep -q SYNTH_DONE "$W/logs/synth8b.log" && break; sleep 2; done
    echo -e "\n## bench, defaults (tok/s, median of 5; rocmforge / llama.cpp on this card)\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    for m in qwen05-Q4_0 l8b-Q4_0 qwen05-Q8_0; do bench "$m"; done
    log "s6a done"
    ;;
s6b)
    # Right after s6a (carry .devcarry/smol.part1): tune, then the benches beside llama.cpp again,
    # and ncu's per-kernel decode times of qwen2.5-0.5b after tuning.
    cp .devcarry/smol.part1 "$W/"
    tune qwen05-Q4_0 60 --only matmul_gemv --only attention
    tune qwen05-Q8_0 45 --only matmul_gemv --only attention
    tune l8b-Q4_0 80 --only matmul_gemv --only attention
    echo -e "\n## bench after tune (tok/s, median of 5; rocmforge / llama.cpp on this card)\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    for m in qwen05-Q4_0 qwen05-Q8_0 l8b-Q4_0; do bench "$m"; grep -h "^tuning" "$W/logs/rf-$m.txt" >> "$S"; done
    log "ncu durations, qwen decode (tuned)"
    timeout 100 ncu --cache-control none --clock-control none --metrics gpu__time_duration.sum --csv \
        $RF bench --gguf "$M/qwen05-Q4_0.gguf" --device cuda -p 1 -n 16 -r 1 > "$OUT/ncu-qwen-tuned.csv" 2>&1
    log "s6b done"
    ;;
s6c)
    # Right after s6b (carry .devcarry/smol.part2): SmolLM2 (real file) verified, benched with
    # the defaults, tuned and benched again; time to first token.
    smol_round
    first_token_times
    echo -e "\n## llama3-8b Q4_K_M, defaults\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    bench l8b-Q4_K_M
    log "s6c done"
    ;;
s6d)
    # Session 6, last call, on a fresh machine (carry .devbin, .devcarry/llamacpp-src.tar.xz):
    # the defaults after s6b's tuning results became defaults, beside llama.cpp built in the same
    # call; gpu_model, and the gpu_ops test s6a's time limit cut off.
    fresh_machine
    log "GPU tests"
    OUT=$W/gpucheck timeout 150 tools/device/gpu-check.sh "$W/bin" gpu_model > "$W/logs/gpu-check.log" 2>&1
    ROCMFORGE_CACHE_DIR=/tmp/rocmforge-kernel-cache timeout 100 "$W/bin/gpu_ops" smollm2_shape_every_op > "$W/gpucheck/gpu_ops_smollm2.log" 2>&1
    echo "gpu_ops smollm2_shape_every_op: exit $?" >> "$W/gpucheck/summary.txt"
    echo "## GPU tests" >> "$S"; cat "$W/gpucheck/summary.txt" >> "$S" 2>/dev/null
    echo -e "\n## verify: GPU vs CPU reference\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    verify qwen05-Q4_0
    for _ in $(seq 200); do grep -q BUILD_EXIT "$W/logs/llama-build.log" && grep -q SYNTH_DONE "$W/logs/synth8b.log" && break; sleep 2; done
    echo -e "\n## bench, defaults (tok/s, median of 5; rocmforge / llama.cpp on this card)\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    for m in qwen05-Q4_0 l8b-Q4_0 qwen05-Q8_0 l8b-Q4_K_M; do bench "$m"; done
    log "s6d done"
    ;;
s7a)
    # Session 7, first call on a fresh machine (carry .devbin, .devcarry/llamacpp-src.tar.xz):
    # the decode attention's new knobs (loads ahead, splits taking part) and the GEMV's aligned
    # block windows checked against the CPU (every decode attention candidate at positions 5 and
    # 45, every op of the qwen2.5 and llama3 shapes, the model tests, verify); the defaults
    # beside llama.cpp.
    fresh_machine
    synth l8b4-Q4_K_M llama3-8b Q4_K_M --layers 4
    log "GPU tests"
    mkdir -p "$W/gpucheck"
    export ROCMFORGE_CACHE_DIR=/tmp/rocmforge-kernel-cache
    for t in decode_attention_every_candidate qwen25_shape_every_op llama3_8b_shape_every_op; do
        timeout 150 "$W/bin/gpu_ops" --test-threads=1 --nocapture "$t" > "$W/gpucheck/gpu_ops_$t.log" 2>&1
        echo "gpu_ops $t: exit $? $(grep -E '^test result' "$W/gpucheck/gpu_ops_$t.log")" >> "$W/gpucheck/summary.txt"
    done
    timeout 120 "$W/bin/gpu_model" --test-threads=1 --nocapture > "$W/gpucheck/gpu_model.log" 2>&1
    echo "gpu_model: exit $? $(grep -E '^test result' "$W/gpucheck/gpu_model.log")" >> "$W/gpucheck/summary.txt"
    export ROCMFORGE_CACHE_DIR=$W/kcache
    echo "## GPU tests" >> "$S"; cat "$W/gpucheck/summary.txt" >> "$S"
    grep -h "FAIL\|panicked" "$W"/gpucheck/*.log | head -20 >> "$S"
    echo -e "\n## verify: GPU vs CPU reference\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    verify qwen05-Q4_0; verify l8b4-Q4_K_M --gen-tokens 64
    wait_for_peer
    table_header "bench, defaults (tok/s, median of 5; rocmforge / llama.cpp on this card)"
    for m in qwen05-Q4_0 l8b-Q4_0; do bench "$m"; done
    [ $SECONDS -lt 480 ] && bench qwen05-Q8_0
    log "s7a done"
    ;;
s7b)
    # Right after s7a (carry .devcarry/smol.part1): the decode attention candidates at position 64
    # (tg128's range; tune times them at 512), tune, the benches beside llama.cpp again, and
    # verify under the tuned kernels and launch mode (dependent launches run the attention's
    # loads before its wait). Then llama3-8b Q8_0 is written in the background for s7c.
    cp .devcarry/smol.part1 "$W/"
    attention_candidates qwen05-Q4_0 64
    tune qwen05-Q4_0 60 --only matmul_gemv --only attention
    tune l8b-Q4_0 75 --only matmul_gemv --only attention
    table_header "bench after tune (tok/s, median of 5; rocmforge / llama.cpp on this card)"
    for m in qwen05-Q4_0 l8b-Q4_0; do bench "$m"; grep -h "^tuning" "$W/logs/rf-$m.txt" >> "$S"; done
    echo -e "\n## verify after tune\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    verify qwen05-Q4_0
    setsid nohup bash -c "[ -f $M/l8b-Q8_0.gguf ] || $RF synth --preset llama3-8b --type Q8_0 --out $M/l8b-Q8_0.gguf; echo SYNTH_DONE" \
        > "$W/logs/synth8b-q8.log" 2>&1 < /dev/null &
    log "s7b done"
    ;;
s7c)
    # Right after s7b (carry .devcarry/smol.part2): SmolLM2 (real file) verified, benched with
    # the defaults, tuned and benched again; time to first token; qwen2.5 Q8_0 and llama3-8b
    # Q4_K_M and Q8_0 tuned and benched.
    smol_round
    first_token_times
    for m in qwen05-Q8_0 l8b-Q4_K_M; do
        rf_bench "$m" def
        tune "$m" 50 --only matmul_gemv --only attention
    done
    table_header "after tune; (default) rows: no tuning database, the same llama.cpp run"
    for m in qwen05-Q8_0 l8b-Q4_K_M; do
        bench "$m"
        python3 tools/device/compare.py "$m (default)" "$W/logs/rf-def-$m.json" "$W/logs/lc-$m.json" >> "$S"
    done
    for _ in $(seq 60); do grep -q SYNTH_DONE "$W/logs/synth8b-q8.log" && break; sleep 2; done
    [ $SECONDS -lt 470 ] && bench l8b-Q8_0
    log "s7c done"
    ;;
s7e)
    # Fresh machine (carry .devbin/rocmforge, .devcarry/llamacpp-src.tar.xz, .devcarry/smol.part1):
    # the defaults of this commit beside llama.cpp built in the same call, verify under them, and
    # rocmforge with plain launches (ROCMFORGE_DEPENDENT_LAUNCH=0) for comparison.
    cp .devcarry/smol.part1 "$W/"
    fresh_machine
    synth l8b4-Q4_K_M llama3-8b Q4_K_M --layers 4
    echo -e "## verify: GPU vs CPU reference (default launches: dependent)\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    verify qwen05-Q4_0; verify l8b4-Q4_K_M --gen-tokens 64
    grep -h "^decode logits" "$W/logs/verify.log" >> "$S"
    wait_for_peer
    table_header "bench, defaults (tok/s, median of 5; rocmforge / llama.cpp on this card)"
    for m in qwen05-Q4_0 l8b-Q4_0 qwen05-Q8_0 l8b-Q4_K_M; do bench "$m"; done
    for m in qwen05-Q4_0 l8b-Q4_0; do
        (export ROCMFORGE_DEPENDENT_LAUNCH=0; rf_bench "$m" plain)
        python3 tools/device/compare.py "$m (plain launches)" "$W/logs/rf-plain-$m.json" "$W/logs/lc-$m.json" >> "$S"
    done
    log "s7e done"
    ;;
s7f)
    # Right after s7e (carry .devcarry/smol.part2, .devbin/gpu_ops): SmolLM2 verified and benched
    # with the defaults; every decode attention candidate on the GPU; qwen2.5-0.5b Q4_0 tuned.
    cat "$W/smol.part1" .devcarry/smol.part2 > "$M/smollm2.gguf"
    echo -e "\n## SmolLM2 (real file)\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    verify smollm2
    grep -h "^decode logits" "$W/logs/verify.log" | tail -1 >> "$S"
    table_header "SmolLM2, defaults"
    bench smollm2
    mkdir -p "$W/gpucheck"
    ROCMFORGE_CACHE_DIR=/tmp/rocmforge-kernel-cache timeout 150 "$W/bin/gpu_ops" --test-threads=1 --nocapture decode_attention_every_candidate > "$W/gpucheck/gpu_ops_attn.log" 2>&1
    echo -e "\ngpu_ops decode_attention_every_candidate: exit $? $(grep -E '^test result' "$W/gpucheck/gpu_ops_attn.log")" >> "$S"
    if [ $SECONDS -lt 400 ]; then
        tune qwen05-Q4_0 45 --only matmul_gemv --only attention
        table_header "qwen2.5-0.5b Q4_0 after tune"
        bench qwen05-Q4_0; grep -h "^tuning" "$W/logs/rf-qwen05-Q4_0.txt" >> "$S"
    fi
    log "s7f done"
    ;;
s8a)
    # Session 8, first call on a fresh machine, rocmforge alone (carry .devbin/rocmforge): ncu's
    # detail sections for every decode kernel of qwen2.5-0.5b Q4_0 at position ~64 (tg128's range)
    # and for llama3-8b Q8_0's GEMVs; tune llama3-8b Q8_0 (never tuned) and Q4_0 and qwen2.5 Q8_0,
    # each benched before and after. The tuning databases go to $OUT for the next call.
    nvidia-smi > "$W/logs/nvidia-smi.txt" 2>&1
    for t in Q4_0 Q8_0; do synth "qwen05-$t" qwen2.5-0.5b $t; done
    setsid nohup bash -c "for t in Q8_0 Q4_0; do [ -f $M/l8b-\$t.gguf ] || $RF synth --preset llama3-8b --type \$t --out $M/l8b-\$t.gguf; done; echo SYNTH_DONE" \
        > "$W/logs/synth8b.log" 2>&1 < /dev/null &
    log "ncu detail qwen05-Q4_0"
    prompt=$(python3 -c 'print("the quick brown fox jumps over the lazy dog " * 7)')
    timeout 200 ncu --clock-control none --cache-control none -k regex:"gemv|attention|argmax|embed" \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
        --section WarpStateStats --section SchedulerStats \
        $RF run --gguf "$M/qwen05-Q4_0.gguf" --device cuda --raw -p "$prompt" -n 3 --temperature 0 \
        > "$OUT/ncu-detail-qwen05-Q4_0.txt" 2>&1
    rf_bench qwen05-Q8_0 def
    tune qwen05-Q8_0 50 --only matmul_gemv --only attention --decode-pos 64
    rf_bench qwen05-Q8_0 tuned
    wait_for_synth() { for _ in $(seq 150); do grep -q SYNTH_DONE "$W/logs/synth8b.log" && break; sleep 2; done; }
    wait_for_synth
    log "ncu detail l8b-Q8_0"
    timeout 120 ncu --clock-control none --cache-control none -k regex:gemv --launch-skip 140 --launch-count 8 \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
        --section WarpStateStats --section SchedulerStats $RF bench --gguf "$M/l8b-Q8_0.gguf" --device cuda -p 1 -n 3 -r 1 \
        > "$OUT/ncu-detail-l8b-Q8_0.txt" 2>&1
    for m in l8b-Q8_0 l8b-Q4_0; do
        rf_bench "$m" def
        tune "$m" 70 --only matmul_gemv --only attention --decode-pos 64
        rf_bench "$m" tuned
    done
    for f in "$W"/logs/rf-*.json; do python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-1], {r['test']: round(r['median'], 1) for r in d['results']})" "$f"; done >> "$S" 2>&1
    mkdir -p "$OUT/tuning" && cp "$W"/kcache/tuning/*.json "$OUT/tuning/" 2>/dev/null
    log "s8a done"
    ;;
s8b)
    # Fresh machine (carry .devbin/rocmforge, .devbin/gpu_ops): the decode attention's head
    # blocks (the group's query heads shared out over blocks). Every decode attention candidate
    # against the CPU on the GPU; every candidate timed at positions 64 and 512 on the qwen2.5 and
    # llama3 shapes; qwen2.5 benched with the defaults, then with the attention tuned at 64.
    nvidia-smi > "$W/logs/nvidia-smi.txt" 2>&1
    for t in Q4_0 Q8_0; do synth "qwen05-$t" qwen2.5-0.5b $t; done
    synth l8b4-Q4_0 llama3-8b Q4_0 --layers 4
    mkdir -p "$W/gpucheck"
    ROCMFORGE_CACHE_DIR=/tmp/rocmforge-kernel-cache timeout 240 "$W/bin/gpu_ops" --test-threads=1 --nocapture decode_attention_every_candidate > "$W/gpucheck/gpu_ops_attn.log" 2>&1
    echo -e "\ngpu_ops decode_attention_every_candidate: exit $? $(grep -E '^test result' "$W/gpucheck/gpu_ops_attn.log")" >> "$S"
    grep -h "FAIL\|panicked" "$W/gpucheck/gpu_ops_attn.log" | head -20 >> "$S"
    attention_candidates qwen05-Q4_0 64 512
    attention_candidates l8b4-Q4_0 64 512
    for m in qwen05-Q4_0 qwen05-Q8_0; do
        rf_bench "$m" def
        tune "$m" 40 --only attention --decode-pos 64
        rf_bench "$m" tuned
    done
    for f in "$W"/logs/rf-*.json; do python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-1], {r['test']: round(r['median'], 1) for r in d['results']})" "$f"; done >> "$S" 2>&1
    log "s8b done"
    ;;
s8c)
    # Fresh machine (carry .devbin/rocmforge, .devcarry/llamacpp-src.tar.xz, .devcarry/smol.part1):
    # this commit's defaults (a decode block per query head, Q8_0's GEMV geometries) verified
    # against the CPU and benched beside llama.cpp built in the same call.
    cp .devcarry/smol.part1 "$W/"
    nvidia-smi > "$W/logs/nvidia-smi.txt" 2>&1
    start_llama_build
    for t in Q4_0 Q8_0; do synth "qwen05-$t" qwen2.5-0.5b $t; done
    # Every 8B file before any bench (a synth beside llama-bench would slow its host side).
    setsid nohup bash -c "for t in Q4_0 Q4_K_M Q8_0; do [ -f $M/l8b-\$t.gguf ] || $RF synth --preset llama3-8b --type \$t --out $M/l8b-\$t.gguf; done; echo SYNTH_DONE" \
        > "$W/logs/synth8b.log" 2>&1 < /dev/null &
    synth l8b4-Q4_K_M llama3-8b Q4_K_M --layers 4
    echo -e "## verify: GPU vs CPU reference\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    verify qwen05-Q4_0; verify qwen05-Q8_0; verify l8b4-Q4_K_M --gen-tokens 64
    grep -h "^decode logits" "$W/logs/verify.log" >> "$S"
    wait_for_peer
    table_header "bench, defaults (tok/s, median of 5; rocmforge / llama.cpp on this card)"
    for m in qwen05-Q4_0 qwen05-Q8_0 l8b-Q4_0 l8b-Q4_K_M; do bench "$m"; done
    [ $SECONDS -lt 500 ] && bench l8b-Q8_0
    log "s8c done"
    ;;
s8d)
    # Right after s8c (carry .devcarry/smol.part2, .devbin/gpu_model): SmolLM2 verified and
    # benched beside llama.cpp; the GPU model tests; llama3-8b Q8_0 if s8c ran out of time;
    # time to first token.
    cat "$W/smol.part1" .devcarry/smol.part2 > "$M/smollm2.gguf"
    echo -e "\n## SmolLM2 (real file)\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    verify smollm2
    grep -h "^decode logits" "$W/logs/verify.log" | tail -1 >> "$S"
    table_header "SmolLM2 and the rest, defaults"
    bench smollm2
    grep -q "^| l8b-Q8_0 " "$S" || bench l8b-Q8_0
    mkdir -p "$W/gpucheck"
    ROCMFORGE_CACHE_DIR=/tmp/rocmforge-kernel-cache timeout 150 "$W/bin/gpu_model" --test-threads=1 --nocapture > "$W/gpucheck/gpu_model.log" 2>&1
    echo -e "\ngpu_model: exit $? $(grep -E '^test result' "$W/gpucheck/gpu_model.log")" >> "$S"
    grep -h "FAIL\|panicked" "$W/gpucheck/gpu_model.log" | head -10 >> "$S"
    first_token_times
    log "s8d done"
    ;;
final1)
    # The last fresh machine: rocmforge alone (.devcarry/bin), the llama.cpp source and the first
    # half of SmolLM2. Benches of the defaults, then after tuning qwen2.5-0.5b Q4_0, all beside
    # llama.cpp built in this call.
    cp .devcarry/bin/* "$W/bin/" && chmod +x "$W"/bin/*
    cp .devcarry/smol.part1 "$W/"
    start_llama_build
    for t in Q8_0 Q4_0; do synth "qwen05-$t" qwen2.5-0.5b $t; done
    synth l8b4-Q4_K_M llama3-8b Q4_K_M --layers 4
    setsid nohup bash -c "[ -f $M/l8b-Q4_0.gguf ] || $RF synth --preset llama3-8b --type Q4_0 --out $M/l8b-Q4_0.gguf; echo SYNTH_DONE" \
        > "$W/logs/synth8b.log" 2>&1 < /dev/null &
    echo -e "\n## verify: GPU vs CPU reference\n| model | result | logits | greedy |\n|---|---|---|---|" >> "$S"
    verify qwen05-Q4_0; verify l8b4-Q4_K_M --gen-tokens 64
    for m in qwen05-Q4_0 qwen05-Q8_0; do rf_bench "$m" def; done
    tune qwen05-Q4_0 45 --only matmul_gemv --only attention
    for _ in $(seq 100); do grep -q SYNTH_DONE "$W/logs/synth8b.log" && break; sleep 2; done
    rf_bench l8b-Q4_0 def
    for _ in $(seq 150); do grep -q BUILD_EXIT "$W/logs/llama-build.log" && break; sleep 2; done
    echo -e "\n## bench (tok/s, median of 5; rocmforge / llama.cpp on this card; (default) = no tuning database)\n| model | rocmforge pp512 | llama.cpp pp512 | ratio | rocmforge tg128 | llama.cpp tg128 | ratio | roofline share |\n|---|---|---|---|---|---|---|---|" >> "$S"
    for m in qwen05-Q4_0 qwen05-Q8_0 l8b-Q4_0; do
        bench "$m"
        python3 tools/device/compare.py "$m (default)" "$W/logs/rf-def-$m.json" "$W/logs/lc-$m.json" >> "$S"
    done
    log "final1 done"
    ;;
final2)
    # Right after final1: the GPU op tests (.devcarry/bin2) and SmolLM2 (second half).
    cp .devcarry/bin2/* "$W/bin/" && chmod +x "$W"/bin/*
    OUT=$W/gpucheck timeout 200 tools/device/gpu-check.sh "$W/bin" gpu_ops > "$W/logs/gpu-check.log" 2>&1
    echo "## GPU tests" >> "$S"; cat "$W/gpucheck/summary.txt" >> "$S" 2>/dev/null
    smol_round
    log "final2 done"
    ;;
*) echo "usage: $0 main|tune|smol|retune|resmol|probe|s6a|s6b|s6c|s6d|s7a|s7b|s7c|s7e|s7f|final1|final2"; exit 2 ;;
esac
cp "$S" "$OUT/summary.md" 2>/dev/null
tar czf "$OUT/logs.tgz" -C "$W" logs gpucheck 2>/dev/null
cat "$S"
