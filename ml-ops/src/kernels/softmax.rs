//! Multinomial (softmax) logistic-regression statistics at given weights: the
//! summed log-loss, its gradient and (for Newton steps) its Hessian, each
//! class's weights with an intercept.
//!
//! Weights are class by class, `m = d + 1` each (the intercept last). Class
//! c's probability is `p_c = softmax(W x)_c`; a row of label y adds
//! `log Σ e^z − z_y` to the loss, `(p_c − [y = c]) x` to class c's gradient,
//! and `(p_c [c = c'] − p_c p_c') x xᵀ` to the Hessian's block (c, c').

use super::FeatureBlock;
use super::gram::with_intercept;
use super::syrk::weighted_gram;

/// Blocks of the Hessian kept: (c, c') for c ≤ c' (the others are their
/// transposes).
fn blocks(classes: usize) -> usize {
    classes * (classes + 1) / 2
}

/// The index of block (c, c'), c ≤ c', among the kept ones.
fn block_index(classes: usize, c: usize, c2: usize) -> usize {
    c * classes - c * (c + 1) / 2 + c2
}

/// Layout for `d` features and `classes` classes (m = d + 1):
/// `[loss | n | gradient (classes·m) | Hessian blocks (classes(classes+1)/2 · m·m)]`,
/// the Hessian present only when asked for, each block's upper triangle.
pub fn stats_len(d: usize, classes: usize, hessian: bool) -> usize {
    let m = d + 1;
    2 + classes * m + if hessian { blocks(classes) * m * m } else { 0 }
}

/// Adds the block's rows (labels `y` class indices) at `weights` to `stats`.
pub fn accumulate(
    block: &FeatureBlock,
    y: &[f64],
    weights: &[f64],
    classes: usize,
    hessian: bool,
    stats: &mut [f64],
) {
    let m = block.width + 1;
    let k = classes;
    let rows = block.rows;
    let augmented = with_intercept(block);
    let mut probabilities = vec![0.0; rows * k];
    let (head, rest) = stats.split_at_mut(2);
    let (grad, hess) = rest.split_at_mut(k * m);
    for (r, &label) in y.iter().enumerate().take(rows) {
        let row = &augmented[r * m..(r + 1) * m];
        let p = &mut probabilities[r * k..(r + 1) * k];
        for (c, z) in p.iter_mut().enumerate() {
            *z = row.iter().zip(&weights[c * m..]).map(|(x, w)| x * w).sum();
        }
        let top = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        let z_label = p[label as usize];
        for z in p.iter_mut() {
            *z = (*z - top).exp();
            sum += *z;
        }
        head[0] += top + sum.ln() - z_label;
        head[1] += 1.0;
        for (c, z) in p.iter_mut().enumerate() {
            *z /= sum;
            let residual = *z - f64::from(u8::from(c == label as usize));
            for (g, x) in grad[c * m..(c + 1) * m].iter_mut().zip(row) {
                *g += residual * x;
            }
        }
    }
    if hessian {
        let mut curvature = vec![0.0; rows];
        for c in 0..k {
            for c2 in c..k {
                for (r, w) in curvature.iter_mut().enumerate() {
                    let p = &probabilities[r * k..(r + 1) * k];
                    *w = if c == c2 {
                        p[c] * (1.0 - p[c])
                    } else {
                        -p[c] * p[c2]
                    };
                }
                let at = block_index(k, c, c2) * m * m;
                weighted_gram(
                    &augmented,
                    Some(&curvature),
                    rows,
                    m,
                    &mut hess[at..at + m * m],
                );
            }
        }
    }
}

/// The whole Hessian (row-major, `classes·m` square) from merged `stats`.
pub fn hessian(stats: &[f64], d: usize, classes: usize) -> Vec<f64> {
    let m = d + 1;
    let n = classes * m;
    let blocks = &stats[2 + n..];
    let mut h = vec![0.0; n * n];
    for c in 0..classes {
        for c2 in c..classes {
            let block = &blocks[block_index(classes, c, c2) * m * m..][..m * m];
            for i in 0..m {
                for j in 0..m {
                    // Each block is x xᵀ weighted: symmetric, its upper triangle kept.
                    let v = block[i.min(j) * m + i.max(j)];
                    h[(c * m + i) * n + c2 * m + j] = v;
                    h[(c2 * m + j) * n + c * m + i] = v;
                }
            }
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gradient and Hessian equal finite differences of the loss.
    #[test]
    fn derivatives_match_finite_differences() {
        let (d, k) = (2, 3);
        let mut block = FeatureBlock::new(d);
        let xs = [0.5, -1.0, 2.0, 0.3, -0.7, 1.1, 1.5, 0.2];
        block.values[..xs.len()].copy_from_slice(&xs);
        block.resize(4);
        let y = [0.0, 2.0, 1.0, 2.0];
        let w: Vec<f64> = (0..k * (d + 1)).map(|i| 0.1 * i as f64 - 0.3).collect();
        let stats_at = |w: &[f64]| {
            let mut stats = vec![0.0; stats_len(d, k, true)];
            accumulate(&block, &y, w, k, true, &mut stats);
            stats
        };
        let stats = stats_at(&w);
        assert_eq!(stats[1], 4.0);
        let h = hessian(&stats, d, k);
        let n = k * (d + 1);
        let eps = 1e-6;
        for i in 0..n {
            let mut up = w.clone();
            up[i] += eps;
            let mut down = w.clone();
            down[i] -= eps;
            let (su, sd) = (stats_at(&up), stats_at(&down));
            let numeric = (su[0] - sd[0]) / (2.0 * eps);
            assert!((numeric - stats[2 + i]).abs() < 1e-7, "gradient {i}");
            for j in 0..n {
                let numeric = (su[2 + j] - sd[2 + j]) / (2.0 * eps);
                assert!((numeric - h[i * n + j]).abs() < 1e-7, "hessian {i},{j}");
            }
        }
    }
}
