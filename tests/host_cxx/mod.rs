//! Building a C++ program with the host compiler, for the tests that run generated kernel code
//! on the CPU (tests/host_sim, tests/quant_host).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles `source` with `$CXX` (else `c++`) and `flags` into the executable `dir/name`. None
/// (reason printed) without a host compiler; `Err` with the compiler's message when the build
/// fails.
pub fn compile(
    dir: &Path,
    name: &str,
    source: &str,
    flags: &[&str],
) -> Option<Result<PathBuf, String>> {
    let cpp = dir.join(format!("{name}.cpp"));
    let exe = dir.join(name);
    std::fs::write(&cpp, source).unwrap();
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    let built = match Command::new(&compiler)
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&cpp)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: no host C++ compiler ({compiler}: {e})");
            return None;
        }
    };
    Some(if built.status.success() {
        Ok(exe)
    } else {
        Err(format!(
            "{}:\n{}",
            cpp.display(),
            String::from_utf8_lossy(&built.stderr)
        ))
    })
}
