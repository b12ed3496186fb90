#!/usr/bin/env bash
# One device session's calls (each under the 10-minute limit; one call carries at most 64 MiB, so
# the binaries, llama.cpp's source and the two halves of SmolLM2 travel separately: see
# tools/device/pack.sh). Builds nothing of ours: the binaries come prebuilt in .devbin/.
# Everything persists under /tmp/rf while the machine stays warm (it is released after about 30 s
# idle); results land in $OUT. Earlier sessions' phases are in the git history.
#   s8a  (fresh, .devbin/rocmforge): ncu detail of every decode kernel at tg128's positions;
#        tune llama3-8b Q8_0/Q4_0 and qwen2.5-0.5b Q8_0 at position 64, benched before and after.
#   s8b  (fresh, .devbin/rocmforge and gpu_ops): every decode attention candidate against the
#        CPU and timed at positions 64 and 512; qwen2.5-0.5b benched before and after tuning.
#   s8c  (fresh, .devbin/rocmforge, .devcarry/llamacpp-src.tar.xz, .devcarry/smol.part1): the
#        defaults verified against the CPU and benched beside llama.cpp built in the same call.
#   s8d  (right after s8c, .devcarry/smol.part2, .devbin/gpu_model): SmolLM2 verified and
#        benched beside llama.cpp, the GPU model tests, time to first token.
#   s8e  (fresh, .devbin/rocmforge, .devcarry/llamacpp-src.tar.xz): llama3-8b Q8_0 tuned and
#        benched beside llama.cpp built in the same call.
#   s8f  (right after s8e): the same with a tuning budget that reaches every kernel.
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
        && cmake --build $W/llama/build -j \$(nproc) --target llama-bench; echo BUILD_EXIT \$?" \
        > "$W/logs/llama-build.log" 2>&1 < /dev/null &
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

wait_for() { # marker log: until the log (under $W/logs) holds the marker, at most 400 s
    for _ in $(seq 200); do grep -q "$1" "$W/logs/$2" 2>/dev/null && return; sleep 2; done
}

wait_for_peer() { # the llama.cpp build and the 8B files
    wait_for BUILD_EXIT llama-build.log
    wait_for SYNTH_DONE synth8b.log
}

case ${1:-} in
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
    wait_for SYNTH_DONE synth8b.log
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
s8e)
    # Fresh machine (carry .devbin/rocmforge, .devcarry/llamacpp-src.tar.xz): llama3-8b Q8_0
    # tuned and benched beside llama.cpp built in the same call (the build is the long pole).
    start_llama_build
    synth l8b-Q8_0 llama3-8b Q8_0
    tune l8b-Q8_0 40 --only matmul_gemv --only attention --decode-pos 64
    wait_for BUILD_EXIT llama-build.log
    table_header "llama3-8b Q8_0 after tune"
    bench l8b-Q8_0
    log "s8e done"
    ;;
s8f)
    # Right after s8e (nothing to carry): llama3-8b Q8_0 tuned with a budget that reaches every
    # kernel (s8e's 40 s ran out at the down projection), benched beside s8e's llama.cpp build.
    tune l8b-Q8_0 60 --only matmul_gemv --only attention --decode-pos 64
    table_header "llama3-8b Q8_0 after the full tune"
    bench l8b-Q8_0
    log "s8f done"
    ;;
*) echo "usage: $0 s8a|s8b|s8c|s8d|s8e|s8f"; exit 2 ;;
esac
cp "$S" "$OUT/summary.md" 2>/dev/null
tar czf "$OUT/logs.tgz" -C "$W" logs gpucheck 2>/dev/null
cat "$S"
