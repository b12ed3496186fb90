//! `rocmforge inspect`: what a GGUF file holds and how (or why not) a plan binds it.

use crate::gguf::GgufFile;
use crate::plan::{bind, Plan};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

pub fn inspect(path: &Path, arch: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let file = Arc::new(GgufFile::open(path)?);
    let arch_name = file.architecture().unwrap_or("(none)").to_string();
    println!("file          {}", path.display());
    println!(
        "format        GGUF v{}, {} bytes, alignment {}",
        file.version,
        file.file_len(),
        file.alignment
    );
    println!("architecture  {arch_name}");
    if let Some(name) = file.get_str("general.name") {
        println!("name          {name}");
    }
    println!("\nmetadata ({} keys)", file.metadata.len());
    for (k, v) in &file.metadata {
        println!("  {k:<44} {v}");
    }

    let mut by_type: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for t in &file.tensors {
        let e = by_type.entry(t.ty.name().to_string()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes;
    }
    println!("\ntensors ({})", file.tensors.len());
    for (ty, (n, bytes)) in &by_type {
        let note = if crate::gguf::GgmlType::from_name(ty).is_some_and(|t| t.is_supported()) {
            ""
        } else {
            "  (not supported)"
        };
        println!("  {ty:<8} {n:>5} tensors {:>12} bytes{note}", bytes);
    }

    let plan = match arch {
        Some(a) => Plan::from_arg(a),
        None => Plan::for_architecture(&arch_name),
    };
    println!();
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            println!("plan          none binds: {e}");
            super::unknown_arch::print_unknown(&file);
            return Ok(());
        }
    };
    report_roles(&plan, &file);
    match bind(&plan, file.clone()) {
        Ok(m) => {
            let h = &m.hparams;
            println!("plan          {} binds", plan.name);
            println!(
                "hparams       n_embd {} n_layer {} n_head {} n_kv_head {} head_dim {} n_ff {} n_vocab {} n_ctx_train {} norm_eps {:e} rope_base {} rope {:?} qkv {}",
                h.n_embd, h.n_layer, h.n_head, h.n_kv_head, h.head_dim, h.n_ff, h.n_vocab, h.n_ctx_train,
                h.norm_eps, h.rope_base, h.rope_style, if m.fused_qkv { "fused" } else { "separate" }
            );
            let weight_bytes: u64 = m.bound_tensors().iter().map(|t| t.n_bytes).sum();
            println!("weights       {weight_bytes} bytes bound");
        }
        Err(e) => println!("plan          {} does not bind: {e}", plan.name),
    }
    Ok(())
}

/// Lists the plan's roles missing from the file and the file's tensors no role claims.
fn report_roles(plan: &Plan, file: &GgufFile) {
    let n_layer = file
        .tensors
        .iter()
        .filter_map(|t| layer_of(&t.name))
        .max()
        .map_or(0, |m| m + 1);
    let mut claimed = BTreeSet::new();
    let mut missing = Vec::new();
    for (role, spec) in &plan.tensors {
        let names = spec.name.candidates();
        match names.iter().find(|n| file.tensor(n).is_some()) {
            Some(n) => {
                claimed.insert(n.to_string());
            }
            None if !spec.optional => missing.push(format!("{role} ({})", names.join(" or "))),
            None => {}
        }
    }
    for (role, spec) in &plan.layer_tensors {
        let mut absent = 0;
        for i in 0..n_layer {
            let names: Vec<String> = spec
                .name
                .candidates()
                .iter()
                .map(|n| n.replace("{i}", &i.to_string()))
                .collect();
            match names.iter().find(|n| file.tensor(n).is_some()) {
                Some(n) => {
                    claimed.insert(n.clone());
                }
                None => absent += 1,
            }
        }
        if absent > 0 && !spec.optional {
            missing.push(format!(
                "{role} ({}) in {absent} of {n_layer} layers",
                spec.name.candidates().join(" or ")
            ));
        }
    }
    let unexpected: Vec<&str> = file
        .tensors
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| !claimed.contains(*n))
        .collect();
    println!(
        "roles absent  {}",
        if missing.is_empty() {
            "none".to_string()
        } else {
            missing.join(", ")
        }
    );
    println!(
        "unclaimed     {}",
        if unexpected.is_empty() {
            "none".to_string()
        } else {
            unexpected.join(", ")
        }
    );
    println!(
        "              (roles of alternatives such as fused vs separate QKV are absent by design)"
    );
}

fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}
