//! Where everything lives on the device, computed once at load, each size in one function:
//! the weights (raw GGUF bytes, one allocation), the f16 KV cache, the activation arena (one
//! region per program value, sized for the largest chunk of tokens) and the small I/O block.

use std::collections::HashMap;

use crate::gguf::TensorInfo;
use crate::graph::ValueInfo;
use crate::plan::Hparams;

/// Offsets are rounded up to this many bytes: enough for 16-byte vector loads and for the
/// 256-byte alignment the CUDA and HIP allocators themselves guarantee. The decode GEMV's lane
/// groups (`codegen::ops::gemv_lanes`) read weight rows with 16-byte loads from the tensor's
/// start on and rely on it.
pub const ALIGN: usize = 256;

/// Bytes kept after the last tensor: the decode GEMV reads a Q4_0 or Q8_0 block as the aligned
/// 16-byte words around it (quant/words_a2's windows), up to 14 bytes past the block, which past
/// the last tensor's end must still be inside the allocation.
pub const TAIL_SLACK: usize = ALIGN;

pub fn align_up(bytes: usize) -> usize {
    bytes.div_ceil(ALIGN) * ALIGN
}

/// Byte offset of every uploaded tensor inside the one weights allocation, by tensor name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WeightLayout {
    pub offsets: HashMap<String, usize>,
    pub total: usize,
}

impl WeightLayout {
    pub fn new(tensors: &[&TensorInfo]) -> Self {
        let mut layout = WeightLayout::default();
        for t in tensors {
            if layout.offsets.contains_key(&t.name) {
                continue;
            }
            layout.offsets.insert(t.name.clone(), layout.total);
            layout.total += align_up(t.n_bytes as usize);
        }
        layout.total += TAIL_SLACK;
        layout
    }
}

/// Bytes of one layer's key (or value) cache: `[n_ctx][n_kv_head * head_dim]` f16.
pub fn kv_side_bytes(hparams: &Hparams, n_ctx: usize) -> usize {
    align_up(n_ctx * hparams.kv_width() * 2)
}

/// Bytes of the whole KV cache: keys and values of every layer.
pub fn kv_total_bytes(hparams: &Hparams, n_ctx: usize) -> usize {
    2 * hparams.n_layer * kv_side_bytes(hparams, n_ctx)
}

/// Offset of every program value in the activation arena: `[max_tokens][width]` f32 each.
///
/// Values are not overlapped by lifetime: the largest model here (8B) needs ~0.4 GiB at 512
/// tokens, small next to its weights, and disjoint regions make every in-place op safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaLayout {
    pub offsets: Vec<usize>,
    pub widths: Vec<usize>,
    pub max_tokens: usize,
    pub total: usize,
}

impl ArenaLayout {
    pub fn new(values: &[ValueInfo], max_tokens: usize) -> Self {
        let mut offsets = Vec::with_capacity(values.len());
        let mut total = 0;
        for v in values {
            offsets.push(total);
            total += align_up(max_tokens * v.width * 4);
        }
        ArenaLayout {
            offsets,
            widths: values.iter().map(|v| v.width).collect(),
            max_tokens,
            total,
        }
    }
}

/// The small i32 block that a step reads its inputs from: `[pos0, argmax result, tokens...,
/// ring...]`. Position and tokens sit together so a decode step updates them with one copy. The
/// argmax writes its result into the token slot, advances pos0 and keeps the result in the ring
/// (slot `position % FEED_RING`), so decode steps can run back to back on the device and the
/// host reads up to `FEED_RING` results with one copy.
pub const IO_POS0: usize = 0;
pub const IO_ARGMAX: usize = 1;
pub const IO_TOKENS: usize = 2;
pub const FEED_RING: usize = 64;

/// Where the ring starts in the I/O block.
pub fn io_ring(max_tokens: usize) -> usize {
    IO_TOKENS + max_tokens
}

pub fn io_len(max_tokens: usize) -> usize {
    io_ring(max_tokens) + FEED_RING
}

/// Everything the executor allocates, for the up-front memory check and its error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    pub weights: usize,
    pub kv_cache: usize,
    pub arena: usize,
    pub io: usize,
    /// The f16 staging buffers of prefill on the vendor GEMM (0 when it is not used).
    pub staging: usize,
}

impl MemoryBudget {
    pub fn total(&self) -> u64 {
        (self.weights + self.kv_cache + self.arena + self.io + self.staging) as u64
    }

    pub fn describe(&self) -> String {
        let mib = |b: usize| b as f64 / (1u64 << 20) as f64;
        let staging = if self.staging > 0 {
            format!(" + f16 GEMM staging {:.1} MiB", mib(self.staging))
        } else {
            String::new()
        };
        format!(
            "weights {:.1} MiB + KV cache {:.1} MiB + activations {:.1} MiB{staging}",
            mib(self.weights),
            mib(self.kv_cache),
            mib(self.arena + self.io)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgmlType;

    fn tensor(name: &str, n_bytes: u64) -> TensorInfo {
        TensorInfo {
            name: name.to_string(),
            dims: vec![n_bytes],
            ty: GgmlType::F32,
            offset: 0,
            n_bytes,
        }
    }

    #[test]
    fn weights_are_aligned_and_shared_tensors_stored_once() {
        let (a, b) = (tensor("a", 1000), tensor("b", 256));
        let layout = WeightLayout::new(&[&a, &b, &a]);
        assert_eq!(layout.offsets["a"], 0);
        assert_eq!(layout.offsets["b"], 1024);
        assert_eq!(layout.total, 1280 + TAIL_SLACK);
    }

    #[test]
    fn arena_regions_are_disjoint_and_sized_for_max_tokens() {
        let values = vec![
            ValueInfo {
                name: "x".into(),
                width: 576,
            },
            ValueInfo {
                name: "q".into(),
                width: 3,
            },
        ];
        let arena = ArenaLayout::new(&values, 7);
        assert_eq!(arena.offsets, vec![0, align_up(7 * 576 * 4)]);
        assert_eq!(arena.total, align_up(7 * 576 * 4) + align_up(7 * 3 * 4));
    }
}
