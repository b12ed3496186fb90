//! The reader on malformed files: every defect gives a specific error naming the file and the
//! problem, never a panic, a hang or a huge allocation.

use rocmforge::gguf::writer::GgufWriter;
use rocmforge::gguf::{GgmlType, GgufError, GgufFile, Value, ValueType};

const NAME: &str = "broken.gguf";

/// Hand-built GGUF bytes, for defects the writer cannot express.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw::default();
        r.0.extend_from_slice(b"GGUF");
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(ValueType::U32 as u32).u32(v)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to 32 and appends `n` data bytes.
    fn data(&mut self, n: usize) -> &mut Self {
        let len = self.0.len().next_multiple_of(32);
        self.0.resize(len + n, 0);
        self
    }
    fn parse(&self) -> Result<GgufFile, GgufError> {
        GgufFile::from_bytes(NAME, self.0.clone())
    }
}

/// Parses, expects failure, and checks that the message names the file and contains `what`.
fn fails(bytes: Vec<u8>, what: &str) -> GgufError {
    let e = GgufFile::from_bytes(NAME, bytes).expect_err(what);
    let msg = e.to_string();
    assert!(
        msg.starts_with(NAME),
        "message does not name the file: {msg}"
    );
    assert!(msg.contains(what), "expected '{what}' in: {msg}");
    e
}

fn malformed_at(bytes: Vec<u8>, what: &str) -> u64 {
    match fails(bytes, what) {
        GgufError::Malformed { offset, .. } => offset,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn bad_magic() {
    let mut raw = Raw::header(3, 0, 0);
    raw.0[..4].copy_from_slice(b"GGML");
    let e = fails(raw.0, "not a GGUF file");
    assert!(matches!(e, GgufError::BadMagic { found, .. } if &found == b"GGML"));
}

#[test]
fn versions_one_and_four_are_refused() {
    for version in [0, 1, 4, u32::MAX] {
        let e = fails(Raw::header(version, 0, 0).0, "is not supported");
        assert!(matches!(e, GgufError::UnsupportedVersion { version: v, .. } if v == version));
    }
    for version in [2, 3] {
        assert_eq!(Raw::header(version, 0, 0).parse().unwrap().version, version);
    }
}

/// A valid file with several metadata types and tensors, plus the byte ranges of its sections.
struct Sections {
    bytes: Vec<u8>,
    kv_ends: Vec<usize>,
    infos_end: usize,
    data_end: usize,
}

fn sections() -> Sections {
    let kvs = vec![
        ("general.architecture", Value::String("test".into())),
        ("a.u8", Value::U8(1)),
        ("a.f64", Value::F64(2.5)),
        (
            "a.strings",
            Value::Array(ValueType::String, vec![Value::String("xy".into()); 3]),
        ),
        ("a.u64", Value::U64(9)),
    ];
    let mut w = GgufWriter::new();
    let mut kv_ends = Vec::new();
    for (k, v) in kvs {
        w.metadata(k, v);
        kv_ends.push(w.to_bytes().len());
    }
    let tensors: [(&str, &[u64], GgmlType, usize); 3] = [
        ("t.f32", &[5], GgmlType::F32, 20),
        ("t.q4", &[32, 2], GgmlType::Q4_0, 36),
        ("t.q6k", &[256], GgmlType::Q6K, 210),
    ];
    let mut infos_end = *kv_ends.last().unwrap();
    for (name, dims, ty, n) in tensors {
        w.tensor(name, dims, ty, vec![0x11; n]);
        infos_end += 8 + name.len() + 4 + 8 * dims.len() + 4 + 8;
    }
    let bytes = w.to_bytes();
    // The last tensor's data ends before the final alignment padding.
    let data_end = infos_end.next_multiple_of(32) + 32 + 64 + 210;
    GgufFile::from_bytes("valid", bytes.clone()).unwrap();
    Sections {
        bytes,
        kv_ends,
        infos_end,
        data_end,
    }
}

#[test]
fn truncation_anywhere_is_a_clear_error() {
    let s = sections();
    for cut in 0..s.data_end {
        let e = GgufFile::from_bytes(NAME, s.bytes[..cut].to_vec()).expect_err("truncated");
        let msg = e.to_string();
        assert!(msg.starts_with(NAME), "cut {cut}: {msg}");
        let GgufError::Malformed { offset, what, .. } = &e else {
            panic!("cut {cut}: expected Malformed, got {e:?}");
        };
        // Truncation inside the header and tables is reported where a field runs out or,
        // earlier, where the header's counts no longer fit in the remaining bytes.
        let truncated = what.contains("truncated while reading") || what.contains("more than the");
        let ok = match cut {
            0..=3 => what.contains("truncated while reading the magic number"),
            4..=7 => what.contains("truncated while reading the version"),
            8..=15 => what.contains("truncated while reading the tensor count"),
            16..=23 => what.contains("truncated while reading the metadata count"),
            _ if cut < *s.kv_ends.last().unwrap() => {
                let names_it = ["metadata", "tensor infos", "elements in array"];
                truncated && names_it.iter().any(|n| what.contains(n))
            }
            _ if cut < s.infos_end => truncated && what.contains("tensor"),
            _ => {
                what.contains("file ends before the tensor data section")
                    || what.contains("runs past the end of the file")
            }
        };
        assert!(ok, "cut {cut}: {msg}");
        assert!(
            *offset <= cut as u64 || what.contains("runs past"),
            "cut {cut}: {msg}"
        );
    }
    // Inside the third metadata entry the message names it.
    let cut = s.kv_ends[2] - 3;
    fails(s.bytes[..cut].to_vec(), "the value of metadata 'a.f64'");
    // Only the trailing alignment padding may go.
    assert!(GgufFile::from_bytes(NAME, s.bytes[..s.data_end].to_vec()).is_ok());
}

#[test]
fn tensor_data_past_the_end() {
    let mut raw = Raw::header(3, 1, 0);
    raw.tensor("w", &[8], GgmlType::F32.id(), 0).data(31);
    fails(
        raw.0,
        "tensor 'w' data (32 bytes at data offset 0) runs past the end",
    );
    let mut raw = Raw::header(3, 1, 0);
    raw.tensor("w", &[8], GgmlType::F32.id(), u64::MAX - 31)
        .data(32);
    fails(raw.0, "runs past the end of the file");
    // Data section itself beyond the end: infos end mid-way through an alignment block.
    let mut raw = Raw::header(3, 1, 0);
    raw.tensor("w", &[8], GgmlType::F32.id(), 0);
    fails(raw.0, "file ends before the tensor data section");
}

#[test]
fn misaligned_offset() {
    let mut raw = Raw::header(3, 1, 0);
    raw.tensor("w", &[4], GgmlType::F32.id(), 8).data(64);
    fails(
        raw.0,
        "tensor 'w' data offset 8 is not a multiple of the alignment 32",
    );
    let mut raw = Raw::header(3, 1, 1);
    raw.kv_u32("general.alignment", 8)
        .tensor("w", &[4], GgmlType::F32.id(), 8)
        .data(64);
    raw.parse().unwrap();
}

#[test]
fn duplicate_tensor_names_and_keys() {
    let mut w = GgufWriter::new();
    w.tensor("w", &[1], GgmlType::F32, vec![0; 4]);
    w.tensor("w", &[1], GgmlType::F32, vec![0; 4]);
    fails(w.to_bytes(), "duplicate tensor name 'w'");
    let mut w = GgufWriter::new();
    w.metadata("k", Value::U8(1)).metadata("k", Value::U8(2));
    fails(w.to_bytes(), "duplicate metadata key 'k'");
}

#[test]
fn unknown_type_ids() {
    for id in [4u32, 5, 31, 1000, u32::MAX] {
        let mut raw = Raw::header(3, 1, 0);
        raw.tensor("w", &[32], id, 0).data(64);
        let e = fails(
            raw.0,
            &format!("tensor 'w' has type id {id}, which is not a GGML type"),
        );
        assert!(matches!(e, GgufError::UnknownTypeId { id: i, .. } if i == id));
    }
    let mut raw = Raw::header(3, 0, 1);
    raw.str("k").u32(13).u32(0);
    malformed_at(raw.0, "metadata 'k' has unknown value type 13");
    let mut raw = Raw::header(3, 0, 1);
    raw.str("k")
        .u32(ValueType::Array as u32)
        .u32(99)
        .u64(1)
        .u32(0);
    malformed_at(raw.0, "metadata 'k' is an array of unknown type 99");
    // Known but unsupported by the engine: parses, and require_supported names it.
    let mut raw = Raw::header(3, 1, 0);
    raw.tensor("w", &[256], GgmlType::Q8K.id(), 0).data(292);
    let f = raw.parse().unwrap();
    let e = f.require_supported(f.tensor("w").unwrap()).unwrap_err();
    assert!(e
        .to_string()
        .contains("tensor 'w' has type Q8_K, which rocmforge does not support"));
}

#[test]
fn absurd_counts_and_lengths_do_not_allocate() {
    let huge = 1u64 << 60;
    malformed_at(
        Raw::header(3, huge, 0).0,
        &format!("claims {huge} tensor infos"),
    );
    malformed_at(
        Raw::header(3, 0, huge).0,
        &format!("claims {huge} metadata entries"),
    );
    malformed_at(
        Raw::header(3, u64::MAX, u64::MAX).0,
        "more than the 0 remaining bytes",
    );
    // Padding keeps the header's counts plausible, so that the lengths themselves are judged.
    let mut raw = Raw::header(3, 0, 1);
    raw.u64(huge).u32(0).data(64);
    malformed_at(
        raw.0,
        &format!("key of metadata entry 0 ({huge} bytes needed"),
    );
    let mut raw = Raw::header(3, 0, 1);
    raw.str("s").u32(ValueType::String as u32).u64(u64::MAX);
    malformed_at(raw.0, "truncated while reading the value of metadata 's'");
    for elem in [ValueType::U8, ValueType::String, ValueType::Array] {
        let mut raw = Raw::header(3, 0, 1);
        raw.str("arr")
            .u32(ValueType::Array as u32)
            .u32(elem as u32)
            .u64(huge);
        malformed_at(raw.0, &format!("claims {huge} elements in array 'arr'"));
    }
    let mut raw = Raw::header(3, 1, 0);
    raw.u64(huge).u32(1).data(64);
    malformed_at(raw.0, "the name of tensor 0");
    let mut raw = Raw::header(3, 1, 0);
    raw.tensor("w", &[1 << 32, 1 << 32, 1 << 32], GgmlType::F32.id(), 0);
    malformed_at(
        raw.0,
        "dimensions [4294967296, 4294967296, 4294967296] overflow",
    );
    let mut raw = Raw::header(3, 1, 0);
    raw.tensor("w", &[u64::MAX / 2 + 1], GgmlType::F32.id(), 0);
    malformed_at(raw.0, "size overflows");
}

#[test]
fn dimension_counts() {
    for n_dims in [0usize, 5, 1000] {
        let mut raw = Raw::header(3, 1, 0);
        raw.tensor("w", &vec![1; n_dims], GgmlType::F32.id(), 0)
            .data(32);
        malformed_at(
            raw.0,
            &format!("tensor 'w' has {n_dims} dimensions (1 to 4 allowed)"),
        );
    }
    let mut raw = Raw::header(3, 1, 0);
    raw.tensor("w", &[16, 2], GgmlType::Q4_0.id(), 0).data(64);
    malformed_at(
        raw.0,
        "rows of 16 elements, not a multiple of the Q4_0 block size 32",
    );
}

#[test]
fn bad_alignment() {
    for (value, shown) in [
        (Value::U32(0), "0"),
        (Value::U32(3), "3"),
        (Value::U64(48), "48"),
        (Value::I32(-32), "-32"),
        (Value::String("32".into()), "\"32\""),
    ] {
        let mut w = GgufWriter::new();
        w.metadata("general.alignment", value);
        let e = fails(
            w.to_bytes(),
            &format!("must be a power of two, found {shown}"),
        );
        assert!(matches!(e, GgufError::Metadata { ref key, .. } if key == "general.alignment"));
    }
}

#[test]
fn bad_values() {
    let mut raw = Raw::header(3, 0, 1);
    raw.str("b").u32(ValueType::Bool as u32);
    raw.0.push(2);
    malformed_at(raw.0, "metadata 'b' is a bool of value 2");
    let mut raw = Raw::header(3, 0, 1);
    raw.u64(2);
    raw.0.extend_from_slice(&[0xC3, 0x28]);
    raw.u32(0).0.push(0);
    malformed_at(raw.0, "the key of metadata entry 0 is not valid UTF-8");
    // Arrays of arrays nested past any real use: (element type, count) pairs, all arrays.
    let mut raw = Raw::header(3, 0, 1);
    raw.str("deep").u32(ValueType::Array as u32);
    for _ in 0..8 {
        raw.u32(ValueType::Array as u32).u64(1);
    }
    raw.u32(ValueType::U8 as u32).u64(0);
    malformed_at(raw.0, "metadata 'deep' nests arrays too deeply");
}
