//! `one_hot(x, 'c1', 'c2', ...)`: a vector with 1 at x's category and 0 elsewhere
//! (all zeros for NULL or a category not seen in training), scikit-learn's
//! `OneHotEncoder(handle_unknown='ignore')`. Categories compare as text; in a
//! TRANSFORM, `one_hot(x)` learns them, sorted as scikit-learn sorts them.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{constant_text, unfitted, vector_type, vectors};

/// The most categories one_hot keeps; beyond this, `feature_hash` is the tool.
pub const MAX_CATEGORIES: usize = 10_000;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct OneHotFunc {
    signature: Signature,
}

impl Default for OneHotFunc {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for OneHotFunc {
    fn name(&self) -> &str {
        "one_hot"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.len() {
            0 => plan_err!("one_hot needs a column"),
            1 => unfitted("one_hot(x)", "one_hot(x, 'category', ...)"),
            n if n - 1 > MAX_CATEGORIES => plan_err!(
                "one_hot: {} categories is more than {MAX_CATEGORIES}; use feature_hash(x, buckets)",
                n - 1
            ),
            n => Ok(vector_type(n - 1)),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let categories = args.args[1..]
            .iter()
            .map(|a| constant_text(self.name(), a, "a category"))
            .collect::<Result<Vec<_>>>()?;
        let index: HashMap<&str, usize> = categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let width = categories.len();
        let x = cast(&args.args[0].to_array(args.number_rows)?, &DataType::Utf8)?;
        let x = x.as_string::<i32>();
        let mut values = vec![0.0; x.len() * width];
        for row in 0..x.len() {
            if x.is_valid(row)
                && let Some(&i) = index.get(x.value(row))
            {
                values[row * width + i] = 1.0;
            }
        }
        Ok(ColumnarValue::Array(vectors(values, width)))
    }
}
