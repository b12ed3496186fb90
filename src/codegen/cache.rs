//! The on-disk cache of compiled kernels (DESIGN §3).
//!
//! Key: SHA-256 over the rendered source, the options, the full target string, the compiler's
//! name and version and rocmforge's version, so an edit to any of them misses instead of serving
//! a stale binary. Layout: `<dir>/<key[..2]>/<key>.kernel` (header + binary) with the source
//! beside it as `<key>.hip` / `<key>.cu`. Files are written to a temporary name and renamed, so
//! readers see whole entries or none; an entry whose header, length or checksum does not match
//! is recompiled and replaced, never used.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codegen::compiler::{
    CompileError, CompiledKernel, Compiler, KernelSource, Platform, Target,
};

/// Env var that sets the cache folder.
pub const CACHE_DIR_ENV: &str = "ROCMFORGE_CACHE_DIR";

const MAGIC: &[u8; 8] = b"RFKCACHE";
/// Bump when the entry layout changes; old entries then read as corrupt and are recompiled.
const FORMAT_VERSION: u32 = 1;

/// What an entry says about its binary, stored as JSON in front of it.
#[derive(Debug, Serialize, Deserialize)]
struct EntryHeader {
    kernel: String,
    target: String,
    binary_len: usize,
    binary_sha256: String,
    log: String,
    compile_ms: f64,
    registers: Option<u32>,
    spills: Option<u32>,
}

/// Gives each temporary file of this process a distinct name.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub struct KernelCache {
    dir: PathBuf,
}

/// One kernel's result from [`compile_all`].
#[derive(Debug, Clone)]
pub struct CompileOutcome {
    pub name: String,
    pub kernel: CompiledKernel,
    pub cache_hit: bool,
    /// Wall time of this lookup, compile included on a miss.
    pub elapsed_ms: f64,
}

impl KernelCache {
    /// A cache in `dir`, created if absent.
    pub fn new(dir: impl Into<PathBuf>) -> Result<KernelCache, CompileError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| CompileError::CacheIo {
            path: dir.clone(),
            source,
        })?;
        Ok(KernelCache { dir })
    }

    /// `$ROCMFORGE_CACHE_DIR`, else the platform cache folder + `rocmforge/kernels`.
    pub fn from_env() -> Result<KernelCache, CompileError> {
        let dir = match std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => dirs::cache_dir()
                .ok_or(CompileError::NoCacheDir)?
                .join("rocmforge")
                .join("kernels"),
        };
        KernelCache::new(dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry key (64 hex digits) of `src` compiled by `compiler` for `target`.
    pub fn key(compiler: &dyn Compiler, target: &Target, src: &KernelSource) -> String {
        let mut hasher = Sha256::new();
        // Every field is length-prefixed so that no two different inputs hash the same bytes.
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(b"rocmforge kernel cache key v1");
        field(src.source.as_bytes());
        field(&(src.options.len() as u64).to_le_bytes());
        for option in &src.options {
            field(option.as_bytes());
        }
        field(target.full.as_bytes());
        field(compiler.name().as_bytes());
        field(compiler.version().as_bytes());
        field(env!("CARGO_PKG_VERSION").as_bytes());
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Path of the entry (header + binary) of `key`.
    pub fn entry_path(&self, key: &str) -> PathBuf {
        self.shard(key).join(format!("{key}.kernel"))
    }

    /// Path of the source kept beside the entry of `key`.
    pub fn source_path(&self, key: &str, platform: Platform) -> PathBuf {
        let extension = match platform {
            Platform::Hip => "hip",
            Platform::Cuda => "cu",
        };
        self.shard(key).join(format!("{key}.{extension}"))
    }

    /// Entries are spread over 256 folders by their first two hex digits.
    fn shard(&self, key: &str) -> PathBuf {
        self.dir.join(key.get(..2).unwrap_or(key))
    }

    /// The cached binary of `src` if a valid entry exists, else a fresh compile (then stored).
    /// The flag is true on a cache hit.
    pub fn get_or_compile(
        &self,
        compiler: &dyn Compiler,
        target: &Target,
        src: &KernelSource,
    ) -> Result<(CompiledKernel, bool), CompileError> {
        let key = Self::key(compiler, target, src);
        let entry = self.entry_path(&key);
        match read_entry(&entry) {
            Ok(Some(kernel)) => return Ok((kernel, true)),
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(path = %entry.display(), %reason, kernel = %src.name, "ignoring corrupt kernel cache entry");
            }
        }
        let kernel = compiler.compile(src, target)?;
        // A cache that cannot be written costs a recompile next time, not this run.
        let source_path = self.source_path(&key, compiler.platform());
        let stored = write_atomic(&source_path, src.source.as_bytes())
            .and_then(|()| write_atomic(&entry, &encode_entry(src, target, &kernel)));
        if let Err(err) = stored {
            tracing::warn!(path = %entry.display(), %err, "could not store compiled kernel in the cache");
        }
        Ok((kernel, false))
    }
}

/// Compiles `sources` in parallel through `cache`, showing a progress bar on a terminal.
/// Results come back in the order of `sources`.
pub fn compile_all(
    cache: &KernelCache,
    compiler: &dyn Compiler,
    target: &Target,
    sources: &[KernelSource],
) -> Vec<Result<CompileOutcome, CompileError>> {
    let _span = tracing::info_span!("compile_all", target = %target.full, kernels = sources.len())
        .entered();
    let progress = ProgressBar::with_draw_target(Some(sources.len() as u64), progress_target());
    if let Ok(style) =
        ProgressStyle::with_template("compiling kernels {bar:30} {pos}/{len} {elapsed} {msg}")
    {
        progress.set_style(style);
    }
    let results: Vec<_> = sources
        .par_iter()
        .map(|src| {
            let started = Instant::now();
            let result = cache
                .get_or_compile(compiler, target, src)
                .map(|(kernel, cache_hit)| CompileOutcome {
                    name: src.name.clone(),
                    kernel,
                    cache_hit,
                    elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
                });
            progress.set_message(src.name.clone());
            progress.inc(1);
            result
        })
        .collect();
    progress.finish_and_clear();
    let hits = results
        .iter()
        .filter(|r| matches!(r, Ok(o) if o.cache_hit))
        .count();
    let failures = results.iter().filter(|r| r.is_err()).count();
    tracing::info!(
        hits,
        misses = results.len() - hits - failures,
        failures,
        "kernels compiled"
    );
    results
}

fn progress_target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn encode_entry(src: &KernelSource, target: &Target, kernel: &CompiledKernel) -> Vec<u8> {
    let header = EntryHeader {
        kernel: src.name.clone(),
        target: target.full.clone(),
        binary_len: kernel.binary.len(),
        binary_sha256: sha256_hex(&kernel.binary),
        log: kernel.log.clone(),
        compile_ms: kernel.compile_ms,
        registers: kernel.registers,
        spills: kernel.spills,
    };
    // Serializing a struct of strings and numbers cannot fail.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let mut bytes = Vec::with_capacity(16 + header.len() + kernel.binary.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&kernel.binary);
    bytes
}

/// Ok(None) when there is no entry; Err(reason) when there is one that cannot be trusted.
fn read_entry(path: &Path) -> Result<Option<CompiledKernel>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("unreadable: {err}")),
    };
    decode_entry(&bytes).map(Some)
}

fn decode_entry(bytes: &[u8]) -> Result<CompiledKernel, String> {
    if bytes.get(..8) != Some(MAGIC.as_slice()) {
        return Err("not a kernel cache entry".to_string());
    }
    let word = |at: usize| -> Result<u32, String> {
        let raw = bytes.get(at..at + 4).ok_or("truncated header")?;
        Ok(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
    };
    let version = word(8)?;
    if version != FORMAT_VERSION {
        return Err(format!("entry format {version}, expected {FORMAT_VERSION}"));
    }
    let header_end = 16usize
        .checked_add(word(12)? as usize)
        .filter(|end| *end <= bytes.len())
        .ok_or("truncated header")?;
    let header: EntryHeader =
        serde_json::from_slice(&bytes[16..header_end]).map_err(|e| format!("bad header: {e}"))?;
    let binary = &bytes[header_end..];
    if binary.len() != header.binary_len {
        return Err(format!(
            "binary is {} bytes, header says {}",
            binary.len(),
            header.binary_len
        ));
    }
    if sha256_hex(binary) != header.binary_sha256 {
        return Err("binary checksum mismatch".to_string());
    }
    Ok(CompiledKernel {
        binary: binary.to_vec(),
        log: header.log,
        compile_ms: header.compile_ms,
        registers: header.registers,
        spills: header.spills,
    })
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so that
/// no reader (another thread or process) ever sees a partial file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        // Best effort: the temp file may not exist if the write itself failed.
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> CompiledKernel {
        CompiledKernel {
            binary: vec![1, 2, 3, 4, 5],
            log: "ok".to_string(),
            compile_ms: 12.5,
            registers: Some(7),
            spills: Some(0),
        }
    }

    fn source() -> KernelSource {
        KernelSource {
            name: "k".to_string(),
            source: "src".to_string(),
            options: vec![],
            context_json: "{}".to_string(),
        }
    }

    #[test]
    fn entry_round_trips_and_rejects_every_kind_of_damage() {
        let target = Target::parse("gfx90a").unwrap();
        let bytes = encode_entry(&source(), &target, &kernel());
        assert_eq!(decode_entry(&bytes).unwrap(), kernel());
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(decode_entry(&flipped).unwrap_err().contains("checksum"));
        assert!(decode_entry(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_entry(&bytes[..20]).is_err());
        assert!(decode_entry(b"").is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_entry(&longer).is_err());
        let mut bad_version = bytes;
        bad_version[8] = 99;
        assert!(decode_entry(&bad_version).unwrap_err().contains("format"));
    }
}
