//! Fixed-size log-linear latency histogram (HdrHistogram-like, ~0.8 % precision):
//! recording is an index computation and an increment, never an allocation.

/// Sub-buckets per power of two, as a bit count (128 → relative error < 1/128).
const SUB_BITS: u32 = 7;
/// Values below this are recorded exactly.
const LINEAR: u64 = 1 << (SUB_BITS + 1);
/// Enough buckets for any u64.
const BUCKETS: usize = ((64 - SUB_BITS as usize) << SUB_BITS) + (1 << SUB_BITS);

/// Histogram of u64 values (the load generator records nanoseconds).
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Histogram { counts: Box::new([0; BUCKETS]), total: 0, max: 0 }
    }

    fn index(v: u64) -> usize {
        if v < LINEAR {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - SUB_BITS;
        ((shift as usize) << SUB_BITS) + (v >> shift) as usize
    }

    /// Largest value that maps to bucket `i`.
    fn highest_equivalent(i: usize) -> u64 {
        if (i as u64) < LINEAR {
            return i as u64;
        }
        let shift = (i >> SUB_BITS) - 1;
        let sub = (i - (shift << SUB_BITS)) as u64;
        (sub << shift) + ((1 << shift) - 1)
    }

    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// Exact maximum recorded value (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Value at quantile `q` in [0, 1] (bucket upper bound, capped at the max); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::highest_equivalent(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut prev = 0;
        for v in (0..1_000_000u64).chain([u64::MAX / 2, u64::MAX]) {
            let i = Histogram::index(v);
            assert!(i < BUCKETS);
            assert!(i >= prev);
            prev = i;
            let hi = Histogram::highest_equivalent(i);
            assert!(hi >= v && (hi - v) as f64 <= v as f64 / 128.0, "v={v} hi={hi}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), 0);
        for v in 1..=1000 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max(), 1_000_000);
        let p50 = h.quantile(0.5);
        assert!((500_000..=504_000).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((990_000..=998_000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 1_000_000);
    }
}
