//! k-means statistics: each row goes to its nearest centroid; per centroid the
//! sum of its rows, their count and squared distances (Lloyd's step and the
//! inertia), and optionally the sum of distances to a second set of centres
//! (the cluster means, for the Davies-Bouldin index).

use super::FeatureBlock;

/// Layout for `k` centroids of `d` features:
/// `[sums (k×d) | counts (k) | squared distances (k) | distances to `measure` (k)]`.
pub fn stats_len(k: usize, d: usize) -> usize {
    k * d + 3 * k
}

/// Index of the nearest centroid (row-major `k × d`) and its squared distance;
/// ties go to the lower index, as in scikit-learn.
pub fn nearest(row: &[f64], centroids: &[f64], d: usize) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (c, centre) in centroids.chunks_exact(d).enumerate() {
        let dist: f64 = row.iter().zip(centre).map(|(x, m)| (x - m) * (x - m)).sum();
        if dist < best.1 {
            best = (c, dist);
        }
    }
    best
}

/// Adds the block's rows to `stats`. `measure`, when given, holds one centre per
/// centroid to which Euclidean distances are summed.
pub fn accumulate(
    block: &FeatureBlock,
    centroids: &[f64],
    measure: Option<&[f64]>,
    stats: &mut [f64],
) {
    let d = block.width;
    let k = centroids.len() / d;
    let (sums, rest) = stats.split_at_mut(k * d);
    let (counts, rest) = rest.split_at_mut(k);
    let (squared, distances) = rest.split_at_mut(k);
    for r in 0..block.rows {
        let row = block.row(r);
        let (c, dist) = nearest(row, centroids, d);
        for (s, x) in sums[c * d..(c + 1) * d].iter_mut().zip(row) {
            *s += x;
        }
        counts[c] += 1.0;
        squared[c] += dist;
        if let Some(measure) = measure {
            let centre = &measure[c * d..(c + 1) * d];
            let dist: f64 = row.iter().zip(centre).map(|(x, m)| (x - m) * (x - m)).sum();
            distances[c] += dist.sqrt();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigns_and_sums() {
        let mut block = FeatureBlock::new(1);
        block.values[..4].copy_from_slice(&[0.0, 1.0, 9.0, 11.0]);
        block.resize(4);
        let centroids = [0.0, 10.0];
        let mut stats = vec![0.0; stats_len(2, 1)];
        accumulate(&block, &centroids, Some(&[0.5, 10.0]), &mut stats);
        assert_eq!(&stats[..2], &[1.0, 20.0]);
        assert_eq!(&stats[2..4], &[2.0, 2.0]);
        assert_eq!(&stats[4..6], &[1.0, 2.0]);
        assert_eq!(&stats[6..], &[1.0, 2.0]);
    }
}
