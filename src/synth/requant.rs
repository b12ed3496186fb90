//! Converts a model's weight matrices to another format (dequantize, then quantize with the
//! reference quantizers). With F32 this gives a copy on which llama.cpp makes no quantized dot
//! products, which isolates its activation rounding in the parity tests.

use super::{fit_type, SynthError};
use crate::gguf::dequant::dequantize;
use crate::gguf::quantize::quantize;
use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgmlType, GgufFile, Value};
use rayon::prelude::*;

pub fn requantize(src: &GgufFile, ty: GgmlType) -> Result<GgufWriter, SynthError> {
    let mut w = GgufWriter::new();
    for (k, v) in &src.metadata {
        // general.file_type describes the old mix; 0 (all F32) or 1 (mostly F16) are the only
        // honest values left, and llama.cpp ignores it when loading.
        let v = if k == "general.file_type" {
            Value::U32(0)
        } else {
            v.clone()
        };
        w.metadata(k.clone(), v);
    }
    let converted: Vec<(GgmlType, Vec<u8>)> = src
        .tensors
        .par_iter()
        .map(|t| {
            if t.dims.len() < 2 {
                return Ok((t.ty, src.tensor_bytes(t).to_vec()));
            }
            src.require_supported(t)?;
            let mut values = vec![0f32; t.n_elements() as usize];
            dequantize(t.ty, src.tensor_bytes(t), &mut values)
                .map_err(|e| SynthError::Spec(e.to_string()))?;
            let to = fit_type(ty, t.dims[0]);
            Ok((to, quantize(to, &values)))
        })
        .collect::<Result<_, SynthError>>()?;
    for (t, (ty, bytes)) in src.tensors.iter().zip(converted) {
        w.tensor(t.name.clone(), &t.dims, ty, bytes);
    }
    Ok(w)
}
