//! The generation loop shared by `run` and the chat: reuse what the KV cache already holds,
//! prefill the rest, then sample token by token, streaming UTF-8-safe text and honouring EOS/EOT
//! and stop strings.

use crate::backend::{Backend, BackendError};
use crate::sample::{Sampler, SamplerConfig};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct GenOptions {
    pub max_tokens: usize,
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndOfGeneration,
    StopString,
    MaxTokens,
    ContextFull,
}

#[derive(Debug, Clone)]
pub struct GenStats {
    /// Prompt tokens actually computed (the cached prefix is not counted).
    pub prompt_tokens: usize,
    pub prompt_secs: f64,
    pub gen_tokens: usize,
    pub gen_secs: f64,
    pub stop: StopReason,
}

pub struct Generator<'a> {
    backend: &'a mut dyn Backend,
    tokenizer: &'a Tokenizer,
    sampler: Sampler,
    greedy: bool,
    /// Tokens whose keys and values are in the backend's cache, in order.
    cached: Vec<u32>,
}

impl<'a> Generator<'a> {
    pub fn new(
        backend: &'a mut dyn Backend,
        tokenizer: &'a Tokenizer,
        sampling: SamplerConfig,
    ) -> Self {
        // Plain greedy needs no logits on the host: the backend takes the argmax itself.
        let greedy = sampling.is_greedy();
        Generator {
            backend,
            tokenizer,
            sampler: Sampler::new(sampling),
            greedy,
            cached: Vec::new(),
        }
    }

    /// Continues from `prompt` (the whole conversation so far), calling `on_text` with each
    /// piece of text as it becomes final. Returns the generated ids and timings.
    pub fn complete(
        &mut self,
        prompt: &[u32],
        opts: &GenOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<(Vec<u32>, GenStats), BackendError> {
        let mut common = self
            .cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        // At least one token must run to produce the next logits.
        common = common.min(prompt.len().saturating_sub(1));
        self.cached.truncate(common);
        let n_ctx = self.backend.max_ctx();

        let start = Instant::now();
        let mut next = self.step(&prompt[common..], common)?;
        self.cached.extend_from_slice(&prompt[common..]);
        let prompt_secs = start.elapsed().as_secs_f64();

        let gen_start = Instant::now();
        let mut taken = Taken {
            tokenizer: self.tokenizer,
            out: Vec::new(),
            decoder: StreamDecoder::new(false),
            stops: StopMatcher::new(&opts.stop),
            max_tokens: opts.max_tokens,
            n_ctx,
        };
        let mut stop = taken.take(next, self.cached.len(), on_text);
        if stop.is_none() && self.greedy {
            // Each result is the input of the next step: the backend keeps them on the device.
            let pos = self.cached.len();
            let steps = (opts.max_tokens - taken.out.len()).min(n_ctx - pos);
            let cached = &mut self.cached;
            let mut fed = next;
            self.backend.greedy_run(next, pos, steps, &mut |token| {
                cached.push(fed);
                fed = token;
                stop = taken.take(token, cached.len(), on_text);
                stop.is_none()
            })?;
        }
        while stop.is_none() && !self.greedy {
            let pos = self.cached.len();
            next = self.step(&[next], pos)?;
            self.cached.push(taken.out[taken.out.len() - 1]);
            stop = taken.take(next, self.cached.len(), on_text);
        }
        // Every step budget above ends in a stop: the token limit or the context.
        let stop = stop.ok_or_else(|| {
            BackendError::Device("the greedy run ended before its last step".to_string())
        })?;
        let Taken {
            out,
            mut decoder,
            mut stops,
            ..
        } = taken;
        if stop != StopReason::StopString {
            let tail = decoder.finish();
            stops.feed(&tail, on_text);
            stops.flush(on_text);
        }
        let stats = GenStats {
            prompt_tokens: prompt.len() - common,
            prompt_secs,
            gen_tokens: out.len(),
            gen_secs: gen_start.elapsed().as_secs_f64(),
            stop,
        };
        Ok((out, stats))
    }

    /// The next token after `tokens`: the argmax on the backend when greedy, else sampled.
    fn step(&mut self, tokens: &[u32], pos0: usize) -> Result<u32, BackendError> {
        if self.greedy {
            return self.backend.forward_argmax(tokens, pos0);
        }
        let mut logits = self.backend.forward(tokens, pos0, false)?;
        let history: Vec<u32> = self.cached.iter().chain(tokens).copied().collect();
        Ok(self.sampler.sample(&mut logits, &history))
    }
}

/// The tokens generated so far and the checks each new one goes through.
struct Taken<'a> {
    tokenizer: &'a Tokenizer,
    out: Vec<u32>,
    decoder: StreamDecoder,
    stops: StopMatcher<'a>,
    max_tokens: usize,
    n_ctx: usize,
}

impl Taken<'_> {
    /// Takes `next` (the cache holding `cached` tokens), streams its text, and says why to stop,
    /// if generation must.
    fn take(
        &mut self,
        next: u32,
        cached: usize,
        on_text: &mut dyn FnMut(&str),
    ) -> Option<StopReason> {
        if self.tokenizer.is_eog(next) {
            return Some(StopReason::EndOfGeneration);
        }
        self.out.push(next);
        let piece = self.decoder.push(self.tokenizer, next);
        if self.stops.feed(&piece, on_text) {
            return Some(StopReason::StopString);
        }
        if self.out.len() >= self.max_tokens {
            return Some(StopReason::MaxTokens);
        }
        if cached + 1 > self.n_ctx {
            return Some(StopReason::ContextFull);
        }
        None
    }
}

/// Holds back text that might be the start of a stop string, so a stop string is never printed.
struct StopMatcher<'s> {
    stops: &'s [String],
    pending: String,
}

impl<'s> StopMatcher<'s> {
    fn new(stops: &'s [String]) -> Self {
        StopMatcher {
            stops,
            pending: String::new(),
        }
    }

    /// Emits what is final; true when a stop string has been reached.
    fn feed(&mut self, piece: &str, emit: &mut dyn FnMut(&str)) -> bool {
        self.pending.push_str(piece);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            emit(&self.pending[..at]);
            self.pending.clear();
            return true;
        }
        let keep = self
            .stops
            .iter()
            .map(|s| {
                (1..s.len().min(self.pending.len()) + 1)
                    .rev()
                    .find(|&k| {
                        self.pending.is_char_boundary(self.pending.len() - k)
                            && s.starts_with(&self.pending[self.pending.len() - k..])
                    })
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        let cut = self.pending.len() - keep;
        if cut > 0 {
            emit(&self.pending[..cut]);
            self.pending.drain(..cut);
        }
        false
    }

    fn flush(&mut self, emit: &mut dyn FnMut(&str)) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        let mut stopped = false;
        for p in pieces {
            if m.feed(p, &mut |s| out.push_str(s)) {
                stopped = true;
                break;
            }
        }
        if !stopped {
            m.flush(&mut |s| out.push_str(s));
        }
        (out, stopped)
    }

    #[test]
    fn stop_strings_are_never_printed_even_across_pieces() {
        assert_eq!(
            run(&["\nUser:"], &["Hello", " there\nUs", "er: hi"]),
            ("Hello there".into(), true)
        );
        assert_eq!(
            run(&["END"], &["no ", "stop", " here E"]),
            ("no stop here E".into(), false)
        );
        assert_eq!(run(&[], &["plain ", "text"]), ("plain text".into(), false));
        assert_eq!(run(&["é!"], &["caf", "é", "!"]), ("caf".into(), true));
    }
}
