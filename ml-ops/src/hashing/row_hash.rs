//! `ember_row_hash(seed, columns...)`: a seeded hash of a row's values as a number
//! in [0, 1), the same on any partitioning. `data_split = 'random'` holds out the
//! rows whose hash is below `eval_fraction`; k-means starts from the rows with the
//! smallest hashes.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::hashing::StableHasher;

/// The name the function is registered under.
pub const ROW_HASH: &str = "ember_row_hash";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RowHashFunc {
    signature: Signature,
}

impl Default for RowHashFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl RowHashFunc {
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

/// Mixes row `row` of `array` (already normalised by [`normalise`]) into `hasher`.
fn write_value(hasher: &mut StableHasher, array: &ArrayRef, row: usize) {
    if array.is_null(row) {
        hasher.write_null();
        return;
    }
    match array.data_type() {
        DataType::Float64 => hasher.write_f64(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => hasher.write(array.as_string::<i32>().value(row).as_bytes()),
        DataType::FixedSizeList(_, _) => {
            let list = array.as_fixed_size_list().value(row);
            for v in list.as_primitive::<Float64Type>().iter() {
                hasher.write_f64(v.unwrap_or(f64::NAN));
            }
        }
        _ => unreachable!("normalised"),
    }
}

/// Numbers to Float64 (so 1 and 1.0 hash alike), vectors to Float64 vectors,
/// everything else to text.
fn normalise(array: &ArrayRef) -> Result<ArrayRef> {
    let t = array.data_type();
    if t.is_numeric() || *t == DataType::Boolean || *t == DataType::Null {
        Ok(cast(array, &DataType::Float64)?)
    } else if let DataType::FixedSizeList(field, size) = t {
        let target = DataType::FixedSizeList(
            Arc::new(field.as_ref().clone().with_data_type(DataType::Float64)),
            *size,
        );
        Ok(cast(array, &target)?)
    } else {
        Ok(cast(array, &DataType::Utf8)?)
    }
}

/// The seeded hash of each row of `columns` in [0, 1), as `ember_row_hash`
/// computes it.
pub fn row_hashes(seed: u64, columns: &[ArrayRef]) -> Result<Vec<f64>> {
    let rows = columns.first().map_or(0, |c| c.len());
    let columns = columns.iter().map(normalise).collect::<Result<Vec<_>>>()?;
    Ok((0..rows)
        .map(|row| {
            let mut hasher = StableHasher::new(seed);
            for column in &columns {
                write_value(&mut hasher, column, row);
            }
            hasher.finish_unit()
        })
        .collect())
}

impl ScalarUDFImpl for RowHashFunc {
    fn name(&self) -> &str {
        ROW_HASH
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.len() < 2 || !arg_types[0].is_integer() {
            return plan_err!(
                "{ROW_HASH}(seed, column, ...) takes an integer seed and at least one column"
            );
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let seed = match &args.args[0] {
            ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(seed)) => seed as u64,
                _ => return exec_err!("{ROW_HASH}: the seed must be a non-NULL integer"),
            },
            ColumnarValue::Array(_) => return exec_err!("{ROW_HASH}: the seed must be a constant"),
        };
        let columns = args.args[1..]
            .iter()
            .map(|c| c.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let hashes = Float64Array::from(row_hashes(seed, &columns)?);
        Ok(ColumnarValue::Array(Arc::new(hashes)))
    }
}
