//! Which runs of program steps a GPU may compute as one kernel. Fusion never changes what the
//! program computes: a run is fused only where every value the fused kernel no longer writes
//! (the norm output, the matmul outputs before the epilogue, the rotated keys) is read by no step
//! outside the run before it is written again — in this layer, the next layer or the epilogue.
//!
//! Two kinds:
//! - `Gemv`: an optional RMSNorm, then 1–3 matmuls reading its output (or one matmul whose
//!   output is split into 2–3 values), then optionally `silu_mul` of two of them or a residual
//!   `add`. Decode computes it in one GEMV launch; prefill runs the steps one by one.
//! - `RopeAttention`: rope of q, rope of k, attention. Prefill rotates q and k and stores k, v
//!   in the cache in one launch, then attends; decode does the same or, as tuned (the default),
//!   all of it in the attention kernel, which writes neither rotated value.

use super::{Op, Program, Step, ValueId};

/// A part of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Section {
    Prologue,
    /// Run once per layer.
    Block,
    Epilogue,
}

/// Where a fused GEMV's results go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GemvEpilogue {
    /// Each segment into its own value.
    Store,
    /// One segment: `output = residual + W x`.
    Residual { residual: ValueId, output: ValueId },
    /// Two segments of equal rows: `output = silu(first) * second`.
    SiluMul { output: ValueId },
}

/// Rows `first_row .. first_row + rows` of the weight of the matmul at step `matmul`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GemvSegment {
    pub matmul: usize,
    pub first_row: usize,
    pub rows: usize,
    /// The value these rows are stored in (with the `Store` epilogue).
    pub output: ValueId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GemvFusion {
    /// The RMSNorm step applied to `input` on the fly.
    pub norm: Option<usize>,
    /// The value the GEMV reads (before the norm, if any).
    pub input: ValueId,
    pub segments: Vec<GemvSegment>,
    pub epilogue: GemvEpilogue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FusionKind {
    Gemv(GemvFusion),
    /// Step indices of the two ropes and the attention.
    RopeAttention {
        rope_q: usize,
        rope_k: usize,
        attention: usize,
    },
}

/// Steps `first .. first + len` of a section, computed together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fusion {
    pub first: usize,
    pub len: usize,
    pub kind: FusionKind,
}

impl Fusion {
    pub fn contains(&self, step: usize) -> bool {
        (self.first..self.first + self.len).contains(&step)
    }

    /// Whether decode (`decode = true`) or prefill launches use the fused kernels.
    pub fn applies(&self, decode: bool) -> bool {
        decode || matches!(self.kind, FusionKind::RopeAttention { .. })
    }
}

/// The fusions of each section, in step order, never overlapping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fusions {
    pub prologue: Vec<Fusion>,
    pub block: Vec<Fusion>,
    pub epilogue: Vec<Fusion>,
}

impl Fusions {
    pub fn of(program: &Program) -> Fusions {
        Fusions {
            prologue: find(program, Section::Prologue),
            block: find(program, Section::Block),
            epilogue: find(program, Section::Epilogue),
        }
    }

    pub fn section(&self, section: Section) -> &[Fusion] {
        match section {
            Section::Prologue => &self.prologue,
            Section::Block => &self.block,
            Section::Epilogue => &self.epilogue,
        }
    }

    /// The fusion step `step` of `section` belongs to in that phase, if any.
    pub fn at(&self, section: Section, step: usize, decode: bool) -> Option<&Fusion> {
        self.section(section)
            .iter()
            .find(|f| f.contains(step) && f.applies(decode))
    }
}

impl Program {
    pub fn section(&self, section: Section) -> &[Step] {
        match section {
            Section::Prologue => &self.prologue,
            Section::Block => &self.block,
            Section::Epilogue => &self.epilogue,
        }
    }
}

fn find(program: &Program, section: Section) -> Vec<Fusion> {
    let steps = program.section(section);
    let mut out = Vec::new();
    let mut i = 0;
    while i < steps.len() {
        let found = rope_attention(program, section, i).or_else(|| gemv(program, section, i));
        match found {
            Some(f) => {
                i = f.first + f.len;
                out.push(f);
            }
            None => i += 1,
        }
    }
    out
}

fn rope_attention(program: &Program, section: Section, i: usize) -> Option<Fusion> {
    let steps = program.section(section);
    let (a, b, att) = (steps.get(i)?, steps.get(i + 1)?, steps.get(i + 2)?);
    if a.op != Op::Rope || b.op != Op::Rope || att.op != Op::Attention {
        return None;
    }
    let (q, k) = (*att.inputs.first()?, *att.inputs.get(1)?);
    let (rope_q, rope_k) = match (a.outputs.first()?, b.outputs.first()?) {
        (&qa, &kb) if qa == q && kb == k => (i, i + 1),
        (&ka, &qb) if ka == k && qb == q => (i + 1, i),
        _ => return None,
    };
    // The fused kernels write rotated keys only to the cache, and decode's one kernel keeps
    // rotated q in shared memory.
    if !only_read_by(program, section, rope_k, k, &[i + 2])
        || !only_read_by(program, section, rope_q, q, &[i + 2])
    {
        return None;
    }
    Some(Fusion {
        first: i,
        len: 3,
        kind: FusionKind::RopeAttention {
            rope_q,
            rope_k,
            attention: i + 2,
        },
    })
}

fn gemv(program: &Program, section: Section, i: usize) -> Option<Fusion> {
    let steps = program.section(section);
    let (norm, mut j) = match steps[i].op {
        Op::RmsNorm => (Some(i), i + 1),
        Op::Matmul => (None, i),
        _ => return None,
    };
    let shared = match norm {
        Some(n) => steps[n].outputs[0],
        None => steps[i].inputs[0],
    };
    let input = steps[i].inputs[0];
    let mut matmuls = Vec::new();
    while matmuls.len() < 3 {
        match steps.get(j) {
            Some(s)
                if s.op == Op::Matmul
                    && s.inputs[0] == shared
                    && s.outputs[0] != shared
                    && s.outputs[0] != input
                    && !matmuls
                        .iter()
                        .any(|&m: &usize| steps[m].outputs[0] == s.outputs[0]) =>
            {
                matmuls.push(j);
                j += 1;
            }
            _ => break,
        }
    }
    if matmuls.is_empty() {
        return None;
    }
    if let Some(n) = norm {
        if !only_read_by(program, section, n, shared, &matmuls) {
            return None;
        }
    }
    let mut segments: Vec<GemvSegment> = matmuls
        .iter()
        .map(|&m| GemvSegment {
            matmul: m,
            first_row: 0,
            rows: program.value(steps[m].outputs[0]).width,
            output: steps[m].outputs[0],
        })
        .collect();
    if let [m] = matmuls[..] {
        let product = steps[m].outputs[0];
        if let Some(split) = steps.get(j).filter(|s| {
            s.op == Op::Split
                && s.inputs[0] == product
                && (2..=3).contains(&s.outputs.len())
                && s.params.len() == s.outputs.len()
                && only_read_by(program, section, m, product, &[j])
        }) {
            let mut first_row = 0;
            segments = split
                .outputs
                .iter()
                .zip(&split.params)
                .map(|(&output, &rows)| {
                    let segment = GemvSegment {
                        matmul: m,
                        first_row,
                        rows,
                        output,
                    };
                    first_row += rows;
                    segment
                })
                .collect();
            j += 1;
        }
    }
    let mut epilogue = GemvEpilogue::Store;
    if let Some(next) = steps.get(j) {
        let outs: Vec<ValueId> = segments.iter().map(|s| s.output).collect();
        let writer = |v: ValueId| {
            segments
                .iter()
                .find(|s| s.output == v)
                .map_or(j, |s| writer_step(steps, s, j))
        };
        let consumed = |v: ValueId| only_read_by(program, section, writer(v), v, &[j]);
        match next.op {
            Op::SiluMul
                if outs.len() == 2
                    && next.inputs[..] == outs[..]
                    && segments[0].rows == segments[1].rows
                    && consumed(outs[0])
                    && consumed(outs[1]) =>
            {
                epilogue = GemvEpilogue::SiluMul {
                    output: next.outputs[0],
                };
                j += 1;
            }
            Op::Add if outs.len() == 1 && next.inputs.contains(&outs[0]) && consumed(outs[0]) => {
                let residual = *next.inputs.iter().find(|&&v| v != outs[0])?;
                epilogue = GemvEpilogue::Residual {
                    residual,
                    output: next.outputs[0],
                };
                j += 1;
            }
            _ => {}
        }
    }
    if j - i < 2 {
        return None;
    }
    Some(Fusion {
        first: i,
        len: j - i,
        kind: FusionKind::Gemv(GemvFusion {
            norm,
            input,
            segments,
            epilogue,
        }),
    })
}

/// The step that last wrote a segment's output before step `before`: the split after the
/// matmul when there is one, else the matmul.
fn writer_step(steps: &[Step], segment: &GemvSegment, before: usize) -> usize {
    (segment.matmul..before)
        .rev()
        .find(|&s| steps[s].outputs.contains(&segment.output))
        .unwrap_or(segment.matmul)
}

/// Whether the value `value`, as written by step `writer` of `section`, is read only by the
/// steps `readers` (of the same section and layer) before it is written again, on every path
/// the program can take: on through the section, into the next layer and into the epilogue.
fn only_read_by(
    program: &Program,
    section: Section,
    writer: usize,
    value: ValueId,
    readers: &[usize],
) -> bool {
    let steps = program.section(section);
    // Returns Some(ok) once the value is overwritten on this path, None if it survives it.
    let scan = |list: &[Step], offset: Option<usize>| -> Option<bool> {
        for (idx, s) in list.iter().enumerate() {
            let allowed = offset.is_some_and(|o| readers.contains(&(o + idx)));
            if s.inputs.contains(&value) && !allowed {
                return Some(false);
            }
            if s.outputs.contains(&value) {
                return Some(true);
            }
        }
        None
    };
    let rest = &steps[writer + 1..];
    if let Some(ok) = scan(rest, Some(writer + 1)) {
        return ok;
    }
    let paths: Vec<Vec<&[Step]>> = match section {
        Section::Prologue => vec![vec![&program.block, &program.epilogue]],
        // The next layer, or the epilogue after the last one.
        Section::Block => vec![vec![&program.block], vec![&program.epilogue]],
        Section::Epilogue => vec![],
    };
    paths.iter().all(|path| {
        for list in path {
            if let Some(ok) = scan(list, None) {
                return ok;
            }
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ValueInfo;

    fn step(op: Op, inputs: &[usize], outputs: &[usize], params: &[usize]) -> Step {
        Step {
            op,
            inputs: inputs.to_vec(),
            weights: Vec::new(),
            outputs: outputs.to_vec(),
            params: params.to_vec(),
            name: op.name().to_string(),
        }
    }

    /// Values: 0 x, 1 h, 2 q, 3 k, 4 v, 5 a, 6 o, 7 g, 8 u, 9 m, 10 d, 11 logits, 12 qkv.
    fn program(block: Vec<Step>) -> Program {
        let widths = [8, 8, 8, 4, 4, 8, 8, 16, 16, 16, 8, 32, 16];
        Program {
            values: widths
                .iter()
                .enumerate()
                .map(|(i, &width)| ValueInfo {
                    name: format!("v{i}"),
                    width,
                })
                .collect(),
            prologue: vec![step(Op::Embed, &[], &[0], &[])],
            block,
            epilogue: vec![
                step(Op::RmsNorm, &[0], &[1], &[]),
                step(Op::Matmul, &[1], &[11], &[]),
            ],
            logits: 11,
        }
    }

    fn llama_block() -> Vec<Step> {
        vec![
            step(Op::RmsNorm, &[0], &[1], &[]),
            step(Op::Matmul, &[1], &[2], &[]),
            step(Op::Matmul, &[1], &[3], &[]),
            step(Op::Matmul, &[1], &[4], &[]),
            step(Op::Rope, &[2], &[2], &[]),
            step(Op::Rope, &[3], &[3], &[]),
            step(Op::Attention, &[2, 3, 4], &[5], &[]),
            step(Op::Matmul, &[5], &[6], &[]),
            step(Op::Add, &[0, 6], &[0], &[]),
            step(Op::RmsNorm, &[0], &[1], &[]),
            step(Op::Matmul, &[1], &[7], &[]),
            step(Op::Matmul, &[1], &[8], &[]),
            step(Op::SiluMul, &[7, 8], &[9], &[]),
            step(Op::Matmul, &[9], &[10], &[]),
            step(Op::Add, &[0, 10], &[0], &[]),
        ]
    }

    fn spans(fusions: &[Fusion]) -> Vec<(usize, usize)> {
        fusions.iter().map(|f| (f.first, f.len)).collect()
    }

    #[test]
    fn a_llama_block_fuses_into_six_launches() {
        let f = Fusions::of(&program(llama_block()));
        assert_eq!(
            spans(&f.block),
            vec![(0, 4), (4, 3), (7, 2), (9, 4), (13, 2)]
        );
        assert_eq!(spans(&f.epilogue), vec![(0, 2)]);
        let FusionKind::Gemv(ffn) = &f.block[3].kind else {
            panic!("ffn is a GEMV fusion")
        };
        assert_eq!(ffn.norm, Some(9));
        assert_eq!(ffn.epilogue, GemvEpilogue::SiluMul { output: 9 });
        let FusionKind::Gemv(down) = &f.block[4].kind else {
            panic!("down is a GEMV fusion")
        };
        assert_eq!(
            down.epilogue,
            GemvEpilogue::Residual {
                residual: 0,
                output: 0
            }
        );
    }

    #[test]
    fn a_fused_qkv_weight_becomes_three_segments() {
        let mut block = llama_block();
        block.splice(
            1..4,
            [
                step(Op::Matmul, &[1], &[12], &[]),
                step(Op::Split, &[12], &[2, 3, 4], &[8, 4, 4]),
            ],
        );
        let f = Fusions::of(&program(block));
        let FusionKind::Gemv(qkv) = &f.block[0].kind else {
            panic!("qkv is a GEMV fusion")
        };
        let rows: Vec<(usize, usize, usize)> = qkv
            .segments
            .iter()
            .map(|s| (s.matmul, s.first_row, s.rows))
            .collect();
        assert_eq!(rows, vec![(1, 0, 8), (1, 8, 4), (1, 12, 4)]);
        assert_eq!(f.block[0].len, 3);
    }

    #[test]
    fn a_value_read_elsewhere_is_not_fused_away() {
        // The norm output h is also read after the attention: the norm must stay.
        let mut block = llama_block();
        block[7] = step(Op::Matmul, &[1], &[6], &[]);
        let f = Fusions::of(&program(block));
        assert_eq!(f.block[0].first, 1, "{:?}", spans(&f.block));
        // The rotated k read by the next layer's first step (wrapping around) keeps its rope.
        let mut block = llama_block();
        block[0] = step(Op::RmsNorm, &[3], &[1], &[]);
        let f = Fusions::of(&program(block));
        assert!(f
            .block
            .iter()
            .all(|x| !matches!(x.kind, FusionKind::RopeAttention { .. })));
    }

    #[test]
    fn a_silu_input_used_twice_keeps_its_own_step() {
        let mut block = llama_block();
        block[13] = step(Op::Matmul, &[7], &[10], &[]);
        let f = Fusions::of(&program(block));
        let ffn = f.block.iter().find(|x| x.first == 9).unwrap();
        assert_eq!(ffn.len, 3, "norm + gate + up only");
    }
}
