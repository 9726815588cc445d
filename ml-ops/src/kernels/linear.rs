//! Applying a linear model: one margin `coefficients · x + intercept` per row.

use datafusion::common::Result;

use super::{FeatureBlock, FeatureColumns, for_each_block};

/// The margin of every row of `columns`.
pub fn margins(columns: &FeatureColumns, coefficients: &[f64], intercept: f64) -> Result<Vec<f64>> {
    let mut block = FeatureBlock::new(columns.width());
    let mut out = Vec::with_capacity(columns.rows());
    for_each_block(columns, &mut block, |_, block| {
        for r in 0..block.rows {
            let z: f64 = block
                .row(r)
                .iter()
                .zip(coefficients)
                .map(|(x, w)| x * w)
                .sum::<f64>()
                + intercept;
            out.push(z);
        }
    })?;
    Ok(out)
}
