//! The CPU backend: the reference every GPU result is checked against, and the fallback where
//! there is no GPU.

mod engine;
pub mod ops;

pub use engine::CpuBackend;
