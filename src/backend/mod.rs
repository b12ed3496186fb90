//! Backends run a bound model's program: `cpu` (the reference and the fallback), and the GPU
//! executor over the `cuda` and `hip` runtimes.

pub mod cpu;
pub mod cuda;
pub mod gpu;
pub mod hip;

pub use gpu::open_backend;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "context full: positions {pos0}..{end} exceed the context size {n_ctx} (raise --ctx-size)"
    )]
    ContextFull {
        pos0: usize,
        end: usize,
        n_ctx: usize,
    },
    #[error("nothing to run: no tokens given (is the prompt empty?)")]
    NoTokens,
    #[error("token id {id} is outside the vocabulary of {n_vocab}")]
    BadToken { id: u32, n_vocab: usize },
    #[error("{0}")]
    Weights(String),
    #[error("{0}")]
    Device(String),
}

/// What every backend does with a bound model.
pub trait Backend {
    /// Human name for logs, e.g. "cpu (2 threads)" or "cuda:0 NVIDIA H100".
    fn name(&self) -> String;
    /// Runs `tokens` at positions `pos0..pos0 + n`, appending to the KV cache. Returns the logits
    /// of every position (`[n][n_vocab]`) when `all_logits`, else of the last one.
    fn forward(
        &mut self,
        tokens: &[u32],
        pos0: usize,
        all_logits: bool,
    ) -> Result<Vec<f32>, BackendError>;
    /// The greedy next token after `tokens`; a GPU backend takes the argmax on the device.
    fn forward_argmax(&mut self, tokens: &[u32], pos0: usize) -> Result<u32, BackendError> {
        let logits = self.forward(tokens, pos0, false)?;
        Ok(cpu::ops::argmax(&logits) as u32)
    }
    /// Greedy decoding: feeds `token` at `pos0`, then each result at the next position, and hands
    /// the results to `on_token` in order until it returns false or `max_tokens` were made
    /// (positions `pos0 .. pos0 + max_tokens` must fit the context). A GPU backend keeps the
    /// tokens on the device and runs several steps per round trip to the host, so it may compute
    /// a few steps past the last result taken: their cache rows lie past the taken ones and are
    /// written again before anything reads them.
    fn greedy_run(
        &mut self,
        token: u32,
        pos0: usize,
        max_tokens: usize,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<(), BackendError> {
        check_greedy_run(pos0, max_tokens, self.max_ctx())?;
        let mut token = token;
        for pos in pos0..pos0 + max_tokens {
            token = self.forward_argmax(&[token], pos)?;
            if !on_token(token) {
                break;
            }
        }
        Ok(())
    }
    /// Context size the KV cache was sized for.
    fn max_ctx(&self) -> usize;
    /// Measured device memory bandwidth in bytes/s (a large device-to-device copy, bytes read
    /// plus written), for the roofline; None where not measured.
    fn bandwidth(&mut self) -> Option<f64> {
        None
    }
}

/// Checks a forward call's positions and token ids before any work is done.
pub fn check_forward(
    tokens: &[u32],
    pos0: usize,
    n_ctx: usize,
    n_vocab: usize,
) -> Result<(), BackendError> {
    if tokens.is_empty() {
        return Err(BackendError::NoTokens);
    }
    let end = pos0 + tokens.len();
    if end > n_ctx {
        return Err(BackendError::ContextFull { pos0, end, n_ctx });
    }
    if let Some(&id) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(BackendError::BadToken { id, n_vocab });
    }
    Ok(())
}

/// Checks that a greedy run's positions fit the context before any work is done.
pub fn check_greedy_run(pos0: usize, max_tokens: usize, n_ctx: usize) -> Result<(), BackendError> {
    let end = pos0 + max_tokens;
    if end > n_ctx {
        return Err(BackendError::ContextFull { pos0, end, n_ctx });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_input_is_checked_before_any_work() {
        assert!(matches!(
            check_forward(&[], 0, 8, 10),
            Err(BackendError::NoTokens)
        ));
        assert!(matches!(
            check_forward(&[1, 2], 7, 8, 10),
            Err(BackendError::ContextFull {
                pos0: 7,
                end: 9,
                n_ctx: 8
            })
        ));
        assert!(matches!(
            check_forward(&[3, 10], 0, 8, 10),
            Err(BackendError::BadToken {
                id: 10,
                n_vocab: 10
            })
        ));
        assert!(check_forward(&[9], 7, 8, 10).is_ok());
    }
}
