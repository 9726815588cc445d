//! A stable 64-bit hash (FNV-1a bytes, splitmix64 finish): the same on every
//! machine, process and ember version, which data splits and samples rely on.

mod row_hash;

pub use row_hash::{ROW_HASH, RowHashFunc, row_hashes};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Running hash state.
#[derive(Debug, Clone, Copy)]
pub struct StableHasher(u64);

impl StableHasher {
    /// A hasher started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(FNV_OFFSET ^ splitmix64(seed))
    }

    /// Mixes in bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
        }
    }

    /// Mixes in a number; -0.0 and 0.0 hash alike.
    pub fn write_f64(&mut self, v: f64) {
        let v = if v == 0.0 { 0.0 } else { v };
        self.write(&v.to_bits().to_le_bytes());
    }

    /// Mixes in a marker for NULL.
    pub fn write_null(&mut self) {
        self.write(&[0xff, 0x00, 0xfe]);
    }

    /// The finished 64-bit hash.
    pub fn finish(self) -> u64 {
        splitmix64(self.0)
    }

    /// The finished hash as a number uniform in [0, 1).
    pub fn finish_unit(self) -> f64 {
        (self.finish() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The splitmix64 finaliser: spreads every input bit over the output.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_seeded() {
        let mut a = StableHasher::new(7);
        a.write(b"abc");
        let mut b = StableHasher::new(7);
        b.write(b"abc");
        assert_eq!(a.finish(), b.finish());
        let mut c = StableHasher::new(8);
        c.write(b"abc");
        assert_ne!(a.finish(), c.finish());
        let mut z = StableHasher::new(1);
        z.write_f64(-0.0);
        let mut p = StableHasher::new(1);
        p.write_f64(0.0);
        assert_eq!(z.finish(), p.finish());
        assert!((0.0..1.0).contains(&a.finish_unit()));
    }
}
