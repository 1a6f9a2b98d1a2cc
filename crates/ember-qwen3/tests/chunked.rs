//! The memory-efficient chunked attention and chunked loss against the plain forms, on every
//! compiled-in CPU backend: outputs and gradients within 1e-5 (f32), with grouped-query attention,
//! left and right padding (including fully masked query rows), a KV-cache offset, an arbitrary dense
//! mask, chunk sizes that do not divide the sequence, and through the whole LoRA model (tied and
//! untied head, LoRA dropout on).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Bool, DType, ElementConversion, Int, Tensor, TensorData, backend::Backend};
use ember_backend::{AutodiffBackend, BackendOp};
use ember_lora::{LoraConfig, TargetModules};
use ember_qwen3::attention::{AttentionImpl, AttnMask, attention, chunked_forward};
use ember_qwen3::loss::{LossImpl, chunked_head_cross_entropy, shifted_targets};
use ember_qwen3::{IGNORE_INDEX, ModelInputs, random_model, shifted_cross_entropy};
use ember_testing::for_each_backend;

use crate::common;
use common::{Lcg, Perturb, max_abs, max_abs_diff, tiny_config, to_vec};

const TOL: f64 = 1e-5;

fn tensor<B: Backend, const D: usize>(
    v: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

#[derive(Clone, Copy, Debug)]
enum MaskKind {
    /// Causal; row 1 left-padded by `pad` (its first queries see only padding).
    LeftPad(usize),
    /// Causal; row 1 right-padded by `pad`.
    RightPad(usize),
    /// Causal, no padding.
    NoPad,
    /// Causal with a cache offset: `past` earlier keys, no padding.
    Past(usize),
    /// A random dense mask with the diagonal open, plus one fully masked row.
    Dense,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    heads: usize,
    kv_heads: usize,
    seq: usize,
    dim: usize,
    chunk: usize,
    mask: MaskKind,
}

/// `[max |out diff|, max |dq diff|, max |dk diff|, max |dv diff|]` of an implementation against
/// the plain one.
type Diffs = [f64; 4];

/// Chunked vs plain, fused vs plain, the largest gradient, and whether the fused kernel applied.
struct AttnOutcome {
    chunked: Diffs,
    fused: Diffs,
    scale: f64,
    fused_applied: bool,
}

struct AttnParity {
    case: Case,
}

impl BackendOp for AttnParity {
    type Output = AttnOutcome;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> AttnOutcome {
        let Case {
            heads,
            kv_heads,
            seq,
            dim,
            chunk,
            mask,
        } = self.case;
        // ember's CPU backends must take the custom-op path (not the generic fallback).
        assert!(ember_qwen3::attention::has_custom_backward::<B>());
        assert!(!ember_qwen3::attention::has_custom_backward::<
            B::InnerBackend,
        >());
        let b = 2;
        let past = match mask {
            MaskKind::Past(p) => p,
            _ => 0,
        };
        let keys = past + seq;
        let mut rng = Lcg(42 + seq as u64);
        let q = rng.vec(b * heads * seq * dim, 2.0);
        let k = rng.vec(b * kv_heads * keys * dim, 2.0);
        let v = rng.vec(b * kv_heads * keys * dim, 1.0);
        let mut upstream = rng.vec(b * heads * seq * dim, 1.0);
        if let MaskKind::RightPad(p) = mask {
            // Right-padded query rows reach no loss: their upstream gradient is zero in a model
            // (the fused kernel's causal mask lets them see earlier padding; nothing reads them).
            for h in 0..heads {
                for t in seq - p..seq {
                    let row = ((b - 1) * heads + h) * seq + t;
                    upstream[row * dim..(row + 1) * dim].fill(0.0);
                }
            }
        }
        let make_mask = || -> AttnMask<B> {
            match mask {
                MaskKind::LeftPad(p) | MaskKind::RightPad(p) => {
                    let mut pad = vec![false; b * keys];
                    for t in 0..p {
                        let pos = if matches!(mask, MaskKind::LeftPad(_)) {
                            t
                        } else {
                            keys - 1 - t
                        };
                        pad[keys + pos] = true;
                    }
                    AttnMask::Causal {
                        past: 0,
                        padding: Some(Tensor::<B, 2, Bool>::from_data(
                            TensorData::new(pad, [b, keys]),
                            &device,
                        )),
                    }
                }
                MaskKind::Past(p) => AttnMask::Causal {
                    past: p,
                    padding: None,
                },
                MaskKind::NoPad => AttnMask::Causal {
                    past: 0,
                    padding: None,
                },
                MaskKind::Dense => {
                    let mut m = vec![false; b * seq * keys];
                    let mut r = Lcg(7);
                    for (i, x) in m.iter_mut().enumerate() {
                        let (row, col) = ((i / keys) % seq, i % keys);
                        *x = row != col && r.next() > 0.3;
                    }
                    // Batch 1, query 2: fully masked.
                    for col in 0..keys {
                        m[(seq + 2) * keys + col] = true;
                    }
                    AttnMask::Dense(Tensor::<B, 4, Bool>::from_data(
                        TensorData::new(m, [b, 1, seq, keys]),
                        &device,
                    ))
                }
            }
        };
        let run = |imp: AttentionImpl| {
            let q = tensor::<B, 4>(q.clone(), [b, heads, seq, dim], &device).require_grad();
            let k = tensor::<B, 4>(k.clone(), [b, kv_heads, keys, dim], &device).require_grad();
            let v = tensor::<B, 4>(v.clone(), [b, kv_heads, keys, dim], &device).require_grad();
            let out = attention(q.clone(), k.clone(), v.clone(), make_mask(), imp);
            let up = tensor::<B, 4>(upstream.clone(), [b, heads, seq, dim], &device);
            let grads = (out.clone() * up).sum().backward();
            let g = |t: &Tensor<B, 4>| to_vec(t.grad(&grads).expect("gradient"));
            (to_vec(out), g(&q), g(&k), g(&v))
        };
        // Outputs compared where a model reads them (not on right-padded query rows).
        let real = |o: &[f32]| -> Vec<f32> {
            let MaskKind::RightPad(p) = mask else {
                return o.to_vec();
            };
            o.chunks(dim)
                .enumerate()
                .filter(|(row, _)| row / (heads * seq) != b - 1 || row % seq < seq - p)
                .flat_map(|(_, x)| x.iter().copied())
                .collect()
        };
        let (o1, q1, k1, v1) = run(AttentionImpl::Plain);
        let diffs = |imp| {
            let (o2, q2, k2, v2) = run(imp);
            [
                max_abs_diff(&real(&o1), &real(&o2)),
                max_abs_diff(&q1, &q2),
                max_abs_diff(&k1, &k2),
                max_abs_diff(&v1, &v2),
            ]
        };
        let probe = tensor::<B, 4>(
            vec![0.0; b * heads * seq * dim],
            [b, heads, seq, dim],
            &device,
        );
        let kprobe = tensor::<B, 4>(
            vec![0.0; b * kv_heads * keys * dim],
            [b, kv_heads, keys, dim],
            &device,
        );
        AttnOutcome {
            chunked: diffs(AttentionImpl::Chunked { chunk }),
            fused: diffs(AttentionImpl::Fused { chunk }),
            scale: max_abs(&q1).max(max_abs(&k1)).max(max_abs(&v1)),
            fused_applied: ember_qwen3::attention::fused_kernel_applies(
                &probe,
                &kprobe,
                &make_mask(),
            ),
        }
    }
}

fn check_attention(case: Case) {
    let outs = for_each_backend(|| AttnParity { case });
    assert!(!outs.is_empty(), "no backend compiled in");
    for (backend, r) in outs {
        // A gradient of zero everywhere would make the comparison vacuous.
        assert!(r.scale > 0.1, "{case:?} on {backend}: gradients vanish");
        // The fused kernel is libtorch's (CPU), for causal masks with right padding at most.
        let fusable = matches!(case.mask, MaskKind::RightPad(_) | MaskKind::NoPad);
        assert_eq!(
            r.fused_applied,
            backend.to_string() == "tch" && fusable,
            "{case:?} on {backend}: fused kernel applicability"
        );
        for (label, [o, dq, dk, dv]) in [("chunked", r.chunked), ("fused", r.fused)] {
            println!(
                "{case:?} on {backend}, {label}: out {o:.1e} dq {dq:.1e} dk {dk:.1e} dv {dv:.1e} (|grad| up to {:.2})",
                r.scale
            );
            for (what, d) in [("output", o), ("dq", dq), ("dk", dk), ("dv", dv)] {
                assert!(
                    d <= TOL,
                    "{case:?} on {backend}, {label}: {what} differs by {d}"
                );
            }
        }
    }
}

#[test]
fn chunked_attention_equals_plain_with_gqa_and_left_padding() {
    // 4 query heads over 2 kv heads; chunk 3 does not divide 7; row 1's first two queries see
    // only padding.
    check_attention(Case {
        heads: 4,
        kv_heads: 2,
        seq: 7,
        dim: 8,
        chunk: 3,
        mask: MaskKind::LeftPad(2),
    });
}

#[test]
fn chunked_attention_equals_plain_with_right_padding_and_mha() {
    check_attention(Case {
        heads: 3,
        kv_heads: 3,
        seq: 9,
        dim: 4,
        chunk: 4,
        mask: MaskKind::RightPad(3),
    });
    check_attention(Case {
        heads: 4,
        kv_heads: 1,
        seq: 5,
        dim: 8,
        chunk: 1,
        mask: MaskKind::RightPad(1),
    });
}

#[test]
fn chunked_and_fused_attention_equal_plain_without_padding() {
    // Qwen3-like head ratio and a sequence longer than the chunk and torch's kernel blocks.
    check_attention(Case {
        heads: 8,
        kv_heads: 2,
        seq: 67,
        dim: 16,
        chunk: 16,
        mask: MaskKind::NoPad,
    });
}

#[test]
fn chunked_attention_equals_plain_with_a_cache_offset_and_a_dense_mask() {
    check_attention(Case {
        heads: 4,
        kv_heads: 2,
        seq: 5,
        dim: 8,
        chunk: 2,
        mask: MaskKind::Past(3),
    });
    check_attention(Case {
        heads: 6,
        kv_heads: 2,
        seq: 6,
        dim: 4,
        chunk: 4,
        mask: MaskKind::Dense,
    });
    // A chunk larger than the sequence is one chunk.
    check_attention(Case {
        heads: 2,
        kv_heads: 1,
        seq: 6,
        dim: 4,
        chunk: 64,
        mask: MaskKind::LeftPad(1),
    });
}

/// The forward-only path (no autodiff, as in generation) equals the custom op's forward.
struct InnerForward;
impl BackendOp for InnerForward {
    type Output = f64;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> f64 {
        let (b, h, kv, s, d) = (1, 4, 2, 6, 8);
        let mut rng = Lcg(3);
        let q = rng.vec(b * h * s * d, 1.0);
        let k = rng.vec(b * kv * s * d, 1.0);
        let v = rng.vec(b * kv * s * d, 1.0);
        let mk = |imp| {
            let t = |x: &Vec<f32>, heads| {
                tensor::<B::InnerBackend, 4>(x.clone(), [b, heads, s, d], &device)
            };
            let m = AttnMask::Causal {
                past: 0,
                padding: None,
            };
            to_vec(attention(t(&q, h), t(&k, kv), t(&v, kv), m, imp))
        };
        let direct = {
            let t = |x: &Vec<f32>, heads| {
                tensor::<B::InnerBackend, 4>(x.clone(), [b, heads, s, d], &device)
            };
            to_vec(
                chunked_forward(
                    t(&q, h),
                    t(&k, kv),
                    t(&v, kv),
                    &AttnMask::Causal {
                        past: 0,
                        padding: None,
                    },
                    4,
                )
                .out,
            )
        };
        max_abs_diff(
            &mk(AttentionImpl::Plain),
            &mk(AttentionImpl::Chunked { chunk: 4 }),
        )
        .max(max_abs_diff(&direct, &mk(AttentionImpl::Plain)))
    }
}

#[test]
fn chunked_attention_without_autodiff_equals_plain() {
    for (backend, d) in for_each_backend(|| InnerForward) {
        assert!(d <= TOL, "on {backend}: {d}");
    }
}

// ---------------------------------------------------------------------------------------------
// The chunked head + cross-entropy.

/// `(|sum diff| / |sum|, max |d hidden diff|, max |d hidden|)` of the chunked loss vs
/// `log_softmax` + gather over the full logits.
struct CeParity {
    chunk: usize,
}

impl BackendOp for CeParity {
    type Output = [f64; 3];
    fn run<B: AutodiffBackend>(self, device: B::Device) -> [f64; 3] {
        let (n, h, vocab) = (11, 16, 50);
        let mut rng = Lcg(5);
        let hv = rng.vec(n * h, 1.0);
        let w = tensor::<B, 2>(rng.vec(vocab * h, 1.0), [vocab, h], &device);
        let targets: Vec<i64> = (0..n).map(|i| ((i * 17 + 3) % vocab) as i64).collect();
        let tgt = Tensor::<B, 1, Int>::from_data(TensorData::new(targets.clone(), [n]), &device);
        let hidden = tensor::<B, 2>(hv.clone(), [n, h], &device).require_grad();
        let plain = {
            let logp = burn::tensor::activation::log_softmax(
                hidden.clone().matmul(w.clone().transpose()),
                1,
            );
            logp.gather(1, tgt.clone().reshape([n, 1])).neg().sum()
        };
        let g_plain = plain.backward();
        let hidden2 = tensor::<B, 2>(hv, [n, h], &device).require_grad();
        let chunked = chunked_head_cross_entropy(hidden2.clone(), w, tgt, self.chunk);
        // Scale the upstream gradient so that it is not silently taken as 1.
        let g_chunked = (chunked.clone() * 0.5).backward();
        let a: f32 = plain.into_scalar().elem();
        let b: f32 = chunked.into_scalar().elem();
        let da = to_vec(hidden.grad(&g_plain).expect("grad"));
        let db: Vec<f32> = to_vec(hidden2.grad(&g_chunked).expect("grad"))
            .iter()
            .map(|x| x * 2.0)
            .collect();
        [
            ember_testing::rel(b.into(), a.into()),
            max_abs_diff(&da, &db),
            max_abs(&da),
        ]
    }
}

#[test]
fn chunked_cross_entropy_equals_the_full_logits_loss() {
    for chunk in [1, 4, 11, 100] {
        for (backend, [rel, dh, scale]) in for_each_backend(|| CeParity { chunk }) {
            println!(
                "chunk {chunk} on {backend}: loss rel {rel:.1e}, d hidden {dh:.1e} (|grad| up to {scale:.2})"
            );
            assert!(scale > 0.1);
            assert!(
                rel <= 1e-6,
                "chunk {chunk} on {backend}: loss differs by {rel}"
            );
            assert!(
                dh <= TOL,
                "chunk {chunk} on {backend}: d hidden differs by {dh}"
            );
        }
    }
}

#[test]
fn shifted_targets_skip_ignored_labels_and_the_last_position() {
    let labels = [5, 6, IGNORE_INDEX, 7, IGNORE_INDEX, 1, 2, 3];
    let t = shifted_targets(&labels, 2, 4, 10);
    // Row 0: t=0 -> 6, t=1 -> ignored, t=2 -> 7. Row 1: t=0 -> 1 (flat 4), 1 -> 2, 2 -> 3.
    assert_eq!(t.rows, vec![0, 2, 4, 5, 6]);
    assert_eq!(t.targets, vec![6, 7, 1, 2, 3]);
    assert!(shifted_targets(&[1], 1, 1, 10).rows.is_empty());
}

#[test]
#[should_panic(expected = "below the vocabulary size")]
fn out_of_vocabulary_labels_are_refused() {
    shifted_targets(&[0, 10], 1, 2, 10);
}

// ---------------------------------------------------------------------------------------------
// The whole model: loss and LoRA gradients, chunked vs plain.

/// Every LoRA gradient, in visiting order.
struct Grads<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    out: Vec<Vec<f32>>,
}
impl<B: AutodiffBackend> ModuleVisitor<B> for Grads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            self.out.push(to_vec(g));
        }
    }
}

/// `(loss rel diff, count equal, max |LoRA grad diff|, max |LoRA grad|, number of grads)`.
struct ModelParity {
    tied: bool,
    /// Row 1 padded at the end instead of the start (the fused kernel's case).
    right_pad: bool,
    attention: AttentionImpl,
}

impl BackendOp for ModelParity {
    type Output = (f64, bool, f64, f64, usize);
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let cfg = tiny_config(self.tied);
        let (b, s) = (2, 13);
        let mut ids = Vec::new();
        for i in 0..b * s {
            ids.push(((i * 37 + 11) % cfg.vocab_size) as i64);
        }
        // Row 1 left-padded by 3; labels -100 on padding and on a prompt part of row 0.
        let mut mask = vec![1i64; b * s];
        let mut labels = ids.clone();
        for t in 0..3 {
            let pos = if self.right_pad { s + s - 1 - t } else { s + t };
            mask[pos] = 0;
            labels[pos] = IGNORE_INDEX;
        }
        for l in labels.iter_mut().take(4) {
            *l = IGNORE_INDEX;
        }
        let run = |attn: AttentionImpl, loss: LossImpl| {
            let mut model = random_model::<B>(&cfg, 9, DType::F32, &device);
            let lora = LoraConfig {
                lora_rank: 4,
                lora_dropout: 0.1,
                lora_target: TargetModules::AllLinear,
                ..LoraConfig::default()
            };
            ember_lora::apply_lora(&mut model, &lora, 1).expect("lora");
            // B factors start at zero; make them non-zero so every path carries gradient.
            model = model.map(&mut Perturb(Lcg(1)));
            ember_lora::set_dropout_seed(&mut model, 77);
            model.set_attention(attn);
            model.set_loss(loss);
            let t = |v: &Vec<i64>| {
                Tensor::<B, 2, Int>::from_data(TensorData::new(v.clone(), [b, s]), &device)
            };
            let out = model.forward_loss(
                &ModelInputs::new(t(&ids))
                    .with_attention_mask(t(&mask))
                    .with_labels(t(&labels)),
            );
            let count: f64 = out.count.clone().into_scalar().elem();
            let sum: f64 = out.sum.clone().into_scalar().elem();
            let grads = out.sum.backward();
            let mut v = Grads::<B> {
                grads: &grads,
                out: Vec::new(),
            };
            model.visit(&mut v);
            (sum, count, v.out)
        };
        let (s1, c1, g1) = run(AttentionImpl::Plain, LossImpl::Plain);
        let (s2, c2, g2) = run(self.attention, LossImpl::Chunked { tokens: 7 });
        assert_eq!(g1.len(), g2.len());
        let flat1: Vec<f32> = g1.concat();
        let flat2: Vec<f32> = g2.concat();
        (
            ember_testing::rel(s2, s1),
            c1 == c2,
            max_abs_diff(&flat1, &flat2),
            max_abs(&flat1),
            g1.len(),
        )
    }
}

#[test]
fn model_loss_and_lora_gradients_are_the_same_chunked_and_plain() {
    let cases = [
        (false, false, AttentionImpl::Chunked { chunk: 5 }),
        (true, false, AttentionImpl::Chunked { chunk: 5 }),
        (false, true, AttentionImpl::Chunked { chunk: 5 }),
        (false, true, AttentionImpl::Fused { chunk: 5 }),
        (true, true, AttentionImpl::Fused { chunk: 5 }),
    ];
    for (tied, right_pad, attention) in cases {
        let outs = for_each_backend(|| ModelParity {
            tied,
            right_pad,
            attention,
        });
        assert!(!outs.is_empty());
        for (backend, (rel, same_count, d, scale, n)) in outs {
            println!(
                "tied {tied}, right padding {right_pad}, {attention:?} on {backend}: loss rel {rel:.1e}, {n} LoRA grads differ by {d:.1e} (up to {scale:.2e})"
            );
            assert!(same_count);
            assert!(
                n >= 14 * 2,
                "expected the LoRA factors of 2 layers x 7 projections, got {n}"
            );
            assert!(scale > 1e-3, "gradients vanish");
            assert!(
                rel <= 1e-5,
                "tied {tied} on {backend}: loss differs by {rel}"
            );
            assert!(
                d <= TOL,
                "tied {tied} on {backend}: LoRA gradients differ by {d}"
            );
        }
    }
}

/// The default model uses the chunked forms, and the plain loss helper still agrees.
struct Defaults;
impl BackendOp for Defaults {
    type Output = f64;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> f64 {
        let cfg = tiny_config(false);
        let model = random_model::<B>(&cfg, 3, DType::F32, &device);
        assert!(matches!(
            model.attention_impl(),
            AttentionImpl::Chunked { .. }
        ));
        assert!(matches!(model.loss_impl, LossImpl::Chunked { .. }));
        let ids = Tensor::<B, 2, Int>::from_data(
            TensorData::new((0..8i64).collect::<Vec<_>>(), [1, 8]),
            &device,
        );
        let a: f64 = model
            .forward_loss(&ModelInputs::new(ids.clone()).with_labels(ids.clone()))
            .sum
            .into_scalar()
            .elem();
        let b: f64 = shifted_cross_entropy(model.forward(&ModelInputs::new(ids.clone())), ids)
            .sum
            .into_scalar()
            .elem();
        ember_testing::rel(a, b)
    }
}

#[test]
fn defaults_are_chunked_and_agree_with_the_logits_path() {
    for (backend, rel) in for_each_backend(|| Defaults) {
        assert!(rel <= 1e-5, "on {backend}: {rel}");
    }
}
