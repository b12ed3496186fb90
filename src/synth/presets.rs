//! Shapes of real models, for random-weight files that stand in for them where the real weights
//! cannot be downloaded. Values from each model's published config.

/// The canonical hyper-parameters of a model shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub plan: &'static str,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub norm_eps: f32,
    pub rope_base: f32,
    /// Output projection tied to the token embeddings.
    pub tied: bool,
}

pub const PRESETS: &[(&str, Shape)] = &[
    (
        "smollm2-135m",
        Shape {
            plan: "llama",
            n_embd: 576,
            n_layer: 30,
            n_head: 9,
            n_kv_head: 3,
            head_dim: 64,
            n_ff: 1536,
            n_vocab: 49152,
            n_ctx_train: 8192,
            norm_eps: 1e-5,
            rope_base: 100000.0,
            tied: true,
        },
    ),
    (
        "qwen2.5-0.5b",
        Shape {
            plan: "qwen2",
            n_embd: 896,
            n_layer: 24,
            n_head: 14,
            n_kv_head: 2,
            head_dim: 64,
            n_ff: 4864,
            n_vocab: 151936,
            n_ctx_train: 32768,
            norm_eps: 1e-6,
            rope_base: 1000000.0,
            tied: true,
        },
    ),
    (
        // head_dim 128 is its own setting, not n_embd / n_head (64).
        "qwen3-0.6b",
        Shape {
            plan: "qwen3",
            n_embd: 1024,
            n_layer: 28,
            n_head: 16,
            n_kv_head: 8,
            head_dim: 128,
            n_ff: 3072,
            n_vocab: 151936,
            n_ctx_train: 40960,
            norm_eps: 1e-6,
            rope_base: 1000000.0,
            tied: true,
        },
    ),
    (
        "phi3-mini",
        Shape {
            plan: "phi3",
            n_embd: 3072,
            n_layer: 32,
            n_head: 32,
            n_kv_head: 32,
            head_dim: 96,
            n_ff: 8192,
            n_vocab: 32064,
            n_ctx_train: 4096,
            norm_eps: 1e-5,
            rope_base: 10000.0,
            tied: false,
        },
    ),
    (
        "llama3-8b",
        Shape {
            plan: "llama",
            n_embd: 4096,
            n_layer: 32,
            n_head: 32,
            n_kv_head: 8,
            head_dim: 128,
            n_ff: 14336,
            n_vocab: 128256,
            n_ctx_train: 8192,
            norm_eps: 1e-5,
            rope_base: 500000.0,
            tied: false,
        },
    ),
];

pub fn preset(name: &str) -> Option<Shape> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s.clone())
}

pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}
