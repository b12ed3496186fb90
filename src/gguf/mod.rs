//! GGUF files: reading (zero copy over a memory map), writing, and CPU dequantization.

pub mod dequant;
pub mod error;
pub mod quantize;
pub mod reader;
pub mod types;
pub mod value;
pub mod writer;

pub use error::GgufError;
pub use reader::{GgufFile, TensorInfo};
pub use types::GgmlType;
pub use value::{Value, ValueType};
