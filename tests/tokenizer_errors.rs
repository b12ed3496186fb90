//! Bad tokenizer metadata gives errors that name the key, never a panic. The GGUF files are built
//! byte by byte here (format: github.com/ggml-org/ggml/blob/master/docs/gguf.md).

use rocmforge::chat::ChatTemplate;
use rocmforge::gguf::GgufFile;
use rocmforge::tokenizer::{Tokenizer, TokenizerError};

enum Meta<'a> {
    Str(&'a str),
    U32(u32),
    Bool(bool),
    Strs(&'a [&'a str]),
    I32s(&'a [i32]),
}

fn gguf(kvs: &[(&str, Meta)]) -> GgufFile {
    let mut b = Vec::new();
    let string = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    };
    b.extend(b"GGUF");
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    for (key, value) in kvs {
        string(&mut b, key);
        match value {
            Meta::Str(s) => {
                b.extend(8u32.to_le_bytes());
                string(&mut b, s);
            }
            Meta::U32(v) => {
                b.extend(4u32.to_le_bytes());
                b.extend(v.to_le_bytes());
            }
            Meta::Bool(v) => {
                b.extend(7u32.to_le_bytes());
                b.push(*v as u8);
            }
            Meta::Strs(items) => {
                b.extend(9u32.to_le_bytes());
                b.extend(8u32.to_le_bytes());
                b.extend((items.len() as u64).to_le_bytes());
                for s in *items {
                    string(&mut b, s);
                }
            }
            Meta::I32s(items) => {
                b.extend(9u32.to_le_bytes());
                b.extend(5u32.to_le_bytes());
                b.extend((items.len() as u64).to_le_bytes());
                for v in *items {
                    b.extend(v.to_le_bytes());
                }
            }
        }
    }
    while b.len() % 32 != 0 {
        b.push(0);
    }
    GgufFile::from_bytes("synthetic.gguf", b).expect("synthetic GGUF parses")
}

const TOKENS: &[&str] = &["<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "ab"];

fn build(kvs: &[(&str, Meta)]) -> Result<Tokenizer, TokenizerError> {
    Tokenizer::from_gguf(&gguf(kvs))
}

#[test]
fn missing_model_key_is_named() {
    let err = build(&[("tokenizer.ggml.tokens", Meta::Strs(TOKENS))]).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::MissingKey { key, .. } if key == "tokenizer.ggml.model")
    );
    assert!(err.to_string().contains("synthetic.gguf"), "{err}");
}

#[test]
fn unknown_model_and_pre_tokenizer_are_rejected() {
    let err = build(&[
        ("tokenizer.ggml.model", Meta::Str("bert")),
        ("tokenizer.ggml.tokens", Meta::Strs(TOKENS)),
    ])
    .unwrap_err();
    assert!(
        matches!(err, TokenizerError::UnsupportedModel { .. }),
        "{err}"
    );
    let err = build(&[
        ("tokenizer.ggml.model", Meta::Str("gpt2")),
        ("tokenizer.ggml.pre", Meta::Str("no-such-pre")),
        ("tokenizer.ggml.tokens", Meta::Strs(TOKENS)),
        ("tokenizer.ggml.merges", Meta::Strs(&["a b"])),
    ])
    .unwrap_err();
    assert!(matches!(&err, TokenizerError::UnsupportedPre { pre, .. } if pre == "no-such-pre"));
}

#[test]
fn bpe_without_merges_is_an_error() {
    let err = build(&[
        ("tokenizer.ggml.model", Meta::Str("gpt2")),
        ("tokenizer.ggml.tokens", Meta::Strs(TOKENS)),
    ])
    .unwrap_err();
    assert!(
        matches!(&err, TokenizerError::MissingKey { key, .. } if key == "tokenizer.ggml.merges")
    );
}

#[test]
fn out_of_range_ids_and_short_arrays_are_errors() {
    let err = build(&[
        ("tokenizer.ggml.model", Meta::Str("llama")),
        ("tokenizer.ggml.tokens", Meta::Strs(TOKENS)),
        ("tokenizer.ggml.eos_token_id", Meta::U32(99)),
    ])
    .unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::TokenOutOfRange {
                id: 99,
                n_vocab: 8,
                ..
            }
        ),
        "{err}"
    );
    let err = build(&[
        ("tokenizer.ggml.model", Meta::Str("llama")),
        ("tokenizer.ggml.tokens", Meta::Strs(TOKENS)),
        ("tokenizer.ggml.token_type", Meta::I32s(&[1, 1])),
    ])
    .unwrap_err();
    assert!(
        matches!(err, TokenizerError::LengthMismatch { found: 2, .. }),
        "{err}"
    );
    let err = build(&[
        ("tokenizer.ggml.model", Meta::Str("llama")),
        ("tokenizer.ggml.tokens", Meta::Strs(TOKENS)),
        ("tokenizer.ggml.add_bos_token", Meta::U32(1)),
    ])
    .unwrap_err();
    assert!(matches!(err, TokenizerError::WrongType { .. }), "{err}");
}

#[test]
fn tiny_sentencepiece_vocab_merges_and_drops_unknown_bytes() {
    let tok = build(&[
        ("tokenizer.ggml.model", Meta::Str("llama")),
        ("tokenizer.ggml.tokens", Meta::Strs(TOKENS)),
        (
            "tokenizer.ggml.token_type",
            Meta::I32s(&[2, 3, 3, 1, 1, 1, 1, 1]),
        ),
        ("tokenizer.ggml.add_bos_token", Meta::Bool(true)),
    ])
    .unwrap();
    // " ab" -> "▁ab": "▁a" and "ab" are both tokens with score 0; the leftmost pair merges first.
    assert_eq!(tok.encode("ab", true, false), [1, 6, 5]);
    // "c" is no token and there are no <0xXX> tokens: it is dropped, as in llama.cpp.
    assert_eq!(tok.encode("abc", false, false), [6, 5]);
    assert_eq!(tok.decode(&[1, 6, 5]), "<s>ab");
    assert!(tok.is_eog(2) && !tok.is_eog(1));
    assert_eq!(tok.token_bytes(1000), b"");
}

#[test]
fn no_chat_template_is_none() {
    let file = gguf(&[("tokenizer.ggml.model", Meta::Str("llama"))]);
    assert!(ChatTemplate::from_gguf(&file).unwrap().is_none());
}
