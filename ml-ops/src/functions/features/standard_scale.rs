//! `standard_scale(x, mean, stddev)`: (x − mean) / stddev, scikit-learn's
//! `StandardScaler` (population deviation; a zero deviation leaves x − mean).

use std::sync::Arc;

use datafusion::arrow::array::Float64Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{constant_f64, numbers, unfitted};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StandardScaleFunc {
    signature: Signature,
}

impl Default for StandardScaleFunc {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for StandardScaleFunc {
    fn name(&self) -> &str {
        "standard_scale"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.len() {
            1 => unfitted("standard_scale(x)", "standard_scale(x, mean, stddev)"),
            3 => Ok(DataType::Float64),
            n => plan_err!("standard_scale takes 1 argument (in TRANSFORM) or 3, got {n}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let x = numbers(self.name(), &args.args[0], args.number_rows)?;
        let mean = constant_f64(self.name(), &args.args[1], "the mean")?;
        let std = constant_f64(self.name(), &args.args[2], "the deviation")?;
        let std = if std == 0.0 { 1.0 } else { std };
        let out: Float64Array = x.unary(|v| (v - mean) / std);
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
