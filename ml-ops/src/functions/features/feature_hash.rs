//! `feature_hash(x, buckets)`: a vector of `buckets` zeros with a 1 at a stable
//! hash of x's text (all zeros for NULL): one-hot encoding for categories too
//! many or too open to list, needing no fitting.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use std::sync::Arc;

use super::{vector_type, vectors};
use crate::hashing::StableHasher;

/// The most buckets feature_hash makes.
pub const MAX_BUCKETS: usize = 1 << 20;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FeatureHashFunc {
    signature: Signature,
}

impl Default for FeatureHashFunc {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

fn bucket_count(value: Option<&ScalarValue>) -> Result<usize> {
    match value.map(|v| v.cast_to(&DataType::Int64)) {
        Some(Ok(ScalarValue::Int64(Some(n)))) if n >= 1 && n as usize <= MAX_BUCKETS => {
            Ok(n as usize)
        }
        _ => plan_err!(
            "feature_hash(x, buckets): buckets must be a whole number from 1 to {MAX_BUCKETS}"
        ),
    }
}

/// The bucket of `text` among `buckets`.
pub fn hash_bucket(text: &str, buckets: usize) -> usize {
    let mut hasher = StableHasher::new(0);
    hasher.write(text.as_bytes());
    (hasher.finish() % buckets as u64) as usize
}

impl ScalarUDFImpl for FeatureHashFunc {
    fn name(&self) -> &str {
        "feature_hash"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!("feature_hash is typed from its arguments")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if args.arg_fields.len() != 2 {
            return plan_err!(
                "feature_hash(x, buckets) takes 2 arguments, got {}",
                args.arg_fields.len()
            );
        }
        let buckets = bucket_count(args.scalar_arguments[1])?;
        Ok(Arc::new(Field::new(
            self.name(),
            vector_type(buckets),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let buckets = match &args.args[1] {
            ColumnarValue::Scalar(s) => bucket_count(Some(s))?,
            ColumnarValue::Array(_) => {
                return plan_err!("feature_hash: buckets must be a constant");
            }
        };
        let x = cast(&args.args[0].to_array(args.number_rows)?, &DataType::Utf8)?;
        let x = x.as_string::<i32>();
        let mut values = vec![0.0; x.len() * buckets];
        for row in 0..x.len() {
            if x.is_valid(row) {
                values[row * buckets + hash_bucket(x.value(row), buckets)] = 1.0;
            }
        }
        Ok(ColumnarValue::Array(vectors(values, buckets)))
    }
}
