//! The kernel disk cache: misses then hits, keys that cover everything that changes a binary,
//! corrupt entries recompiled, atomic writes, and parallel compile_all (with a counting fake
//! compiler, and with the real HIPRTC when it is installed).

mod compiler_support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use compiler_support::{load_or_skip, saxpy};
use rocmforge::codegen::cache::{compile_all, KernelCache};
use rocmforge::codegen::compiler::hiprtc::HiprtcCompiler;
use rocmforge::codegen::compiler::{
    CompileError, CompileFailure, CompiledKernel, Compiler, KernelSource, Platform, Target,
};

/// A compiler whose "binary" is the source and target it was given, counting its calls.
struct FakeCompiler {
    version: String,
    calls: AtomicUsize,
}

impl FakeCompiler {
    fn new(version: &str) -> FakeCompiler {
        FakeCompiler {
            version: version.to_string(),
            calls: AtomicUsize::new(0),
        }
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Compiler for FakeCompiler {
    fn name(&self) -> &str {
        "fake"
    }
    fn version(&self) -> String {
        self.version.clone()
    }
    fn platform(&self) -> Platform {
        Platform::Hip
    }
    fn known_targets(&self) -> Vec<String> {
        vec!["gfx90a".to_string(), "gfx1030".to_string()]
    }
    fn compile(&self, src: &KernelSource, target: &Target) -> Result<CompiledKernel, CompileError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if src.source.contains("syntax error") {
            return Err(CompileError::Compile(Box::new(CompileFailure {
                compiler: "fake".to_string(),
                kernel: src.name.clone(),
                target: target.full.clone(),
                log: "error: syntax error".to_string(),
                source_path: PathBuf::from("/dev/null"),
                context_json: src.context_json.clone(),
            })));
        }
        Ok(CompiledKernel {
            binary: format!("{}|{}|{:?}", target.full, src.source, src.options).into_bytes(),
            log: format!("compiled {}", src.name),
            compile_ms: 3.0,
            registers: Some(src.source.len() as u32),
            spills: Some(0),
        })
    }
}

fn source(name: &str, body: &str) -> KernelSource {
    KernelSource {
        name: name.to_string(),
        source: body.to_string(),
        options: vec!["-O3".to_string()],
        context_json: "{}".to_string(),
    }
}

fn temp_cache(test: &str) -> KernelCache {
    let dir = std::env::temp_dir().join(format!(
        "rocmforge-cache-test-{test}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    KernelCache::new(dir).unwrap()
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(all_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn miss_then_hit_keeps_source_beside_binary() {
    let cache = temp_cache("hit");
    let compiler = FakeCompiler::new("1.0");
    let target = Target::parse("gfx90a").unwrap();
    let src = source("k", "kernel body");
    let (first, hit) = cache.get_or_compile(&compiler, &target, &src).unwrap();
    assert!(!hit);
    let (second, hit) = cache.get_or_compile(&compiler, &target, &src).unwrap();
    assert!(hit);
    assert_eq!(first, second);
    assert_eq!(compiler.calls(), 1);
    let key = KernelCache::key(&compiler, &target, &src);
    let stored = std::fs::read_to_string(cache.source_path(&key, Platform::Hip)).unwrap();
    assert_eq!(stored, src.source);
    assert!(cache.entry_path(&key).starts_with(cache.dir()));
}

#[test]
fn key_covers_source_options_target_and_compiler() {
    let compiler = FakeCompiler::new("1.0");
    let target = Target::parse("gfx90a").unwrap();
    let src = source("k", "kernel body");
    let base = KernelCache::key(&compiler, &target, &src);
    assert_eq!(base.len(), 64);
    assert_eq!(base, KernelCache::key(&compiler, &target, &src.clone()));
    // The name and context do not change the binary, so they do not change the key.
    let renamed = KernelSource {
        name: "other".into(),
        context_json: "{\"x\":1}".into(),
        ..src.clone()
    };
    assert_eq!(base, KernelCache::key(&compiler, &target, &renamed));

    let edited = KernelSource {
        source: "kernel body ".into(),
        ..src.clone()
    };
    let optioned = KernelSource {
        options: vec!["-O2".into()],
        ..src.clone()
    };
    let split_options = KernelSource {
        options: vec!["-O".into(), "3".into()],
        ..src.clone()
    };
    let featured = Target::parse("gfx90a:xnack+").unwrap();
    let newer = FakeCompiler::new("1.1");
    let keys = [
        KernelCache::key(&compiler, &target, &edited),
        KernelCache::key(&compiler, &target, &optioned),
        KernelCache::key(&compiler, &target, &split_options),
        KernelCache::key(&compiler, &featured, &src),
        KernelCache::key(&compiler, &Target::parse("gfx1030").unwrap(), &src),
        KernelCache::key(&newer, &target, &src),
    ];
    for (i, key) in keys.iter().enumerate() {
        assert_ne!(*key, base, "variant {i} kept the key");
        for other in &keys[i + 1..] {
            assert_ne!(key, other);
        }
    }
}

#[test]
fn new_compiler_version_misses() {
    let cache = temp_cache("version");
    let target = Target::parse("gfx90a").unwrap();
    let src = source("k", "body");
    let old = FakeCompiler::new("1.0");
    cache.get_or_compile(&old, &target, &src).unwrap();
    let new = FakeCompiler::new("2.0");
    let (_, hit) = cache.get_or_compile(&new, &target, &src).unwrap();
    assert!(!hit);
    assert_eq!(new.calls(), 1);
}

#[test]
fn corrupt_or_truncated_entries_are_recompiled() {
    let cache = temp_cache("corrupt");
    let compiler = FakeCompiler::new("1.0");
    let target = Target::parse("gfx90a").unwrap();
    let src = source("k", "kernel body");
    let (good, _) = cache.get_or_compile(&compiler, &target, &src).unwrap();
    let entry = cache.entry_path(&KernelCache::key(&compiler, &target, &src));
    let original = std::fs::read(&entry).unwrap();

    let mut flipped = original.clone();
    *flipped.last_mut().unwrap() ^= 0x01;
    let damages: Vec<Vec<u8>> = vec![
        flipped,
        original[..original.len() - 3].to_vec(),
        b"garbage".to_vec(),
        vec![],
    ];
    for (i, damaged) in damages.into_iter().enumerate() {
        std::fs::write(&entry, damaged).unwrap();
        let calls_before = compiler.calls();
        let (kernel, hit) = cache.get_or_compile(&compiler, &target, &src).unwrap();
        assert!(!hit, "damage {i} was trusted");
        assert_eq!(kernel, good);
        assert_eq!(compiler.calls(), calls_before + 1);
        // The entry was rewritten: the next lookup hits.
        assert!(cache.get_or_compile(&compiler, &target, &src).unwrap().1);
    }
}

#[test]
fn writes_leave_no_temporary_files_and_failures_store_nothing() {
    let cache = temp_cache("atomic");
    let compiler = FakeCompiler::new("1.0");
    let target = Target::parse("gfx1030").unwrap();
    for i in 0..20 {
        cache
            .get_or_compile(&compiler, &target, &source("k", &format!("body {i}")))
            .unwrap();
    }
    let bad = source("bad", "syntax error here");
    assert!(matches!(
        cache.get_or_compile(&compiler, &target, &bad),
        Err(CompileError::Compile(_))
    ));
    let files = all_files(cache.dir());
    assert_eq!(files.len(), 40, "{files:?}");
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(
            name.ends_with(".kernel") || name.ends_with(".hip"),
            "stray file {name}"
        );
        assert!(!name.contains("tmp"), "temporary file left: {name}");
    }
}

#[test]
fn compile_all_runs_in_parallel_and_keeps_order() {
    let cache = temp_cache("all");
    let compiler = FakeCompiler::new("1.0");
    let target = Target::parse("gfx90a").unwrap();
    // Duplicates race for the same entry: every result must still be right.
    let sources: Vec<KernelSource> = (0..48)
        .map(|i| source(&format!("k{i}"), &format!("body {}", i % 16)))
        .collect();
    let first = compile_all(&cache, &compiler, &target, &sources);
    assert_eq!(first.len(), sources.len());
    for (result, src) in first.iter().zip(&sources) {
        let outcome = result.as_ref().unwrap();
        assert_eq!(outcome.name, src.name);
        assert!(String::from_utf8_lossy(&outcome.kernel.binary).contains(&src.source));
    }
    assert!(compiler.calls() >= 16);
    let calls = compiler.calls();
    let second = compile_all(&cache, &compiler, &target, &sources);
    assert!(second.iter().all(|r| r.as_ref().unwrap().cache_hit));
    assert_eq!(compiler.calls(), calls);
    let names: Vec<String> = all_files(cache.dir())
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
}

#[test]
fn compile_all_with_hiprtc_for_two_targets() {
    let Some(hiprtc) = load_or_skip(HiprtcCompiler::load()) else {
        return;
    };
    let cache = temp_cache("hiprtc");
    for text in ["gfx90a", "gfx1030"] {
        let target = Target::parse(text).unwrap();
        let sources: Vec<KernelSource> = (1..=4)
            .map(|unroll| {
                let mut src = saxpy(target.warp_size);
                src.options.push(format!("-DUNROLL={unroll}"));
                src
            })
            .collect();
        let misses = compile_all(&cache, &hiprtc, &target, &sources);
        let hits = compile_all(&cache, &hiprtc, &target, &sources);
        for (miss, hit) in misses.iter().zip(&hits) {
            let (miss, hit) = (miss.as_ref().unwrap(), hit.as_ref().unwrap());
            assert!(!miss.cache_hit && hit.cache_hit);
            assert_eq!(miss.kernel.binary, hit.kernel.binary);
            assert_eq!(miss.kernel.registers, hit.kernel.registers);
        }
        let miss_ms: f64 = misses.iter().map(|r| r.as_ref().unwrap().elapsed_ms).sum();
        let hit_ms: f64 = hits.iter().map(|r| r.as_ref().unwrap().elapsed_ms).sum();
        eprintln!("{text}: 4 kernels, misses {miss_ms:.0} ms total, hits {hit_ms:.1} ms total");
    }
}
