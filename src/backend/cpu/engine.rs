//! Runs a [`Program`] on the CPU with an f32 KV cache.

use super::ops::{self, AttnShape};
use crate::backend::{check_forward, Backend, BackendError};
use crate::graph::{Op, Step};
use crate::plan::Model;
use std::collections::HashMap;
use std::sync::Arc;

pub struct CpuBackend {
    model: Arc<Model>,
    n_ctx: usize,
    /// Per layer: (keys, values), each `[n_ctx][kv_width]`.
    cache: Vec<(Vec<f32>, Vec<f32>)>,
    /// Norm weights and biases are small F32 vectors; decoded once.
    vectors: HashMap<(Option<usize>, String), Vec<f32>>,
}

impl CpuBackend {
    pub fn new(model: Arc<Model>, n_ctx: usize) -> CpuBackend {
        let hp = &model.hparams;
        let cache = (0..hp.n_layer)
            .map(|_| {
                (
                    vec![0.0; n_ctx * hp.kv_width()],
                    vec![0.0; n_ctx * hp.kv_width()],
                )
            })
            .collect();
        let mut vectors = HashMap::new();
        for (step, in_block) in model.program.steps() {
            let vector_slots = step.weights.iter().enumerate().filter(|(slot, _)| {
                !(matches!(step.op, Op::Matmul) && *slot == 0) && step.op != Op::Embed
            });
            for (_, role) in vector_slots {
                let Some(role) = role else { continue };
                let layers: Vec<Option<usize>> = if in_block {
                    (0..hp.n_layer).map(Some).collect()
                } else {
                    vec![None]
                };
                for layer in layers {
                    let t = model.weight(layer, role).expect("bound at load");
                    vectors.insert((layer, role.clone()), model.weight_f32(t));
                }
            }
        }
        CpuBackend {
            model,
            n_ctx,
            cache,
            vectors,
        }
    }

    fn run(
        &mut self,
        steps: &[Step],
        layer: Option<usize>,
        tokens: &[u32],
        pos0: usize,
        vals: &mut [Vec<f32>],
    ) {
        let model = self.model.clone();
        let hp = &model.hparams;
        let n = tokens.len();
        for step in steps {
            let width = |id: usize| model.program.values[id].width;
            let out_id = step.outputs[0];
            let mut out = vec![0f32; n * width(out_id)];
            match step.op {
                Op::Embed => {
                    let t = model
                        .weight(layer, step.weights[0].as_ref().unwrap())
                        .unwrap();
                    ops::embed(model.weight_bytes(t), t.ty, width(out_id), tokens, &mut out);
                }
                Op::RmsNorm | Op::HeadRmsNorm => {
                    let w = &self.vectors[&(layer, step.weights[0].clone().unwrap())];
                    ops::rmsnorm(&vals[step.inputs[0]], w, hp.norm_eps, &mut out);
                }
                Op::Matmul => {
                    let t = model
                        .weight(layer, step.weights[0].as_ref().unwrap())
                        .unwrap();
                    let bias = step.weights[1]
                        .as_ref()
                        .map(|r| &self.vectors[&(layer, r.clone())][..]);
                    let (k, cols) = (t.dims[0] as usize, t.dims[1] as usize);
                    ops::matmul(
                        model.weight_bytes(t),
                        t.ty,
                        k,
                        cols,
                        &vals[step.inputs[0]],
                        bias,
                        &mut out,
                    );
                }
                Op::Split => {
                    let mut outs: Vec<Vec<f32>> =
                        step.params.iter().map(|w| vec![0f32; n * w]).collect();
                    let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|v| &mut v[..]).collect();
                    ops::split(&vals[step.inputs[0]], &step.params, &mut refs);
                    for (id, v) in step.outputs.iter().zip(outs) {
                        vals[*id] = v;
                    }
                    continue;
                }
                Op::Rope => {
                    out.copy_from_slice(&vals[step.inputs[0]]);
                    ops::rope(
                        &mut out,
                        width(out_id),
                        hp.head_dim,
                        pos0,
                        hp.rope_base,
                        hp.rope_style,
                    );
                }
                Op::Attention => {
                    let l = layer.expect("attention is a block op");
                    let kvw = hp.kv_width();
                    let (kc, vc) = &mut self.cache[l];
                    kc[pos0 * kvw..(pos0 + n) * kvw].copy_from_slice(&vals[step.inputs[1]]);
                    vc[pos0 * kvw..(pos0 + n) * kvw].copy_from_slice(&vals[step.inputs[2]]);
                    let shape = AttnShape {
                        n_head: hp.n_head,
                        n_kv_head: hp.n_kv_head,
                        head_dim: hp.head_dim,
                    };
                    ops::attention(&vals[step.inputs[0]], kc, vc, shape, pos0, &mut out);
                }
                Op::Add => ops::add(&vals[step.inputs[0]], &vals[step.inputs[1]], &mut out),
                Op::SiluMul => {
                    ops::silu_mul(&vals[step.inputs[0]], &vals[step.inputs[1]], &mut out)
                }
            }
            vals[out_id] = out;
        }
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn forward(
        &mut self,
        tokens: &[u32],
        pos0: usize,
        all_logits: bool,
    ) -> Result<Vec<f32>, BackendError> {
        let model = self.model.clone();
        check_forward(tokens, pos0, self.n_ctx, model.hparams.n_vocab)?;
        let prog = &model.program;
        let mut vals: Vec<Vec<f32>> = vec![Vec::new(); prog.values.len()];
        self.run(&prog.prologue, None, tokens, pos0, &mut vals);
        for layer in 0..model.hparams.n_layer {
            self.run(&prog.block, Some(layer), tokens, pos0, &mut vals);
        }
        if all_logits {
            self.run(&prog.epilogue, None, tokens, pos0, &mut vals);
        } else {
            // Only the last position's logits are wanted: run the epilogue on that row alone.
            let last = tokens.len() - 1;
            for (v, info) in vals.iter_mut().zip(&prog.values) {
                if v.len() == tokens.len() * info.width {
                    *v = v.split_off(last * info.width);
                }
            }
            self.run(
                &prog.epilogue,
                None,
                &tokens[last..],
                pos0 + last,
                &mut vals,
            );
        }
        Ok(std::mem::take(&mut vals[prog.logits]))
    }

    fn max_ctx(&self) -> usize {
        self.n_ctx
    }
}
