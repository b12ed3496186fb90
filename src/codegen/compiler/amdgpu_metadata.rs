//! Register usage of a kernel, read from an AMDGPU code object: the ELF note `AMDGPU` of type
//! NT_AMDGPU_METADATA holds a MessagePack map whose `amdhsa.kernels` list gives each kernel's
//! `.vgpr_count`, `.sgpr_count` and spill counts (code object v3 and later).
//!
//! The code object comes from the compiler we just ran, but it is still parsed with bounds
//! checks everywhere: a format we do not understand gives None, never a panic.

const SHT_NOTE: u32 = 7;
const NT_AMDGPU_METADATA: u32 = 32;
/// Nesting deeper than this is not AMDGPU metadata; the limit keeps recursion bounded.
const MAX_DEPTH: usize = 16;

/// What the metadata says about one kernel's registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KernelRegisters {
    pub vgprs: u32,
    pub sgprs: u32,
    pub spills: u32,
}

/// Registers of kernel `name` in `code_object`; when no kernel has that name and the object
/// holds exactly one kernel, that one.
pub(super) fn kernel_registers(code_object: &[u8], name: &str) -> Option<KernelRegisters> {
    let metadata = metadata_note(code_object)?;
    let root = Reader {
        bytes: metadata,
        pos: 0,
    }
    .value(0)?;
    let Msg::Array(kernels) = root.get("amdhsa.kernels")? else {
        return None;
    };
    let chosen = kernels
        .iter()
        .find(|k| matches!(k.get(".name"), Some(Msg::Str(n)) if n == name))
        .or(if kernels.len() == 1 {
            kernels.first()
        } else {
            None
        })?;
    let count = |key: &str| chosen.get(key).and_then(Msg::as_u32);
    Some(KernelRegisters {
        vgprs: count(".vgpr_count")?,
        sgprs: count(".sgpr_count")?,
        spills: count(".vgpr_spill_count").unwrap_or(0) + count(".sgpr_spill_count").unwrap_or(0),
    })
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}
fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}
fn read_u64(bytes: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?)).ok()
}

/// The descriptor of the NT_AMDGPU_METADATA note of a little-endian ELF64 file.
fn metadata_note(elf: &[u8]) -> Option<&[u8]> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let section_table = read_u64(elf, 0x28)?;
    let entry_size = usize::from(read_u16(elf, 0x3a)?);
    let count = usize::from(read_u16(elf, 0x3c)?);
    for index in 0..count {
        let header = section_table.checked_add(index.checked_mul(entry_size)?)?;
        if read_u32(elf, header + 4)? != SHT_NOTE {
            continue;
        }
        let offset = read_u64(elf, header + 0x18)?;
        let size = read_u64(elf, header + 0x20)?;
        let notes = elf.get(offset..offset.checked_add(size)?)?;
        if let Some(desc) = find_note(notes) {
            return Some(desc);
        }
    }
    None
}

fn find_note(mut notes: &[u8]) -> Option<&[u8]> {
    let align4 = |n: usize| n.checked_add(3).map(|v| v & !3);
    while notes.len() >= 12 {
        let name_size = read_u32(notes, 0)? as usize;
        let desc_size = read_u32(notes, 4)? as usize;
        let kind = read_u32(notes, 8)?;
        let desc_start = 12 + align4(name_size)?;
        let next = desc_start.checked_add(align4(desc_size)?)?;
        let name = notes.get(12..12 + name_size)?;
        if kind == NT_AMDGPU_METADATA && name == b"AMDGPU\0" {
            return notes.get(desc_start..desc_start + desc_size);
        }
        notes = notes.get(next..)?;
    }
    None
}

/// The MessagePack values AMDGPU metadata uses.
#[derive(Debug, Clone, PartialEq)]
enum Msg {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Array(Vec<Msg>),
    Map(Vec<(Msg, Msg)>),
}

impl Msg {
    fn get(&self, key: &str) -> Option<&Msg> {
        let Msg::Map(entries) = self else {
            return None;
        };
        entries
            .iter()
            .find(|(k, _)| matches!(k, Msg::Str(s) if s == key))
            .map(|(_, v)| v)
    }

    fn as_u32(&self) -> Option<u32> {
        match self {
            Msg::Int(v) => u32::try_from(*v).ok(),
            _ => None,
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let slice = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(slice)
    }

    fn uint(&mut self, width: usize) -> Option<u64> {
        let bytes = self.take(width)?;
        Some(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn int(&mut self, width: usize) -> Option<i64> {
        let raw = self.uint(width)?;
        let shift = 64 - 8 * width as u32;
        Some(((raw << shift) as i64) >> shift)
    }

    fn string(&mut self, len: usize) -> Option<Msg> {
        Some(Msg::Str(
            String::from_utf8_lossy(self.take(len)?).into_owned(),
        ))
    }

    fn array(&mut self, len: usize, depth: usize) -> Option<Msg> {
        let items = (0..len)
            .map(|_| self.value(depth + 1))
            .collect::<Option<Vec<_>>>()?;
        Some(Msg::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Option<Msg> {
        let entries = (0..len)
            .map(|_| Some((self.value(depth + 1)?, self.value(depth + 1)?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Msg::Map(entries))
    }

    fn value(&mut self, depth: usize) -> Option<Msg> {
        if depth > MAX_DEPTH {
            return None;
        }
        let tag = *self.take(1)?.first()?;
        let len = |r: &mut Self, width| r.uint(width).and_then(|v| usize::try_from(v).ok());
        match tag {
            0x00..=0x7f => Some(Msg::Int(i64::from(tag))),
            0x80..=0x8f => self.map(usize::from(tag & 0x0f), depth),
            0x90..=0x9f => self.array(usize::from(tag & 0x0f), depth),
            0xa0..=0xbf => self.string(usize::from(tag & 0x1f)),
            0xc0 => Some(Msg::Nil),
            0xc2 => Some(Msg::Bool(false)),
            0xc3 => Some(Msg::Bool(true)),
            0xc4..=0xc6 => {
                let n = len(self, 1 << (tag - 0xc4))?;
                Some(Msg::Bytes(self.take(n)?.to_vec()))
            }
            0xca => Some(Msg::Float(f64::from(f32::from_bits(self.uint(4)? as u32)))),
            0xcb => Some(Msg::Float(f64::from_bits(self.uint(8)?))),
            0xcc..=0xcf => i64::try_from(self.uint(1 << (tag - 0xcc))?)
                .ok()
                .map(Msg::Int),
            0xd0..=0xd3 => self.int(1 << (tag - 0xd0)).map(Msg::Int),
            0xd9..=0xdb => {
                let n = len(self, 1 << (tag - 0xd9))?;
                self.string(n)
            }
            0xdc | 0xdd => {
                let n = len(self, 2 << (tag - 0xdc))?;
                self.array(n, depth)
            }
            0xde | 0xdf => {
                let n = len(self, 2 << (tag - 0xde))?;
                self.map(n, depth)
            }
            0xe0..=0xff => Some(Msg::Int(i64::from(tag as i8))),
            // ext types (0xc7..0xc9, 0xd4..0xd8) do not occur in AMDGPU metadata.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Option<Msg> {
        Reader { bytes, pos: 0 }.value(0)
    }

    #[test]
    fn decodes_messagepack_scalars_and_containers() {
        assert_eq!(decode(&[0x05]), Some(Msg::Int(5)));
        assert_eq!(decode(&[0xff]), Some(Msg::Int(-1)));
        assert_eq!(decode(&[0xcd, 0x04, 0x00]), Some(Msg::Int(1024)));
        assert_eq!(decode(&[0xd1, 0xff, 0x00]), Some(Msg::Int(-256)));
        assert_eq!(decode(&[0xa2, b'h', b'i']), Some(Msg::Str("hi".into())));
        assert_eq!(
            decode(&[0x81, 0xa1, b'a', 0x92, 0xc3, 0xc0]),
            Some(Msg::Map(vec![(
                Msg::Str("a".into()),
                Msg::Array(vec![Msg::Bool(true), Msg::Nil])
            )]))
        );
    }

    #[test]
    fn truncated_or_hostile_input_gives_none() {
        assert_eq!(decode(&[0xa5, b'a']), None);
        assert_eq!(decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(decode(&[0x91; 64]), None);
        assert_eq!(kernel_registers(b"\x7fELF\x02\x01garbage", "k"), None);
        assert_eq!(kernel_registers(b"", "k"), None);
    }
}
