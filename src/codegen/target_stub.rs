//! Stand-in for `codegen::compiler::{Platform, Target}` (helper "comp", branch h-comp) until that
//! module is merged; same fields and meaning.

/// The vendor toolchain a target belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Hip,
    Cuda,
}

/// One GPU instruction set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub platform: Platform,
    pub arch: String,
    pub full: String,
    pub warp_size: u32,
}

impl Target {
    /// `gfx9xx` (64-wide wavefronts), `gfx10xx`+ (32) or `sm_NN` (32).
    pub fn parse(text: &str) -> Option<Target> {
        let (platform, warp_size) = if text.starts_with("sm_") {
            (Platform::Cuda, 32)
        } else if let Some(id) = text.strip_prefix("gfx") {
            (Platform::Hip, if id.len() >= 4 { 32 } else { 64 })
        } else {
            return None;
        };
        Some(Target {
            platform,
            arch: text.to_string(),
            full: text.to_string(),
            warp_size,
        })
    }
}
