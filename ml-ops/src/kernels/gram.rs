//! Sufficient statistics of least squares: XᵀX, Xᵀy, yᵀy and n, with an
//! intercept column of ones appended to X.
//!
//! Accumulated in float64 (see [`super::syrk`] for the Gram update).

use super::FeatureBlock;
use super::syrk::weighted_gram;

/// Layout of the flat statistics vector for `d` features (m = d + 1 with the
/// intercept): `[XᵀX (m×m, upper triangle filled) | Xᵀy (m) | yᵀy | n]`.
pub fn stats_len(d: usize) -> usize {
    let m = d + 1;
    m * m + m + 2
}

/// Adds the block's rows, with labels `y`, to `stats`.
pub fn accumulate(block: &FeatureBlock, y: &[f64], stats: &mut [f64]) {
    let m = block.width + 1;
    let rows = block.rows;
    let augmented = with_intercept(block);
    let (gram, rest) = stats.split_at_mut(m * m);
    weighted_gram(&augmented, None, rows, m, gram);
    let (xty, rest) = rest.split_at_mut(m);
    for (r, &label) in y.iter().enumerate().take(rows) {
        for (b, x) in xty.iter_mut().zip(&augmented[r * m..(r + 1) * m]) {
            *b += x * label;
        }
        rest[0] += label * label;
        rest[1] += 1.0;
    }
}

/// The block's rows with the intercept's 1 appended (row-major, width + 1).
pub(super) fn with_intercept(block: &FeatureBlock) -> Vec<f64> {
    let (d, m) = (block.width, block.width + 1);
    let mut augmented = vec![1.0; block.rows * m];
    for r in 0..block.rows {
        augmented[r * m..r * m + d].copy_from_slice(block.row(r));
    }
    augmented
}

/// Copies the upper triangle onto the lower one.
pub fn symmetrize(matrix: &mut [f64], m: usize) {
    for j in 0..m {
        for k in 0..j {
            matrix[j * m + k] = matrix[k * m + j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition() {
        let mut block = FeatureBlock::new(2);
        block.values[..6].copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        block.resize(3);
        let y = [1.0, 2.0, 3.0];
        let mut stats = vec![0.0; stats_len(2)];
        accumulate(&block, &y, &mut stats);
        symmetrize(&mut stats, 3);
        // X with intercept: [[1,2,1],[3,4,1],[5,6,1]]
        assert_eq!(
            &stats[..9],
            &[35.0, 44.0, 9.0, 44.0, 56.0, 12.0, 9.0, 12.0, 3.0]
        );
        assert_eq!(&stats[9..12], &[22.0, 28.0, 6.0]);
        assert_eq!(&stats[12..], &[14.0, 3.0]);
    }
}
