//! GGUF v2/v3 reader over a memory map. Every count and length the file claims is checked against
//! the bytes that remain before anything is allocated for it, so a corrupt file yields an error,
//! never a huge allocation, a panic or a hang.

use super::error::GgufError;
use super::types::{GgmlType, SUPPORTED};
use super::value::{Value, ValueType};
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML_MAX_DIMS.
pub const MAX_DIMS: u32 = 4;
/// Arrays nest only in malformed files; a small bound keeps recursion shallow.
const MAX_ARRAY_DEPTH: u32 = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` is the contiguous (row) dimension.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

enum Backing {
    Map(Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

pub struct GgufFile {
    path: PathBuf,
    backing: Backing,
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    meta_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    pub alignment: u64,
    pub data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps and parses a file. The map is read-only and private; tensor data is never copied.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        // SAFETY: the map is read-only; rocmforge never writes model files while they are open,
        // and a file truncated underneath us is the user's doing, as with every mmap reader.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, Backing::Map(map))
    }

    /// Parses bytes already in memory; `name` stands in for the path in errors.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::parse(name.into(), Backing::Owned(bytes))
    }

    fn parse(path: PathBuf, backing: Backing) -> Result<GgufFile, GgufError> {
        let bytes = backing.bytes();
        let mut c = Cursor {
            path: &path,
            bytes,
            pos: 0,
        };
        let magic: [u8; 4] = c.take(4, "the magic number")?.try_into().unwrap();
        if &magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic {
                path: path.clone(),
                found: magic,
            });
        }
        let version = c.u32("the version")?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion {
                path: path.clone(),
                version,
            });
        }
        let n_tensors = c.u64("the tensor count")?;
        let n_kv = c.u64("the metadata count")?;
        // A key/value takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least
        // 8 + 4 + 4 + 8. Claims that cannot fit in what remains are rejected before any loop.
        c.check_count(n_kv, 13, "metadata entries")?;
        c.check_count(n_tensors, 24, "tensor infos")?;

        let mut metadata = Vec::new();
        let mut meta_index = HashMap::new();
        for i in 0..n_kv {
            let at = c.pos as u64;
            let key = c.string(&format!("the key of metadata entry {i}"))?;
            let ty_id = c.u32(&format!("the type of metadata '{key}'"))?;
            let value = c.value(ty_id, &key, 0)?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(c.err_at(at, format!("duplicate metadata key '{key}'")));
            }
            metadata.push((key, value));
        }

        let alignment = match metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .map(|(_, v)| v)
        {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(GgufError::Metadata {
                        path: path.clone(),
                        key: "general.alignment".into(),
                        what: format!("must be a power of two, found {v}"),
                    })
                }
            },
        };

        let mut tensors = Vec::new();
        let mut tensor_index = HashMap::new();
        for i in 0..n_tensors {
            let at = c.pos as u64;
            let name = c.string(&format!("the name of tensor {i}"))?;
            let n_dims = c.u32(&format!("the dimension count of tensor '{name}'"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(c.err_at(
                    at,
                    format!("tensor '{name}' has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(c.u64(&format!("dimension {d} of tensor '{name}'"))?);
            }
            let ty_id = c.u32(&format!("the type of tensor '{name}'"))?;
            let ty = GgmlType::from_id(ty_id).ok_or_else(|| GgufError::UnknownTypeId {
                path: path.clone(),
                tensor: name.clone(),
                id: ty_id,
            })?;
            let offset = c.u64(&format!("the data offset of tensor '{name}'"))?;
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| {
                    c.err_at(at, format!("tensor '{name}' dimensions {dims:?} overflow"))
                })?;
            if dims[0] % ty.block_size() != 0 {
                return Err(c.err_at(
                    at,
                    format!(
                        "tensor '{name}' has rows of {} elements, not a multiple of the {ty} block size {}",
                        dims[0],
                        ty.block_size()
                    ),
                ));
            }
            let n_bytes = ty.bytes_for(n_elements).ok_or_else(|| {
                c.err_at(
                    at,
                    format!("tensor '{name}' size overflows ({dims:?} of {ty})"),
                )
            })?;
            if offset % alignment != 0 {
                return Err(c.err_at(
                    at,
                    format!(
                        "tensor '{name}' data offset {offset} is not a multiple of the alignment {alignment}"
                    ),
                ));
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(c.err_at(at, format!("duplicate tensor name '{name}'")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                n_bytes,
            });
        }

        let data_offset = (c.pos as u64).next_multiple_of(alignment);
        let file_len = bytes.len() as u64;
        if n_tensors > 0 && data_offset > file_len {
            return Err(c.err_at(
                c.pos as u64,
                format!(
                    "file ends before the tensor data section (which starts at byte {data_offset})"
                ),
            ));
        }
        for t in &tensors {
            let end = data_offset
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.n_bytes));
            match end {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(GgufError::Malformed {
                        path: path.clone(),
                        offset: data_offset.saturating_add(t.offset),
                        what: format!(
                            "tensor '{}' data ({} bytes at data offset {}) runs past the end of the file ({} bytes)",
                            t.name, t.n_bytes, t.offset, file_len
                        ),
                    })
                }
            }
        }

        Ok(GgufFile {
            path,
            backing,
            version,
            metadata,
            meta_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file_len(&self) -> u64 {
        self.backing.bytes().len() as u64
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    /// `general.architecture`, the name plans are looked up by.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor, straight from the map. Bounds were checked at open.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        let start = (self.data_offset + t.offset) as usize;
        &self.backing.bytes()[start..start + t.n_bytes as usize]
    }

    /// Error for a tensor whose type the engine cannot compute with.
    pub fn require_supported(&self, t: &TensorInfo) -> Result<(), GgufError> {
        if t.ty.is_supported() {
            return Ok(());
        }
        Err(GgufError::UnsupportedType {
            path: self.path.clone(),
            tensor: t.name.clone(),
            ty: t.ty.name().into(),
            supported: SUPPORTED
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn err_at(&self, offset: u64, what: String) -> GgufError {
        GgufError::Malformed {
            path: self.path.to_path_buf(),
            offset,
            what,
        }
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&[u8], GgufError> {
        if n > self.remaining() {
            return Err(self.err_at(
                self.pos as u64,
                format!(
                    "file truncated while reading {what} ({n} bytes needed, {} left)",
                    self.remaining()
                ),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn check_count(&self, count: u64, min_each: u64, what: &str) -> Result<(), GgufError> {
        if count.saturating_mul(min_each) > self.remaining() {
            return Err(self.err_at(
                self.pos as u64,
                format!(
                    "the header claims {count} {what}, more than the {} remaining bytes can hold",
                    self.remaining()
                ),
            ));
        }
        Ok(())
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let at = self.pos as u64;
        let len = self.u64(what)?;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| self.err_at(at, format!("{what} is not valid UTF-8")))
    }

    fn value(&mut self, ty_id: u32, key: &str, depth: u32) -> Result<Value, GgufError> {
        let at = self.pos as u64;
        let ty = ValueType::from_id(ty_id).ok_or_else(|| {
            self.err_at(
                at,
                format!("metadata '{key}' has unknown value type {ty_id}"),
            )
        })?;
        let what = format!("the value of metadata '{key}'");
        let fixed =
            |c: &mut Self, n: u64| -> Result<Vec<u8>, GgufError> { Ok(c.take(n, &what)?.to_vec()) };
        Ok(match ty {
            ValueType::U8 => Value::U8(fixed(self, 1)?[0]),
            ValueType::I8 => Value::I8(fixed(self, 1)?[0] as i8),
            ValueType::Bool => match fixed(self, 1)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(self.err_at(at, format!("metadata '{key}' is a bool of value {b}")))
                }
            },
            ValueType::U16 => Value::U16(u16::from_le_bytes(fixed(self, 2)?.try_into().unwrap())),
            ValueType::I16 => Value::I16(i16::from_le_bytes(fixed(self, 2)?.try_into().unwrap())),
            ValueType::U32 => Value::U32(u32::from_le_bytes(fixed(self, 4)?.try_into().unwrap())),
            ValueType::I32 => Value::I32(i32::from_le_bytes(fixed(self, 4)?.try_into().unwrap())),
            ValueType::F32 => Value::F32(f32::from_le_bytes(fixed(self, 4)?.try_into().unwrap())),
            ValueType::U64 => Value::U64(u64::from_le_bytes(fixed(self, 8)?.try_into().unwrap())),
            ValueType::I64 => Value::I64(i64::from_le_bytes(fixed(self, 8)?.try_into().unwrap())),
            ValueType::F64 => Value::F64(f64::from_le_bytes(fixed(self, 8)?.try_into().unwrap())),
            ValueType::String => Value::String(self.string(&what)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(
                        self.err_at(at, format!("metadata '{key}' nests arrays too deeply"))
                    );
                }
                let elem_id = self.u32(&what)?;
                let elem = ValueType::from_id(elem_id).ok_or_else(|| {
                    self.err_at(
                        at,
                        format!("metadata '{key}' is an array of unknown type {elem_id}"),
                    )
                })?;
                let n = self.u64(&what)?;
                // Strings take at least their 8-byte length, arrays their 12-byte header.
                let min_each =
                    elem.fixed_size()
                        .unwrap_or(if elem == ValueType::String { 8 } else { 12 });
                self.check_count(n, min_each, &format!("elements in array '{key}'"))?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem_id, key, depth + 1)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}
