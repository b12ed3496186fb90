//! Rewrites a model with separate Q, K, V projections into one with a fused `attn_qkv` tensor
//! (rows of q, then k, then v), with the names the plan gives. Used to prove that fused and
//! separate layouts compute the same model.

use super::SynthError;
use crate::gguf::writer::GgufWriter;
use crate::gguf::GgufFile;
use crate::plan::schema::Plan;

pub fn fuse_qkv(src: &GgufFile, plan: &Plan) -> Result<GgufWriter, SynthError> {
    let name_of = |role: &str, i: usize| -> Option<String> {
        let spec = plan.layer_tensors.get(role)?;
        Some(spec.name.candidates()[0].replace("{i}", &i.to_string()))
    };
    let mut w = GgufWriter::new();
    for (k, v) in &src.metadata {
        w.metadata(k.clone(), v.clone());
    }
    let mut consumed = std::collections::HashSet::new();
    let mut i = 0;
    while let Some(q) = name_of("attn_q", i).and_then(|n| src.tensor(&n)) {
        for (parts, fused) in [
            (["attn_q", "attn_k", "attn_v"], "attn_qkv"),
            (
                ["attn_q_bias", "attn_k_bias", "attn_v_bias"],
                "attn_qkv_bias",
            ),
        ] {
            let tensors: Vec<_> = parts
                .iter()
                .filter_map(|r| name_of(r, i).and_then(|n| src.tensor(&n)))
                .collect();
            if tensors.len() != 3 {
                continue;
            }
            if tensors
                .iter()
                .any(|t| t.ty != tensors[0].ty || t.dims[0] != tensors[0].dims[0])
            {
                return Err(SynthError::Spec(format!(
                    "layer {i}: {parts:?} differ in type or row length"
                )));
            }
            let fused_name = name_of(fused, i).ok_or_else(|| {
                SynthError::Spec(format!("plan '{}' has no role {fused}", plan.name))
            })?;
            let mut dims = tensors[0].dims.clone();
            if dims.len() > 1 {
                dims[1] = tensors.iter().map(|t| t.dims[1]).sum();
            } else {
                dims[0] = tensors.iter().map(|t| t.dims[0]).sum();
            }
            let bytes: Vec<u8> = tensors
                .iter()
                .flat_map(|t| src.tensor_bytes(t).iter().copied())
                .collect();
            w.tensor(fused_name, &dims, q.ty, bytes);
            consumed.extend(tensors.iter().map(|t| t.name.clone()));
        }
        i += 1;
    }
    if i == 0 {
        return Err(SynthError::Spec(format!(
            "{}: no separate Q/K/V tensors to fuse",
            src.path().display()
        )));
    }
    for t in src.tensors.iter().filter(|t| !consumed.contains(&t.name)) {
        w.tensor(t.name.clone(), &t.dims, t.ty, src.tensor_bytes(t).to_vec());
    }
    Ok(w)
}
