#!/usr/bin/env bash
# Puts llama.cpp's vocab-only GGUF files, with the upstream test strings and their Hugging Face
# token ids (*.gguf.inp / *.gguf.out) where they exist, into .peers/vocab/ under the repository
# root, or into $ROCMFORGE_VOCAB_DIR when set. Used by tests/tokenizer.rs. They come from the PyPI
# sdist of llama-cpp-python, which vendors llama.cpp's models/ directory. Needs pip and network.
set -euo pipefail

VERSION=0.3.36
STAMP_REV=2  # bump when VOCABS changes
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${ROCMFORGE_VOCAB_DIR:-$ROOT/.peers/vocab}"
VOCABS="qwen2 qwen35 llama-bpe llama-spm gpt-2 gpt-neox starcoder falcon deepseek-coder"
STAMP="$DEST/.fetched-llama-cpp-python-$VERSION-r$STAMP_REV"

if [ -f "$STAMP" ]; then
    echo "vocabularies already in $DEST"
    exit 0
fi
mkdir -p "$DEST"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
pip download --quiet --no-deps --no-binary=llama-cpp-python "llama-cpp-python==$VERSION" -d "$TMP"
MODELS="llama_cpp_python-$VERSION/vendor/llama.cpp/models"
patterns=""
for v in $VOCABS; do
    patterns="$patterns $MODELS/ggml-vocab-$v.gguf*"
done
# shellcheck disable=SC2086 # the pattern list is meant to split into words
tar -xzf "$TMP/llama_cpp_python-$VERSION.tar.gz" -C "$TMP" --wildcards $patterns
mv "$TMP/$MODELS"/ggml-vocab-* "$DEST/"
touch "$STAMP"
echo "vocabularies in $DEST: $VOCABS"
