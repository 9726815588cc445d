//! Feature functions: one SQL function a file.
//!
//! Those that need statistics of the data (`standard_scale`, `min_max_scale`,
//! `impute`, `one_hot`, `quantile_bucketize`) have two forms. Written in a
//! TRANSFORM without them (`standard_scale(x)`), CREATE MODEL fits the statistics
//! over the training rows and stores the call with them written in
//! (`standard_scale(x, 3.5, 1.2)`), which is the form that runs, on its own or
//! inside `predict`. Vector-valued functions return `FixedSizeList<Float64>`.

mod bucketize;
mod feature_hash;
mod impute;
mod min_max_scale;
mod one_hot;
mod polynomial_expand;
mod standard_scale;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, FixedSizeListArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::ColumnarValue;

pub use bucketize::{BucketizeFunc, QuantileBucketizeFunc};
pub use feature_hash::FeatureHashFunc;
pub use impute::{IMPUTE_STRATEGIES, ImputeFunc};
pub use min_max_scale::MinMaxScaleFunc;
pub use one_hot::{MAX_CATEGORIES, OneHotFunc};
pub use polynomial_expand::{PolynomialExpandFunc, monomials};
pub use standard_scale::StandardScaleFunc;

/// Names of the feature functions whose statistics CREATE MODEL fits.
pub const FITTED_FEATURE_FUNCTIONS: &[&str] = &[
    "standard_scale",
    "min_max_scale",
    "impute",
    "one_hot",
    "quantile_bucketize",
];

/// The error for a fitted function called without its statistics.
pub(crate) fn unfitted<T>(call: &str, bound: &str) -> Result<T> {
    datafusion::common::plan_err!(
        "{call} learns its statistics inside CREATE MODEL ... TRANSFORM; on its own, give them: {bound}"
    )
}

/// The value of a constant argument as a float.
pub(crate) fn constant_f64(function: &str, arg: &ColumnarValue, what: &str) -> Result<f64> {
    match arg {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Float64) {
            Ok(ScalarValue::Float64(Some(v))) => Ok(v),
            _ => exec_err!("{function}: {what} must be a number, not {s}"),
        },
        ColumnarValue::Array(_) => exec_err!("{function}: {what} must be a constant"),
    }
}

/// The value of a constant argument as text.
pub(crate) fn constant_text(function: &str, arg: &ColumnarValue, what: &str) -> Result<String> {
    match arg {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Utf8) {
            Ok(ScalarValue::Utf8(Some(v))) => Ok(v),
            _ => exec_err!("{function}: {what} must be text, not {s}"),
        },
        ColumnarValue::Array(_) => exec_err!("{function}: {what} must be a constant"),
    }
}

/// The values of the input column as Float64.
pub(crate) fn numbers(function: &str, arg: &ColumnarValue, rows: usize) -> Result<Float64Array> {
    let array = arg.to_array(rows)?;
    let t = array.data_type();
    if !(t.is_numeric() || *t == DataType::Boolean || *t == DataType::Null) {
        return exec_err!("{function} takes a number, not {t}");
    }
    Ok(cast(&array, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

/// The `FixedSizeList<Float64>` type of `width`-wide vectors.
pub(crate) fn vector_type(width: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float64, true)),
        width as i32,
    )
}

/// `rows` vectors of `width` values, row-major, as a `FixedSizeList<Float64>`.
pub(crate) fn vectors(values: Vec<f64>, width: usize) -> ArrayRef {
    let field = Arc::new(Field::new("item", DataType::Float64, true));
    Arc::new(FixedSizeListArray::new(
        field,
        width as i32,
        Arc::new(Float64Array::from(values)),
        None,
    ))
}
