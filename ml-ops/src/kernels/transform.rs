//! Feature transforms over a column-major float64 matrix (n rows, d columns),
//! producing the row-major vectors ember's feature functions return. The CPU
//! versions here are the reference; `cuda::transform` has the same functions.

/// `out[i·d + j] = (x[j][i] − shift[j]) · scale[j]`: standard or min-max scaling.
pub fn affine_columns(x: &[f64], rows: usize, shift: &[f64], scale: &[f64]) -> Vec<f64> {
    let d = shift.len();
    let mut out = vec![0.0; rows * d];
    // Rows in chunks whose output stays in cache while each column is written
    // into it with stride d (one column at a time over all rows misses on
    // every write).
    const CHUNK: usize = 256;
    for start in (0..rows).step_by(CHUNK) {
        let end = (start + CHUNK).min(rows);
        let chunk = &mut out[start * d..end * d];
        for j in 0..d {
            let column = &x[j * rows + start..j * rows + end];
            for (i, value) in column.iter().enumerate() {
                chunk[i * d + j] = (value - shift[j]) * scale[j];
            }
        }
    }
    out
}

/// `out[i·T + t] = Π x[f][i]` over the factors `f` of monomial `t`.
pub fn polynomial_expand(x: &[f64], rows: usize, monomials: &[Vec<usize>]) -> Vec<f64> {
    let terms = monomials.len();
    let mut out = vec![1.0; rows * terms];
    for (t, factors) in monomials.iter().enumerate() {
        for &f in factors {
            let column = &x[f * rows..(f + 1) * rows];
            for (i, value) in column.iter().enumerate() {
                out[i * terms + t] *= value;
            }
        }
    }
    out
}

/// `out[i·width + c] = (index[i] == c)`; a negative index is a row of zeros.
pub fn one_hot_expand(index: &[i32], width: usize) -> Vec<f64> {
    let mut out = vec![0.0; index.len() * width];
    for (i, &c) in index.iter().enumerate() {
        if c >= 0 && (c as usize) < width {
            out[i * width + c as usize] = 1.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_scales_each_column() {
        // Two rows, two columns, column-major.
        let out = affine_columns(&[1.0, 3.0, 10.0, 20.0], 2, &[1.0, 10.0], &[0.5, 0.1]);
        assert_eq!(out, vec![0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn polynomial_multiplies_factors() {
        let monomials = vec![vec![0], vec![1], vec![0, 0], vec![0, 1], vec![1, 1]];
        let out = polynomial_expand(&[2.0, 3.0], 1, &monomials);
        assert_eq!(out, vec![2.0, 3.0, 4.0, 6.0, 9.0]);
    }

    #[test]
    fn one_hot_marks_the_index() {
        assert_eq!(
            one_hot_expand(&[1, -1], 3),
            vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
        );
    }
}
