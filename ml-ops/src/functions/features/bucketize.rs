//! `bucketize(x, b1, b2, ...)`: the number of boundaries ≤ x (0 below b1), as a
//! float; `quantile_bucketize(x, n, e1, ...)` the same over the quantile edges a
//! TRANSFORM learns for `quantile_bucketize(x, n)`: scikit-learn's
//! `KBinsDiscretizer(n, encode='ordinal', strategy='quantile')` (linear
//! interpolation, duplicate edges dropped).

use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{constant_f64, numbers, unfitted};

/// Bucket numbers of `x` over ascending `edges`.
fn buckets(function: &str, args: &ScalarFunctionArgs, first_edge: usize) -> Result<ColumnarValue> {
    let x = numbers(function, &args.args[0], args.number_rows)?;
    let edges = args.args[first_edge..]
        .iter()
        .map(|a| constant_f64(function, a, "a boundary"))
        .collect::<Result<Vec<_>>>()?;
    if edges.windows(2).any(|w| w[0] > w[1]) {
        return exec_err!("{function}: boundaries must be in ascending order");
    }
    let out: Float64Array = (0..x.len())
        .map(|i| {
            (x.is_valid(i) && !x.value(i).is_nan())
                .then(|| edges.partition_point(|e| *e <= x.value(i)) as f64)
        })
        .collect();
    Ok(ColumnarValue::Array(Arc::new(out)))
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BucketizeFunc {
    signature: Signature,
}

impl Default for BucketizeFunc {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for BucketizeFunc {
    fn name(&self) -> &str {
        "bucketize"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.len() < 2 {
            return plan_err!("bucketize(x, boundary, ...) needs at least one boundary");
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        buckets(self.name(), &args, 1)
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct QuantileBucketizeFunc {
    signature: Signature,
}

impl Default for QuantileBucketizeFunc {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for QuantileBucketizeFunc {
    fn name(&self) -> &str {
        "quantile_bucketize"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.len() {
            0 | 1 => plan_err!("quantile_bucketize(x, buckets) needs the number of buckets"),
            2 => unfitted(
                "quantile_bucketize(x, buckets)",
                "quantile_bucketize(x, buckets, edge, ...) or bucketize(x, edge, ...)",
            ),
            _ => Ok(DataType::Float64),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        buckets(self.name(), &args, 2)
    }
}
