//! Which rows and features a tree or a node sees. Every draw is a seeded hash
//! of a row's key (its values) or of a feature's index, never a random
//! stream: the same sample on any partitioning and any number of cores.

use crate::hashing::splitmix64;

/// The seed of tree `index` of a model seeded `seed`.
pub fn tree_seed(seed: u64, index: usize) -> u64 {
    splitmix64(seed ^ splitmix64(index as u64 + 1))
}

/// A hash as a number in [0, 1).
fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// The rows a tree sees: each kept with probability `fraction`, by its key.
pub fn sample_rows(keys: &[u64], fraction: f64, seed: u64) -> Vec<u32> {
    if fraction >= 1.0 {
        return (0..keys.len() as u32).collect();
    }
    let below = (fraction * u64::MAX as f64) as u64;
    (0..keys.len() as u32)
        .filter(|&r| splitmix64(keys[r as usize] ^ seed) < below)
        .collect()
}

/// Of the features `allowed` marks, the `fraction` with the smallest seeded
/// hash of their index (at least one).
pub fn sample_features(allowed: &[bool], fraction: f64, seed: u64) -> Vec<bool> {
    let candidates: Vec<usize> = (0..allowed.len()).filter(|&f| allowed[f]).collect();
    if fraction >= 1.0 || candidates.is_empty() {
        return allowed.to_vec();
    }
    let keep = ((fraction * candidates.len() as f64).round() as usize).clamp(1, candidates.len());
    let mut order = candidates;
    order.sort_by_key(|&f| splitmix64(seed ^ (f as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    let mut sampled = vec![false; allowed.len()];
    for &f in &order[..keep] {
        sampled[f] = true;
    }
    sampled
}

/// How many times a bootstrap sample takes the row with `key`, as Spark's
/// bagging draws one: a Poisson(`rate`) count, by a seeded hash of the key.
pub fn bootstrap_count(key: u64, rate: f64, seed: u64) -> f64 {
    poisson(rate, unit(splitmix64(key ^ seed)))
}

/// The Poisson(`rate`) count whose CDF first reaches `u` (inverse transform).
fn poisson(rate: f64, u: f64) -> f64 {
    let mut p = (-rate).exp();
    let (mut k, mut cdf) = (0.0, p);
    while u > cdf && p > 0.0 {
        k += 1.0;
        p *= rate / k;
        cdf += p;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_counts_are_poisson() {
        let n = 200_000;
        let keys: Vec<u64> = (0..n as u64).map(splitmix64).collect();
        let counts: Vec<f64> = keys.iter().map(|k| bootstrap_count(*k, 1.0, 42)).collect();
        // P(0) = e^-1 ≈ 0.368; mean 1, variance 1.
        let taken = counts.iter().filter(|c| **c > 0.0).count() as f64 / n as f64;
        assert!((taken - (1.0 - (-1.0f64).exp())).abs() < 0.005, "{taken}");
        let mean = counts.iter().sum::<f64>() / n as f64;
        let var = counts.iter().map(|c| (c - mean) * (c - mean)).sum::<f64>() / n as f64;
        assert!(
            (mean - 1.0).abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        // The same keys and seed, the same sample.
        let again: Vec<f64> = keys.iter().map(|k| bootstrap_count(*k, 1.0, 42)).collect();
        assert_eq!(again, counts);
        let other: Vec<f64> = keys.iter().map(|k| bootstrap_count(*k, 1.0, 43)).collect();
        assert_ne!(other, counts);
    }

    #[test]
    fn features_are_sampled_among_the_allowed() {
        let allowed = [true, false, true, true, false, true];
        let sampled = sample_features(&allowed, 0.5, 7);
        assert_eq!(sampled.iter().filter(|s| **s).count(), 2);
        assert!(sampled.iter().zip(allowed).all(|(s, a)| !s || a));
        assert_eq!(sample_features(&allowed, 1.0, 7), allowed);
    }
}
