//! The vocabulary as GGUF metadata describes it: token texts, kinds, scores, special ids and
//! flags, with llama.cpp's defaults and fix-ups so that our token ids agree with its ids.

use std::collections::HashMap;
use std::path::Path;

use super::error::TokenizerError;
use crate::gguf::{GgufFile, Value};

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenKind {
    fn from_gguf(v: i64) -> TokenKind {
        match v {
            1 => TokenKind::Normal,
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            5 => TokenKind::Unused,
            6 => TokenKind::Byte,
            _ => TokenKind::Undefined,
        }
    }

    /// Tokens found verbatim in text before the model's own segmentation runs.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown
        )
    }
}

/// Which segmentation algorithm `tokenizer.ggml.model` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// `gpt2`: byte-level BPE with merge ranks and a pre-tokenizer.
    BytePairs,
    /// `llama`: SentencePiece-style merges by score, with `<0xXX>` byte fallback.
    SentencePiece,
}

/// Special ids and flags read from metadata (after llama.cpp's per-model defaults).
#[derive(Debug, Clone, Default)]
pub struct Specials {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
}

pub struct Vocab {
    pub model: ModelKind,
    /// `tokenizer.ggml.pre`, "default" when absent.
    pub pre: String,
    pub texts: Vec<String>,
    pub kinds: Vec<TokenKind>,
    pub scores: Vec<f32>,
    /// Text to id; for duplicate texts the last id wins, as in llama.cpp.
    pub ids: HashMap<String, u32>,
    pub specials: Specials,
    /// End-of-generation ids, sorted.
    pub eog: Vec<u32>,
}

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_SCORES: &str = "tokenizer.ggml.scores";

/// Texts llama.cpp treats as end-of-turn even when metadata names no eot id; it also marks them
/// as control tokens. Kept as data so token names appear only here.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Texts llama.cpp takes as the eot token when metadata names none, in order of preference.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Fill-in-the-middle texts that llama.cpp promotes to control tokens (so they are matched as
/// special tokens); the pad, repo and file-separator kinds also end generation.
const FIM_CONTROL_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_EOG_TEXTS: &[&str] = &[
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "[PAD]",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
];

struct Meta<'a> {
    file: &'a GgufFile,
}

impl<'a> Meta<'a> {
    fn path(&self) -> &Path {
        self.file.path()
    }

    fn str_opt(&self, key: &str) -> Result<Option<&'a str>, TokenizerError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(key, "a string")),
        }
    }

    fn bool_opt(&self, key: &str) -> Result<Option<bool>, TokenizerError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a bool")),
        }
    }

    /// A token id key; out-of-range ids are an error rather than a silent fallback.
    fn id_opt(&self, key: &str, n_vocab: usize) -> Result<Option<u32>, TokenizerError> {
        let Some(v) = self.file.get(key) else {
            return Ok(None);
        };
        let id = v
            .as_u64()
            .ok_or_else(|| self.wrong(key, "an unsigned integer"))?;
        if id as usize >= n_vocab {
            return Err(TokenizerError::TokenOutOfRange {
                path: self.path().to_path_buf(),
                key: key.to_string(),
                id,
                n_vocab,
            });
        }
        Ok(Some(id as u32))
    }

    fn array_opt(&self, key: &str) -> Result<Option<&'a [Value]>, TokenizerError> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_array()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "an array")),
        }
    }

    fn wrong(&self, key: &str, expected: &'static str) -> TokenizerError {
        TokenizerError::WrongType {
            path: self.path().to_path_buf(),
            key: key.to_string(),
            expected,
        }
    }

    fn missing(&self, key: &str) -> TokenizerError {
        TokenizerError::MissingKey {
            path: self.path().to_path_buf(),
            key: key.to_string(),
        }
    }

    fn check_len(&self, key: &str, found: usize, n_vocab: usize) -> Result<(), TokenizerError> {
        if found < n_vocab {
            return Err(TokenizerError::LengthMismatch {
                path: self.path().to_path_buf(),
                key: key.to_string(),
                found,
                n_vocab,
            });
        }
        Ok(())
    }
}

impl Vocab {
    pub fn from_gguf(file: &GgufFile) -> Result<Vocab, TokenizerError> {
        let meta = Meta { file };
        let model_name = meta
            .str_opt(KEY_MODEL)?
            .ok_or_else(|| meta.missing(KEY_MODEL))?;
        let model = match model_name {
            "gpt2" => ModelKind::BytePairs,
            "llama" => ModelKind::SentencePiece,
            other => {
                return Err(TokenizerError::UnsupportedModel {
                    path: file.path().to_path_buf(),
                    model: other.to_string(),
                })
            }
        };
        let pre = meta.str_opt(KEY_PRE)?.unwrap_or("default").to_string();

        let tokens = meta
            .array_opt(KEY_TOKENS)?
            .ok_or_else(|| meta.missing(KEY_TOKENS))?;
        if tokens.is_empty() {
            return Err(TokenizerError::EmptyVocab {
                path: file.path().to_path_buf(),
            });
        }
        let n_vocab = tokens.len();
        let mut texts = Vec::with_capacity(n_vocab);
        for (i, t) in tokens.iter().enumerate() {
            let s = t
                .as_str()
                .ok_or_else(|| meta.wrong(KEY_TOKENS, "strings"))?;
            // llama.cpp renames empty tokens so that every text maps back to one id.
            texts.push(if s.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                s.to_string()
            });
        }

        let mut kinds = vec![TokenKind::Normal; n_vocab];
        if let Some(types) = meta.array_opt(KEY_TYPES)? {
            meta.check_len(KEY_TYPES, types.len(), n_vocab)?;
            for (k, v) in kinds.iter_mut().zip(types) {
                let v = v
                    .as_i64()
                    .ok_or_else(|| meta.wrong(KEY_TYPES, "integers"))?;
                *k = TokenKind::from_gguf(v);
            }
        }
        let mut scores = vec![0.0f32; n_vocab];
        if let Some(values) = meta.array_opt(KEY_SCORES)? {
            meta.check_len(KEY_SCORES, values.len(), n_vocab)?;
            for (s, v) in scores.iter_mut().zip(values) {
                *s = v
                    .as_f64()
                    .ok_or_else(|| meta.wrong(KEY_SCORES, "numbers"))? as f32;
            }
        }

        let mut ids = HashMap::with_capacity(n_vocab);
        for (i, t) in texts.iter().enumerate() {
            ids.insert(t.clone(), i as u32);
        }

        let specials = read_specials(&meta, model, &pre, n_vocab)?;
        let mut vocab = Vocab {
            model,
            pre,
            texts,
            kinds,
            scores,
            ids,
            specials,
            eog: Vec::new(),
        };
        vocab.mark_end_of_generation(&meta)?;
        Ok(vocab)
    }

    pub fn n_vocab(&self) -> usize {
        self.texts.len()
    }

    /// llama.cpp's fix-ups: the eot id is guessed from well-known texts when metadata has none,
    /// well-known end/FIM texts become control tokens, and the end-of-generation set is built.
    fn mark_end_of_generation(&mut self, meta: &Meta) -> Result<(), TokenizerError> {
        let n_vocab = self.n_vocab();
        let eom = meta.id_opt("tokenizer.ggml.eom_token_id", n_vocab)?;
        let mut eog: Vec<u32> = Vec::new();
        for key in [
            "tokenizer.ggml.fim_pad_token_id",
            "tokenizer.ggml.fim_rep_token_id",
            "tokenizer.ggml.fim_sep_token_id",
        ] {
            eog.extend(meta.id_opt(key, n_vocab)?);
        }
        let lookup = |texts: &[&str], ids: &HashMap<String, u32>| -> Vec<u32> {
            texts.iter().filter_map(|t| ids.get(*t).copied()).collect()
        };
        let eog_by_text = lookup(EOG_TEXTS, &self.ids);
        let fim_eog = lookup(FIM_EOG_TEXTS, &self.ids);
        let fim_control = lookup(FIM_CONTROL_TEXTS, &self.ids);
        if self.specials.eot.is_none() {
            self.specials.eot = lookup(EOT_TEXTS, &self.ids).first().copied();
        }
        self.specials.eom = eom.or_else(|| self.ids.get("<|eom_id|>").copied());
        for &id in eog_by_text.iter().chain(&fim_eog).chain(&fim_control) {
            let kind = &mut self.kinds[id as usize];
            if !matches!(*kind, TokenKind::Control | TokenKind::Unknown) {
                *kind = TokenKind::Control;
            }
        }
        eog.extend(fim_eog);
        eog.extend(eog_by_text);
        eog.extend(self.specials.eos);
        eog.extend(self.specials.eot);
        eog.extend(self.specials.eom);
        eog.sort_unstable();
        eog.dedup();
        self.eog = eog;
        Ok(())
    }
}

fn read_specials(
    meta: &Meta,
    model: ModelKind,
    pre: &str,
    n_vocab: usize,
) -> Result<Specials, TokenizerError> {
    // llama.cpp's defaults per model kind, applied before metadata overrides them.
    let mut s = match model {
        ModelKind::SentencePiece => Specials {
            bos: Some(1),
            eos: Some(2),
            unk: Some(0),
            add_bos: true,
            add_space_prefix: true,
            ..Specials::default()
        },
        ModelKind::BytePairs => Specials {
            bos: Some(11),
            eos: Some(11),
            add_bos: super::pretokenize::adds_bos_by_default(pre),
            ..Specials::default()
        },
    };
    let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n_vocab);
    s.bos = in_range(s.bos);
    s.eos = in_range(s.eos);
    s.unk = in_range(s.unk);
    let keys: [(&str, &mut Option<u32>); 5] = [
        ("tokenizer.ggml.bos_token_id", &mut s.bos),
        ("tokenizer.ggml.eos_token_id", &mut s.eos),
        ("tokenizer.ggml.eot_token_id", &mut s.eot),
        ("tokenizer.ggml.unknown_token_id", &mut s.unk),
        ("tokenizer.ggml.padding_token_id", &mut s.pad),
    ];
    for (key, slot) in keys {
        if let Some(id) = meta.id_opt(key, n_vocab)? {
            *slot = Some(id);
        }
    }
    if let Some(b) = meta.bool_opt("tokenizer.ggml.add_bos_token")? {
        s.add_bos = b;
    }
    if let Some(b) = meta.bool_opt("tokenizer.ggml.add_eos_token")? {
        s.add_eos = b;
    }
    if let Some(b) = meta.bool_opt("tokenizer.ggml.add_space_prefix")? {
        s.add_space_prefix = b;
    }
    if model == ModelKind::BytePairs {
        // Byte-level BPE encodes spaces itself; llama.cpp never inserts the prefix space there.
        s.add_space_prefix = false;
    }
    Ok(s)
}
