//! HIPRTC compiles the HIP-dialect saxpy for CDNA (gfx90a, 64-wide) and RDNA (gfx1030,
//! 32-wide) with no GPU; errors carry the log, the saved source and the template context.

mod compiler_support;

use compiler_support::{broken, contains, elf_machine, load_or_skip, saxpy};
use rocmforge::codegen::compiler::hiprtc::HiprtcCompiler;
use rocmforge::codegen::compiler::{compiler_for, CompileError, Compiler, Platform, Target};

const EM_AMDGPU: u16 = 224;

#[test]
fn compiles_saxpy_for_cdna_and_rdna() {
    let Some(hiprtc) = load_or_skip(HiprtcCompiler::load()) else {
        return;
    };
    for text in ["gfx90a", "gfx1030", "gfx90a:sramecc+:xnack-"] {
        let target = Target::parse(text).unwrap();
        let kernel = hiprtc.compile(&saxpy(target.warp_size), &target).unwrap();
        assert_eq!(elf_machine(&kernel.binary), EM_AMDGPU, "{text}");
        // The code object names its own target in the metadata note: an oracle independent of
        // the options we passed.
        let triple = format!("amdgcn-amd-amdhsa--{text}");
        assert!(
            contains(&kernel.binary, triple.as_bytes()),
            "{text}: no {triple} in code object"
        );
        assert!(
            contains(&kernel.binary, b"saxpy_warp_sum.kd"),
            "{text}: no kernel descriptor"
        );
        let vgprs = kernel.registers.expect("VGPR count from the metadata note");
        assert!((1..=512).contains(&vgprs), "{text}: {vgprs} VGPRs");
        assert_eq!(kernel.spills, Some(0), "{text}");
        eprintln!(
            "{} {text}: {} bytes, {vgprs} VGPRs, {:.0} ms",
            hiprtc.version(),
            kernel.binary.len(),
            kernel.compile_ms
        );
    }
}

#[test]
fn wavefront_size_reaches_the_metadata() {
    let Some(hiprtc) = load_or_skip(HiprtcCompiler::load()) else {
        return;
    };
    // .wavefront_size in the note is what the compiler generated for: 64 on gfx90a, 32 on gfx1030.
    for (text, wave) in [("gfx90a", 0x40u8), ("gfx1030", 0x20u8)] {
        let target = Target::parse(text).unwrap();
        assert_eq!(u32::from(wave), target.warp_size);
        let kernel = hiprtc.compile(&saxpy(target.warp_size), &target).unwrap();
        let mut field = b"\xaf.wavefront_size".to_vec();
        field.push(wave);
        assert!(
            contains(&kernel.binary, &field),
            "{text}: wavefront size {wave} not in metadata"
        );
    }
}

#[test]
fn syntax_error_reports_log_source_and_context() {
    let Some(hiprtc) = load_or_skip(HiprtcCompiler::load()) else {
        return;
    };
    let target = Target::parse("gfx90a").unwrap();
    let source = broken();
    match hiprtc.compile(&source, &target) {
        Err(CompileError::Compile(failure)) => {
            assert_eq!(failure.kernel, "broken_kernel");
            assert!(failure.log.contains("error"), "log: {}", failure.log);
            let saved = std::fs::read_to_string(&failure.source_path).unwrap();
            assert_eq!(saved, source.source);
            assert!(failure.context_json.contains("ctx-7f3a"));
            let shown = hiprtc.compile(&source, &target).unwrap_err().to_string();
            assert!(
                shown.contains("ctx-7f3a")
                    && shown.contains(&failure.source_path.display().to_string()),
                "{shown}"
            );
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

#[test]
fn unknown_target_lists_the_known_ones() {
    let Some(hiprtc) = load_or_skip(HiprtcCompiler::load()) else {
        return;
    };
    let known = hiprtc.known_targets();
    assert!(
        known.iter().any(|t| t == "gfx90a") && known.iter().any(|t| t == "gfx1030"),
        "{known:?}"
    );
    let target = Target::parse("gfx9ff").unwrap();
    match hiprtc.compile(&saxpy(64), &target) {
        Err(err @ CompileError::UnknownTarget { .. }) => {
            let text = err.to_string();
            assert!(
                text.contains("gfx9ff") && text.contains("gfx90a") && text.contains("gfx1030"),
                "{text}"
            );
        }
        other => panic!("expected UnknownTarget, got {other:?}"),
    }
    // ROCm 5.2's HIPRTC crashes on processors newer than itself, so they must not be offered.
    if hiprtc.version().contains("ROCm 5.2") {
        for newer in ["gfx942", "gfx1100"] {
            assert!(
                !known.iter().any(|t| t == newer),
                "{newer} offered by {}",
                hiprtc.version()
            );
            let target = Target::parse(newer).unwrap();
            assert!(matches!(
                compiler_for(&target),
                Err(CompileError::UnknownTarget { .. })
            ));
        }
    }
}

#[test]
fn compiler_for_picks_the_platform_and_refuses_foreign_targets() {
    let Some(hiprtc) = load_or_skip(HiprtcCompiler::load()) else {
        return;
    };
    let amd = Target::parse("gfx1030").unwrap();
    let chosen = compiler_for(&amd).unwrap();
    assert_eq!(
        (chosen.name(), chosen.platform()),
        ("hiprtc", Platform::Hip)
    );
    let nvidia = Target::parse("sm_90").unwrap();
    assert!(matches!(
        hiprtc.compile(&saxpy(32), &nvidia),
        Err(CompileError::PlatformMismatch { .. })
    ));
}
