//! A small seeded generator (xorshift64*): the suite prints its seed, so a run's fault moments
//! and load can be replayed with `--seed`.

/// Deterministic pseudo-random numbers.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced, xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next raw value.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A duration between `min_ms` and `max_ms` milliseconds.
    pub fn millis(&mut self, min_ms: u64, max_ms: u64) -> std::time::Duration {
        std::time::Duration::from_millis(min_ms + self.below(max_ms - min_ms + 1))
    }
}
