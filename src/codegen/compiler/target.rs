//! GPU targets: what a kernel is compiled for, parsed from strings such as `gfx90a`,
//! `gfx90a:sramecc+:xnack-` or `sm_90`.

use std::fmt;

use super::CompileError;

/// The vendor toolchain a target belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    /// AMD GPUs, compiled by HIPRTC into an AMDGPU code object.
    Hip,
    /// NVIDIA GPUs, compiled by NVRTC into a CUBIN.
    Cuda,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Platform::Hip => "hip",
            Platform::Cuda => "cuda",
        })
    }
}

/// One GPU instruction set, with the target features that change the generated code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub platform: Platform,
    /// The processor without features: `gfx90a`, `gfx1030`, `sm_90`.
    pub arch: String,
    /// The full target string as the compiler takes it, features included
    /// (`gfx90a:sramecc+:xnack-`); equal to `arch` when there are none.
    pub full: String,
    /// Threads per warp (wavefront): 64 on GCN/CDNA (gfx8, gfx9), 32 on RDNA (gfx10+) and NVIDIA.
    pub warp_size: u32,
}

impl Target {
    /// Whether the matrix-tile prelude (`templates/prelude/matrix_<platform>.hip.tera`) exists for
    /// this target: NVIDIA tensor cores from Volta (sm_70) on; AMD matrix cores where they have
    /// v_mfma_f32_16x16x16f16 (CDNA: gfx908, gfx90a, gfx94x). RDNA (gfx10, no matrix cores;
    /// gfx11, WMMA) has no prelude yet and uses the FP32 tiled GEMM.
    pub fn has_matrix_tiles(&self) -> bool {
        match self.platform {
            Platform::Cuda => self.cuda_compute_capability().is_some_and(|cc| cc >= 70),
            Platform::Hip => ["gfx908", "gfx90a", "gfx94"]
                .iter()
                .any(|mfma| self.arch.starts_with(mfma)),
        }
    }

    /// Whether the matrix-tile prelude's int8 multiply (`rf_mma_s8_16x8x32`, PTX
    /// `mma.sync.m16n8k32` on s8) exists for this target: NVIDIA from Ampere (sm_80) on.
    pub fn has_int8_matrix_tiles(&self) -> bool {
        self.cuda_compute_capability().is_some_and(|cc| cc >= 80)
    }

    /// The compute capability of an NVIDIA target as a number (`sm_90a` gives 90).
    fn cuda_compute_capability(&self) -> Option<u32> {
        if self.platform != Platform::Cuda {
            return None;
        }
        let cc = self
            .arch
            .trim_start_matches("sm_")
            .trim_end_matches(['a', 'f']);
        cc.parse::<u32>().ok()
    }

    /// Parses `gfx<id>[:feature(+|-)]*` (AMD) or `sm_<digits>[a|f]` (NVIDIA).
    pub fn parse(text: &str) -> Result<Target, CompileError> {
        let bad = |reason: &str| CompileError::BadTarget {
            input: text.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = text.trim();
        if let Some(number) = trimmed.strip_prefix("sm_") {
            let digits = number.trim_end_matches(['a', 'f']);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(
                    "an NVIDIA target is sm_ followed by the compute capability digits, e.g. sm_90",
                ));
            }
            return Ok(Target {
                platform: Platform::Cuda,
                arch: trimmed.to_string(),
                full: trimmed.to_string(),
                warp_size: 32,
            });
        }
        let mut parts = trimmed.split(':');
        let arch = parts.next().unwrap_or_default();
        let Some(id) = arch.strip_prefix("gfx") else {
            return Err(bad("expected an AMD target gfx<id> (e.g. gfx90a, gfx1030) or an NVIDIA target sm_<cc> (e.g. sm_90)"));
        };
        if id.len() < 3 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("an AMD processor is gfx followed by 3 or 4 hexadecimal digits, e.g. gfx90a or gfx1030"));
        }
        for feature in parts {
            let name = feature.trim_end_matches(['+', '-']);
            let sign_count = feature.len() - name.len();
            if sign_count != 1
                || name.is_empty()
                || !name.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(bad(&format!(
                    "target feature '{feature}' must be a name followed by + or -, e.g. xnack-"
                )));
            }
        }
        // The generation is the part before the last two digits: gfx9xx (GCN/CDNA) runs 64-wide
        // wavefronts; gfx10xx and later (RDNA) default to 32, which is what HIPRTC compiles for.
        let generation = &id[..id.len() - 2];
        let warp_size = match generation.parse::<u32>() {
            Ok(g) if g >= 10 => 32,
            Ok(_) => 64,
            Err(_) => {
                return Err(bad(
                    "the generation digits of an AMD processor must be decimal",
                ))
            }
        };
        Ok(Target {
            platform: Platform::Hip,
            arch: arch.to_string(),
            full: trimmed.to_string(),
            warp_size,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_amd_and_nvidia_targets() {
        let cdna = Target::parse("gfx90a:sramecc+:xnack-").unwrap();
        assert_eq!(
            (cdna.platform, cdna.arch.as_str(), cdna.warp_size),
            (Platform::Hip, "gfx90a", 64)
        );
        assert_eq!(cdna.full, "gfx90a:sramecc+:xnack-");
        let rdna = Target::parse("gfx1030").unwrap();
        assert_eq!((rdna.platform, rdna.warp_size), (Platform::Hip, 32));
        assert_eq!(Target::parse("gfx942").unwrap().warp_size, 64);
        assert_eq!(Target::parse("gfx1100").unwrap().warp_size, 32);
        let hopper = Target::parse("sm_90").unwrap();
        assert_eq!((hopper.platform, hopper.warp_size), (Platform::Cuda, 32));
        assert!(Target::parse("sm_90a").is_ok());
    }

    #[test]
    fn matrix_tiles_follow_the_compute_capability_or_mfma() {
        let caps = |t: &str| {
            let t = Target::parse(t).unwrap();
            (t.has_matrix_tiles(), t.has_int8_matrix_tiles())
        };
        assert_eq!(caps("sm_61"), (false, false));
        assert_eq!(caps("sm_75"), (true, false));
        assert_eq!(caps("sm_80"), (true, true));
        assert_eq!(caps("sm_90a"), (true, true));
        assert_eq!(caps("gfx90a"), (true, false));
        assert_eq!(caps("gfx908"), (true, false));
        assert_eq!(caps("gfx942"), (true, false));
        assert_eq!(caps("gfx1030"), (false, false));
        assert_eq!(caps("gfx1100"), (false, false));
    }

    #[test]
    fn rejects_malformed_targets() {
        for text in [
            "",
            "gfx",
            "gfx9",
            "gfxzz0",
            "sm_",
            "sm_x9",
            "rtx4090",
            "gfx90a:xnack",
            "gfx90a:+",
            "gfx90a:",
        ] {
            match Target::parse(text) {
                Err(CompileError::BadTarget { input, .. }) => assert_eq!(input, text),
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }
}
