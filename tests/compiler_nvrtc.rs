//! NVRTC compiles the same HIP-dialect saxpy (behind the CUDA prelude) to an sm_90 CUBIN with
//! no GPU; errors carry the log, the saved source and the template context.

mod compiler_support;

use compiler_support::{broken, contains, elf_machine, load_or_skip, saxpy};
use rocmforge::codegen::compiler::nvrtc::NvrtcCompiler;
use rocmforge::codegen::compiler::{compiler_for, CompileError, Compiler, Platform, Target};

const EM_CUDA: u16 = 190;

#[test]
fn compiles_saxpy_for_sm90() {
    let Some(nvrtc) = load_or_skip(NvrtcCompiler::load()) else {
        return;
    };
    assert!(
        nvrtc
            .include_dir()
            .is_some_and(|d| d.join("cuda_fp16.h").is_file()),
        "no CUDA include folder: set ROCMFORGE_CUDA_INCLUDE"
    );
    let target = Target::parse("sm_90").unwrap();
    let kernel = nvrtc.compile(&saxpy(target.warp_size), &target).unwrap();
    assert_eq!(elf_machine(&kernel.binary), EM_CUDA);
    assert!(contains(&kernel.binary, b"saxpy_warp_sum"));
    assert!(
        kernel
            .log
            .contains("Compiling entry function 'saxpy_warp_sum' for 'sm_90'"),
        "{}",
        kernel.log
    );
    let registers = kernel.registers.expect("ptxas register count");
    assert!((1..=255).contains(&registers), "{registers} registers");
    assert_eq!(kernel.spills, Some(0));
    eprintln!(
        "nvrtc {} sm_90: {} bytes, {registers} registers, {:.0} ms",
        nvrtc.version(),
        kernel.binary.len(),
        kernel.compile_ms
    );
}

#[test]
fn syntax_error_reports_log_source_and_context() {
    let Some(nvrtc) = load_or_skip(NvrtcCompiler::load()) else {
        return;
    };
    let target = Target::parse("sm_90").unwrap();
    let source = broken();
    match nvrtc.compile(&source, &target) {
        Err(CompileError::Compile(failure)) => {
            assert_eq!(failure.kernel, "broken_kernel");
            assert!(failure.log.contains("error"), "log: {}", failure.log);
            let saved = std::fs::read_to_string(&failure.source_path).unwrap();
            assert_eq!(saved, source.source);
            assert!(failure.context_json.contains("ctx-7f3a"));
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

#[test]
fn unknown_target_lists_the_known_ones() {
    let Some(nvrtc) = load_or_skip(NvrtcCompiler::load()) else {
        return;
    };
    assert!(nvrtc.known_targets().iter().any(|t| t == "sm_90"));
    let target = Target::parse("sm_13").unwrap();
    match nvrtc.compile(&saxpy(32), &target) {
        Err(err @ CompileError::UnknownTarget { .. }) => {
            let text = err.to_string();
            assert!(text.contains("sm_13") && text.contains("sm_90"), "{text}");
        }
        other => panic!("expected UnknownTarget, got {other:?}"),
    }
    let chosen = compiler_for(&Target::parse("sm_90").unwrap()).unwrap();
    assert_eq!(
        (chosen.name(), chosen.platform()),
        ("nvrtc", Platform::Cuda)
    );
}
