#!/usr/bin/env bash
# The test command: fetches what the tests read (SmolLM2, llama.cpp's vocabulary files), points
# NVRTC at the PyPI wheels, and runs every test. GPU tests print why they skip where no GPU is.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/fetch_smollm2.sh > /dev/null
[ -x tools/fetch_vocabs.sh ] && tools/fetch_vocabs.sh > /dev/null
# shellcheck source=/dev/null
[ -f tools/ci/env.sh ] && source tools/ci/env.sh
cargo test --all-targets "$@"
