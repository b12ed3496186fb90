#!/usr/bin/env bash
# Puts llama.cpp's vocab-only GGUF files (used by tests/tokenizer.rs) into .peers/vocab/ under
# the repository root, or into $ROCMFORGE_VOCAB_DIR when set. They come from the PyPI sdist of
# llama-cpp-python, which vendors llama.cpp's models/ directory. Needs pip and network access.
set -euo pipefail

VERSION=0.3.36
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${ROCMFORGE_VOCAB_DIR:-$ROOT/.peers/vocab}"
VOCABS="qwen2 llama-bpe llama-spm gpt-2 gpt-neox starcoder falcon deepseek-coder"

mkdir -p "$DEST"
missing=""
for v in $VOCABS; do
    [ -f "$DEST/ggml-vocab-$v.gguf" ] || missing="$missing $v"
done
if [ -z "$missing" ]; then
    echo "vocabularies already in $DEST"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
pip download --quiet --no-deps --no-binary=llama-cpp-python "llama-cpp-python==$VERSION" -d "$TMP"
SDIST="$TMP/llama_cpp_python-$VERSION.tar.gz"
members=""
for v in $missing; do
    members="$members llama_cpp_python-$VERSION/vendor/llama.cpp/models/ggml-vocab-$v.gguf"
done
# shellcheck disable=SC2086 # the member list is meant to split into words
tar -xzf "$SDIST" -C "$TMP" $members
for v in $missing; do
    mv "$TMP/llama_cpp_python-$VERSION/vendor/llama.cpp/models/ggml-vocab-$v.gguf" "$DEST/"
done
echo "vocabularies in $DEST:$missing"
