//! The environment variables of the compiler layer. They are set here, in a test binary of
//! their own with a single test, because changing the environment while another thread runs
//! HIPRTC (which reads it through getenv) corrupts the heap.

use rocmforge::codegen::cache::{KernelCache, CACHE_DIR_ENV};
use rocmforge::codegen::compiler::hiprtc::{self, HiprtcCompiler};
use rocmforge::codegen::compiler::nvrtc::{self, NvrtcCompiler};
use rocmforge::codegen::compiler::CompileError;

#[test]
fn env_vars_locate_the_cache_and_missing_libraries_say_what_to_install() {
    let dir = std::env::temp_dir().join(format!("rocmforge-cache-env-{}", std::process::id()));
    std::env::set_var(CACHE_DIR_ENV, &dir);
    let cache = KernelCache::from_env().unwrap();
    assert_eq!(cache.dir(), dir);
    assert!(dir.is_dir());

    // An absent compiler library is a clear error naming what to install, never a panic.
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
