//! Weight formats the kernels read, with the geometry the templates and `validate()` share.
//! The dequantization itself lives in `templates/quant/<tag>.hip.tera`; each snippet defines
//! `QK`, `QBYTES`, `CHUNK` and `dq_chunk(row, c, out)` with the values listed here; formats with
//! integer quants also define `dot_chunk_q8`, the chunk dotted with int8 x (`quant/dot.hip.tera`).

use crate::gguf::GgmlType;

/// How one weight format is laid out and cut into chunks by its snippet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightLayout {
    pub format: GgmlType,
    /// Lower-case name used in kernel names and snippet file names (`q4_k`).
    pub tag: &'static str,
    /// Values per block.
    pub block_values: usize,
    /// Bytes per block.
    pub block_bytes: usize,
    /// Values one thread dequantizes at once (`CHUNK`): a whole block for the 32-value formats,
    /// one scale group (or pair of groups) of 32 for the K-quants, 8 for plain floats.
    pub chunk: usize,
    /// The snippet defines `dot_chunk_q8` (integer quants dotted with int8 x by dp4a); its chunk is
    /// then one 32-value x block. Plain floats have no integer quants to dot.
    pub int8_dot: bool,
    /// The snippet also defines `dot_words_q8`: that dot for a block at a byte offset of words
    /// already in registers, which the GEMV's lane groups (aligned vector loads of several
    /// consecutive blocks) use.
    pub words_dot: bool,
}

const LAYOUTS: &[WeightLayout] = &[
    layout(GgmlType::F32, "f32", 1, 4, 8),
    layout(GgmlType::F16, "f16", 1, 2, 8),
    layout(GgmlType::BF16, "bf16", 1, 2, 8),
    layout(GgmlType::Q4_0, "q4_0", 32, 18, 32),
    layout(GgmlType::Q4_1, "q4_1", 32, 20, 32),
    layout(GgmlType::Q5_0, "q5_0", 32, 22, 32),
    layout(GgmlType::Q5_1, "q5_1", 32, 24, 32),
    layout(GgmlType::Q8_0, "q8_0", 32, 34, 32),
    layout(GgmlType::Q2K, "q2_k", 256, 84, 32),
    layout(GgmlType::Q3K, "q3_k", 256, 110, 32),
    layout(GgmlType::Q4K, "q4_k", 256, 144, 32),
    layout(GgmlType::Q5K, "q5_k", 256, 176, 32),
    layout(GgmlType::Q6K, "q6_k", 256, 210, 32),
];

const fn layout(
    format: GgmlType,
    tag: &'static str,
    block_values: usize,
    block_bytes: usize,
    chunk: usize,
) -> WeightLayout {
    WeightLayout {
        format,
        tag,
        block_values,
        block_bytes,
        chunk,
        int8_dot: block_values > 1,
        words_dot: matches!(format, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0),
    }
}

/// Every format with a GPU dequantization snippet.
pub fn gpu_formats() -> impl Iterator<Item = GgmlType> {
    LAYOUTS.iter().map(|l| l.format)
}

pub fn weight_layout(format: GgmlType) -> Option<WeightLayout> {
    LAYOUTS.iter().copied().find(|l| l.format == format)
}

impl WeightLayout {
    /// The row-length granularity a matmul or embedding over this format needs.
    pub fn k_multiple(&self) -> usize {
        self.block_values.max(self.chunk)
    }

    /// Bytes of one row of `k` values.
    pub fn row_bytes(&self, k: usize) -> usize {
        k / self.block_values * self.block_bytes
    }

    /// The snippet's template name.
    pub fn template(&self) -> String {
        format!("quant/{}.hip.tera", self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_gguf_block_table() {
        for l in LAYOUTS {
            assert_eq!(l.block_values as u64, l.format.block_size(), "{}", l.tag);
            assert_eq!(l.block_bytes as u64, l.format.type_size(), "{}", l.tag);
            assert_eq!(l.tag, l.format.name().to_ascii_lowercase(), "{}", l.tag);
            assert_eq!(
                l.int8_dot,
                !matches!(l.format, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16),
                "{}",
                l.tag
            );
            assert!(
                !l.int8_dot || l.chunk == 32,
                "{}: int8 dot needs 32-value chunks",
                l.tag
            );
            assert!(
                l.chunk % 4 == 0
                    && (l.chunk % l.block_values == 0 || l.block_values % l.chunk == 0)
            );
        }
        assert_eq!(gpu_formats().count(), crate::gguf::types::SUPPORTED.len());
    }
}
