//! Tokenizer metadata for synthetic models.

use crate::gguf::{GgufFile, Value, ValueType};

/// Every `tokenizer.*` key of `src`, with the per-token arrays padded by unused tokens up to
/// `n_vocab` so that the embedding and output shapes of the target model are kept.
pub fn copied(src: &GgufFile, n_vocab: usize) -> Vec<(String, Value)> {
    src.metadata
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .map(|(k, v)| {
            let padded = match (k.as_str(), v) {
                ("tokenizer.ggml.tokens", Value::Array(t, items)) => pad(*t, items, n_vocab, |i| {
                    Value::String(format!("<unused_{i}>"))
                }),
                // 5 = unused in llama.cpp's token types.
                ("tokenizer.ggml.token_type", Value::Array(t, items)) => {
                    pad(*t, items, n_vocab, |_| Value::I32(5))
                }
                ("tokenizer.ggml.scores", Value::Array(t, items)) => {
                    pad(*t, items, n_vocab, |_| Value::F32(0.0))
                }
                _ => v.clone(),
            };
            (k.clone(), padded)
        })
        .collect()
}

fn pad(t: ValueType, items: &[Value], n: usize, fill: impl Fn(usize) -> Value) -> Value {
    let mut out = items.to_vec();
    for i in items.len()..n {
        out.push(fill(i));
    }
    Value::Array(t, out)
}

/// A GPT-2 byte-level vocabulary: the 256 byte symbols, an end-of-text token, and unused tokens
/// up to `n_vocab`. No merges: every byte is its own token. Enough to run a random model.
pub fn byte_level(n_vocab: usize) -> Vec<(String, Value)> {
    let mut tokens: Vec<Value> = (0u8..=255)
        .map(|b| Value::String(byte_symbol(b).to_string()))
        .collect();
    let mut types: Vec<Value> = vec![Value::I32(1); 256];
    tokens.push(Value::String("<|endoftext|>".into()));
    types.push(Value::I32(3));
    while tokens.len() < n_vocab {
        tokens.push(Value::String(format!("<unused_{}>", tokens.len())));
        types.push(Value::I32(5));
    }
    vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("default".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(ValueType::String, tokens),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(ValueType::I32, types),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(ValueType::String, vec![]),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(256)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(256)),
    ]
}

/// GPT-2's printable stand-in for a byte: printable Latin-1 bytes stand for themselves, the rest
/// map to code points from 256 up, in byte order.
fn byte_symbol(b: u8) -> char {
    let printable = |c: u8| {
        (b'!'..=b'~').contains(&c) || (0xA1..=0xAC).contains(&c) || (0xAE..=0xFF).contains(&c)
    };
    if printable(b) {
        return b as char;
    }
    let rank = (0..b).filter(|&c| !printable(c)).count() as u32;
    char::from_u32(256 + rank).expect("valid code point")
}
