pub mod cache;
pub mod compiler;
