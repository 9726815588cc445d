//! k-means statistics: each row goes to its nearest centroid; per centroid the
//! sum of its rows, their count and squared distances (Lloyd's step and the
//! inertia), and optionally the sum of distances to a second set of centres
//! (the cluster means, for the Davies-Bouldin index).

use super::{BLOCK_ROWS, FeatureBlock, FeatureColumns};
use datafusion::common::Result;

/// Layout for `k` centroids of `d` features:
/// `[sums (k×d) | counts (k) | squared distances (k) | distances to `measure` (k)]`.
pub fn stats_len(k: usize, d: usize) -> usize {
    k * d + 3 * k
}

/// Squared Euclidean distance, summed in four lanes so that it vectorises.
#[inline(always)]
pub fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0.0; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4
        .remainder()
        .iter()
        .zip(b4.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (x, y) in a4.zip(b4) {
        for i in 0..4 {
            lanes[i] += (x[i] - y[i]) * (x[i] - y[i]);
        }
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail
}

/// Index of the nearest centroid (row-major `k × d`) and its squared distance;
/// ties go to the lower index, as in scikit-learn.
#[inline(always)]
pub fn nearest(row: &[f64], centroids: &[f64], d: usize) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (c, centre) in centroids.chunks_exact(d).enumerate() {
        let dist = squared_distance(row, centre);
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
            distances[c] += squared_distance(row, &measure[c * d..(c + 1) * d]).sqrt();
        }
    }
}

/// Column-major form of [`accumulate`] for a whole batch: distances are computed
/// centroid by centroid and feature by feature over a block of rows, an
/// element-wise loop that vectorises, instead of row by row.
pub fn accumulate_columns(
    columns: &FeatureColumns,
    centroids: &[f64],
    measure: Option<&[f64]>,
    stats: &mut [f64],
) -> Result<()> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { accumulate_columns_avx2(columns, centroids, measure, stats) };
    }
    accumulate_columns_generic(columns, centroids, measure, stats)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn accumulate_columns_avx2(
    columns: &FeatureColumns,
    centroids: &[f64],
    measure: Option<&[f64]>,
    stats: &mut [f64],
) -> Result<()> {
    accumulate_columns_generic(columns, centroids, measure, stats)
}

#[inline(always)]
fn accumulate_columns_generic(
    columns: &FeatureColumns,
    centroids: &[f64],
    measure: Option<&[f64]>,
    stats: &mut [f64],
) -> Result<()> {
    let d = columns.width();
    let k = centroids.len() / d;
    let (sums, rest) = stats.split_at_mut(k * d);
    let (counts, rest) = rest.split_at_mut(k);
    let (squared, distances) = rest.split_at_mut(k);
    let mut block = vec![0.0; d * BLOCK_ROWS];
    let mut dist = vec![0.0; k * BLOCK_ROWS];
    let mut best = vec![0usize; BLOCK_ROWS];
    let mut start = 0;
    while start < columns.rows() {
        let rows = BLOCK_ROWS.min(columns.rows() - start);
        columns.gather_columns(start, rows, &mut block)?;
        for c in 0..k {
            let dc = &mut dist[c * rows..(c + 1) * rows];
            dc.fill(0.0);
            for j in 0..d {
                let centre = centroids[c * d + j];
                let column = &block[j * rows..(j + 1) * rows];
                for (acc, x) in dc.iter_mut().zip(column) {
                    *acc += (x - centre) * (x - centre);
                }
            }
        }
        for r in 0..rows {
            let mut b = (0, dist[r]);
            for c in 1..k {
                if dist[c * rows + r] < b.1 {
                    b = (c, dist[c * rows + r]);
                }
            }
            best[r] = b.0;
            counts[b.0] += 1.0;
            squared[b.0] += b.1;
        }
        for j in 0..d {
            let column = &block[j * rows..(j + 1) * rows];
            for (x, &c) in column.iter().zip(&best[..rows]) {
                sums[c * d + j] += x;
            }
        }
        if let Some(measure) = measure {
            for r in 0..rows {
                let c = best[r];
                let dist: f64 = (0..d)
                    .map(|j| (block[j * rows + r] - measure[c * d + j]).powi(2))
                    .sum();
                distances[c] += dist.sqrt();
            }
        }
        start += rows;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_major_matches_row_major() {
        use datafusion::arrow::array::{ArrayRef, Float64Array};
        use std::sync::Arc;
        let n = 2500;
        let a: ArrayRef = Arc::new(Float64Array::from(
            (0..n)
                .map(|i| (i as f64 * 0.7).sin() * 5.0)
                .collect::<Vec<_>>(),
        ));
        let b: ArrayRef = Arc::new(Float64Array::from(
            (0..n)
                .map(|i| (i as f64 * 1.3).cos() * 3.0)
                .collect::<Vec<_>>(),
        ));
        let columns = FeatureColumns::new(&[a, b], &["a".into(), "b".into()]).unwrap();
        let centroids = [0.0, 0.0, 3.0, 1.0, -2.0, -1.0];
        let measure = [0.5, 0.1, 2.0, 1.0, -1.0, -1.0];
        let mut expected = vec![0.0; stats_len(3, 2)];
        let mut block = FeatureBlock::new(2);
        super::super::for_each_block(&columns, &mut block, |_, block| {
            accumulate(block, &centroids, Some(&measure), &mut expected)
        })
        .unwrap();
        let mut got = vec![0.0; stats_len(3, 2)];
        accumulate_columns(&columns, &centroids, Some(&measure), &mut got).unwrap();
        for (g, e) in got.iter().zip(&expected) {
            assert!(
                (g - e).abs() <= 1e-9 * e.abs().max(1.0),
                "{got:?} vs {expected:?}"
            );
        }
    }

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
