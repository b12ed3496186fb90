//! A plan that does not match the model is an error naming the plan, the role or key, the
//! tensor, what was expected and what was found.

mod common;

use rocmforge::gguf::GgufFile;
use rocmforge::plan::{bind, Plan};
use rocmforge::synth::{preset, synthesize, SynthSpec, WeightMix};
use std::path::PathBuf;
use std::sync::Arc;

/// A one-layer llama-shaped model; `name` keeps concurrently running tests apart.
fn small_llama(name: &str) -> (PathBuf, Arc<GgufFile>) {
    let mut shape = preset("smollm2-135m").unwrap();
    shape.n_layer = 1;
    shape.n_vocab = 512;
    let spec = SynthSpec {
        name: "bind test".into(),
        plan: Plan::from_arg("llama").unwrap(),
        shape,
        weights: WeightMix::parse("Q8_0").unwrap(),
        fused_qkv: false,
        seed: 5,
    };
    let path = common::scratch("bind").join(format!("{name}.gguf"));
    synthesize(&spec, None, &path).unwrap();
    let file = Arc::new(GgufFile::open(&path).unwrap());
    (path, file)
}

fn llama_plan_with(from: &str, to: &str) -> Plan {
    let text = include_str!("../plans/llama.toml");
    assert!(text.contains(from), "test edit target missing: {from}");
    Plan::from_toml(&text.replace(from, to), "edited-llama.toml").unwrap()
}

#[test]
fn binds_its_own_architecture() {
    let (_, file) = small_llama("binds_its_own_architecture");
    let model = bind(&Plan::from_arg("llama").unwrap(), file).unwrap();
    assert_eq!(
        (
            model.hparams.n_layer,
            model.hparams.n_vocab,
            model.hparams.head_dim
        ),
        (1, 512, 64)
    );
    assert!(!model.fused_qkv);
}

#[test]
fn wrong_architecture_names_plan_and_file() {
    let (path, file) = small_llama("wrong_architecture_names_plan_and_file");
    let err = bind(&Plan::from_arg("qwen2").unwrap(), file)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("qwen2") && err.contains("llama") && err.contains(path.to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn wrong_shape_names_role_tensor_expected_and_found() {
    let (_, file) = small_llama("wrong_shape_names_role_tensor_expected_and_found");
    let plan = llama_plan_with(
        r#"n_ff        = "{arch}.feed_forward_length""#,
        r#"n_ff        = { key = "{arch}.no_such_key", default = "n_embd * 4" }"#,
    );
    let err = bind(&plan, file).unwrap_err().to_string();
    for part in [
        "plan 'llama'",
        "ffn_gate",
        "blk.0.ffn_gate.weight",
        "[576, 1536]",
        "[576, 2304]",
    ] {
        assert!(err.contains(part), "missing {part:?} in: {err}");
    }
}

#[test]
fn undeclared_role_in_graph_is_reported() {
    let (_, file) = small_llama("undeclared_role_in_graph_is_reported");
    let plan = llama_plan_with(
        r#""q, k, v = qkv(h)","#,
        r#""q, k, v = qkv(h)", "q = matmul(q, attn_extra)","#,
    );
    let err = bind(&plan, file).unwrap_err().to_string();
    assert!(
        err.contains("attn_extra") && err.contains("plan 'llama'"),
        "{err}"
    );
}

#[test]
fn missing_hparam_key_names_key() {
    let (_, file) = small_llama("missing_hparam_key_names_key");
    let plan = llama_plan_with(
        r#"n_ff        = "{arch}.feed_forward_length""#,
        r#"n_ff        = "{arch}.no_such_key""#,
    );
    let err = bind(&plan, file).unwrap_err().to_string();
    assert!(
        err.contains("n_ff") && err.contains("llama.no_such_key"),
        "{err}"
    );
}

#[test]
fn absent_declared_tensor_is_reported() {
    let (_, file) = small_llama("absent_declared_tensor_is_reported");
    let plan = llama_plan_with(
        r#"attn_norm   = { name = "blk.{i}.attn_norm.weight", shape = ["n_embd"] }"#,
        r#"attn_norm   = { name = "blk.{i}.attn_norm_renamed.weight", shape = ["n_embd"] }"#,
    );
    let err = bind(&plan, file).unwrap_err().to_string();
    assert!(
        err.contains("attn_norm") && err.contains("blk.0.attn_norm_renamed.weight is missing"),
        "{err}"
    );
}
