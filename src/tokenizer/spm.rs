//! SentencePiece-style segmentation (`tokenizer.ggml.model = "llama"`): start from single
//! characters and repeatedly merge the adjacent pair whose concatenation is the vocabulary token
//! with the highest score (leftmost on ties); characters that end up as no token fall back to
//! `<0xXX>` byte tokens. Spaces are `▁` in token texts. Mirrors llama.cpp's `llm_tokenizer_spm`.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::vocab::Vocab;

pub const SPACE_MARK: &str = "\u{2581}";

/// Appends the tokens of `text` (spaces already replaced by `▁`).
pub fn encode(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let mut syms: Vec<(usize, usize)> = text
        .char_indices()
        .map(|(i, c)| (i, i + c.len_utf8()))
        .collect();
    let n = syms.len();
    let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
    let mut next: Vec<usize> = (1..=n).collect();
    let mut queue = BinaryHeap::new();
    let push = |queue: &mut BinaryHeap<Bigram>, syms: &[(usize, usize)], l: usize, r: usize| {
        let (start, end) = (syms[l].0, syms[r].1);
        if let Some(&id) = vocab.ids.get(&text[start..end]) {
            queue.push(Bigram {
                score: vocab.scores[id as usize],
                left: l,
                right: r,
                size: end - start,
            });
        }
    };
    for i in 1..n {
        push(&mut queue, &syms, i - 1, i);
    }
    while let Some(b) = queue.pop() {
        let (l, r) = (b.left, b.right);
        let len = |s: (usize, usize)| s.1 - s.0;
        // A pair is stale once either side was merged elsewhere: its length no longer adds up.
        if len(syms[l]) == 0 || len(syms[r]) == 0 || len(syms[l]) + len(syms[r]) != b.size {
            continue;
        }
        syms[l].1 = syms[r].1;
        syms[r].0 = syms[r].1;
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
        let piece = &text[syms[i].0..syms[i].1];
        match vocab.ids.get(piece) {
            Some(&id) => out.push(id),
            None => {
                for b in piece.bytes() {
                    out.extend(byte_token(vocab, b));
                }
            }
        }
        i = next[i];
    }
}

/// The token for one raw byte: `<0xXX>`, else the byte itself as a one-character token.
fn byte_token(vocab: &Vocab, b: u8) -> Option<u32> {
    if let Some(&id) = vocab.ids.get(&format!("<0x{b:02X}>")) {
        return Some(id);
    }
    if b.is_ascii() {
        return vocab
            .ids
            .get((b as char).encode_utf8(&mut [0; 4]) as &str)
            .copied();
    }
    None
}

/// Parses a byte token text `<0xXX>`.
pub fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for Bigram {
    /// Highest score first, then leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}
