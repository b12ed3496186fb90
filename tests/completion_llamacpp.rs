//! `rocmforge run --raw --temperature 0` on SmolLM2 must write the same text as llama.cpp's
//! `llama-completion --temp 0` (tools/gen_completion_goldens.sh), 32 tokens per prompt.
//!
//! On the F32 copy, where llama.cpp computes in plain f32 like our reference, every text must
//! be identical. On the Q4_1 original llama.cpp rounds activations to 8 bits, which moves
//! logits by 0.17 on average (tests/parity_llamacpp.rs); a divergence there is accepted only
//! where the two best tokens lie within `NEAR_TIE` of each other, which the test shows.

mod common;

use rocmforge::backend::cpu::CpuBackend;
use rocmforge::backend::Backend;
use rocmforge::gguf::GgufFile;
use rocmforge::plan::{bind, Plan};
use rocmforge::tokenizer::Tokenizer;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
struct Row {
    prompt: String,
    completion: String,
}

/// Logit gap under which two tokens count as tied: twice the mean |logit difference| between
/// llama.cpp and the CPU reference on SmolLM2 Q4_1.
const NEAR_TIE: f32 = 0.35;

#[test]
fn greedy_text_equals_llamacpp_q4_1() {
    let Some(smol) = common::smollm2() else {
        return;
    };
    compare(&smol, "smollm2", 0);
}

#[test]
fn greedy_text_equals_llamacpp_f32() {
    let Some(smol) = common::smollm2() else {
        return;
    };
    let f32_copy = common::scratch("completion").join("smollm2-f32.gguf");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_gguf-edit"))
        .args([
            "requant",
            "F32",
            smol.to_str().unwrap(),
            f32_copy.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    compare(&f32_copy, "smollm2-f32", 5);
}

fn compare(smol: &std::path::Path, golden: &str, min_exact: usize) {
    let path = format!(
        "{}/tests/data/completion/{golden}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let rows: Vec<Row> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(rows.len() >= 5);
    let file = Arc::new(GgufFile::open(smol).unwrap());
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let model = Arc::new(bind(&Plan::for_architecture("llama").unwrap(), file).unwrap());
    let mut exact = 0;
    for row in &rows {
        let out = common::rocmforge(&[
            "run",
            "--gguf",
            smol.to_str().unwrap(),
            "--raw",
            "--temperature",
            "0",
            "-n",
            "32",
            "--device",
            "cpu",
            "--prompt",
            &row.prompt,
        ]);
        let ours = out.strip_suffix('\n').unwrap_or(&out);
        if ours == row.completion {
            exact += 1;
            continue;
        }
        // Find the token where the texts part and show that the reference saw a near-tie there.
        let prompt_ids = tok.encode(&row.prompt, true, false);
        let mut cpu = CpuBackend::new(model.clone(), 512);
        let mut logits = cpu.forward(&prompt_ids, 0, false).unwrap();
        let (mut text, mut pos) = (String::new(), prompt_ids.len());
        loop {
            let ours_id = rocmforge::backend::cpu::ops::argmax(&logits) as u32;
            let piece = String::from_utf8_lossy(tok.token_bytes(ours_id)).into_owned();
            let rest = &row.completion[text.len().min(row.completion.len())..];
            if !rest.starts_with(&piece) {
                // The best token consistent with llama.cpp's text.
                let theirs = (0..logits.len() as u32)
                    .filter(|&id| {
                        let p = tok.token_bytes(id);
                        !p.is_empty() && rest.as_bytes().starts_with(p)
                    })
                    .max_by(|&a, &b| logits[a as usize].total_cmp(&logits[b as usize]))
                    .expect("some token continues the reference text");
                let gap = logits[ours_id as usize] - logits[theirs as usize];
                println!(
                    "{:?}: diverges after {:?}: ours {ours_id} vs llama.cpp {theirs}, gap {gap:.3}",
                    row.prompt, text
                );
                assert!(gap < NEAR_TIE, "divergence at a clear winner (gap {gap})");
                break;
            }
            text.push_str(&piece);
            logits = cpu.forward(&[ours_id], pos, false).unwrap();
            pos += 1;
        }
    }
    println!(
        "{golden}: {exact}/{} greedy completions identical to llama.cpp's",
        rows.len()
    );
    assert!(
        exact >= min_exact,
        "only {exact} of {} completions are identical",
        rows.len()
    );
}
