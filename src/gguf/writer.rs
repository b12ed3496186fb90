//! GGUF writer, for tests, fixtures and synthetic models.
//!
//! `to_bytes` is a faithful serializer: it writes whatever it was given (duplicate keys, odd
//! alignments), which is what tests of the reader's error paths need. `write` first checks that
//! the result is a file the reader accepts, then writes it atomically (temp file + rename).

use super::reader::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};
use super::types::GgmlType;
use super::value::Value;
use std::collections::HashSet;
use std::io::{self, Write};
use std::path::Path;

#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty GGUF v3 file.
    pub fn new() -> GgufWriter {
        GgufWriter {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// The version number written in the header. Versions 2 and 3 share one little-endian
    /// layout (v3 only added big-endian files), so only the number changes.
    pub fn version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Adds a metadata entry, in order. `general.alignment` sets the tensor data alignment.
    pub fn metadata(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        self.metadata.push((key.into(), value));
        self
    }

    /// Adds a tensor. `dims` are in GGML order (`dims[0]` is the row length); `data` is its raw
    /// encoded bytes.
    pub fn tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.into(),
            dims: dims.to_vec(),
            ty,
            data,
        });
        self
    }

    /// The alignment the file will use: a positive `general.alignment`, else 32.
    pub fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .rev()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .filter(|&a| a > 0)
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Checks what the reader will check: unique keys and names, a power-of-two alignment, 1 to
    /// 4 dimensions, whole blocks per row, and data sizes matching the dimensions.
    pub fn validate(&self) -> Result<(), String> {
        let mut keys = HashSet::new();
        for (k, _) in &self.metadata {
            if !keys.insert(k) {
                return Err(format!("duplicate metadata key '{k}'"));
            }
        }
        if let Some((_, v)) = self.metadata.iter().find(|(k, _)| k == "general.alignment") {
            if !v.as_u64().is_some_and(|a| a > 0 && a.is_power_of_two()) {
                return Err(format!(
                    "general.alignment must be a power of two, found {v}"
                ));
            }
        }
        let mut names = HashSet::new();
        for t in &self.tensors {
            if !names.insert(&t.name) {
                return Err(format!("duplicate tensor name '{}'", t.name));
            }
            if t.dims.is_empty() || t.dims.len() > MAX_DIMS as usize {
                return Err(format!(
                    "tensor '{}' has {} dimensions",
                    t.name,
                    t.dims.len()
                ));
            }
            if t.dims[0] % t.ty.block_size() != 0 {
                return Err(format!(
                    "tensor '{}' rows of {} are not whole {} blocks",
                    t.name, t.dims[0], t.ty
                ));
            }
            let n = t.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            let expected = n.and_then(|n| t.ty.bytes_for(n));
            if expected != Some(t.data.len() as u64) {
                return Err(format!(
                    "tensor '{}' {:?} of {} needs {expected:?} bytes, has {}",
                    t.name,
                    t.dims,
                    t.ty,
                    t.data.len()
                ));
            }
        }
        Ok(())
    }

    /// The whole file in memory, exactly as given (no validation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = self.alignment();
        let mut out = Vec::new();
        out.extend_from_slice(GGUF_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut out, key);
            out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            put_value(&mut out, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + t.data.len() as u64).next_multiple_of(align);
        }
        for t in &self.tensors {
            pad_to(&mut out, align);
            out.extend_from_slice(&t.data);
        }
        // A file with tensors ends aligned, as ggml's writer does; the padding is harmless.
        if !self.tensors.is_empty() {
            pad_to(&mut out, align);
        }
        out
    }

    /// Validates, then writes `path` atomically: a temp file beside it, synced, then renamed.
    pub fn write(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        self.validate().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: {e}", path.display()),
            )
        })?;
        let bytes = self.to_bytes();
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".tmp.{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            // Best effort: the temp file may not exist if creating it was what failed.
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

fn pad_to(out: &mut Vec<u8>, align: u64) {
    let len = (out.len() as u64).next_multiple_of(align);
    out.resize(len as usize, 0);
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_string(out, s),
        Value::Array(elem, items) => {
            out.extend_from_slice(&(*elem as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::value::ValueType;
    use crate::gguf::GgufFile;

    fn every_value() -> Vec<(&'static str, Value)> {
        vec![
            ("u8", Value::U8(200)),
            ("i8", Value::I8(-100)),
            ("u16", Value::U16(60000)),
            ("i16", Value::I16(-30000)),
            ("u32", Value::U32(4_000_000_000)),
            ("i32", Value::I32(-2_000_000_000)),
            ("f32", Value::F32(-1.5e-7)),
            ("bool", Value::Bool(true)),
            ("string", Value::String("héllo, wörld ✓".into())),
            ("empty", Value::String(String::new())),
            ("u64", Value::U64(u64::MAX)),
            ("i64", Value::I64(i64::MIN)),
            ("f64", Value::F64(std::f64::consts::PI)),
            (
                "strings",
                Value::Array(
                    ValueType::String,
                    vec![
                        Value::String("a".into()),
                        Value::String("".into()),
                        Value::String("ü".into()),
                    ],
                ),
            ),
            ("no_ints", Value::Array(ValueType::I32, vec![])),
            (
                "nested",
                Value::Array(
                    ValueType::Array,
                    vec![Value::Array(
                        ValueType::U8,
                        vec![Value::U8(1), Value::U8(2)],
                    )],
                ),
            ),
        ]
    }

    #[test]
    fn round_trips_through_the_reader() {
        for align in [None, Some(1u32), Some(64)] {
            let mut w = GgufWriter::new();
            for (k, v) in every_value() {
                w.metadata(k, v);
            }
            if let Some(a) = align {
                w.metadata("general.alignment", Value::U32(a));
            }
            w.tensor("a", &[3], GgmlType::F32, vec![7; 12]);
            w.tensor("b", &[32, 2], GgmlType::Q8_0, (0..68).collect());
            w.tensor("c", &[1], GgmlType::F16, vec![1, 2]);
            w.validate().unwrap();
            let f = GgufFile::from_bytes("mem", w.to_bytes()).unwrap();
            assert_eq!(f.version, 3);
            let expect_align = align.map_or(32, |a| a as u64);
            assert_eq!(f.alignment, expect_align);
            assert_eq!(f.data_offset % expect_align, 0);
            for (k, v) in every_value() {
                assert_eq!(f.get(k), Some(&v), "{k}");
            }
            assert_eq!(f.tensors.len(), 3);
            for t in &f.tensors {
                assert_eq!(t.offset % expect_align, 0, "{}", t.name);
            }
            assert_eq!(f.tensor_bytes(f.tensor("a").unwrap()), &[7; 12]);
            let b = f.tensor("b").unwrap();
            assert_eq!((b.dims.clone(), b.ty), (vec![32, 2], GgmlType::Q8_0));
            assert_eq!(f.tensor_bytes(b), (0..68).collect::<Vec<u8>>().as_slice());
            assert_eq!(f.tensor_bytes(f.tensor("c").unwrap()), &[1, 2]);
        }
    }

    #[test]
    fn version_two_and_empty_files() {
        let bytes = GgufWriter::new().version(2).to_bytes();
        assert_eq!(bytes.len(), 24);
        let f = GgufFile::from_bytes("v2", bytes).unwrap();
        assert_eq!((f.version, f.tensors.len(), f.metadata.len()), (2, 0, 0));
    }

    #[test]
    fn write_is_atomic_and_validated() {
        let dir = std::env::temp_dir().join(format!("rocmforge-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.gguf");
        let mut w = GgufWriter::new();
        w.metadata("general.architecture", Value::String("test".into()));
        w.tensor("t", &[4], GgmlType::F32, vec![0; 16]);
        w.write(&path).unwrap();
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.architecture(), Some("test"));
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "temp file left behind"
        );

        w.tensor("t", &[4], GgmlType::F32, vec![0; 16]);
        let e = w.write(dir.join("bad.gguf")).unwrap_err();
        assert!(e.to_string().contains("duplicate tensor name 't'"), "{e}");
        assert!(!dir.join("bad.gguf").exists());
        let mut w = GgufWriter::new();
        w.tensor("q", &[16], GgmlType::Q4_0, vec![0; 18]);
        assert!(w.validate().unwrap_err().contains("not whole Q4_0 blocks"));
        let mut w = GgufWriter::new();
        w.tensor("q", &[32], GgmlType::Q4_0, vec![0; 17]);
        assert!(w
            .validate()
            .unwrap_err()
            .contains("needs Some(18) bytes, has 17"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
