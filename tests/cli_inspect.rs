//! `rocmforge inspect` on files that a plan binds and on one whose architecture has no plan.

mod common;

use rocmforge::gguf::writer::GgufWriter;
use rocmforge::gguf::{GgmlType, GgufFile, Value};
use std::path::{Path, PathBuf};

/// A tiny qwen3-shaped file (byte-level vocabulary, no SmolLM2 needed).
fn tiny_qwen3(dir: &Path) -> PathBuf {
    let path = dir.join("qwen3-tiny.gguf");
    common::rocmforge(&[
        "synth",
        "--preset",
        "qwen3-0.6b",
        "--layers",
        "2",
        "--n-embd",
        "64",
        "--n-head",
        "2",
        "--n-kv-head",
        "1",
        "--n-ff",
        "128",
        "--n-vocab",
        "300",
        "--type",
        "F32",
        "--out",
        path.to_str().unwrap(),
    ]);
    path
}

/// The same file under an architecture no plan knows: `{arch}.*` keys renamed with it, plus a
/// key and a per-layer tensor no plan names, as a new architecture would bring.
fn as_unknown_architecture(src: &Path, arch: &str, out: &Path) {
    let f = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &f.metadata {
        match k.strip_prefix("qwen3.") {
            Some(rest) => w.metadata(format!("{arch}.{rest}"), v.clone()),
            None if k == "general.architecture" => {
                w.metadata(k.clone(), Value::String(arch.into()))
            }
            None => w.metadata(k.clone(), v.clone()),
        };
    }
    w.metadata(format!("{arch}.ssm.conv_kernel"), Value::U32(4));
    for t in &f.tensors {
        w.tensor(t.name.clone(), &t.dims, t.ty, f.tensor_bytes(t).to_vec());
    }
    for i in 0..2 {
        let bytes = vec![0u8; 4 * 64 * 4];
        w.tensor(
            format!("blk.{i}.ssm_conv1d.weight"),
            &[4, 64],
            GgmlType::F32,
            bytes,
        );
    }
    w.write(out).unwrap();
}

#[test]
fn a_bound_file_reports_its_plan_and_hparams() {
    let dir = common::scratch("inspect-bound");
    let out = common::rocmforge(&["inspect", tiny_qwen3(&dir).to_str().unwrap()]);
    assert!(out.contains("plan          qwen3 binds"), "{out}");
    assert!(out.contains("head_dim 32"), "{out}");
    assert!(out.contains("unclaimed     none"), "{out}");
}

#[test]
fn an_unknown_architecture_names_unknown_roles_and_keys_and_points_to_the_guide() {
    let dir = common::scratch("inspect-unknown");
    let src = tiny_qwen3(&dir);
    let renamed = dir.join("mamba9.gguf");
    as_unknown_architecture(&src, "mamba9", &renamed);
    let out = common::rocmforge(&["inspect", renamed.to_str().unwrap()]);

    assert!(out.contains("no plan for architecture 'mamba9'"), "{out}");
    // Known names get the role or hparam the plans give them ...
    let line = |needle: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(needle))
            .unwrap_or_else(|| panic!("no line for {needle} in:\n{out}"))
            .to_string()
    };
    assert!(line("blk.{i}.attn_q_norm.weight").ends_with("attn_q_norm"));
    assert!(line("{arch}.embedding_length").contains("n_embd"));
    assert!(line("{arch}.attention.key_length").contains("head_dim"));
    // ... and the new ones are listed as unknown, once, with layers folded.
    assert!(line("blk.{i}.ssm_conv1d.weight").ends_with('?'));
    assert!(line("{arch}.ssm.conv_kernel").contains('?'));
    assert_eq!(
        line("unknown roles"),
        "unknown roles blk.{i}.ssm_conv1d.weight"
    );
    assert_eq!(line("unknown keys"), "unknown keys  {arch}.ssm.conv_kernel");
    assert!(!out.contains("blk.1.ssm_conv1d"), "{out}");
    // The qwen3-shaped tensors make qwen3 the starting point.
    assert!(
        line("closest plan").starts_with("closest plan  qwen3:"),
        "{out}"
    );
    assert!(out.contains("docs/adding-an-architecture.md"), "{out}");
}
