//! `rocmforge run`: a prompt, or an interactive chat, streamed as it is generated.

use crate::backend::gpu::{open_backend_tuned, Tuning};
use crate::backend::Backend;
use crate::chat::{ChatMessage, ChatTemplate};
use crate::generate::{GenOptions, GenStats, Generator};
use crate::gguf::GgufFile;
use crate::plan::{bind, Model, Plan};
use crate::sample::SamplerConfig;
use crate::tokenizer::Tokenizer;
use clap::Args;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// The GGUF model file
    #[arg(long)]
    pub gguf: PathBuf,
    /// Architecture plan: a name (llama, qwen2, ...) or a path to a .toml; default: found from
    /// the file's general.architecture
    #[arg(long)]
    pub arch: Option<String>,
    /// cpu, cuda[:N], hip[:N] or auto (HIP, then CUDA, then CPU)
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// KV-cache size in tokens (default: the model's training context, at most 4096)
    #[arg(long)]
    pub ctx_size: Option<usize>,
    /// Run a GPU with default kernel knobs, ignoring the device's tuning database
    #[arg(long)]
    pub no_tune: bool,
}

impl ModelArgs {
    /// Whether a GPU backend applies the tuning database.
    pub fn tuning(&self) -> Tuning {
        if self.no_tune {
            Tuning::Disabled
        } else {
            Tuning::Database
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt text; without --prompt or --prompt-file an interactive chat starts
    #[arg(long, short)]
    pub prompt: Option<String>,
    #[arg(long, conflicts_with = "prompt")]
    pub prompt_file: Option<PathBuf>,
    /// System message for the chat template
    #[arg(long)]
    pub system: Option<String>,
    /// Plain completion: no chat template
    #[arg(long)]
    pub raw: bool,
    #[arg(long, short = 'n', default_value_t = 256)]
    pub max_tokens: usize,
    /// 0 = greedy
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// 0 = off
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// 1 = off
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// 0 = off
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// 1 = off
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Same seed, same text (default: from the clock)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when this text is generated (repeatable)
    #[arg(long)]
    pub stop: Vec<String>,
}

/// A model bound and loaded on a backend, with its tokenizer.
pub struct Loaded {
    pub model: Arc<Model>,
    pub tokenizer: Tokenizer,
    pub backend: Box<dyn Backend>,
    pub load_secs: f64,
}

pub fn load(a: &ModelArgs) -> Result<Loaded, Box<dyn std::error::Error>> {
    let start = Instant::now();
    // Drawn only when stderr is a terminal; kernel compilation shows its own bar.
    let progress = indicatif::ProgressBar::new_spinner();
    progress.enable_steady_tick(std::time::Duration::from_millis(100));
    progress.set_message(format!("mapping {}", a.gguf.display()));
    let file = Arc::new(GgufFile::open(&a.gguf)?);
    progress.set_message("binding the plan");
    let plan = Plan::resolve(a.arch.as_deref(), &file)?;
    let model = Arc::new(bind(&plan, file.clone())?);
    progress.set_message("reading the tokenizer");
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let n_ctx = a.ctx_size.unwrap_or(model.hparams.n_ctx_train.min(4096));
    if n_ctx == 0 {
        return Err("--ctx-size must be at least 1".into());
    }
    progress.set_message(format!("opening {} (kernels, weights, KV cache)", a.device));
    let backend = open_backend_tuned(&a.device, model.clone(), n_ctx, a.tuning())?;
    progress.finish_and_clear();
    eprintln!(
        "rocmforge: {} on {}, plan {}, context {n_ctx}",
        a.gguf.display(),
        backend.name(),
        plan.name
    );
    Ok(Loaded {
        model,
        tokenizer,
        backend,
        load_secs: start.elapsed().as_secs_f64(),
    })
}

pub fn run(a: &RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let sampling = SamplerConfig {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repeat_penalty: a.repeat_penalty,
        repeat_last_n: a.repeat_last_n,
        presence_penalty: a.presence_penalty,
        frequency_penalty: a.frequency_penalty,
        seed: a.seed.unwrap_or_else(clock_seed),
    };
    let opts = GenOptions {
        max_tokens: a.max_tokens,
        stop: a.stop.clone(),
    };
    let prompt = match (&a.prompt, &a.prompt_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| format!("--prompt-file {}: {e}", f.display()))?,
        ),
        (None, None) => None,
    };
    let mut loaded = load(&a.model)?;
    let template = if a.raw {
        None
    } else {
        ChatTemplate::from_gguf(&loaded.model.file)?
    };
    if template.is_none() && !a.raw {
        eprintln!("rocmforge: the model has no chat template; prompts are used as plain text");
    }
    let tokenizer = &loaded.tokenizer;
    let mut gen = Generator::new(loaded.backend.as_mut(), tokenizer, sampling);
    let mut messages: Vec<ChatMessage> = a.system.iter().map(ChatMessage::system).collect();
    let mut stdout = std::io::stdout();
    let mut emit = |s: &str| {
        print!("{s}");
        let _ = stdout.flush();
    };

    let Some(prompt) = prompt else {
        return chat(&mut gen, tokenizer, template.as_ref(), &mut messages, &opts);
    };
    let ids = match &template {
        Some(t) => {
            messages.push(ChatMessage::user(prompt));
            encode_chat(tokenizer, &t.render(&messages, true)?)
        }
        None => tokenizer.encode(&prompt, true, false),
    };
    let (_, stats) = gen.complete(&ids, &opts, &mut emit)?;
    println!();
    report(loaded.load_secs, &stats);
    Ok(())
}

fn chat(
    gen: &mut Generator,
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
    messages: &mut Vec<ChatMessage>,
    opts: &GenOptions,
) -> Result<(), Box<dyn std::error::Error>> {
    eprintln!("chat: type a message; /exit or Ctrl-D ends");
    let stdin = std::io::stdin();
    let mut transcript = String::new();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim() == "/exit" {
            return Ok(());
        }
        let line = line.trim_end_matches(['\n', '\r']).to_string();
        let ids = match template {
            Some(t) => {
                messages.push(ChatMessage::user(line));
                encode_chat(tokenizer, &t.render(messages, true)?)
            }
            None => {
                transcript.push_str(&line);
                tokenizer.encode(&transcript, true, false)
            }
        };
        let mut reply = String::new();
        let (_, stats) = gen.complete(&ids, opts, &mut |s| {
            print!("{s}");
            reply.push_str(s);
            let _ = std::io::stdout().flush();
        })?;
        println!();
        match template {
            Some(_) => messages.push(ChatMessage::assistant(reply)),
            None => transcript.push_str(&reply),
        }
        eprintln!(
            "[{} prompt tokens at {:.1} tok/s, {} generated at {:.1} tok/s]",
            stats.prompt_tokens,
            rate(stats.prompt_tokens, stats.prompt_secs),
            stats.gen_tokens,
            rate(stats.gen_tokens, stats.gen_secs)
        );
    }
}

/// Templates that write the BOS token themselves must not get a second one from the tokenizer.
fn encode_chat(tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
    let renders_bos = tokenizer
        .bos()
        .and_then(|b| tokenizer.token_text(b))
        .is_some_and(|b| !b.is_empty() && text.starts_with(b));
    tokenizer.encode(text, !renders_bos, true)
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

fn report(load_secs: f64, s: &GenStats) {
    eprintln!(
        "load {load_secs:.2} s | prompt {} tokens, {:.1} tok/s | generation {} tokens, {:.1} tok/s | stop: {:?}",
        s.prompt_tokens,
        rate(s.prompt_tokens, s.prompt_secs),
        s.gen_tokens,
        rate(s.gen_tokens, s.gen_secs),
        s.stop
    );
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
