//! Byte-level BPE (GPT-2 style): bytes are mapped to printable characters, then adjacent
//! symbols are merged by rank, lowest rank first and leftmost first on ties, as llama.cpp does.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::vocab::Vocab;

/// GPT-2's reversible map from bytes to characters: printable Latin-1 bytes stand for
/// themselves, the others are moved to U+0100 and up so that no token text holds a control byte.
pub struct ByteMap {
    to_char: Box<[char; 256]>,
    to_byte: HashMap<char, u8>,
}

impl ByteMap {
    pub fn new() -> ByteMap {
        let mut to_char = Box::new(['\0'; 256]);
        let mut next = 256u32;
        for b in 0..=255u8 {
            let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
            let c = if printable {
                b as u32
            } else {
                next += 1;
                next - 1
            };
            to_char[b as usize] = char::from_u32(c).expect("all values are below U+0200");
        }
        let to_byte = to_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        ByteMap { to_char, to_byte }
    }

    pub fn encode(&self, bytes: &[u8]) -> String {
        bytes.iter().map(|&b| self.to_char[b as usize]).collect()
    }

    /// Token text back to bytes. A character outside the map (not produced by `encode`) is kept
    /// as its UTF-8 bytes.
    pub fn decode(&self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            match self.to_byte.get(&c) {
                Some(&b) => out.push(b),
                None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        out
    }
}

/// A symbol id for a string that takes part in merges and is not itself a token.
type SymbolId = u32;
const NO_SYMBOL: SymbolId = u32::MAX;

pub struct BpeMerges {
    /// Merge operands and results that are not token texts, with ids from `n_vocab` up (token
    /// texts use their token id).
    extra_symbols: HashMap<String, SymbolId>,
    /// (left, right) -> (rank, merged symbol).
    ranks: HashMap<(SymbolId, SymbolId), (u32, SymbolId)>,
    n_vocab: u32,
}

impl BpeMerges {
    /// `merges` are "left right" strings, rank = position. A line without a separating space
    /// (after its first character) is skipped; for a repeated pair the first rank wins.
    pub fn new<'a>(vocab: &Vocab, merges: impl Iterator<Item = &'a str>) -> BpeMerges {
        let n_vocab = vocab.n_vocab() as u32;
        let mut extra_symbols: HashMap<String, SymbolId> = HashMap::new();
        let mut intern = |s: &str| -> SymbolId {
            if let Some(&id) = vocab.ids.get(s) {
                return id;
            }
            if let Some(&id) = extra_symbols.get(s) {
                return id;
            }
            let id = n_vocab + extra_symbols.len() as u32;
            extra_symbols.insert(s.to_string(), id);
            id
        };
        let mut ranks = HashMap::new();
        let mut merged = String::new();
        for (rank, line) in merges.enumerate() {
            let Some(split) = line
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(i, _)| i)
            else {
                continue;
            };
            let (left, right) = (&line[..split], &line[split + 1..]);
            merged.clear();
            merged.push_str(left);
            merged.push_str(right);
            let key = (intern(left), intern(right));
            let result = intern(&merged);
            ranks.entry(key).or_insert((rank as u32, result));
        }
        BpeMerges {
            extra_symbols,
            ranks,
            n_vocab,
        }
    }

    fn symbol(&self, vocab: &Vocab, s: &str) -> SymbolId {
        match vocab.ids.get(s) {
            Some(&id) => id,
            None => self.extra_symbols.get(s).copied().unwrap_or(NO_SYMBOL),
        }
    }

    /// Appends the tokens of one pre-tokenized piece, already byte-mapped.
    pub fn encode_word(&self, vocab: &Vocab, word: &str, ignore_merges: bool, out: &mut Vec<u32>) {
        if ignore_merges {
            if let Some(&id) = vocab.ids.get(word) {
                out.push(id);
                return;
            }
        }
        let mut syms: Vec<Sym> = Vec::with_capacity(word.len());
        for (i, c) in word.char_indices() {
            let end = i + c.len_utf8();
            let id = self.symbol(vocab, &word[i..end]);
            syms.push(Sym { start: i, end, id });
        }
        let n = syms.len();
        // Doubly linked list over `syms`; merged-away symbols get start == end.
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut queue = BinaryHeap::new();
        let push = |queue: &mut BinaryHeap<_>, syms: &[Sym], l: usize, r: usize| {
            if let Some(&(rank, merged)) = self.ranks.get(&(syms[l].id, syms[r].id)) {
                queue.push(Reverse((rank, l, r, syms[l].id, syms[r].id, merged)));
            }
        };
        for i in 1..n {
            push(&mut queue, &syms, i - 1, i);
        }
        while let Some(Reverse((_, l, r, lid, rid, merged))) = queue.pop() {
            // Skip pairs that an earlier merge changed.
            if syms[l].start == syms[l].end || syms[r].start == syms[r].end {
                continue;
            }
            if next[l] != r || syms[l].id != lid || syms[r].id != rid {
                continue;
            }
            syms[l].end = syms[r].end;
            syms[l].id = merged;
            syms[r].start = syms[r].end;
            next[l] = next[r];
            if next[r] < n {
                prev[next[r]] = l;
            }
            if prev[l] < n {
                push(&mut queue, &syms, prev[l], l);
            }
            if next[l] < n {
                push(&mut queue, &syms, l, next[l]);
            }
        }
        let mut i = 0;
        while i < n {
            let s = &syms[i];
            if s.id < self.n_vocab {
                out.push(s.id);
            } else {
                // Not a token: llama.cpp falls back to the single bytes of the mapped text that
                // are tokens, and drops the rest.
                for c in word[s.start..s.end].chars().filter(char::is_ascii) {
                    if let Some(&id) = vocab.ids.get(c.encode_utf8(&mut [0; 4]) as &str) {
                        out.push(id);
                    }
                }
            }
            i = next[i];
        }
    }
}

struct Sym {
    start: usize,
    end: usize,
    id: SymbolId,
}
