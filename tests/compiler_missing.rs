//! An absent compiler library is a clear error naming what to install, never a panic.
//! (Own test binary: it points the library env vars at files that do not exist.)

use rocmforge::codegen::compiler::hiprtc::{self, HiprtcCompiler};
use rocmforge::codegen::compiler::nvrtc::{self, NvrtcCompiler};
use rocmforge::codegen::compiler::CompileError;

#[test]
fn missing_libraries_say_what_to_install() {
    std::env::set_var(hiprtc::LIBRARY_ENV, "/nonexistent/libamdhip64.so.5");
    match HiprtcCompiler::load() {
        Err(err @ CompileError::LibraryMissing { .. }) => {
            let text = err.to_string();
            assert!(
                text.contains(
                    "apt-get install libamdhip64-dev libhiprtc-builtins5 rocm-device-libs"
                ),
                "{text}"
            );
            assert!(text.contains("/nonexistent/libamdhip64.so.5"), "{text}");
        }
        other => panic!("expected LibraryMissing, got {:?}", other.err()),
    }
    std::env::set_var(nvrtc::LIBRARY_ENV, "/nonexistent/libnvrtc.so.13");
    match NvrtcCompiler::load() {
        Err(err @ CompileError::LibraryMissing { .. }) => {
            let text = err.to_string();
            assert!(
                text.contains("pip install nvidia-cuda-nvrtc nvidia-cuda-runtime"),
                "{text}"
            );
            assert!(text.contains("LD_LIBRARY_PATH"), "{text}");
        }
        other => panic!("expected LibraryMissing, got {:?}", other.err()),
    }
}
