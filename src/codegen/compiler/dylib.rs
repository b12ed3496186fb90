//! Where a dynamically loaded library came from. The compilers' own version calls are too coarse
//! to key a cache on (ROCm 5.x's `hiprtcVersion` answers 9.0 for every release), so the version
//! string also names the library file, resolved through symlinks (`libamdhip64.so.5.2.21153`),
//! and the include folder of the CUDA headers is found beside the loaded NVRTC.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::PathBuf;

/// glibc's `Dl_info`.
#[repr(C)]
struct DlInfo {
    dli_fname: *const c_char,
    dli_fbase: *mut c_void,
    dli_sname: *const c_char,
    dli_saddr: *mut c_void,
}

extern "C" {
    fn dladdr(address: *const c_void, info: *mut DlInfo) -> c_int;
}

/// The file of the shared object that holds `address` (a function of a loaded library),
/// with symlinks resolved; None when the loader does not know it.
pub(super) fn library_path_of(address: *const c_void) -> Option<PathBuf> {
    let mut info = DlInfo {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: dladdr only reads the address (it need not be dereferenceable) and fills `info`,
    // which is a valid, writable Dl_info; dli_fname, when non-null, points at a NUL-terminated
    // string owned by the loader that lives as long as the library stays loaded (we copy it now).
    let found = unsafe { dladdr(address, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: checked non-null above; see the previous SAFETY note for its lifetime.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(name.to_string_lossy().into_owned());
    Some(std::fs::canonicalize(&path).unwrap_or(path))
}

/// The file name of a library path, for version strings.
pub(super) fn file_name(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown file".to_string())
}
