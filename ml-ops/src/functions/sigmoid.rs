//! `sigmoid(x)`: the logistic function 1 / (1 + e^-x), the link of logistic regression.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::utils::take_function_args;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::kernels::logistic::sigmoid;

/// `sigmoid(x)` for a numeric `x` (coerced to Float64); NULL in, NULL out.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SigmoidFunc {
    signature: Signature,
}

impl Default for SigmoidFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl SigmoidFunc {
    pub fn new() -> Self {
        Self {
            signature: Signature::uniform(1, vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for SigmoidFunc {
    fn name(&self) -> &str {
        "sigmoid"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [x] = take_function_args(self.name(), args.args)?;
        match x {
            ColumnarValue::Scalar(scalar) => match scalar.cast_to(&DataType::Float64)? {
                ScalarValue::Float64(v) => {
                    Ok(ColumnarValue::Scalar(ScalarValue::Float64(v.map(sigmoid))))
                }
                other => exec_err!("sigmoid expects a number, got {}", other.data_type()),
            },
            ColumnarValue::Array(array) => {
                let values = array.as_primitive::<Float64Type>();
                let out: Float64Array = values.unary(sigmoid);
                Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sigmoid;

    #[test]
    fn closed_form_values() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!((sigmoid(2.0) - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-15);
        assert!((sigmoid(-2.0) + sigmoid(2.0) - 1.0).abs() < 1e-15);
    }

    #[test]
    fn extreme_inputs_do_not_overflow() {
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert!(sigmoid(-745.0) >= 0.0);
    }
}
