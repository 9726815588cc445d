//! Gradient histograms of binned rows: the one loop tree training spends its
//! time in.
//!
//! Rows are binned once into 1-byte codes, row-major (`width` codes a row).
//! A node's histogram holds, for every feature's every bin, the sums of the
//! gradient and Hessian of the node's rows whose code is that bin; feature `f`'s
//! bins start at `offsets[f]`. Partitions' histograms merge by addition.

/// One bin's sums: gradient, Hessian.
pub type GradPair = [f64; 2];

/// Adds `gradients[r]` into bin `offsets[f] + codes[r·width + f]` of `hist`
/// for every row `r` in `rows` and every feature `f`.
pub fn accumulate(
    codes: &[u8],
    width: usize,
    offsets: &[usize],
    rows: &[u32],
    gradients: &[GradPair],
    hist: &mut [GradPair],
) {
    debug_assert_eq!(offsets.len(), width);
    for &r in rows {
        let r = r as usize;
        let [g, h] = gradients[r];
        let row = &codes[r * width..(r + 1) * width];
        for (code, offset) in row.iter().zip(offsets) {
            let bin = &mut hist[offset + *code as usize];
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
        // Two features of 3 and 2 bins; three rows.
        let codes = [0u8, 1, 2, 0, 2, 1];
        let offsets = [0, 3];
        let gradients = [[1.0, 0.5], [2.0, 1.0], [4.0, 2.0]];
        let mut hist = vec![[0.0; 2]; 5];
        accumulate(&codes, 2, &offsets, &[0, 2], &gradients, &mut hist);
        assert_eq!(
            hist,
            vec![[1.0, 0.5], [0.0, 0.0], [4.0, 2.0], [0.0, 0.0], [5.0, 2.5]]
        );
        let mut all = vec![[0.0; 2]; 5];
        accumulate(&codes, 2, &offsets, &[0, 1, 2], &gradients, &mut all);
        let mut sibling = vec![[0.0; 2]; 5];
        accumulate(&codes, 2, &offsets, &[1], &gradients, &mut sibling);
        subtract(&mut all, &hist);
        assert_eq!(all, sibling);
    }
}
