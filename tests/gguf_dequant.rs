//! Dequantization and quantization against gguf-py, the independent oracle.
//! Fixtures: tests/data/gguf/, made by tools/gen_gguf_fixtures.py (see there to regenerate).
//!
//! Dequantized values must match gguf-py BIT FOR BIT: every format computes
//! `scale * level (+ min)` with the scale products formed in f32 in the same order as gguf-py's
//! numpy code, with no fused multiply-add, so there is no rounding difference to tolerate. The
//! legacy quantizers (and F16/BF16 rounding) must also produce gguf-py's exact bytes.

use rocmforge::gguf::dequant::{dequantize, dequantize_to_vec, dot_row};
use rocmforge::gguf::quantize::quantize;
use rocmforge::gguf::types::SUPPORTED;
use rocmforge::gguf::{GgmlType, GgufFile, Value, ValueType};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/gguf")
        .join(name)
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn dequantize_matches_gguf_py_bit_for_bit() {
    for &ty in SUPPORTED {
        let f = GgufFile::open(fixture(&format!("dequant_{}.gguf", ty.name()))).unwrap();
        let w = f.tensor("weights").unwrap();
        assert_eq!(w.ty, ty);
        let expected = f32s(f.tensor_bytes(f.tensor("expected").unwrap()));
        let got = dequantize_to_vec(ty, f.tensor_bytes(w), w.n_elements() as usize).unwrap();
        assert_eq!(got.len(), expected.len());
        let mismatches: Vec<_> = got
            .iter()
            .zip(&expected)
            .enumerate()
            .filter(|(_, (a, b))| a.to_bits() != b.to_bits())
            .take(5)
            .collect();
        assert!(
            mismatches.is_empty(),
            "{ty}: (index, (ours, gguf-py)) {mismatches:?}"
        );

        // Row by row into a slice gives the same values.
        let row_bytes = w.n_bytes as usize / w.n_rows() as usize;
        let mut row = vec![0.0f32; w.row_len() as usize];
        for (r, bytes) in f.tensor_bytes(w).chunks_exact(row_bytes).enumerate() {
            dequantize(ty, bytes, &mut row).unwrap();
            assert_eq!(
                row,
                expected[r * row.len()..(r + 1) * row.len()],
                "{ty} row {r}"
            );
        }
    }
}

/// The fused dot of each fixture row against a probe vector, compared with an f64 dot of
/// gguf-py's dequantized row. Tolerance: f32 summation of n terms errs by at most about
/// n * 2^-24 * sum |w x|; 1e-5 relative to sum |w x| covers n = 256 with margin.
#[test]
fn dot_row_matches_gguf_py_dequantized_dot() {
    for &ty in SUPPORTED {
        if matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            // These fixtures hold random bit patterns up to 3e38: products overflow f32.
            continue;
        }
        let f = GgufFile::open(fixture(&format!("dequant_{}.gguf", ty.name()))).unwrap();
        let w = f.tensor("weights").unwrap();
        let n = w.row_len() as usize;
        let expected = f32s(f.tensor_bytes(f.tensor("expected").unwrap()));
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let row_bytes = w.n_bytes as usize / w.n_rows() as usize;
        for (r, bytes) in f.tensor_bytes(w).chunks_exact(row_bytes).enumerate() {
            let wr = &expected[r * n..(r + 1) * n];
            let exact: f64 = wr.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            let mag: f64 = wr
                .iter()
                .zip(&x)
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum();
            let got = dot_row(ty, bytes, &x) as f64;
            assert!(
                (got - exact).abs() <= 1e-5 * mag,
                "{ty} row {r}: {got} vs {exact} (magnitude {mag})"
            );
        }
    }
}

#[test]
fn quantize_matches_gguf_py_bytes() {
    let mut checked = 0;
    for &ty in SUPPORTED {
        let f = GgufFile::open(fixture(&format!("dequant_{}.gguf", ty.name()))).unwrap();
        let (Some(source), Some(quantized)) = (f.tensor("source"), f.tensor("quantized")) else {
            continue;
        };
        let ours = quantize(ty, &f32s(f.tensor_bytes(source)));
        let theirs = f.tensor_bytes(quantized);
        let block = ty.type_size() as usize;
        let bad: Vec<usize> = ours
            .chunks(block)
            .zip(theirs.chunks(block))
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{ty}");
        assert!(bad.is_empty(), "{ty}: blocks {bad:?} differ from gguf-py");
        checked += 1;
    }
    assert_eq!(
        checked, 7,
        "F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 have gguf-py quantizers"
    );
}

fn json_to_value(ty: &str, v: &serde_json::Value) -> Value {
    let int = || v.as_i64().unwrap();
    match ty {
        "U8" => Value::U8(int() as u8),
        "I8" => Value::I8(int() as i8),
        "U16" => Value::U16(int() as u16),
        "I16" => Value::I16(int() as i16),
        "U32" => Value::U32(int() as u32),
        "I32" => Value::I32(int() as i32),
        "U64" => Value::U64(v.as_u64().unwrap()),
        "I64" => Value::I64(int()),
        "F32" => Value::F32(v.as_f64().unwrap() as f32),
        "F64" => Value::F64(v.as_f64().unwrap()),
        "Bool" => Value::Bool(v.as_bool().unwrap()),
        "String" => Value::String(v.as_str().unwrap().to_string()),
        other => panic!("unexpected type {other}"),
    }
}

#[test]
fn metadata_of_every_type_matches_gguf_py() {
    let f = GgufFile::open(fixture("metadata.gguf")).unwrap();
    let text = std::fs::read_to_string(fixture("metadata.json")).unwrap();
    let listing: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(f.metadata.len(), listing.len());
    for (entry, (key, value)) in listing.iter().zip(&f.metadata) {
        assert_eq!(entry["key"].as_str().unwrap(), key);
        let ty = entry["type"].as_str().unwrap();
        if ty != "Array" {
            assert_eq!(value, &json_to_value(ty, &entry["value"]), "{key}");
            continue;
        }
        let items = value.as_array().unwrap();
        let expected = entry["value"].as_array().unwrap();
        assert_eq!(items.len(), expected.len(), "{key}");
        for (item, e) in items.iter().zip(expected) {
            let matches = match item {
                Value::String(s) => e.as_str() == Some(s),
                Value::I32(i) => e.as_i64() == Some(*i as i64),
                Value::F32(x) => e.as_f64() == Some(*x as f64),
                Value::Array(ValueType::I32, inner) => {
                    let inner: Vec<i64> = inner.iter().map(|v| v.as_i64().unwrap()).collect();
                    let e: Vec<i64> = e
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_i64().unwrap())
                        .collect();
                    inner == e
                }
                other => panic!("{key}: unexpected element {other:?}"),
            };
            assert!(matches, "{key}: {item:?} vs {e}");
        }
    }
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_offset % 64, 0);
    let b = f.tensor("b").unwrap();
    assert_eq!(
        (b.dims.as_slice(), b.ty, b.offset % 64),
        (&[4u64, 2][..], GgmlType::F16, 0)
    );
    let vals = dequantize_to_vec(GgmlType::F16, f.tensor_bytes(b), 8).unwrap();
    assert_eq!(vals, (0..8).map(|i| i as f32).collect::<Vec<_>>());
}

#[test]
fn versions_two_and_three_read_alike() {
    let v2 = GgufFile::open(fixture("version2.gguf")).unwrap();
    let v3 = GgufFile::open(fixture("version3.gguf")).unwrap();
    assert_eq!((v2.version, v3.version), (2, 3));
    assert_eq!(v2.metadata, v3.metadata);
    assert_eq!(v2.tensors, v3.tensors);
    assert_eq!(v2.get_u64("test.value"), Some(7));
    let t = v2.tensor("t").unwrap();
    assert_eq!(f32s(v2.tensor_bytes(t)), [1.0, 2.0, 3.0, 4.0]);
}
