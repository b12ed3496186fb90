//! Incremental detokenization for streaming output: a token may end in the middle of a UTF-8
//! character (byte tokens, byte-level BPE), so bytes are held until they form whole characters.

use super::Tokenizer;

#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    /// Whether control tokens (such as `<|im_end|>`) are shown as their text.
    render_control: bool,
}

impl StreamDecoder {
    pub fn new(render_control: bool) -> StreamDecoder {
        StreamDecoder {
            pending: Vec::new(),
            render_control,
        }
    }

    /// Adds one token; returns the text that is now complete (possibly empty). Bytes that can
    /// never become valid UTF-8 come out as U+FFFD.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        if !self.render_control && tokenizer.is_control(id) {
            return String::new();
        }
        self.push_bytes(tokenizer.token_bytes(id))
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: whatever is left (an unfinished character) comes out lossily.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_split_characters_until_complete() {
        let mut s = StreamDecoder::new(true);
        let smile = "😀".as_bytes();
        assert_eq!(s.push_bytes(b"a"), "a");
        assert_eq!(s.push_bytes(&smile[..1]), "");
        assert_eq!(s.push_bytes(&smile[1..3]), "");
        assert_eq!(s.push_bytes(&[smile[3], b'b']), "😀b");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut s = StreamDecoder::new(true);
        assert_eq!(s.push_bytes(&[b'x', 0xFF, b'y']), "x\u{FFFD}y");
        assert_eq!(s.push_bytes(&[0xE4, 0xB8]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }
}
