//! Gradient histograms of binned rows: the one loop tree training spends its
//! time in.
//!
//! Rows are binned once into 1-byte codes, row-major (`width` codes a row).
//! A node's histogram holds, for every feature's every code, the sums of the
//! gradient and Hessian of the node's rows with that code: [`SLOTS`] slots a
//! feature, so that a code indexes its feature's slots with no bounds check.
//! Partitions' histograms merge by addition.

/// One bin's sums: gradient, Hessian.
pub type GradPair = [f64; 2];

/// One row's gradient and Hessian, in float32 as XGBoost keeps them: half the
/// bytes the histogram loop gathers. Histograms sum them in float64.
pub type RowGradient = [f32; 2];

/// Slots per feature in a histogram: one per possible code.
pub const SLOTS: usize = 256;

/// Adds `gradients[r]` into slot `codes[r·width + f]` of feature `f`'s part of
/// `hist` (`width × SLOTS` slots) for every row `r` in `rows` and every feature `f`.
pub fn accumulate(
    codes: &[u8],
    width: usize,
    rows: &[u32],
    gradients: &[RowGradient],
    hist: &mut [GradPair],
) {
    let (features, _) = hist.as_chunks_mut::<SLOTS>();
    debug_assert_eq!(features.len(), width);
    for &r in rows {
        let r = r as usize;
        let [g, h] = gradients[r].map(f64::from);
        let row = &codes[r * width..(r + 1) * width];
        for (code, slots) in row.iter().zip(features.iter_mut()) {
            let bin = &mut slots[*code as usize];
            bin[0] += g;
            bin[1] += h;
        }
    }
}

/// `total` −= `part`, bin by bin: a parent's histogram becomes one child's
/// when `part` is the other's, without reading the child's rows.
pub fn subtract(total: &mut [GradPair], part: &[GradPair]) {
    for (t, p) in total.iter_mut().zip(part) {
        t[0] -= p[0];
        t[1] -= p[1];
    }
}

/// `total` += `part`, bin by bin.
pub fn add(total: &mut [GradPair], part: &[GradPair]) {
    for (t, p) in total.iter_mut().zip(part) {
        t[0] += p[0];
        t[1] += p[1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_row_lands_in_its_bin_of_every_feature() {
        // Two features; three rows.
        let codes = [0u8, 1, 2, 0, 2, 1];
        let gradients: [RowGradient; 3] = [[1.0, 0.5], [2.0, 1.0], [4.0, 2.0]];
        let mut hist = vec![[0.0; 2]; 2 * SLOTS];
        accumulate(&codes, 2, &[0, 2], &gradients, &mut hist);
        let mut expected = vec![[0.0; 2]; 2 * SLOTS];
        expected[0] = [1.0, 0.5];
        expected[2] = [4.0, 2.0];
        expected[SLOTS + 1] = [5.0, 2.5];
        assert_eq!(hist, expected);
        let mut all = vec![[0.0; 2]; 2 * SLOTS];
        accumulate(&codes, 2, &[0, 1, 2], &gradients, &mut all);
        let mut sibling = vec![[0.0; 2]; 2 * SLOTS];
        accumulate(&codes, 2, &[1], &gradients, &mut sibling);
        subtract(&mut all, &hist);
        assert_eq!(all, sibling);
    }
}
