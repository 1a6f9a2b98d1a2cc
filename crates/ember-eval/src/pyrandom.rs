//! CPython's `random.Random`, as far as lm-evaluation-harness's few-shot sampler uses it:
//! `Random(seed)` (MT19937 seeded through `init_by_array`), `getrandbits`, `_randbelow` and
//! `sample`. k-shot prompts only match lm-eval's if every draw matches, so this follows
//! `Modules/_randommodule.c` and `Lib/random.py` (3.8 to 3.13 agree on all of it) step by step.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// A Mersenne Twister in the exact state `random.Random(seed)` would have.
#[derive(Clone)]
pub struct PyRandom {
    mt: [u32; N],
    index: usize,
}

impl std::fmt::Debug for PyRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyRandom")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl PyRandom {
    /// `random.Random(seed)` for a non-negative integer seed: the seed's 32-bit words, least
    /// significant first, go to `init_by_array` (CPython hashes nothing for ints).
    pub fn new(seed: u64) -> Self {
        let lo = seed as u32;
        let hi = (seed >> 32) as u32;
        let key: Vec<u32> = if hi == 0 { vec![lo] } else { vec![lo, hi] };
        let mut r = Self {
            mt: [0; N],
            index: N,
        };
        r.init_by_array(&key);
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..N {
            let prev = self.mt[i - 1];
            self.mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
        }
        self.mt[0] = 0x8000_0000;
    }

    /// `genrand_uint32`: the next tempered 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            for kk in 0..N {
                let y = (self.mt[kk] & UPPER_MASK) | (self.mt[(kk + 1) % N] & LOWER_MASK);
                let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
                self.mt[kk] = self.mt[(kk + M) % N] ^ (y >> 1) ^ mag;
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `getrandbits(k)` for `k <= 64`: 32-bit words filled least significant first, the last one
    /// keeping its top bits.
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        assert!(k <= 64, "getrandbits is implemented up to 64 bits");
        if k == 0 {
            return 0;
        }
        if k <= 32 {
            return u64::from(self.next_u32() >> (32 - k));
        }
        let lo = u64::from(self.next_u32());
        let hi = u64::from(self.next_u32() >> (64 - k));
        lo | (hi << 32)
    }

    /// `random()`: 53 bits from two outputs.
    pub fn random(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `_randbelow_with_getrandbits(n)`: rejection sampling on `n.bit_length()` bits.
    pub fn randbelow(&mut self, n: usize) -> usize {
        let k = usize::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits(k) as usize;
            if r < n {
                return r;
            }
        }
    }

    /// `sample(range(n), k)`: the indices `random.sample(population, k)` picks from a population
    /// of length `n`, in selection order. `None` where Python raises (k > n).
    pub fn sample(&mut self, n: usize, k: usize) -> Option<Vec<usize>> {
        if k > n {
            return None;
        }
        // Python chooses between a pool and a set of picks by their memory size; the choice
        // changes which draws are made, so it is reproduced.
        let mut setsize = 21usize;
        if k > 5 {
            let exp = ((k * 3) as f64).ln() / 4f64.ln();
            setsize += 4usize.pow(exp.ceil() as u32);
        }
        let mut out = Vec::with_capacity(k);
        if n <= setsize {
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = self.randbelow(n - i);
                out.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            let mut selected = std::collections::HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow(n);
                while selected.contains(&j) {
                    j = self.randbelow(n);
                }
                selected.insert(j);
                out.push(j);
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values printed by CPython 3.11:
    //   r = random.Random(1234); [r.getrandbits(32) for _ in range(3)], r.random(), r.getrandbits(40),
    //   r.randrange(1000)
    #[test]
    fn matches_cpython_draws() {
        let mut r = PyRandom::new(1234);
        let words: Vec<u64> = (0..3).map(|_| r.getrandbits(32)).collect();
        assert_eq!(words, [4150886329, 3342196574, 1892932127]);
        assert_eq!(r.random(), 0.11685051774599753);
        assert_eq!(r.getrandbits(40), 1001116691269);
        assert_eq!(r.randbelow(1000), 965);
    }

    #[test]
    fn seeds_use_every_word_of_the_integer() {
        // random.Random(2**40 + 7).getrandbits(32), random.Random(0).getrandbits(32)
        assert_eq!(PyRandom::new((1 << 40) + 7).getrandbits(32), 2635837658);
        assert_eq!(PyRandom::new(0).getrandbits(32), 3626764237);
    }

    // r = random.Random(1234); r.sample(range(10), 3), r.sample(range(3665), 5),
    // r.sample(range(200), 6), r.sample(range(5), 5), r.sample(range(80), 7)
    // covers the pool branch, the set branch, and the k > 5 set-size rule (85 for k = 6, 7).
    #[test]
    fn sample_matches_cpython_in_both_branches() {
        let mut r = PyRandom::new(1234);
        assert_eq!(r.sample(10, 3), Some(vec![7, 1, 0]));
        assert_eq!(r.sample(3665, 5), Some(vec![371, 3305, 2384, 143, 2750]));
        assert_eq!(r.sample(200, 6), Some(vec![177, 21, 25, 196, 90, 60]));
        assert_eq!(r.sample(5, 5), Some(vec![0, 4, 3, 1, 2]));
        assert_eq!(r.sample(80, 7), Some(vec![78, 59, 19, 11, 23, 14, 1]));
        assert_eq!(r.sample(3, 4), None);
    }
}
