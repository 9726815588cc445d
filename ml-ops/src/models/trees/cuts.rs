//! Where a feature's bins end, and the 1-byte code of a value.
//!
//! As XGBoost's `hist` does: a feature with few distinct values gets one bin
//! per value; one with more gets bins at quantiles of its values. Bin `b`
//! holds the values in `[cuts[b-1], cuts[b])`; the last cut lies above the
//! largest value. NULL and NaN take the code after the last bin, so a feature
//! has at most `max_bins - 1` bins of values and its codes fit in a byte.

use serde::{Deserialize, Serialize};

/// The bins of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cuts {
    /// Upper bound of each bin, ascending.
    pub values: Vec<f64>,
    /// Below every value seen: the threshold that sends every value right.
    pub min: f64,
}

impl Cuts {
    /// Cuts for `sample` (any order; NaN ignored) into at most `bins` bins.
    pub fn from_sample(mut sample: Vec<f64>, bins: usize) -> Self {
        sample.retain(|v| !v.is_nan());
        // As integers in f64's total order: a plain integer sort is faster
        // than one through a comparison function.
        let mut keys: Vec<i64> = sample.iter().map(|v| total_order(*v)).collect();
        keys.sort_unstable();
        for (v, k) in sample.iter_mut().zip(&keys) {
            *v = from_total_order(*k);
        }
        let (Some(&first), Some(&last)) = (sample.first(), sample.last()) else {
            // No values: one bin that holds anything.
            return Self {
                values: vec![f64::MAX],
                min: f64::MIN,
            };
        };
        let mut distinct = sample.clone();
        distinct.dedup();
        let mut values: Vec<f64> = if distinct.len() <= bins {
            distinct[1..].to_vec()
        } else {
            let n = sample.len();
            let mut cuts = Vec::with_capacity(bins);
            for i in 1..bins {
                let v = sample[i * n / bins];
                if v > first && cuts.last().is_none_or(|c| v > *c) {
                    cuts.push(v);
                }
            }
            cuts
        };
        values.push(last + last.abs() + 1e-5);
        Self {
            values,
            min: first - (first.abs() + 1e-5),
        }
    }

    /// Bins of values (the NULL code comes after them).
    pub fn bins(&self) -> usize {
        self.values.len()
    }

    /// The code of `value`: its bin, or [`Self::bins`] for NULL/NaN. Values
    /// above the last cut fall in the last bin, below the first in bin 0.
    pub fn code(&self, value: f64) -> u8 {
        self.coder().code(value)
    }

    /// A coder for many values: the cuts padded to a fixed length, searched
    /// without branches (binning every row is the first cost of training).
    pub fn coder(&self) -> Coder {
        let mut padded = [f64::INFINITY; CODER_SLOTS];
        padded[..self.values.len()].copy_from_slice(&self.values);
        Coder {
            padded,
            bins: self.bins(),
        }
    }
}

/// Cuts a [`Coder`] holds: at most 255 bins of values.
const CODER_SLOTS: usize = 255;

/// [`Cuts::code`] for many values.
pub struct Coder {
    padded: [f64; CODER_SLOTS],
    bins: usize,
}

impl Coder {
    pub fn code(&self, value: f64) -> u8 {
        if value.is_nan() {
            return self.bins as u8;
        }
        // How many cuts are <= value: steps of 128, 64, ..., 1 (255 in all).
        let mut at = 0;
        let mut step = 128;
        while step > 0 {
            at += usize::from(self.padded[at + step - 1] <= value) * step;
            step /= 2;
        }
        at.min(self.bins - 1) as u8
    }
}

/// `v`'s bits as an integer ordered as `f64::total_cmp` orders values.
fn total_order(v: f64) -> i64 {
    let bits = v.to_bits() as i64;
    bits ^ (((bits >> 63) as u64) >> 1) as i64
}

fn from_total_order(key: i64) -> f64 {
    f64::from_bits((key ^ (((key >> 63) as u64) >> 1) as i64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_get_a_bin_each() {
        let cuts = Cuts::from_sample(vec![3.0, 1.0, 2.0, 1.0, f64::NAN], 256);
        assert_eq!(cuts.values, vec![2.0, 3.0, 3.0 + 3.0 + 1e-5]);
        assert_eq!(
            [1.0, 2.0, 3.0, 0.0, 9.0, f64::NAN].map(|v| cuts.code(v)),
            [0, 1, 2, 0, 2, 3]
        );
    }

    #[test]
    fn the_coder_codes_as_a_search_of_the_cuts() {
        let sample: Vec<f64> = (0..5000)
            .map(|i| ((i * 7919) % 3001) as f64 - 1500.5)
            .collect();
        for bins in [1, 2, 3, 17, 255] {
            let cuts = Cuts::from_sample(sample.clone(), bins);
            let coder = cuts.coder();
            for v in sample.iter().copied().chain([
                f64::NEG_INFINITY,
                f64::INFINITY,
                f64::NAN,
                -0.0,
                1e300,
            ]) {
                let searched = if v.is_nan() {
                    cuts.bins()
                } else {
                    cuts.values
                        .partition_point(|c| *c <= v)
                        .min(cuts.bins() - 1)
                };
                assert_eq!(usize::from(coder.code(v)), searched, "{v} in {bins} bins");
            }
        }
        for v in [-2.5, -0.0, 0.0, 1e-300, 7.0, f64::MAX] {
            assert_eq!(from_total_order(total_order(v)).to_bits(), v.to_bits());
        }
        assert!(total_order(-1.0) < total_order(-0.5) && total_order(-0.0) < total_order(0.0));
    }

    #[test]
    fn many_values_are_cut_at_quantiles() {
        let sample: Vec<f64> = (0..1000).map(f64::from).collect();
        let cuts = Cuts::from_sample(sample, 4);
        assert_eq!(cuts.values, vec![250.0, 500.0, 750.0, 999.0 + 999.0 + 1e-5]);
        assert_eq!(cuts.code(249.0), 0);
        assert_eq!(cuts.code(250.0), 1);
    }
}
