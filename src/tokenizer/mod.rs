//! Tokenizers built from GGUF metadata alone, matching llama.cpp's token ids: byte-level BPE
//! (`gpt2`, with llama.cpp's pre-tokenizer regexes) and SentencePiece-style (`llama`) with byte
//! fallback. Special tokens are found verbatim in text when asked.

mod bpe;
mod error;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod vocab;

pub use error::TokenizerError;
pub use stream::StreamDecoder;
pub use vocab::{ModelKind, TokenKind};

use crate::gguf::GgufFile;
use bpe::{BpeMerges, ByteMap};
use pretokenize::PreTokenizer;
use special::Fragment;
use vocab::Vocab;

const KEY_MERGES: &str = "tokenizer.ggml.merges";

enum Engine {
    BytePairs(Box<BytePairs>),
    SentencePiece,
}

struct BytePairs {
    merges: BpeMerges,
    pre: PreTokenizer,
    bytes: ByteMap,
}

pub struct Tokenizer {
    vocab: Vocab,
    engine: Engine,
    /// Special token ids, longest text first.
    special_order: Vec<u32>,
    /// The bytes each token stands for when decoding.
    pieces: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.vocab.model)
            .field("pre", &self.vocab.pre)
            .field("n_vocab", &self.n_vocab())
            .finish()
    }
}

impl Tokenizer {
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let vocab = Vocab::from_gguf(file)?;
        let engine = match vocab.model {
            ModelKind::SentencePiece => Engine::SentencePiece,
            ModelKind::BytePairs => {
                let path = || file.path().to_path_buf();
                let lines = file
                    .get(KEY_MERGES)
                    .ok_or_else(|| TokenizerError::MissingKey {
                        path: path(),
                        key: KEY_MERGES.to_string(),
                    })?
                    .as_array()
                    .ok_or_else(|| TokenizerError::WrongType {
                        path: path(),
                        key: KEY_MERGES.to_string(),
                        expected: "an array of strings",
                    })?;
                let merges = BpeMerges::new(&vocab, lines.iter().filter_map(|v| v.as_str()));
                let pre = PreTokenizer::for_name(&vocab.pre).ok_or_else(|| {
                    TokenizerError::UnsupportedPre {
                        path: path(),
                        pre: vocab.pre.clone(),
                    }
                })??;
                Engine::BytePairs(Box::new(BytePairs {
                    merges,
                    pre,
                    bytes: ByteMap::new(),
                }))
            }
        };
        let special_order = special::matching_order(&vocab);
        let pieces = (0..vocab.n_vocab())
            .map(|id| token_piece(&vocab, &engine, id))
            .collect();
        Ok(Tokenizer {
            vocab,
            engine,
            special_order,
            pieces,
        })
    }

    /// Text to token ids. `add_special` adds BOS/EOS where the model asks for them;
    /// `parse_special` turns special-token texts such as `<|im_start|>` into their ids
    /// (otherwise they are tokenized as plain text).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let specials = &self.vocab.specials;
        let fragments = special::partition(&self.vocab, &self.special_order, text, parse_special);
        let mut out = Vec::new();
        if add_special && specials.add_bos {
            out.extend(specials.bos);
        }
        match &self.engine {
            Engine::BytePairs(bp) => {
                let BytePairs { merges, pre, bytes } = bp.as_ref();
                for fragment in fragments {
                    match fragment {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text(t) => {
                            for (start, end) in pre.split(t) {
                                let word = bytes.encode(&t.as_bytes()[start..end]);
                                merges.encode_word(&self.vocab, &word, pre.ignore_merges, &mut out);
                            }
                        }
                    }
                }
            }
            Engine::SentencePiece => {
                // The prefix space goes at the start and after every special token.
                let mut after_special = true;
                for fragment in fragments {
                    match fragment {
                        Fragment::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                        Fragment::Text(t) => {
                            let prefix = if specials.add_space_prefix && after_special {
                                " "
                            } else {
                                ""
                            };
                            let escaped = format!("{prefix}{t}").replace(' ', spm::SPACE_MARK);
                            spm::encode(&self.vocab, &escaped, &mut out);
                            after_special = false;
                        }
                    }
                }
            }
        }
        if add_special && specials.add_eos {
            out.extend(specials.eos);
        }
        out
    }

    /// Token ids to text, special tokens shown as their text. Undoes `encode` exactly where the
    /// text is valid UTF-8 made of tokens: the prefix space that SentencePiece vocabularies add
    /// at the start and after special tokens is removed again. Unknown ids are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        let mut after_special = true;
        for &id in ids {
            let piece = self.token_bytes(id);
            if self.is_control(id) || self.kind(id) == Some(TokenKind::UserDefined) {
                bytes.extend_from_slice(piece);
                after_special = true;
                continue;
            }
            let strip = self.vocab.specials.add_space_prefix && after_special;
            bytes.extend_from_slice(match piece {
                [b' ', rest @ ..] if strip => rest,
                _ => piece,
            });
            after_special = false;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The bytes a token stands for (special tokens: their text). Empty for unknown ids.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// The token's text as stored in the vocabulary (byte-mapped or with `▁` for spaces).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts.get(id as usize).map(String::as_str)
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.ids.get(text).copied()
    }

    pub fn kind(&self, id: u32) -> Option<TokenKind> {
        self.vocab.kinds.get(id as usize).copied()
    }

    /// Control and unknown tokens: markup for the model, not text for the reader.
    pub fn is_control(&self, id: u32) -> bool {
        matches!(self.kind(id), Some(TokenKind::Control | TokenKind::Unknown))
    }

    pub fn model(&self) -> ModelKind {
        self.vocab.model
    }

    /// `tokenizer.ggml.pre` ("default" when absent).
    pub fn pre_tokenizer(&self) -> &str {
        &self.vocab.pre
    }

    pub fn n_vocab(&self) -> usize {
        self.vocab.n_vocab()
    }

    pub fn bos(&self) -> Option<u32> {
        self.vocab.specials.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.vocab.specials.eos
    }

    pub fn eot(&self) -> Option<u32> {
        self.vocab.specials.eot
    }

    /// Whether `encode(.., add_special = true, ..)` starts with BOS.
    pub fn adds_bos(&self) -> bool {
        self.vocab.specials.add_bos && self.vocab.specials.bos.is_some()
    }

    /// End of generation: eos, eot, eom and the end-of-turn tokens llama.cpp recognises.
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.binary_search(&id).is_ok()
    }

    pub fn eog_ids(&self) -> &[u32] {
        &self.vocab.eog
    }
}

/// What a token decodes to, following llama.cpp's `token_to_piece` with special tokens shown.
fn token_piece(vocab: &Vocab, engine: &Engine, id: usize) -> Vec<u8> {
    let text = &vocab.texts[id];
    match vocab.kinds[id] {
        TokenKind::Control | TokenKind::Unknown | TokenKind::UserDefined => {
            text.as_bytes().to_vec()
        }
        TokenKind::Normal => match engine {
            Engine::BytePairs(bp) => bp.bytes.decode(text),
            Engine::SentencePiece => text.replace(spm::SPACE_MARK, " ").into_bytes(),
        },
        TokenKind::Byte => match spm::parse_byte_token(text) {
            Some(b) => vec![b],
            None => text.as_bytes().to_vec(),
        },
        TokenKind::Unused | TokenKind::Undefined => Vec::new(),
    }
}
