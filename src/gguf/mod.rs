//! GGUF files: reading (zero copy over a memory map), writing, and CPU dequantization.

pub mod error;
pub mod reader;
pub mod types;
pub mod value;

pub use error::GgufError;
pub use reader::{GgufFile, TensorInfo};
pub use types::GgmlType;
pub use value::{Value, ValueType};
