//! `cargo xtask bench`: ember's LoRA training step next to the same step in HF transformers + PEFT
//! (`fixtures/bench/hf_step.py`), on random weights, printing s/step, tokens/s, peak RSS and the
//! ember/HF ratios.
//!
//! Every measurement runs in its own process so that its peak RSS (VmHWM) is its own: ember's
//! cases re-invoke this binary with the hidden `--child SPEC` argument, HF's run the Python script.
//! Both sides get the same config, batch, sequence length, thread count, LoRA setup (r 16, alpha 32,
//! dropout 0.05, the 7 projections), AdamW and clipping to 1.0.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::optim::GradientsParams;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use ember_backend::{AutodiffBackend, BackendChoice, BackendOp};
use ember_lora::{LoraConfig, TargetModules};
use ember_optim::{AdamW, AdamWConfig, clip_grad_norm};
use ember_qwen3::{AttentionImpl, Backprop, LossImpl, ModelInputs, Qwen3Config, random_model};
use ember_train::trainer::compute_dtype;
use serde_json::{Value, json};

/// Marks the child's result line among anything else it prints.
const RESULT_PREFIX: &str = "EMBER_BENCH_RESULT ";

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Cases, comma separated: q06b4 (Qwen3-0.6B dims, 4 layers, vocab 151,936, 4 x 256), q8b1
    /// (Qwen3-8B layer dims, 1 layer, vocab 8,192, 2 x 256), rss (q8b1, batch 1, at each
    /// --rss-seq), gpu (the --shape model at --batch x --seq; for tch-cuda / cuda).
    #[arg(long, value_delimiter = ',', default_value = "q06b4,q8b1,rss")]
    cases: Vec<String>,
    /// flex | tch | tch-cuda:N | cuda:N
    #[arg(long, default_value_t = BackendChoice::default_compiled())]
    backend: BackendChoice,
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
    /// Also time the phases of a step (forward+loss, backward, clip+optimizer) and ember's RSS
    /// after the forward and after the backward.
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

/// One measured configuration.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    config: Value,
    batch: usize,
    seq: usize,
    steps: usize,
    warmup: usize,
    recompute: bool,
}

fn qwen3_06b(layers: usize) -> Value {
    json!({
        "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072,
        "num_hidden_layers": layers, "num_attention_heads": 16, "num_key_value_heads": 8,
        "head_dim": 128, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
        "max_position_embeddings": 40960
    })
}

fn qwen3_8b(layers: usize, vocab: usize) -> Value {
    json!({
        "vocab_size": vocab, "hidden_size": 4096, "intermediate_size": 12288,
        "num_hidden_layers": layers, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 128, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": false,
        "max_position_embeddings": 40960
    })
}

fn cases(args: &Args) -> anyhow::Result<Vec<Case>> {
    let mut out = Vec::new();
    let cpu_recompute = args.recompute.unwrap_or(false);
    for name in &args.cases {
        match name.as_str() {
            "q06b4" => out.push(Case {
                name: "q06b4".into(),
                config: qwen3_06b(4),
                batch: 4,
                seq: 256,
                steps: args.steps,
                warmup: args.warmup,
                recompute: cpu_recompute,
            }),
            "q8b1" => out.push(Case {
                name: "q8b1".into(),
                config: qwen3_8b(1, 8192),
                batch: 2,
                seq: 256,
                steps: args.steps,
                warmup: args.warmup,
                recompute: cpu_recompute,
            }),
            "rss" => {
                for &seq in &args.rss_seq {
                    out.push(Case {
                        name: format!("rss-{seq}"),
                        config: qwen3_8b(1, 8192),
                        batch: 1,
                        seq,
                        steps: args.rss_steps,
                        warmup: 0,
                        recompute: cpu_recompute,
                    });
                }
            }
            "gpu" => {
                let config = match args.shape.as_str() {
                    "qwen3-8b" => qwen3_8b(args.layers.unwrap_or(36), 151936),
                    "qwen3-0.6b" => qwen3_06b(args.layers.unwrap_or(28)),
                    other => bail!("unknown --shape {other}: expected qwen3-8b or qwen3-0.6b"),
                };
                out.push(Case {
                    name: args.shape.clone(),
                    config,
                    batch: args.batch,
                    seq: args.seq,
                    steps: args.steps,
                    warmup: args.warmup,
                    // 4 x 6,500 tokens of 36 layers only fit with recompute.
                    recompute: args.recompute.unwrap_or(true),
                });
            }
            other => bail!("unknown case {other}: expected q06b4, q8b1, rss or gpu"),
        }
    }
    Ok(out)
}

fn parse_attention(s: &str) -> anyhow::Result<AttentionImpl> {
    Ok(match s.split_once(':') {
        None if s == "plain" => AttentionImpl::Plain,
        None if s == "chunked" => AttentionImpl::default(),
        None if s == "fused" => AttentionImpl::Fused {
            chunk: ember_qwen3::attention::DEFAULT_ATTENTION_CHUNK,
        },
        Some(("chunked", n)) => AttentionImpl::Chunked {
            chunk: n.parse().context("chunk rows")?,
        },
        _ => bail!("--attention {s}: expected fused, plain, chunked or chunked:ROWS"),
    })
}

fn parse_loss(s: &str, vocab: usize) -> anyhow::Result<LossImpl> {
    Ok(match s.split_once(':') {
        None if s == "plain" => LossImpl::Plain,
        None if s == "chunked" => LossImpl::chunked_for_vocab(vocab),
        Some(("chunked", n)) => LossImpl::Chunked {
            tokens: n.parse().context("chunk tokens")?,
        },
        _ => bail!("--loss {s}: expected plain, chunked or chunked:TOKENS"),
    })
}

/// A `/proc/self/status` field in bytes (Linux; 0 elsewhere).
fn proc_status_bytes(field: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn gib(bytes: f64) -> String {
    format!("{:.2} GiB", bytes / (1u64 << 30) as f64)
}

/// Multiply-adds of one step x 2: frozen base matmuls forward and input-gradient (4 flops per
/// weight per token), LoRA factors with their weight gradients (6), causal attention scores and
/// outputs (forward 2 matmuls over half the keys, backward 4 plus a recomputed score matmul).
fn step_flops(cfg: &Qwen3Config, batch: usize, seq: usize) -> f64 {
    let (h, i, l) = (
        cfg.hidden_size as f64,
        cfg.intermediate_size as f64,
        cfg.num_hidden_layers as f64,
    );
    let q = (cfg.num_attention_heads * cfg.head_dim) as f64;
    let kv = (cfg.kv_heads() * cfg.head_dim) as f64;
    let base_layer = h * q * 2.0 + h * kv * 2.0 + 3.0 * h * i;
    let r = 16.0;
    let lora_layer = r * ((h + q) * 2.0 + (h + kv) * 2.0 + 2.0 * (h + i) + (i + h));
    let tokens = (batch * seq) as f64;
    let head = h * cfg.vocab_size as f64;
    let attn = 7.0 * 2.0 * (seq as f64) * (seq as f64) / 2.0 * q * batch as f64;
    tokens * (4.0 * (base_layer * l + head) + 6.0 * lora_layer * l) + attn * l
}

// ---------------------------------------------------------------------------------------------
// The child: one ember case in this process.

struct Step {
    spec: Value,
}

impl BackendOp for Step {
    type Output = anyhow::Result<Value>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> anyhow::Result<Value> {
        let s = &self.spec;
        let get = |k: &str| {
            s.get(k)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .context(format!("spec.{k}"))
        };
        let (batch, seq, steps, warmup) =
            (get("batch")?, get("seq")?, get("steps")?, get("warmup")?);
        let profile = s.get("profile").and_then(Value::as_bool).unwrap_or(false);
        let recompute = s.get("recompute").and_then(Value::as_bool).unwrap_or(false);
        let cfg_json = s.get("config").context("spec.config")?.to_string();
        let cfg = Qwen3Config::from_json_str(&cfg_json)?;
        let dtype = compute_dtype(s.get("dtype").and_then(Value::as_str).unwrap_or("f32"));
        let attention = parse_attention(
            s.get("attention")
                .and_then(Value::as_str)
                .unwrap_or("chunked"),
        )?;
        let loss_impl = parse_loss(
            s.get("loss").and_then(Value::as_str).unwrap_or("chunked"),
            cfg.vocab_size,
        )?;

        let t_load = Instant::now();
        let mut model = random_model::<B>(&cfg, 0, dtype, &device);
        model.set_attention(attention);
        model.set_loss(loss_impl);
        let lora = LoraConfig {
            lora_rank: 16,
            lora_alpha: Some(32.0),
            lora_dropout: 0.05,
            // PEFT's "all-linear": Qwen3's 7 projections (the HF script lists them by name).
            lora_target: TargetModules::AllLinear,
            ..LoraConfig::default()
        };
        ember_lora::apply_lora(&mut model, &lora, 0)?;
        let load_seconds = t_load.elapsed().as_secs_f64();
        let rss_model = proc_status_bytes("VmRSS:");
        let mut opt = AdamW::<B>::new(AdamWConfig {
            weight_decay: 0.0,
            ..AdamWConfig::default()
        });

        // Random ids, no padding, every position supervised (as the HF side).
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let ids: Vec<i64> = (0..batch * seq)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 33) % cfg.vocab_size as u64) as i64
            })
            .collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, seq]), &device);
        let mask = Tensor::<B, 2, Int>::ones([batch, seq], &device);
        let n_items = (batch * (seq - 1)) as f64;

        let (mut times, mut phases) = (Vec::new(), Vec::new());
        let (mut rss_fwd, mut rss_bwd) = (0u64, 0u64);
        let mut loss_value = 0.0f64;
        for step in 0..warmup + steps {
            ember_lora::set_dropout_seed(&mut model, step as u64);
            let t0 = Instant::now();
            let (loss, mut grads, t1) = if recompute {
                // Forward and backward interleave: only the total is timed.
                let inputs = ModelInputs::new(ids.clone()).with_attention_mask(mask.clone());
                let (loss, grads) = model.loss_and_grads(inputs, n_items, Backprop::Recompute);
                (loss, grads, None)
            } else {
                // Backprop::FullGraph, with the forward and backward timed apart.
                let out = model.forward_loss(
                    &ModelInputs::new(ids.clone())
                        .with_attention_mask(mask.clone())
                        .with_labels(ids.clone()),
                );
                let loss = out.sum.div_scalar(n_items);
                if profile {
                    B::sync(&device).ok();
                    rss_fwd = rss_fwd.max(proc_status_bytes("VmRSS:"));
                }
                let t1 = Instant::now();
                let value = loss.clone().inner();
                (
                    value,
                    GradientsParams::from_grads(loss.backward(), &model),
                    Some(t1),
                )
            };
            if profile {
                B::sync(&device).ok();
                rss_bwd = rss_bwd.max(proc_status_bytes("VmRSS:"));
            }
            let t2 = Instant::now();
            clip_grad_norm(&model, &mut grads, 1.0);
            model = opt.step(1e-4, model, grads);
            loss_value = loss.into_scalar().elem::<f64>();
            B::sync(&device).ok();
            let t3 = Instant::now();
            if step >= warmup {
                times.push((t3 - t0).as_secs_f64());
                phases.push(match t1 {
                    Some(t1) => json!({
                        "forward_loss": (t1 - t0).as_secs_f64(),
                        "backward": (t2 - t1).as_secs_f64(),
                        "clip_optimizer": (t3 - t2).as_secs_f64(),
                    }),
                    None => json!({
                        "forward_backward": (t2 - t0).as_secs_f64(),
                        "clip_optimizer": (t3 - t2).as_secs_f64(),
                    }),
                });
            }
        }
        let mut result = json!({
            "impl": "ember",
            "attention": format!("{attention:?}"),
            "loss_impl": format!("{loss_impl:?}"),
            "recompute": recompute,
            "custom_backward": ember_qwen3::attention::has_custom_backward::<B>(),
            "step_seconds": times,
            "loss": loss_value,
            "peak_rss_bytes": proc_status_bytes("VmHWM:"),
            "rss_after_model_bytes": rss_model,
            "load_seconds": load_seconds,
            "flops_per_step": step_flops(&cfg, batch, seq),
        });
        if profile {
            result["phases"] = json!(phases);
            if rss_fwd > 0 {
                // Not measured under recompute: forward and backward interleave.
                result["rss_after_forward_bytes"] = json!(rss_fwd);
            }
            result["rss_after_backward_bytes"] = json!(rss_bwd);
        }
        Ok(result)
    }
}

fn run_child(spec: &str) -> anyhow::Result<()> {
    let spec: Value = serde_json::from_str(spec).context("--child takes a JSON spec")?;
    let backend: BackendChoice = spec
        .get("backend")
        .and_then(Value::as_str)
        .context("spec.backend")?
        .parse()?;
    let result = ember_backend::run(backend, Step { spec })??;
    println!("{RESULT_PREFIX}{result}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The parent: run every case on both sides and print the table.

fn python(args: &Args) -> Option<PathBuf> {
    if let Some(p) = &args.python {
        return Some(p.clone());
    }
    let venv = std::env::var_os("EMBER_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ember/venv")))?;
    let p = venv.join("bin/python");
    p.is_file().then_some(p)
}

fn last_json_line(stdout: &[u8], prefix: &str) -> Option<Value> {
    String::from_utf8_lossy(stdout).lines().rev().find_map(|l| {
        l.strip_prefix(prefix)
            .and_then(|j| serde_json::from_str(j).ok())
    })
}

fn threaded(cmd: &mut Command, threads: usize) -> &mut Command {
    let n = threads.to_string();
    cmd.env("RAYON_NUM_THREADS", &n)
        .env("OMP_NUM_THREADS", &n)
        .env("MKL_NUM_THREADS", &n)
}

fn run_ember(args: &Args, case: &Case, threads: usize) -> anyhow::Result<Value> {
    let spec = json!({
        "backend": args.backend.to_string(), "config": case.config, "batch": case.batch,
        "seq": case.seq, "steps": case.steps, "warmup": case.warmup, "attention": args.attention,
        "loss": args.loss, "dtype": args.dtype, "profile": args.profile,
        "recompute": case.recompute,
    });
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let child = threaded(
        Command::new(exe).args(["bench", "--child", &spec.to_string()]),
        threads,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .context("running the ember child")?;
    let gpu = matches!(
        args.backend,
        BackendChoice::TchCuda(_) | BackendChoice::Cuda(_)
    );
    let sampler = gpu.then(|| GpuMemorySampler::start(child.id()));
    let out = child
        .wait_with_output()
        .context("running the ember child")?;
    let gpu_peak = sampler.and_then(GpuMemorySampler::stop);
    let mut v = result_line(&out, RESULT_PREFIX, "ember child")?;
    if let Some(bytes) = gpu_peak {
        v["peak_gpu_bytes"] = json!(bytes);
    }
    Ok(v)
}

/// The JSON result line (after `prefix`) of a finished measuring process, or an error quoting the
/// end of its stderr.
fn result_line(out: &Output, prefix: &str, what: &str) -> anyhow::Result<Value> {
    match last_json_line(&out.stdout, prefix) {
        Some(v) if out.status.success() => Ok(v),
        _ => bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// Peak GPU memory of one process as `nvidia-smi` reports it (what the process holds on the device,
/// allocator cache included), sampled every 100 ms from a thread while the process runs. Works for
/// every GPU backend alike; `None` without `nvidia-smi` or without a sample.
struct GpuMemorySampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Option<u64>>,
}

impl GpuMemorySampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak: Option<u64> = None;
            while !flag.load(Ordering::Relaxed) {
                let out = Command::new("nvidia-smi")
                    .args([
                        "--query-compute-apps=pid,used_memory",
                        "--format=csv,noheader,nounits",
                    ])
                    .output()
                    .ok()?;
                let mib: u64 = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|l| {
                        let (p, m) = l.split_once(',')?;
                        (p.trim().parse::<u32>().ok()? == pid)
                            .then(|| m.trim().parse::<u64>().ok())?
                    })
                    .sum();
                if mib > 0 {
                    peak = Some(peak.unwrap_or(0).max(mib << 20));
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            peak
        });
        Self { stop, thread }
    }

    fn stop(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().ok().flatten()
    }
}

fn run_hf(args: &Args, py: &PathBuf, case: &Case, threads: usize) -> anyhow::Result<Value> {
    let script = crate::finetune::repo_root().join("fixtures/bench/hf_step.py");
    let mut cmd = Command::new(py);
    cmd.arg(&script)
        .args(["--config", &case.config.to_string()])
        .args([
            "--batch",
            &case.batch.to_string(),
            "--seq",
            &case.seq.to_string(),
        ])
        .args([
            "--steps",
            &case.steps.to_string(),
            "--warmup",
            &case.warmup.to_string(),
        ])
        .args(["--threads", &threads.to_string(), "--attn", &args.hf_attn]);
    if args.profile {
        cmd.arg("--profile");
    }
    if case.recompute {
        cmd.arg("--recompute");
    }
    if args.dtype == "bf16" {
        cmd.args(["--dtype", "bf16"]);
    }
    let out = threaded(&mut cmd, threads)
        .output()
        .context("running the HF script")?;
    result_line(&out, "", "HF script")
}

fn mean_step(v: &Value) -> Option<f64> {
    let t: Vec<f64> = v
        .get("step_seconds")?
        .as_array()?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    (!t.is_empty()).then(|| t.iter().sum::<f64>() / t.len() as f64)
}

fn peak(v: &Value) -> Option<f64> {
    v.get("peak_rss_bytes").and_then(Value::as_f64)
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().next().map(str::to_string))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    json!({ "cpu": cpu, "cores": cores, "memory": mem })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(spec) = &args.child {
        return run_child(spec);
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let py = if args.no_hf { None } else { python(&args) };
    if !args.no_hf && py.is_none() {
        eprintln!(
            "note: no Python venv found ($EMBER_VENV or ~/.cache/ember/venv; see scripts/torch-env.sh): ember only"
        );
    }
    let m = machine();
    println!(
        "machine: {} ({} cores), {}; {threads} threads; ember on {}, attention {}, loss {}, base {}, recompute {}; HF attn {}",
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"],
        m["memory"].as_str().unwrap_or("?"),
        args.backend,
        args.attention,
        args.loss,
        args.dtype,
        args.recompute
            .map_or("per case".to_string(), |r| r.to_string()),
        args.hf_attn
    );
    println!(
        "{} warm-up + {} timed step(s) per case ({} step(s), no warm-up, for rss); LoRA r16, 7 targets, dropout 0.05, AdamW, clip 1.0\n",
        args.warmup, args.steps, args.rss_steps
    );
    let peak_tflops = args.peak_tflops.or(match args.backend {
        BackendChoice::TchCuda(_) | BackendChoice::Cuda(_) => Some(989.0),
        _ => None,
    });
    println!(
        "{:<10} {:<6} {:>9} {:>9} {:>10} {:>10} {:>9} {:>12} {:>10}",
        "case",
        "impl",
        "batch",
        "s/step",
        "tokens/s",
        "peak RSS",
        "GFLOP/s",
        "tok/s e/HF",
        "RSS e/HF"
    );
    let mut all = Vec::new();
    for case in cases(&args)? {
        let tokens = (case.batch * case.seq) as f64;
        let ember = if args.no_ember {
            None
        } else {
            Some(run_ember(&args, &case, threads))
        };
        let hf = py.as_ref().map(|p| run_hf(&args, p, &case, threads));
        let shape = format!("{}x{}", case.batch, case.seq);
        let row = |label: &str, r: &anyhow::Result<Value>, ratios: Option<(f64, f64)>| match r {
            Ok(v) => {
                let s = mean_step(v).unwrap_or(f64::NAN);
                let flops = v.get("flops_per_step").and_then(Value::as_f64);
                let gflops = flops.map_or(String::from("-"), |f| format!("{:.1}", f / s / 1e9));
                let ratio = ratios.map_or((String::new(), String::new()), |(t, m)| {
                    (format!("{t:.2}x"), format!("{m:.2}x"))
                });
                println!(
                    "{:<10} {:<6} {:>9} {:>9.3} {:>10.1} {:>10} {:>9} {:>12} {:>10}",
                    case.name,
                    label,
                    shape,
                    s,
                    tokens / s,
                    gib(peak(v).unwrap_or(f64::NAN)),
                    gflops,
                    ratio.0,
                    ratio.1
                );
                if let Some(bytes) = v.get("peak_gpu_bytes").and_then(Value::as_f64) {
                    println!(
                        "{:<10} {:<6} peak GPU memory {} (nvidia-smi)",
                        "",
                        label,
                        gib(bytes)
                    );
                }
                if let (Some(f), Some(peak)) = (flops, peak_tflops) {
                    println!(
                        "{:<10} {:<6} MFU {:.1}% of {peak} TFLOP/s",
                        "",
                        label,
                        100.0 * f / s / (peak * 1e12)
                    );
                }
                if let Some(ph) = v
                    .get("phases")
                    .and_then(Value::as_array)
                    .and_then(|a| a.last())
                {
                    let f = |k: &str| ph.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
                    let rss = |k: &str| {
                        v.get(k)
                            .and_then(Value::as_f64)
                            .map_or(String::from("-"), gib)
                    };
                    let times = if ph.get("forward_backward").is_some() {
                        format!("forward+backward (recompute) {:.3}s", f("forward_backward"))
                    } else {
                        format!(
                            "forward+loss {:.3}s, backward {:.3}s",
                            f("forward_loss"),
                            f("backward")
                        )
                    };
                    println!(
                        "{:<10} {:<6} {times}, clip+AdamW {:.3}s; RSS after model {}, forward {}, backward {}",
                        "",
                        label,
                        f("clip_optimizer"),
                        rss("rss_after_model_bytes"),
                        rss("rss_after_forward_bytes"),
                        rss("rss_after_backward_bytes"),
                    );
                }
            }
            Err(e) => println!("{:<10} {:<6} {:>9} failed: {e:#}", case.name, label, shape),
        };
        let ratios = match (&ember, &hf) {
            (Some(Ok(e)), Some(Ok(h))) => match (mean_step(e), mean_step(h), peak(e), peak(h)) {
                (Some(se), Some(sh), Some(pe), Some(ph)) => Some((sh / se, pe / ph)),
                _ => None,
            },
            _ => None,
        };
        if let Some(e) = &ember {
            row("ember", e, ratios);
        }
        if let Some(h) = &hf {
            row("hf", h, None);
        }
        all.push(json!({
            "case": case.name, "batch": case.batch, "seq": case.seq, "config": case.config,
            "ember": ember.as_ref().map(|r| r.as_ref().map_or_else(|e| json!({"error": format!("{e:#}")}), Clone::clone)),
            "hf": hf.as_ref().map(|r| r.as_ref().map_or_else(|e| json!({"error": format!("{e:#}")}), Clone::clone)),
        }));
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "machine": m, "threads": threads, "backend": args.backend.to_string(),
            "attention": args.attention, "loss": args.loss, "dtype": args.dtype,
            "recompute": args.recompute,
            "steps": args.steps, "warmup": args.warmup, "cases": all,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
