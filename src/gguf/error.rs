use std::path::PathBuf;

/// Everything that can be wrong with a GGUF file. Each variant names the file; parse errors also
/// give the byte offset where the problem was found.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: cannot read the file: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a GGUF file (magic bytes are {found:?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, found: [u8; 4] },
    #[error("{path}: GGUF version {version} is not supported (rocmforge reads versions 2 and 3)")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{path}: {what} (at byte {offset})")]
    Malformed {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("{path}: tensor '{tensor}' has type id {id}, which is not a GGML type")]
    UnknownTypeId {
        path: PathBuf,
        tensor: String,
        id: u32,
    },
    #[error(
        "{path}: tensor '{tensor}' has type {ty}, which rocmforge does not support (supported: {supported})"
    )]
    UnsupportedType {
        path: PathBuf,
        tensor: String,
        ty: String,
        supported: String,
    },
    #[error("{path}: metadata key '{key}' {what}")]
    Metadata {
        path: PathBuf,
        key: String,
        what: String,
    },
}
