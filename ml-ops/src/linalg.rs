//! Small dense solves for the driver's optimizer steps (systems of a few
//! hundred unknowns at most, so textbook algorithms in float64 suffice).

/// Solves `a x = b` for symmetric positive semi-definite `a` (row-major n×n).
///
/// Cholesky first; when `a` is singular (collinear features, a one-hot block plus
/// the intercept) the minimum-norm least-squares solution from an eigen
/// decomposition, as `numpy.linalg.lstsq` and scikit-learn's LinearRegression give.
pub fn solve_symmetric(a: &[f64], b: &[f64]) -> Vec<f64> {
    cholesky_solve(a, b).unwrap_or_else(|| pseudo_inverse_solve(a, b))
}

/// Solves `a x = b` (symmetric, row-major) whose last unknown is an intercept the
/// penalty does not touch. The intercept is eliminated first (a Schur
/// complement: the system of the centred problem), so a penalty of any size on
/// the other unknowns cannot swamp it, and collinear features get the
/// minimum-norm solution of the centred problem, as scikit-learn's.
pub fn solve_with_intercept(a: &[f64], b: &[f64]) -> Vec<f64> {
    let m = b.len();
    let d = m.saturating_sub(1);
    let s = a[m * m - 1];
    if d == 0 || s.is_nan() || s <= 0.0 {
        return solve_symmetric(a, b);
    }
    let c: Vec<f64> = (0..d).map(|j| a[j * m + d]).collect();
    let mut centred = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            centred[i * d + j] = a[i * m + j] - c[i] * c[j] / s;
        }
    }
    let rhs: Vec<f64> = (0..d).map(|j| b[j] - c[j] * b[d] / s).collect();
    let mut x = solve_symmetric(&centred, &rhs);
    let fitted: f64 = c.iter().zip(&x).map(|(ci, xi)| ci * xi).sum();
    x.push((b[d] - fitted) / s);
    x
}

/// Cholesky solve; `None` when a pivot is not clearly positive.
pub fn cholesky_solve(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let scale = (0..n)
        .map(|i| a[i * n + i].abs())
        .fold(0.0, f64::max)
        .max(1e-300);
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[i * n + j];
            for k in 0..j {
                sum -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if sum <= scale * 1e-12 {
                    return None;
                }
                l[i * n + i] = sum.sqrt();
            } else {
                l[i * n + j] = sum / l[j * n + j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k * n + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * n + i];
    }
    Some(x)
}

/// Eigen decomposition of a symmetric matrix by cyclic Jacobi rotations:
/// returns (eigenvalues, eigenvectors as columns, row-major).
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let diag: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum();
        if off <= 1e-30 * diag.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[p * n + k];
                    let aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// Minimum-norm solution of `a x = b` for symmetric positive semi-definite `a`.
pub fn pseudo_inverse_solve(a: &[f64], b: &[f64]) -> Vec<f64> {
    let n = b.len();
    let (values, vectors) = symmetric_eigen(a, n);
    let largest = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let cutoff = largest * n as f64 * f64::EPSILON * 16.0;
    let mut x = vec![0.0; n];
    for (j, &lambda) in values.iter().enumerate() {
        if lambda.abs() <= cutoff {
            continue;
        }
        let proj: f64 = (0..n).map(|i| vectors[i * n + j] * b[i]).sum::<f64>() / lambda;
        for i in 0..n {
            x[i] += proj * vectors[i * n + j];
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_spd_system() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let x = solve_symmetric(&a, &[2.0, 1.0]);
        assert!((x[0] - 0.5).abs() < 1e-15 && x[1].abs() < 1e-15, "{x:?}");
    }

    #[test]
    fn singular_system_gets_the_minimum_norm_solution() {
        // Two identical columns: x0 + x1 = 1 with the least norm is (0.5, 0.5).
        let a = [1.0, 1.0, 1.0, 1.0];
        assert!(cholesky_solve(&a, &[1.0, 1.0]).is_none());
        let x = solve_symmetric(&a, &[1.0, 1.0]);
        assert!(
            (x[0] - 0.5).abs() < 1e-12 && (x[1] - 0.5).abs() < 1e-12,
            "{x:?}"
        );
    }

    #[test]
    fn eigen_reconstructs_the_matrix() {
        let a = [2.0, 1.0, 0.0, 1.0, 2.0, 1.0, 0.0, 1.0, 2.0];
        let (values, v) = symmetric_eigen(&a, 3);
        for i in 0..3 {
            for j in 0..3 {
                let r: f64 = (0..3)
                    .map(|k| v[i * 3 + k] * values[k] * v[j * 3 + k])
                    .sum();
                assert!((r - a[i * 3 + j]).abs() < 1e-12);
            }
        }
    }
}
