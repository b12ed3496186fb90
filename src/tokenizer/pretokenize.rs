//! Pre-tokenizers of byte-level BPE vocabularies: the regexes llama.cpp uses for each value of
//! `tokenizer.ggml.pre`, applied in sequence. Each regex splits every piece left by the previous
//! one; matches and the text between them both become pieces, and a piece's ends act as the ends
//! of the text for lookahead (llama.cpp's `unicode_regex_split`).

use fancy_regex::Regex;

use super::error::TokenizerError;

/// One family of pre-tokenizer names sharing a regex list and llama.cpp's flags for them.
struct PreSpec {
    names: &'static [&'static str],
    regexes: &'static [&'static str],
    /// Whole pieces already in the vocabulary skip the merges.
    ignore_merges: bool,
    /// llama.cpp adds BOS for these unless `tokenizer.ggml.add_bos_token` says otherwise.
    add_bos: bool,
}

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const BLOOM: &str = r" ?[^(\s|.,!?…。，、।۔،)]+";

const SPECS: &[PreSpec] = &[
    PreSpec {
        names: &["default"],
        regexes: &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
        ],
        regexes: &[LLAMA3],
        ignore_merges: true,
        add_bos: true,
    },
    PreSpec {
        names: &["dbrx", "smaug-bpe"],
        regexes: &[LLAMA3],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["falcon"],
        regexes: &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &[
            "starcoder",
            "refact",
            "command-r",
            "smollm",
            "codeshell",
            "exaone",
            "minerva-7b",
            "mellum2",
        ],
        regexes: &[r"\p{N}", GPT2],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &[
            "gpt-2",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v2-es",
            "jina-v2-de",
            "a.x-4.0",
            "mellum",
            "modern-bert",
            "mpt",
            "olmo",
            "jais",
            "trillion",
            "granite-docling",
            "exaone4",
        ],
        regexes: &[GPT2],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &[
            "qwen2",
            "deepseek-r1-qwen",
            "kormo",
            "f2llmv2",
            "megrez",
            "stablelm2",
            "hunyuan",
            "solar-open",
            "grok-2",
        ],
        regexes: &[QWEN2],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["qwen35"],
        regexes: &[QWEN35],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"],
        regexes: &[GPT4O],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["tekken"],
        regexes: &[TEKKEN],
        ignore_merges: true,
        add_bos: true,
    },
    PreSpec {
        names: &["poro-chat", "bloom", "gpt3-finnish"],
        regexes: &[BLOOM],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["viking"],
        regexes: &[BLOOM, r"\p{N}"],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["seed-coder"],
        regexes: &[
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["deepseek-coder"],
        regexes: &[
            r"[\r\n]",
            r"\s?\p{L}+",
            r"\s?\p{P}+",
            r"[一-龥ࠀ-一가-퟿]+",
            r"\p{N}",
        ],
        ignore_merges: false,
        add_bos: false,
    },
];

fn spec_for(pre: &str) -> Option<&'static PreSpec> {
    SPECS.iter().find(|s| s.names.contains(&pre))
}

/// Whether llama.cpp adds BOS by default for this pre-tokenizer name.
pub fn adds_bos_by_default(pre: &str) -> bool {
    spec_for(pre).is_some_and(|s| s.add_bos)
}

pub struct PreTokenizer {
    regexes: Vec<Regex>,
    pub ignore_merges: bool,
}

impl PreTokenizer {
    /// `None` when the name is unknown; the caller turns that into an error naming the file.
    pub fn for_name(pre: &str) -> Option<Result<PreTokenizer, TokenizerError>> {
        let spec = spec_for(pre)?;
        let compiled = spec
            .regexes
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|e| TokenizerError::BadRegex {
                    pattern: p.to_string(),
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>();
        Some(compiled.map(|regexes| PreTokenizer {
            regexes,
            ignore_merges: spec.ignore_merges,
        }))
    }

    /// Splits `text` into pieces (byte ranges into `text`, in order, covering all of it).
    pub fn split(&self, text: &str) -> Vec<(usize, usize)> {
        let mut pieces = vec![(0, text.len())];
        for re in &self.regexes {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for &(start, end) in &pieces {
                split_one(re, text, start, end, &mut next);
            }
            pieces = next;
        }
        pieces
    }
}

fn split_one(re: &Regex, text: &str, start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let piece = &text[start..end];
    let mut last = 0;
    for m in re.find_iter(piece) {
        // A regex that gives up (backtrack limit) leaves the rest of the piece whole.
        let Ok(m) = m else { break };
        if m.start() > last {
            out.push((start + last, start + m.start()));
        }
        if m.end() > m.start() {
            out.push((start + m.start(), start + m.end()));
        }
        last = m.end();
    }
    if last < piece.len() {
        out.push((start + last, end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces<'a>(pre: &str, text: &'a str) -> Vec<&'a str> {
        let p = PreTokenizer::for_name(pre).unwrap().unwrap();
        p.split(text)
            .into_iter()
            .map(|(s, e)| &text[s..e])
            .collect()
    }

    #[test]
    fn every_regex_compiles() {
        for spec in SPECS {
            for name in spec.names {
                assert!(PreTokenizer::for_name(name).unwrap().is_ok(), "{name}");
            }
        }
        assert!(PreTokenizer::for_name("no-such-pre").is_none());
    }

    #[test]
    fn gpt2_style_split_keeps_space_before_words_and_last_space_of_runs() {
        assert_eq!(
            pieces("gpt-2", "Hello world's  end\n"),
            ["Hello", " world", "'s", " ", " end", "\n"]
        );
    }

    #[test]
    fn smollm_isolates_every_digit_first() {
        assert_eq!(pieces("smollm", "ab 1234"), ["ab", " ", "1", "2", "3", "4"]);
    }

    #[test]
    fn llama3_groups_digits_by_three() {
        assert_eq!(pieces("llama-bpe", "x 12345"), ["x", " ", "123", "45"]);
    }
}
