//! `min_max_scale(x, min, max)`: (x − min) / (max − min), scikit-learn's
//! `MinMaxScaler` (a zero range leaves x − min).

use std::sync::Arc;

use datafusion::arrow::array::Float64Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{constant_f64, numbers, unfitted};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MinMaxScaleFunc {
    signature: Signature,
}

impl Default for MinMaxScaleFunc {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for MinMaxScaleFunc {
    fn name(&self) -> &str {
        "min_max_scale"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.len() {
            1 => unfitted("min_max_scale(x)", "min_max_scale(x, min, max)"),
            3 => Ok(DataType::Float64),
            n => plan_err!("min_max_scale takes 1 argument (in TRANSFORM) or 3, got {n}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let x = numbers(self.name(), &args.args[0], args.number_rows)?;
        let min = constant_f64(self.name(), &args.args[1], "the minimum")?;
        let max = constant_f64(self.name(), &args.args[2], "the maximum")?;
        let range = if max == min { 1.0 } else { max - min };
        let out: Float64Array = x.unary(|v| (v - min) / range);
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
