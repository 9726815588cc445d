//! The weighted Gram update H += Σ wᵣ xᵣ xᵣᵀ (upper triangle), the inner loop of
//! linear regression (w = 1) and of the logistic Hessian (w = p(1−p)).
//!
//! Rows are taken four at a time, so each load and store of H serves four
//! multiply-adds, and the loop over a row of H is element-wise (no reduction), so
//! it vectorises. On x86-64 the same code is compiled a second time for AVX2 and
//! chosen at run time; the arithmetic, and so the result, is the same either way.

/// Adds `Σ w[r]·x_r·x_rᵀ` over the `rows` rows of `x` (row-major, `m` wide) to the
/// upper triangle of `h` (row-major `m × m`). `w = None` means all ones.
pub fn weighted_gram(x: &[f64], w: Option<&[f64]>, rows: usize, m: usize, h: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { weighted_gram_avx2(x, w, rows, m, h) };
        return;
    }
    weighted_gram_generic(x, w, rows, m, h);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn weighted_gram_avx2(x: &[f64], w: Option<&[f64]>, rows: usize, m: usize, h: &mut [f64]) {
    weighted_gram_generic(x, w, rows, m, h);
}

#[inline(always)]
fn weighted_gram_generic(x: &[f64], w: Option<&[f64]>, rows: usize, m: usize, h: &mut [f64]) {
    let weight = |r: usize| w.map_or(1.0, |w| w[r]);
    let mut r = 0;
    while r + 4 <= rows {
        let x0 = &x[r * m..(r + 1) * m];
        let x1 = &x[(r + 1) * m..(r + 2) * m];
        let x2 = &x[(r + 2) * m..(r + 3) * m];
        let x3 = &x[(r + 3) * m..(r + 4) * m];
        let (w0, w1, w2, w3) = (weight(r), weight(r + 1), weight(r + 2), weight(r + 3));
        for j in 0..m {
            let (a0, a1, a2, a3) = (w0 * x0[j], w1 * x1[j], w2 * x2[j], w3 * x3[j]);
            let target = &mut h[j * m + j..(j + 1) * m];
            let (x0, x1, x2, x3) = (&x0[j..], &x1[j..], &x2[j..], &x3[j..]);
            for k in 0..target.len() {
                target[k] += a0 * x0[k] + a1 * x1[k] + a2 * x2[k] + a3 * x3[k];
            }
        }
        r += 4;
    }
    while r < rows {
        let xr = &x[r * m..(r + 1) * m];
        let wr = weight(r);
        for j in 0..m {
            let a = wr * xr[j];
            let target = &mut h[j * m + j..(j + 1) * m];
            for (t, xk) in target.iter_mut().zip(&xr[j..]) {
                *t += a * xk;
            }
        }
        r += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition_for_any_row_count() {
        let m = 3;
        for rows in 0..9 {
            let x: Vec<f64> = (0..rows * m).map(|i| (i as f64 * 0.37).sin()).collect();
            let w: Vec<f64> = (0..rows).map(|i| 0.5 + i as f64).collect();
            let mut h = vec![0.0; m * m];
            weighted_gram(&x, Some(&w), rows, m, &mut h);
            for j in 0..m {
                for k in j..m {
                    let expected: f64 = (0..rows).map(|r| w[r] * x[r * m + j] * x[r * m + k]).sum();
                    assert!(
                        (h[j * m + k] - expected).abs() < 1e-12,
                        "rows {rows} ({j},{k})"
                    );
                }
            }
        }
    }
}
