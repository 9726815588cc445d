//! `impute(x, strategy, value)`: x, or `value` where x is NULL or NaN.
//! In a TRANSFORM, `impute(x)` or `impute(x, 'mean'|'median'|'most_frequent')`
//! learns `value` as scikit-learn's `SimpleImputer` does (default 'mean').

use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{constant_f64, numbers, unfitted};

/// The strategies `impute` fits.
pub const IMPUTE_STRATEGIES: &[&str] = &["mean", "median", "most_frequent"];

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ImputeFunc {
    signature: Signature,
}

impl Default for ImputeFunc {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ImputeFunc {
    fn name(&self) -> &str {
        "impute"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.len() {
            1 | 2 => unfitted(
                "impute(x)",
                "impute(x, 'constant', value) or coalesce(x, value)",
            ),
            3 => Ok(DataType::Float64),
            n => plan_err!("impute takes 1 or 2 arguments (in TRANSFORM) or 3, got {n}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let x = numbers(self.name(), &args.args[0], args.number_rows)?;
        let fill = constant_f64(self.name(), &args.args[2], "the fill value")?;
        let out: Float64Array = (0..x.len())
            .map(|i| {
                let v = x.value(i);
                Some(if x.is_null(i) || v.is_nan() { fill } else { v })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
