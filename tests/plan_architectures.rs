//! The qwen3 and phi3 plans, bound to small synthetic files: the programs they build, and the
//! errors a file that does not fit them gets. Their numbers are checked against llama.cpp in
//! tests/parity_llamacpp.rs; this file checks structure and error paths, fast and with no model.

mod common;

use rocmforge::backend::cpu::CpuBackend;
use rocmforge::backend::Backend;
use rocmforge::gguf::writer::GgufWriter;
use rocmforge::gguf::{GgmlType, GgufFile, Value};
use rocmforge::graph::Op;
use rocmforge::plan::{bind, BindError, Model, Plan};
use rocmforge::synth::{preset, synthesize, SynthSpec, WeightMix};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A preset shrunk to two small layers with the given heads.
fn tiny(
    preset_name: &str,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    dir: &Path,
) -> PathBuf {
    let mut shape = preset(preset_name).unwrap();
    shape.head_dim = head_dim;
    shape.n_layer = 2;
    shape.n_embd = 64;
    shape.n_head = n_head;
    shape.n_kv_head = n_kv_head;
    shape.n_ff = 96;
    shape.n_vocab = 300;
    let plan = Plan::from_arg(shape.plan).unwrap();
    let path = dir.join(format!("{preset_name}.gguf"));
    let spec = SynthSpec {
        name: "tiny".into(),
        plan,
        shape,
        weights: WeightMix::Uniform(GgmlType::F32),
        fused_qkv: false,
        seed: 5,
    };
    synthesize(&spec, None, &path).unwrap();
    path
}

fn bind_file(path: &Path) -> Result<Model, BindError> {
    let file = Arc::new(GgufFile::open(path).unwrap());
    let plan = Plan::for_architecture(file.architecture().unwrap()).unwrap();
    bind(&plan, file)
}

type Edit<'a> = &'a dyn Fn(&str, &Value) -> Option<(String, Value)>;

/// A copy of `src` with each metadata entry replaced by `edit(key, value)`, or dropped on None.
fn edited(src: &Path, out: &Path, edit: Edit) -> PathBuf {
    let f = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &f.metadata {
        if let Some((k, v)) = edit(k, v) {
            w.metadata(k, v);
        }
    }
    for t in &f.tensors {
        w.tensor(t.name.clone(), &t.dims, t.ty, f.tensor_bytes(t).to_vec());
    }
    w.write(out).unwrap();
    out.to_path_buf()
}

fn block_ops(m: &Model) -> Vec<&'static str> {
    m.program.block.iter().map(|s| s.op.name()).collect()
}

#[test]
fn qwen3_normalizes_each_head_of_q_and_k_before_rope_with_its_own_head_dim() {
    let dir = common::scratch("plan-qwen3");
    // 64 / 2 heads would be 32: the preset's head_dim 128 must come from key_length instead.
    let m = bind_file(&tiny("qwen3-0.6b", 2, 1, 128, &dir)).unwrap();
    assert_eq!(m.hparams.head_dim, 128);
    assert_eq!((m.hparams.q_width(), m.hparams.kv_width()), (256, 128));
    assert_eq!(
        block_ops(&m),
        [
            "rmsnorm",
            "matmul",
            "matmul",
            "matmul",
            "head_rmsnorm",
            "head_rmsnorm",
            "rope",
            "rope",
            "attention",
            "matmul",
            "add",
            "rmsnorm",
            "matmul",
            "matmul",
            "silu_mul",
            "matmul",
            "add"
        ]
    );
    let norms: Vec<_> = m
        .program
        .block
        .iter()
        .filter(|s| s.op == Op::HeadRmsNorm)
        .collect();
    let widths: Vec<usize> = norms
        .iter()
        .map(|s| m.program.value(s.inputs[0]).width)
        .collect();
    assert_eq!(widths, [256, 128]);
    for (s, role) in norms.iter().zip(["attn_q_norm", "attn_k_norm"]) {
        assert_eq!(s.weights, [Some(role.to_string())]);
        assert_eq!(m.weight(Some(1), role).unwrap().dims, [128]);
    }
    let tokens = [1u32, 7, 42, 299];
    let logits = CpuBackend::new(Arc::new(m), 8)
        .forward(&tokens, 0, true)
        .unwrap();
    assert!(logits.len() == 4 * 300 && logits.iter().all(|v| v.is_finite()));
}

#[test]
fn qwen3_without_key_length_is_refused_naming_the_key() {
    let dir = common::scratch("plan-qwen3-nokey");
    let src = tiny("qwen3-0.6b", 2, 1, 128, &dir);
    let out = edited(&src, &dir.join("nokey.gguf"), &|k, v| {
        (k != "qwen3.attention.key_length").then(|| (k.to_string(), v.clone()))
    });
    let err = bind_file(&out).unwrap_err().to_string();
    assert!(
        err.contains("head_dim") && err.contains("qwen3.attention.key_length"),
        "{err}"
    );
}

#[test]
fn qwen3_with_value_heads_unlike_key_heads_is_refused() {
    let dir = common::scratch("plan-qwen3-vlen");
    let src = tiny("qwen3-0.6b", 2, 1, 128, &dir);
    let out = edited(&src, &dir.join("vlen.gguf"), &|k, v| {
        let v = if k == "qwen3.attention.value_length" {
            Value::U32(64)
        } else {
            v.clone()
        };
        Some((k.to_string(), v))
    });
    let err = bind_file(&out).unwrap_err().to_string();
    assert!(
        err.contains("attention needs widths") && err.contains("[256, 128, 64]"),
        "{err}"
    );
}

#[test]
fn phi3_splits_fused_qkv_and_fused_gate_up() {
    let dir = common::scratch("plan-phi3");
    let m = bind_file(&tiny("phi3-mini", 2, 2, 32, &dir)).unwrap();
    assert!(m.fused_qkv);
    assert_eq!(m.hparams.head_dim, 32);
    let splits: Vec<&Vec<usize>> = m
        .program
        .block
        .iter()
        .filter(|s| s.op == Op::Split)
        .map(|s| &s.params)
        .collect();
    assert_eq!(splits, [&vec![64, 64, 64], &vec![96, 96]]);
    assert_eq!(m.weight(Some(0), "ffn_up").unwrap().dims, [64, 192]);
    assert!(m.weight(Some(0), "ffn_gate").is_none());
    // The gate is the first half: silu_mul's first input is the split's first output.
    let split = m.program.block.iter().rfind(|s| s.op == Op::Split).unwrap();
    let silu = m
        .program
        .block
        .iter()
        .find(|s| s.op == Op::SiluMul)
        .unwrap();
    assert_eq!(silu.inputs, split.outputs);
    assert!(m.weight(None, "output").unwrap().name == "output.weight");
}

#[test]
fn phi3_file_with_separate_qkv_is_refused_naming_the_fused_tensor() {
    let dir = common::scratch("plan-phi3-sep");
    // A llama-shaped file relabelled phi3: separate q, k, v and gate, no fused tensors.
    let mut shape = preset("smollm2-135m").unwrap();
    (shape.n_layer, shape.n_embd, shape.n_head, shape.n_kv_head) = (1, 64, 2, 2);
    (shape.head_dim, shape.n_ff, shape.n_vocab) = (32, 96, 300);
    let spec = SynthSpec {
        name: "tiny".into(),
        plan: Plan::from_arg("llama").unwrap(),
        shape,
        weights: WeightMix::Uniform(GgmlType::F32),
        fused_qkv: false,
        seed: 5,
    };
    let src = dir.join("llama.gguf");
    synthesize(&spec, None, &src).unwrap();
    let out = edited(&src, &dir.join("relabelled.gguf"), &|k, v| {
        Some(match k.strip_prefix("llama.") {
            Some(rest) => (format!("phi3.{rest}"), v.clone()),
            None if k == "general.architecture" => (k.to_string(), Value::String("phi3".into())),
            None => (k.to_string(), v.clone()),
        })
    });
    let err = bind_file(&out).unwrap_err().to_string();
    assert!(
        err.contains("attn_qkv") && err.contains("blk.0.attn_qkv.weight is missing"),
        "{err}"
    );
}

#[test]
fn phi3_with_longrope_factors_is_refused_with_the_reason() {
    let dir = common::scratch("plan-phi3-longrope");
    let src = tiny("phi3-mini", 2, 2, 32, &dir);
    let f = GgufFile::open(&src).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &f.metadata {
        w.metadata(k.clone(), v.clone());
    }
    for t in &f.tensors {
        w.tensor(t.name.clone(), &t.dims, t.ty, f.tensor_bytes(t).to_vec());
    }
    w.tensor(
        "rope_factors_short.weight",
        &[16],
        GgmlType::F32,
        vec![0; 64],
    );
    let out = dir.join("longrope.gguf");
    w.write(&out).unwrap();
    let err = bind_file(&out).unwrap_err().to_string();
    assert!(
        err.contains("rope_factors_short.weight") && err.contains("LongRoPE"),
        "{err}"
    );
}
