//! The seeded randomness every crate shares, so that a value drawn here and the same value drawn in
//! another crate (a random base model, LoRA factors, dropout seeds) cannot drift apart: a stable
//! name hash, SplitMix64's mixing, and Box-Muller normal draws. Committed fixtures depend on these
//! exact bits; change none of them.

use rand::Rng;
use rand::distr::{Distribution, StandardUniform};

/// SplitMix64's increment (the golden ratio in 64 bits).
pub const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// FNV-1a of `name`: a stable per-name hash (std's hasher is randomised per process).
pub fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64's finaliser: decorrelates inputs that differ in few bits.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One SplitMix64 output for state `z`: [`mix64`] of `z + GOLDEN_GAMMA`.
pub fn splitmix64(z: u64) -> u64 {
    mix64(z.wrapping_add(GOLDEN_GAMMA))
}

/// A float type Box-Muller can run in; f32 and f64 give different (each fixed) streams.
pub trait BoxMullerFloat: Copy {
    const MIN_POSITIVE: Self;
    fn normal_pair(u1: Self, u2: Self, std: Self) -> (f32, f32);
    fn max(self, other: Self) -> Self;
}

macro_rules! box_muller_float {
    ($t:ident) => {
        impl BoxMullerFloat for $t {
            const MIN_POSITIVE: Self = $t::MIN_POSITIVE;
            fn normal_pair(u1: Self, u2: Self, std: Self) -> (f32, f32) {
                let r = (-2.0 * u1.ln()).sqrt();
                let t = std::$t::consts::TAU * u2;
                ((r * t.cos() * std) as f32, (r * t.sin() * std) as f32)
            }
            fn max(self, other: Self) -> Self {
                $t::max(self, other)
            }
        }
    };
}
box_muller_float!(f32);
box_muller_float!(f64);

/// `n` draws of N(0, std²), computed in `F` and stored as f32: Box-Muller, each pair of uniforms
/// giving two normals (the last one dropped when `n` is odd).
pub fn normal<F: BoxMullerFloat>(rng: &mut impl Rng, n: usize, std: F) -> Vec<f32>
where
    StandardUniform: Distribution<F>,
{
    let mut v = Vec::with_capacity(n + 1);
    while v.len() < n {
        // ln(0) is -inf: keep u1 away from 0.
        let u1: F = rng.random::<F>().max(F::MIN_POSITIVE);
        let u2: F = rng.random::<F>();
        let (a, b) = F::normal_pair(u1, u2, std);
        v.push(a);
        v.push(b);
    }
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // FNV-1a's published offset basis and a reference vector.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        // SplitMix64 seeded with 0: its first output (Vigna's reference implementation).
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
    }

    /// The loops `normal` replaced (ember-qwen3's in f32, ember-lora's in f64), as they were: the
    /// shared function must give their bits.
    #[test]
    fn normal_gives_the_bits_of_the_loops_it_replaced() {
        use rand::SeedableRng;
        let rng = || rand::rngs::StdRng::seed_from_u64(42);
        let (n, std) = (7, 0.02_f64);
        let mut r = rng();
        let mut want32 = Vec::new();
        while want32.len() < n {
            let u1: f32 = r.random::<f32>().max(f32::MIN_POSITIVE);
            let u2: f32 = r.random::<f32>();
            let (rad, t) = ((-2.0 * u1.ln()).sqrt(), std::f32::consts::TAU * u2);
            want32.push(rad * t.cos() * std as f32);
            want32.push(rad * t.sin() * std as f32);
        }
        want32.truncate(n);
        assert_eq!(normal(&mut rng(), n, std as f32), want32);
        let mut r = rng();
        let mut want64 = Vec::new();
        while want64.len() < n {
            let u1: f64 = r.random::<f64>().max(f64::MIN_POSITIVE);
            let u2: f64 = r.random::<f64>();
            let (rad, t) = ((-2.0 * u1.ln()).sqrt(), std::f64::consts::TAU * u2);
            want64.push((rad * t.cos() * std) as f32);
            want64.push((rad * t.sin() * std) as f32);
        }
        want64.truncate(n);
        assert_eq!(normal(&mut rng(), n, std), want64);
    }
}
