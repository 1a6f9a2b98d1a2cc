//! Step speed: ember's LoRA training step next to the same step in HF transformers + PEFT
//! (`fixtures/bench/hf_step.py`), on random weights; s/step, tokens/s, peak RSS and the ember/HF
//! ratios (`cargo xtask bench`; docs/performance.md has the cases and results).
//!
//! Every measurement runs in its own process so that its peak RSS (VmHWM) is its own: ember's
//! cases re-invoke the calling program ([`ChildCommand`], which ends in [`run`] with
//! [`SpeedOptions::child_spec`] set), HF's run the Python script. Both sides get the same config,
//! batch, sequence length, thread count, LoRA setup (r 16, alpha 32, dropout 0.05, the 7
//! projections), AdamW and clipping to 1.0.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ember_backend::{AutodiffBackend, BackendChoice, BackendOp};
use ember_data::Batch;
use ember_lora::{LoraConfig, TargetModules};
use ember_optim::{AdamW, AdamWConfig, SchedulerArgs};
use ember_qwen3::{AttentionImpl, Backprop, LossChoice, LossImpl, Qwen3Config, random_model};
use ember_train::trainer::compute_dtype;
use ember_train::{StepProbe, StepSettings, Window, train_step};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::StudyError;
use crate::memory::{current_rss, peak_rss};

/// Marks the child's result line among anything else it prints.
const RESULT_PREFIX: &str = "EMBER_BENCH_RESULT ";

/// LoRA rank of both sides (the FLOP model counts its factors).
const LORA_RANK: usize = 16;
/// Learning rate of both sides' AdamW.
const LEARNING_RATE: f64 = 1e-4;
/// Global gradient-norm clip of both sides.
const MAX_GRAD_NORM: f64 = 1.0;

/// What to measure and how; `cargo xtask bench`'s flags (its help describes each).
#[derive(Debug, Clone)]
pub struct SpeedOptions {
    /// q06b4 | q8b1 | rss | gpu.
    pub cases: Vec<String>,
    pub backend: BackendChoice,
    pub steps: usize,
    pub warmup: usize,
    /// Compute threads of both sides; `None`: all available cores.
    pub threads: Option<usize>,
    pub rss_seq: Vec<usize>,
    pub rss_steps: usize,
    pub no_hf: bool,
    pub no_ember: bool,
    /// The Python of the HF side; `None`: [`default_python`].
    pub python: Option<PathBuf>,
    /// ember's attention: chunked | chunked:ROWS | fused | plain.
    pub attention: String,
    /// ember's loss: plain | chunked | chunked:TOKENS.
    pub loss: String,
    pub hf_attn: String,
    pub profile: bool,
    /// The `gpu` case's model: qwen3-8b | qwen3-0.6b, `layers` of it (default: the real model's),
    /// at `batch` x `seq`.
    pub shape: String,
    pub layers: Option<usize>,
    pub batch: usize,
    pub seq: usize,
    /// Layer recompute on both sides; `None`: off for the CPU cases, on for `gpu`.
    pub recompute: Option<bool>,
    /// Base weight dtype: f32 | bf16.
    pub dtype: String,
    /// DoRA adapters on both sides (PEFT `use_dora=True`) instead of plain LoRA.
    pub dora: bool,
    /// Peak dense TFLOP/s for MFU; `None`: 989 (an H200's bf16) on GPUs, none on CPU.
    pub peak_tflops: Option<f64>,
    /// Write all results (and the machine) as JSON here.
    pub json: Option<PathBuf>,
    /// How to start one ember case in a fresh process.
    pub child_command: ChildCommand,
    /// Set in that process: measure the case this spec (JSON) describes and print its result.
    pub child_spec: Option<String>,
}

impl SpeedOptions {
    /// Refuses options that would measure nothing or fail only inside a row of the table, naming
    /// the flag: a bad value is an error before any case runs.
    pub fn check(&self) -> Result<(), StudyError> {
        let bad = |flag: &str, why: String| Err(StudyError::Bench(format!("{flag}: {why}")));
        if self.no_hf && self.no_ember {
            return bad(
                "--no-hf with --no-ember",
                "leaves neither side to measure".into(),
            );
        }
        if self.steps == 0 {
            return bad("--steps 0", "at least one timed step is needed".into());
        }
        if self.rss_steps == 0 && self.cases.iter().any(|c| c == "rss") {
            return bad("--rss-steps 0", "at least one step is needed".into());
        }
        if self.threads == Some(0) {
            return bad("--threads 0", "at least one thread is needed".into());
        }
        if let Some(&s) = self.rss_seq.iter().find(|&&s| s < MIN_SEQ) {
            return bad(
                &format!("--rss-seq {s}"),
                format!("at least {MIN_SEQ} tokens (a supervised token needs one before it)"),
            );
        }
        if self.layers == Some(0) {
            return bad(
                "--layers 0",
                "the model needs at least one decoder layer".into(),
            );
        }
        if self.batch == 0 {
            return bad("--batch 0", "at least one sample per step is needed".into());
        }
        if self.seq < MIN_SEQ {
            return bad(
                &format!("--seq {}", self.seq),
                format!("at least {MIN_SEQ} tokens (a supervised token needs one before it)"),
            );
        }
        if !self.no_ember {
            if let Err(e) = self.attention.parse::<AttentionImpl>() {
                return bad("--attention", e.to_string());
            }
            if let Err(e) = self.loss.parse::<LossChoice>() {
                return bad("--loss", e.to_string());
            }
        }
        if !DTYPES.contains(&self.dtype.as_str()) {
            return bad(
                &format!("--dtype {}", self.dtype),
                format!("expected one of {}", DTYPES.join(", ")),
            );
        }
        if let (false, Some(py)) = (self.no_hf, &self.python) {
            // Spawned once here so that a wrong path is one clear error, not a failed row per case.
            if let Err(e) = Command::new(py).arg("-c").arg("").output() {
                return bad(
                    &format!("--python {}", py.display()),
                    format!("cannot run it: {e}"),
                );
            }
        }
        Ok(())
    }
}

/// The base weight dtypes `--dtype` takes.
const DTYPES: &[&str] = &["f32", "bf16"];
/// The shortest sequence with a supervised token.
const MIN_SEQ: usize = 2;

/// The program and leading arguments that, followed by a case's JSON spec, run [`run`] with
/// `child_spec` set (xtask: itself with `bench --child`).
#[derive(Debug, Clone)]
pub struct ChildCommand {
    pub exe: PathBuf,
    pub args: Vec<String>,
}

/// Measures every case on both sides and prints the table (or, with `child_spec`, measures one
/// ember case and prints its result line).
pub fn run(opts: &SpeedOptions) -> Result<(), StudyError> {
    match &opts.child_spec {
        Some(spec) => run_child(spec),
        None => run_parent(opts),
    }
}

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// Qwen3 `config.json` fields.
    pub config: Value,
    pub batch: usize,
    pub seq: usize,
    pub steps: usize,
    pub warmup: usize,
    pub recompute: bool,
}

/// Qwen3-0.6B's config with `layers` decoder layers.
pub fn qwen3_06b(layers: usize) -> Value {
    json!({
        "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072,
        "num_hidden_layers": layers, "num_attention_heads": 16, "num_key_value_heads": 8,
        "head_dim": 128, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
        "max_position_embeddings": 40960
    })
}

/// Qwen3-8B's layer dimensions with `layers` decoder layers and a vocabulary of `vocab`.
pub fn qwen3_8b(layers: usize, vocab: usize) -> Value {
    json!({
        "vocab_size": vocab, "hidden_size": 4096, "intermediate_size": 12288,
        "num_hidden_layers": layers, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 128, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": false,
        "max_position_embeddings": 40960
    })
}

/// The cases `opts.cases` names, in order.
pub fn cases(opts: &SpeedOptions) -> Result<Vec<Case>, StudyError> {
    let mut out = Vec::new();
    let cpu_recompute = opts.recompute.unwrap_or(false);
    for name in &opts.cases {
        match name.as_str() {
            "q06b4" => out.push(Case {
                name: "q06b4".into(),
                config: qwen3_06b(4),
                batch: 4,
                seq: 256,
                steps: opts.steps,
                warmup: opts.warmup,
                recompute: cpu_recompute,
            }),
            "q8b1" => out.push(Case {
                name: "q8b1".into(),
                config: qwen3_8b(1, 8192),
                batch: 2,
                seq: 256,
                steps: opts.steps,
                warmup: opts.warmup,
                recompute: cpu_recompute,
            }),
            "rss" => {
                for &seq in &opts.rss_seq {
                    out.push(Case {
                        name: format!("rss-{seq}"),
                        config: qwen3_8b(1, 8192),
                        batch: 1,
                        seq,
                        steps: opts.rss_steps,
                        warmup: 0,
                        recompute: cpu_recompute,
                    });
                }
            }
            "gpu" => {
                let config = match opts.shape.as_str() {
                    "qwen3-8b" => qwen3_8b(opts.layers.unwrap_or(36), 151936),
                    "qwen3-0.6b" => qwen3_06b(opts.layers.unwrap_or(28)),
                    other => {
                        return Err(StudyError::Bench(format!(
                            "unknown --shape {other}: expected qwen3-8b or qwen3-0.6b"
                        )));
                    }
                };
                out.push(Case {
                    name: opts.shape.clone(),
                    config,
                    batch: opts.batch,
                    seq: opts.seq,
                    steps: opts.steps,
                    warmup: opts.warmup,
                    // 4 x 6,500 tokens of 36 layers only fit with recompute.
                    recompute: opts.recompute.unwrap_or(true),
                });
            }
            other => {
                return Err(StudyError::Bench(format!(
                    "unknown case {other}: expected q06b4, q8b1, rss or gpu"
                )));
            }
        }
    }
    Ok(out)
}

fn gib(bytes: f64) -> String {
    format!("{:.2} GiB", bytes / (1u64 << 30) as f64)
}

/// Multiply-adds of one step x 2: frozen base matmuls forward and input-gradient (4 flops per
/// weight per token), LoRA factors with their weight gradients (6), causal attention scores and
/// outputs (forward 2 matmuls over half the keys, backward 4 plus a recomputed score matmul).
pub fn step_flops(cfg: &Qwen3Config, batch: usize, seq: usize) -> f64 {
    let (h, i, l) = (
        cfg.hidden_size as f64,
        cfg.intermediate_size as f64,
        cfg.num_hidden_layers as f64,
    );
    let q = (cfg.num_attention_heads * cfg.head_dim) as f64;
    let kv = (cfg.kv_heads() * cfg.head_dim) as f64;
    let base_layer = h * q * 2.0 + h * kv * 2.0 + 3.0 * h * i;
    let r = LORA_RANK as f64;
    let lora_layer = r * ((h + q) * 2.0 + (h + kv) * 2.0 + 2.0 * (h + i) + (i + h));
    let tokens = (batch * seq) as f64;
    let head = h * cfg.vocab_size as f64;
    let attn = 7.0 * 2.0 * (seq as f64) * (seq as f64) / 2.0 * q * batch as f64;
    tokens * (4.0 * (base_layer * l + head) + 6.0 * lora_layer * l) + attn * l
}

// ---------------------------------------------------------------------------------------------
// The child: one ember case in this process.

/// What the parent hands a child process: one case and ember's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChildSpec {
    backend: String,
    config: Value,
    batch: usize,
    seq: usize,
    steps: usize,
    warmup: usize,
    attention: String,
    loss: String,
    dtype: String,
    profile: bool,
    recompute: bool,
    #[serde(default)]
    dora: bool,
}

struct Step {
    spec: ChildSpec,
}

impl BackendOp for Step {
    type Output = Result<Value, StudyError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let s = &self.spec;
        let (batch, seq, steps, warmup) = (s.batch, s.seq, s.steps, s.warmup);
        let (profile, recompute) = (s.profile, s.recompute);
        let cfg = Qwen3Config::from_json_str(&s.config.to_string())?;
        let dtype = compute_dtype(&s.dtype);
        let attention: AttentionImpl = s.attention.parse()?;
        let loss_impl = LossImpl::for_vocab(s.loss.parse()?, cfg.vocab_size);

        let t_load = Instant::now();
        let mut model = random_model::<B>(&cfg, 0, dtype, &device);
        model.set_attention(attention);
        model.set_loss(loss_impl);
        let lora = LoraConfig {
            lora_rank: LORA_RANK,
            lora_alpha: Some(32.0),
            lora_dropout: 0.05,
            // PEFT's "all-linear": Qwen3's 7 projections (the HF script lists them by name).
            lora_target: TargetModules::AllLinear,
            use_dora: s.dora,
            ..LoraConfig::default()
        };
        ember_lora::apply_lora(&mut model, &lora, 0)?;
        let load_seconds = t_load.elapsed().as_secs_f64();
        let rss_model = current_rss().unwrap_or(0);
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
        let batches = [Batch {
            attention_mask: vec![1; ids.len()],
            labels: ids.clone(),
            input_ids: ids,
            batch_size: batch,
            seq_len: seq,
            indices: (0..batch).collect(),
        }];
        let mut sched = SchedulerArgs {
            lr_scheduler_type: "constant".into(),
            ..SchedulerArgs::default()
        }
        .build(LEARNING_RATE, (warmup + steps) as u64)?;
        let settings = StepSettings {
            backprop: if recompute {
                Backprop::Recompute
            } else {
                Backprop::FullGraph
            },
            max_grad_norm: MAX_GRAD_NORM,
            seed: 0,
        };

        let (mut times, mut phases) = (Vec::new(), Vec::new());
        let mut rss_bwd = 0u64;
        let mut loss_value = 0.0f64;
        for step in 0..warmup + steps {
            let window = Window {
                batches: &batches,
                first_micro_batch: step as u64,
            };
            let mut probe = PhaseProbe::<B> {
                device: &device,
                profile,
                at: None,
                rss: 0,
            };
            let t0 = Instant::now();
            let (next, out) = train_step(
                model, &mut opt, &mut sched, &window, &settings, &mut probe, &device,
            )?;
            model = next;
            loss_value = out.loss;
            B::sync(&device).ok();
            let t2 = Instant::now();
            rss_bwd = rss_bwd.max(probe.rss);
            if step >= warmup {
                let t1 = probe.at.unwrap_or(t2);
                times.push((t2 - t0).as_secs_f64());
                phases.push(json!({
                    "forward_backward": (t1 - t0).as_secs_f64(),
                    "clip_optimizer": (t2 - t1).as_secs_f64(),
                }));
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
            "peak_rss_bytes": peak_rss().unwrap_or(0),
            "rss_after_model_bytes": rss_model,
            "load_seconds": load_seconds,
            "flops_per_step": step_flops(&cfg, batch, seq),
        });
        if profile {
            // No RSS after the forward: the step's forward and backward are one call.
            result["phases"] = json!(phases);
            result["rss_after_backward_bytes"] = json!(rss_bwd);
        }
        Ok(result)
    }
}

/// When a step's gradients were ready (the end of its forward and backward) and, when profiling,
/// the RSS then.
struct PhaseProbe<'a, B: AutodiffBackend> {
    device: &'a B::Device,
    profile: bool,
    at: Option<Instant>,
    rss: u64,
}

impl<B: AutodiffBackend> StepProbe for PhaseProbe<'_, B> {
    fn gradients_ready(&mut self) {
        // The backend may still be computing: wait for it so the split is where the time went.
        B::sync(self.device).ok();
        if self.profile {
            self.rss = current_rss().unwrap_or(0);
        }
        self.at = Some(Instant::now());
    }
}

fn run_child(spec: &str) -> Result<(), StudyError> {
    let spec: ChildSpec = serde_json::from_str(spec)
        .map_err(|e| StudyError::Bench(format!("the child's spec: {e}")))?;
    let backend: BackendChoice = spec.backend.parse()?;
    let result = ember_backend::run(backend, Step { spec })??;
    println!("{RESULT_PREFIX}{result}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The parent: run every case on both sides and print the table.

/// `$EMBER_VENV/bin/python`, else `~/.cache/ember/venv/bin/python`, if it exists.
pub fn default_python() -> Option<PathBuf> {
    let venv = std::env::var_os("EMBER_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ember/venv")))?;
    let p = venv.join("bin/python");
    p.is_file().then_some(p)
}

/// The HF side's script, in the repository.
pub fn hf_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/bench/hf_step.py")
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

fn on_gpu(backend: BackendChoice) -> bool {
    matches!(backend, BackendChoice::TchCuda(_) | BackendChoice::Cuda(_))
}

fn spawn_error(what: &str) -> impl FnOnce(std::io::Error) -> StudyError + '_ {
    move |source| StudyError::Spawn {
        what: what.to_string(),
        source,
    }
}

fn run_ember(opts: &SpeedOptions, case: &Case, threads: usize) -> Result<Value, StudyError> {
    let spec = ChildSpec {
        backend: opts.backend.to_string(),
        config: case.config.clone(),
        batch: case.batch,
        seq: case.seq,
        steps: case.steps,
        warmup: case.warmup,
        attention: opts.attention.clone(),
        loss: opts.loss.clone(),
        dtype: opts.dtype.clone(),
        profile: opts.profile,
        recompute: case.recompute,
        dora: opts.dora,
    };
    let spec = serde_json::to_string(&spec)
        .map_err(|e| StudyError::Bench(format!("the child's spec: {e}")))?;
    let what = "the ember child";
    let child = threaded(
        Command::new(&opts.child_command.exe)
            .args(&opts.child_command.args)
            .arg(spec),
        threads,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .map_err(spawn_error(what))?;
    let sampler = on_gpu(opts.backend).then(|| GpuMemorySampler::start(child.id()));
    let out = child.wait_with_output().map_err(spawn_error(what))?;
    let gpu_peak = sampler.and_then(GpuMemorySampler::stop);
    let mut v = result_line(&out, RESULT_PREFIX, "ember child")?;
    if let Some(bytes) = gpu_peak {
        v["peak_gpu_bytes"] = json!(bytes);
    }
    Ok(v)
}

/// The JSON result line (after `prefix`) of a finished measuring process, or an error quoting the
/// end of its stderr.
fn result_line(out: &Output, prefix: &str, what: &str) -> Result<Value, StudyError> {
    match last_json_line(&out.stdout, prefix) {
        Some(v) if out.status.success() => Ok(v),
        _ => Err(StudyError::Measurement {
            what: what.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .join("\n"),
        }),
    }
}

/// Peak GPU memory of one process as `nvidia-smi` reports it (what the process holds on the device,
/// allocator cache included), sampled every 100 ms from a thread while the process runs. Works for
/// every GPU backend alike; `None` without `nvidia-smi` or without a sample.
pub struct GpuMemorySampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Option<u64>>,
}

impl GpuMemorySampler {
    pub fn start(pid: u32) -> Self {
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

    /// The peak in bytes.
    pub fn stop(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().ok().flatten()
    }
}

fn run_hf(
    opts: &SpeedOptions,
    py: &Path,
    case: &Case,
    threads: usize,
) -> Result<Value, StudyError> {
    let mut cmd = Command::new(py);
    cmd.arg(hf_script())
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
        .args(["--threads", &threads.to_string(), "--attn", &opts.hf_attn]);
    if opts.profile {
        cmd.arg("--profile");
    }
    if case.recompute {
        cmd.arg("--recompute");
    }
    if opts.dtype == "bf16" {
        cmd.args(["--dtype", "bf16"]);
    }
    if opts.dora {
        cmd.arg("--dora");
    }
    let out = threaded(&mut cmd, threads)
        .output()
        .map_err(spawn_error("the HF script"))?;
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

/// CPU model, core count and total memory of this machine (Linux; empty elsewhere).
pub fn machine() -> Value {
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

/// One result row (and its detail lines) of the table.
fn print_row(
    case: &Case,
    label: &str,
    r: &Result<Value, StudyError>,
    ratios: Option<(f64, f64)>,
    peak_tflops: Option<f64>,
) {
    let shape = format!("{}x{}", case.batch, case.seq);
    let tokens = (case.batch * case.seq) as f64;
    let v = match r {
        Ok(v) => v,
        Err(e) => {
            println!("{:<10} {:<6} {:>9} failed: {e}", case.name, label, shape);
            return;
        }
    };
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
            format!("forward+backward {:.3}s", f("forward_backward"))
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

/// A side's result as the JSON file records it.
fn result_json(r: &Result<Value, StudyError>) -> Value {
    r.as_ref()
        .map_or_else(|e| json!({"error": e.to_string()}), Clone::clone)
}

fn run_parent(opts: &SpeedOptions) -> Result<(), StudyError> {
    opts.check()?;
    let cases = cases(opts)?;
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let py = if opts.no_hf {
        None
    } else {
        opts.python.clone().or_else(default_python)
    };
    if !opts.no_hf && py.is_none() {
        eprintln!(
            "note: no Python venv found ($EMBER_VENV or ~/.cache/ember/venv; see scripts/torch-env.sh): ember only"
        );
    }
    let m = machine();
    println!(
        "machine: {} ({} cores), {}; {threads} threads; ember on {}, attention {}, loss {}, base {}, recompute {}, adapter {}; HF attn {}",
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"],
        m["memory"].as_str().unwrap_or("?"),
        opts.backend,
        opts.attention,
        opts.loss,
        opts.dtype,
        opts.recompute
            .map_or("per case".to_string(), |r| r.to_string()),
        if opts.dora { "DoRA" } else { "LoRA" },
        opts.hf_attn
    );
    println!(
        "{} warm-up + {} timed step(s) per case ({} step(s), no warm-up, for rss); LoRA r16, 7 targets, dropout 0.05, AdamW, clip 1.0\n",
        opts.warmup, opts.steps, opts.rss_steps
    );
    let peak_tflops = opts.peak_tflops.or(on_gpu(opts.backend).then_some(989.0));
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
    let mut failed = Vec::new();
    for case in cases {
        let ember = (!opts.no_ember).then(|| run_ember(opts, &case, threads));
        let hf = py.as_ref().map(|p| run_hf(opts, p, &case, threads));
        let ratios = match (&ember, &hf) {
            (Some(Ok(e)), Some(Ok(h))) => match (mean_step(e), mean_step(h), peak(e), peak(h)) {
                (Some(se), Some(sh), Some(pe), Some(ph)) => Some((sh / se, pe / ph)),
                _ => None,
            },
            _ => None,
        };
        if let Some(e) = &ember {
            print_row(&case, "ember", e, ratios, peak_tflops);
        }
        if let Some(h) = &hf {
            print_row(&case, "hf", h, None, peak_tflops);
        }
        for (side, r) in [("ember", &ember), ("hf", &hf)] {
            if let Some(Err(e)) = r {
                failed.push(format!("{} ({side}): {e}", case.name));
            }
        }
        all.push(json!({
            "case": case.name, "batch": case.batch, "seq": case.seq, "config": case.config,
            "ember": ember.as_ref().map(result_json),
            "hf": hf.as_ref().map(result_json),
        }));
    }
    if let Some(path) = &opts.json {
        let doc = json!({
            "machine": m, "threads": threads, "backend": opts.backend.to_string(),
            "attention": opts.attention, "loss": opts.loss, "dtype": opts.dtype,
            "recompute": opts.recompute, "dora": opts.dora,
            "steps": opts.steps, "warmup": opts.warmup, "cases": all,
        });
        crate::error::write_json(path, &doc)?;
    }
    // The table is printed (and the JSON written) first, so that every finished row is kept.
    match failed.as_slice() {
        [] => Ok(()),
        rows => Err(StudyError::Bench(format!(
            "{} measurement(s) failed:\n  {}",
            rows.len(),
            rows.join("\n  ")
        ))),
    }
}
