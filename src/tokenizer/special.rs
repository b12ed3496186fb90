//! Finding special tokens verbatim in text before segmentation (llama.cpp's
//! `tokenizer_st_partition`): longest texts first, each one splitting every text fragment left.

use super::vocab::{TokenKind, Vocab};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// Special token ids in matching order: longest text first, then by id.
pub fn matching_order(vocab: &Vocab) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..vocab.n_vocab() as u32)
        .filter(|&id| vocab.kinds[id as usize].is_special())
        .collect();
    ids.sort_by_key(|&id| std::cmp::Reverse(vocab.texts[id as usize].len()));
    ids
}

/// Splits `text` at special tokens. With `parse_special` off only user-defined tokens are matched
/// (control and unknown tokens are then plain text), as in llama.cpp.
pub fn partition<'a>(
    vocab: &Vocab,
    order: &[u32],
    text: &'a str,
    parse_special: bool,
) -> Vec<Fragment<'a>> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut fragments = vec![Fragment::Text(text)];
    for &id in order {
        let kind = vocab.kinds[id as usize];
        if !parse_special && kind != TokenKind::UserDefined {
            continue;
        }
        let needle = vocab.texts[id as usize].as_str();
        if !fragments
            .iter()
            .any(|f| matches!(f, Fragment::Text(t) if t.contains(needle)))
        {
            continue;
        }
        let mut next = Vec::with_capacity(fragments.len() + 2);
        for f in fragments {
            match f {
                Fragment::Text(t) => {
                    let mut rest = t;
                    while let Some(at) = rest.find(needle) {
                        if at > 0 {
                            next.push(Fragment::Text(&rest[..at]));
                        }
                        next.push(Fragment::Token(id));
                        rest = &rest[at + needle.len()..];
                    }
                    if !rest.is_empty() {
                        next.push(Fragment::Text(rest));
                    }
                }
                token => next.push(token),
            }
        }
        fragments = next;
    }
    fragments
}
