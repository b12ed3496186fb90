use std::path::PathBuf;

/// Why a tokenizer could not be built from a GGUF file's metadata. Every variant names the file
/// and the metadata key (or token) at fault.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: metadata key '{key}' is missing (a tokenizer needs it)")]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: metadata key '{key}' has the wrong type: expected {expected}")]
    WrongType {
        path: PathBuf,
        key: String,
        expected: &'static str,
    },
    #[error("{path}: metadata key '{key}' has {found} entries but the vocabulary has {n_vocab}")]
    LengthMismatch {
        path: PathBuf,
        key: String,
        found: usize,
        n_vocab: usize,
    },
    #[error(
        "{path}: tokenizer model '{model}' is not supported (rocmforge knows 'gpt2' byte-level BPE and 'llama' SentencePiece)"
    )]
    UnsupportedModel { path: PathBuf, model: String },
    #[error("{path}: pre-tokenizer '{pre}' (tokenizer.ggml.pre) is not supported")]
    UnsupportedPre { path: PathBuf, pre: String },
    #[error(
        "{path}: metadata key '{key}' names token id {id}, outside the vocabulary of {n_vocab}"
    )]
    TokenOutOfRange {
        path: PathBuf,
        key: String,
        id: u64,
        n_vocab: usize,
    },
    #[error("{path}: the vocabulary is empty")]
    EmptyVocab { path: PathBuf },
    #[error("pre-tokenizer regex {pattern:?} does not compile: {message}")]
    BadRegex { pattern: String, message: String },
}
