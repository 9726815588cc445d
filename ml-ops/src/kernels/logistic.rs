//! Logistic-regression statistics at given weights: the summed log-loss, its
//! gradient and (for Newton steps) its Hessian XᵀWX, with an intercept column.

use super::FeatureBlock;
use super::gram::{symmetrize, with_intercept};
use super::syrk::weighted_gram;

/// Numerically stable logistic: never exponentiates a large positive number.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Layout for `d` features (m = d + 1): `[loss | n | gradient (m) | Hessian (m×m)]`,
/// the Hessian present only when asked for.
pub fn stats_len(d: usize, hessian: bool) -> usize {
    let m = d + 1;
    2 + m + if hessian { m * m } else { 0 }
}

/// log(1 + e^z) without overflow.
pub fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// Adds the block's rows (labels `y` in {0, 1}) at `weights` (m values, the
/// intercept last) to `stats`.
pub fn accumulate(
    block: &FeatureBlock,
    y: &[f64],
    weights: &[f64],
    hessian: bool,
    stats: &mut [f64],
) {
    let m = block.width + 1;
    let rows = block.rows;
    let augmented = with_intercept(block);
    let mut curvature = vec![0.0; rows];
    let (head, rest) = stats.split_at_mut(2);
    let (grad, hess) = rest.split_at_mut(m);
    for (r, &label) in y.iter().enumerate().take(rows) {
        let row = &augmented[r * m..(r + 1) * m];
        let z: f64 = row.iter().zip(weights).map(|(x, w)| x * w).sum();
        let p = sigmoid(z);
        head[0] += softplus(z) - label * z;
        head[1] += 1.0;
        let residual = p - label;
        for (g, x) in grad.iter_mut().zip(row) {
            *g += residual * x;
        }
        curvature[r] = p * (1.0 - p);
    }
    if hessian {
        weighted_gram(&augmented, Some(&curvature), rows, m, hess);
    }
}

/// Fills the lower triangle of the merged Hessian in `stats`.
pub fn finish(stats: &mut [f64], d: usize, hessian: bool) {
    if hessian {
        let m = d + 1;
        symmetrize(&mut stats[2 + m..], m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_zero_weights_loss_is_ln2_per_row_and_gradient_is_half_minus_y() {
        let mut block = FeatureBlock::new(1);
        block.values[..2].copy_from_slice(&[2.0, -1.0]);
        block.resize(2);
        let mut stats = vec![0.0; stats_len(1, true)];
        accumulate(&block, &[1.0, 0.0], &[0.0, 0.0], true, &mut stats);
        finish(&mut stats, 1, true);
        assert!((stats[0] - 2.0 * 2f64.ln()).abs() < 1e-15);
        assert_eq!(stats[1], 2.0);
        // gradient = Σ (p - y) x = (0.5-1)*[2,1] + 0.5*[-1,1]
        assert_eq!(&stats[2..4], &[-1.5, 0.0]);
        // Hessian = Σ 0.25 x xᵀ
        assert_eq!(&stats[4..], &[1.25, 0.25, 0.25, 0.5]);
    }

    #[test]
    fn softplus_is_stable() {
        assert_eq!(softplus(1000.0), 1000.0);
        assert!(softplus(-1000.0) >= 0.0 && softplus(-1000.0) < 1e-300);
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-15);
    }
}
