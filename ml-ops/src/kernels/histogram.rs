//! Gradient histograms of binned rows: the one loop tree training spends its
//! time in.
//!
//! Rows are binned once into 1-byte codes, row-major (`width` codes a row).
//! A node's histogram holds, for every feature's every code, the sums of the
//! gradient and Hessian of the node's rows with that code: [`SLOTS`] slots a
//! feature, so that a code indexes its feature's slots with no bounds check.
//!
//! Gradients are fixed-point, as XGBoost's GPU `hist` keeps them: each tree's
//! float gradients are scaled by one [`GradScale`] for every row wherever it
//! is held and rounded to 32-bit integers, and histograms sum them in 64-bit
//! integers. Integer sums are exact, so they merge in any order — across
//! threads, a GPU's atomics, or a cluster's executors — to the same bits, and
//! a sibling's histogram by subtraction is the one built from its rows.

/// One bin's sums: gradient, Hessian, in units of the tree's [`GradScale`].
pub type GradPair = [i64; 2];

/// One row's gradient and Hessian in units of the tree's [`GradScale`]: the
/// 8 bytes the histogram loop gathers.
pub type RowGradient = [i32; 2];

/// Slots per feature in a histogram: one per possible code.
pub const SLOTS: usize = 256;

/// The integers a row's largest gradient (and Hessian) is scaled to: 2^30
/// leaves a factor of two of headroom in an `i32` and sums of up to 2^32
/// rows in an `i64`; a gradient's rounding error is then 2^-31 of the
/// largest, finer than float32's 2^-24 of its own value for all but the
/// smallest gradients.
const FULL_SCALE: f64 = (1u64 << 30) as f64;

/// How a tree's float gradients become integers: units per gradient and per
/// Hessian, from the largest of each over every row of the tree.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GradScale {
    pub gradient: f64,
    pub hessian: f64,
}

impl GradScale {
    /// The scale for gradients up to `max_gradient` and Hessians up to
    /// `max_hessian` in absolute value: a power of two, so that whole
    /// numbers (a forest's bootstrap counts, squared error's Hessian 1) stay
    /// exact and a child's Hessian sum meets `min_child_weight` exactly as
    /// its rows' do.
    pub fn new(max_gradient: f64, max_hessian: f64) -> Self {
        let unit = |max: f64| {
            if max > 0.0 && max.is_finite() {
                let units = 2f64.powi((FULL_SCALE / max).log2().floor() as i32);
                // Rounding in the logarithm must not take the largest past 2^30.
                if units * max > FULL_SCALE {
                    units / 2.0
                } else {
                    units
                }
            } else {
                1.0
            }
        };
        Self {
            gradient: unit(max_gradient),
            hessian: unit(max_hessian),
        }
    }

    /// The largest |g| and |h| this scale holds: [`Self::new`] of them is
    /// this scale.
    pub fn bounds(&self) -> [f64; 2] {
        [FULL_SCALE / self.gradient, FULL_SCALE / self.hessian]
    }

    /// The largest |g| and |h| of `pairs`.
    pub fn maxima(pairs: &[[f64; 2]]) -> [f64; 2] {
        pairs.iter().fold([0.0f64; 2], |[mg, mh], [g, h]| {
            [mg.max(g.abs()), mh.max(h.abs())]
        })
    }

    /// `pair` in this scale's units, rounded half away from zero (as
    /// `f64::round`, without its library call: the sum is exact below 2^52).
    pub fn quantize(&self, [g, h]: [f64; 2]) -> RowGradient {
        let round = |v: f64| (v + 0.5f64.copysign(v)) as i32;
        [round(g * self.gradient), round(h * self.hessian)]
    }

    /// Integer sums back as floats.
    pub fn sums(&self, [g, h]: GradPair) -> [f64; 2] {
        [g as f64 / self.gradient, h as f64 / self.hessian]
    }
}

/// Adds `gradients[r]` into slot `codes[r·width + f]` of feature `f`'s part of
/// `hist` (`width × SLOTS` slots) for every row `r` in `rows` and every feature `f`.
pub fn accumulate(
    codes: &[u8],
    width: usize,
    rows: &[u32],
    gradients: &[RowGradient],
    hist: &mut [GradPair],
) {
    let (features, _) = hist.as_chunks_mut::<SLOTS>();
    debug_assert_eq!(features.len(), width);
    for &r in rows {
        let r = r as usize;
        let pair = gradients[r].map(i64::from);
        let row = &codes[r * width..(r + 1) * width];
        for (code, slots) in row.iter().zip(features.iter_mut()) {
            add_pair(&mut slots[*code as usize], pair);
        }
    }
}

/// `bin` += `pair`: on x86-64 one 128-bit load, add and store. Written as
/// two scalar adds, the compiler emits two read-modify-writes to memory; this
/// add and the in-pass quantization together took the tree benchmark from
/// 11.7 s to 9.6 s (BENCHMARKS.md, issue 14's fourth session).
#[inline(always)]
fn add_pair(bin: &mut GradPair, pair: GradPair) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_add_epi64, _mm_loadu_si128, _mm_set_epi64x, _mm_storeu_si128,
        };
        // SAFETY: SSE2 is part of every x86-64 CPU; `bin` is 16 valid,
        // writable bytes (two i64), read and written unaligned.
        unsafe {
            let at = bin.as_mut_ptr().cast::<__m128i>();
            _mm_storeu_si128(
                at,
                _mm_add_epi64(_mm_loadu_si128(at), _mm_set_epi64x(pair[1], pair[0])),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        bin[0] += pair[0];
        bin[1] += pair[1];
    }
}

/// `total` −= `part`, bin by bin: a parent's histogram becomes one child's
/// when `part` is the other's, without reading the child's rows.
pub fn subtract(total: &mut [GradPair], part: &[GradPair]) {
    for (t, p) in total.iter_mut().zip(part) {
        t[0] -= p[0];
        t[1] -= p[1];
    }
}

/// `total` += `part`, bin by bin.
pub fn add(total: &mut [GradPair], part: &[GradPair]) {
    for (t, p) in total.iter_mut().zip(part) {
        t[0] += p[0];
        t[1] += p[1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_row_lands_in_its_bin_of_every_feature() {
        // Two features; three rows.
        let codes = [0u8, 1, 2, 0, 2, 1];
        let gradients: [RowGradient; 3] = [[1, 5], [2, 10], [4, 20]];
        let mut hist = vec![[0; 2]; 2 * SLOTS];
        accumulate(&codes, 2, &[0, 2], &gradients, &mut hist);
        let mut expected = vec![[0; 2]; 2 * SLOTS];
        expected[0] = [1, 5];
        expected[2] = [4, 20];
        expected[SLOTS + 1] = [5, 25];
        assert_eq!(hist, expected);
        let mut all = vec![[0; 2]; 2 * SLOTS];
        accumulate(&codes, 2, &[0, 1, 2], &gradients, &mut all);
        let mut sibling = vec![[0; 2]; 2 * SLOTS];
        accumulate(&codes, 2, &[1], &gradients, &mut sibling);
        subtract(&mut all, &hist);
        assert_eq!(all, sibling);
    }

    #[test]
    fn a_scale_keeps_the_largest_gradient_within_an_i32() {
        let pairs = [[-3.5, 0.25], [1.0, 0.0], [2.0, 0.125]];
        let scale = GradScale::new(GradScale::maxima(&pairs)[0], GradScale::maxima(&pairs)[1]);
        let q: Vec<RowGradient> = pairs.iter().map(|p| scale.quantize(*p)).collect();
        // 3.5 → 2^28 units a gradient; 0.25 → 2^32 units a Hessian.
        assert_eq!(scale.gradient, f64::from(1 << 28));
        assert_eq!(q[0], [-(7 << 27), 1 << 30]);
        // Whole numbers stay whole: a count of 3 of at most 5 is 3 exactly.
        let counts = GradScale::new(1.0, 5.0);
        assert_eq!(
            counts.sums([0, i64::from(counts.quantize([0.0, 3.0])[1])])[1],
            3.0
        );
        let back = scale.sums([i64::from(q[2][0]), i64::from(q[2][1])]);
        assert!((back[0] - 2.0).abs() < 1e-8 && (back[1] - 0.125).abs() < 1e-9);
        // No gradients at all: a unit scale, zeros stay zeros.
        assert_eq!(GradScale::new(0.0, 0.0).quantize([0.0, 0.0]), [0, 0]);
    }
}
