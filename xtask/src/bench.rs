//! `cargo xtask bench`: ember's LoRA training step next to the same step in HF transformers + PEFT,
//! on random weights ([`ember_study::speed`]); each ember case runs in a re-invocation of this
//! binary with the hidden `--child SPEC`.

use std::path::PathBuf;

use anyhow::Context;
use ember_study::speed::{self, ChildCommand, SpeedOptions};

use crate::args::BackendArgs;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Cases, comma separated: q06b4 (Qwen3-0.6B dims, 4 layers, vocab 151,936, 4 x 256), q8b1
    /// (Qwen3-8B layer dims, 1 layer, vocab 8,192, 2 x 256), rss (q8b1, batch 1, at each
    /// --rss-seq), gpu (the --shape model at --batch x --seq; for tch-cuda / cuda).
    #[arg(long, value_delimiter = ',', default_value = "q06b4,q8b1,rss")]
    cases: Vec<String>,
    #[command(flatten)]
    backend: BackendArgs,
    /// Timed steps per case (after the warm-up steps).
    #[arg(long, default_value_t = 1)]
    steps: usize,
    /// Untimed warm-up steps per case.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Compute threads for both sides (RAYON/OMP_NUM_THREADS, torch.set_num_threads); default:
    /// all available cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Sequence lengths of the `rss` case.
    #[arg(long, value_delimiter = ',', default_value = "512,2048,4096")]
    rss_seq: Vec<usize>,
    /// Steps of each `rss` case, without warm-up: the peak is reached in the first step, and
    /// 4,096-token steps of an 8B layer take minutes on 2 cores.
    #[arg(long, default_value_t = 1)]
    rss_steps: usize,
    /// ember only (no Python).
    #[arg(long)]
    no_hf: bool,
    /// HF only.
    #[arg(long)]
    no_ember: bool,
    /// Python with torch 2.9, transformers and peft (default: $EMBER_VENV/bin/python or
    /// ~/.cache/ember/venv/bin/python).
    #[arg(long)]
    python: Option<PathBuf>,
    /// ember's attention: chunked | chunked:ROWS | fused (libtorch's fused kernel on tch CPU,
    /// else chunked) | plain.
    #[arg(long, default_value = "chunked")]
    attention: String,
    /// ember's loss: plain | chunked | chunked:TOKENS.
    #[arg(long, default_value = "chunked")]
    loss: String,
    /// HF's attn_implementation (sdpa is transformers' default; eager is the reference math).
    #[arg(long, default_value = "sdpa")]
    hf_attn: String,
    /// Also time the phases of a step (ember: forward+backward, clip+optimizer; HF: forward+loss,
    /// backward, clip+optimizer) and ember's RSS after the backward.
    #[arg(long)]
    profile: bool,
    /// Model shape of the `gpu` case: qwen3-8b | qwen3-0.6b.
    #[arg(long, default_value = "qwen3-8b")]
    shape: String,
    /// Layers of the `gpu` case's model (default: the real model's).
    #[arg(long)]
    layers: Option<usize>,
    /// Batch and sequence length of the `gpu` case.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    #[arg(long, default_value_t = 6500)]
    seq: usize,
    /// Layer recompute on both sides (ember's `Backprop::Recompute`, HF's
    /// `gradient_checkpointing_enable()`): true | false. Default: off for q06b4, q8b1 and rss, on
    /// for the `gpu` case.
    #[arg(long)]
    recompute: Option<bool>,
    /// Base weight dtype: f32 | bf16 (adapters, optimizer state and loss stay f32).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// DoRA adapters on both sides (PEFT `use_dora=True`; r 16 on the 7 projections as always).
    #[arg(long)]
    dora: bool,
    /// Peak dense TFLOP/s of the device, for MFU (default: 989, an H200's bf16, on GPUs; none on CPU).
    #[arg(long)]
    peak_tflops: Option<f64>,
    /// Write all results (and the machine) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Internal: run one case in this process and print its result.
    #[arg(long, hide = true)]
    child: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let opts = SpeedOptions {
        cases: args.cases,
        backend: args.backend.backend,
        steps: args.steps,
        warmup: args.warmup,
        threads: args.threads,
        rss_seq: args.rss_seq,
        rss_steps: args.rss_steps,
        no_hf: args.no_hf,
        no_ember: args.no_ember,
        python: args.python,
        attention: args.attention,
        loss: args.loss,
        hf_attn: args.hf_attn,
        profile: args.profile,
        shape: args.shape,
        layers: args.layers,
        batch: args.batch,
        seq: args.seq,
        recompute: args.recompute,
        dtype: args.dtype,
        dora: args.dora,
        peak_tflops: args.peak_tflops,
        json: args.json,
        child_command: ChildCommand {
            exe,
            args: vec!["bench".into(), "--child".into()],
        },
        child_spec: args.child,
    };
    Ok(speed::run(&opts)?)
}
