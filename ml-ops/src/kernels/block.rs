//! Gathering Arrow feature columns into dense row-major blocks.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, exec_err};

/// Rows per block: 28 features × 1024 rows × 8 bytes stays well inside L2.
pub const BLOCK_ROWS: usize = 1024;

/// One feature argument: a number per row, or a fixed-width vector per row
/// (what `one_hot`, `feature_hash` and `polynomial_expand` return).
enum Column {
    Scalar(ArrayRef),
    Vector {
        values: ArrayRef,
        width: usize,
        list: ArrayRef,
    },
}

/// Feature columns of one batch, checked and cast to Float64.
pub struct FeatureColumns {
    columns: Vec<Column>,
    names: Vec<String>,
    width: usize,
    rows: usize,
}

impl FeatureColumns {
    /// Casts `arrays` (numbers or fixed-size lists of numbers) to Float64.
    /// `names` name the features in errors.
    pub fn new(arrays: &[ArrayRef], names: &[String]) -> Result<Self> {
        let rows = arrays.first().map_or(0, |a| a.len());
        let mut columns = Vec::with_capacity(arrays.len());
        let mut width = 0;
        for (i, array) in arrays.iter().enumerate() {
            let name = names.get(i).map_or("?", String::as_str);
            match array.data_type() {
                DataType::FixedSizeList(_, size) => {
                    let list = array.as_fixed_size_list();
                    let values = cast(list.values(), &DataType::Float64)?;
                    let size = *size as usize;
                    width += size;
                    columns.push(Column::Vector {
                        values,
                        width: size,
                        list: array.clone(),
                    });
                }
                t if t.is_numeric() || *t == DataType::Boolean || *t == DataType::Null => {
                    width += 1;
                    columns.push(Column::Scalar(cast(array, &DataType::Float64)?));
                }
                other => {
                    return exec_err!(
                        "feature '{name}' is {other}, not a number: encode text with one_hot({name}) or feature_hash({name}, n)"
                    );
                }
            }
        }
        Ok(Self {
            columns,
            names: names.to_vec(),
            width,
            rows,
        })
    }

    /// Features per row after vectors are flattened.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Copies rows `start..start + block.rows` into `block`, row-major. NULL and NaN
    /// are errors naming the feature: a model cannot train or predict on them.
    pub fn gather(&self, start: usize, block: &mut FeatureBlock) -> Result<()> {
        let (rows, d) = (block.rows, self.width);
        let mut offset = 0;
        for i in 0..self.columns.len() {
            let (values, width) = self.checked(i, start, rows)?;
            // max(1): a zero-wide vector has no values to place (and chunks need a size).
            for (r, row) in values.chunks_exact(width.max(1)).enumerate() {
                block.values[r * d + offset..r * d + offset + width].copy_from_slice(row);
            }
            offset += width;
        }
        Ok(())
    }

    /// Copies rows `start..start + rows` into `out` column-major (feature `j` at
    /// `out[j·rows..(j+1)·rows]`), with the same NULL/NaN checks as [`Self::gather`].
    pub fn gather_columns(&self, start: usize, rows: usize, out: &mut [f64]) -> Result<()> {
        let mut j = 0;
        for i in 0..self.columns.len() {
            let (values, width) = self.checked(i, start, rows)?;
            // max(1): a zero-wide vector has no values to place (and chunks need a size).
            for (r, row) in values.chunks_exact(width.max(1)).enumerate() {
                for (w, v) in row.iter().enumerate() {
                    out[(j + w) * rows + r] = *v;
                }
            }
            j += width;
        }
        Ok(())
    }

    /// Every flattened feature's values, one vector per feature, NaN where a
    /// row's value is NULL (trees take NULL as a value of its own).
    pub fn values_with_nulls(&self) -> Vec<Vec<f64>> {
        let mut out = Vec::with_capacity(self.width);
        for column in &self.columns {
            match column {
                Column::Scalar(array) => {
                    let values = array.as_primitive::<Float64Type>();
                    out.push(
                        (0..self.rows)
                            .map(|r| {
                                if values.is_null(r) {
                                    f64::NAN
                                } else {
                                    values.value(r)
                                }
                            })
                            .collect(),
                    );
                }
                Column::Vector {
                    values,
                    width,
                    list,
                } => {
                    let list: &FixedSizeListArray = list.as_fixed_size_list();
                    let values = values.as_primitive::<Float64Type>();
                    for w in 0..*width {
                        out.push(
                            (0..self.rows)
                                .map(|r| {
                                    let i = (list.offset() + r) * width + w;
                                    if list.is_null(r) || values.is_null(i) {
                                        f64::NAN
                                    } else {
                                        values.value(i)
                                    }
                                })
                                .collect(),
                        );
                    }
                }
            }
        }
        out
    }

    /// Feature `i`'s values for rows `start..start + rows`, row-major with its
    /// width, once no NULL, NaN or infinity is among them.
    fn checked(&self, i: usize, start: usize, rows: usize) -> Result<(&[f64], usize)> {
        let (values, width) = match &self.columns[i] {
            Column::Scalar(array) => {
                if array.null_count() > 0 && (start..start + rows).any(|r| array.is_null(r)) {
                    return self.missing(i);
                }
                (
                    &array.as_primitive::<Float64Type>().values()[start..start + rows],
                    1,
                )
            }
            Column::Vector {
                values,
                width,
                list,
            } => {
                let list: &FixedSizeListArray = list.as_fixed_size_list();
                let values = values.as_primitive::<Float64Type>();
                if (list.null_count() > 0 && (start..start + rows).any(|r| list.is_null(r)))
                    || values.null_count() > 0
                {
                    return self.missing(i);
                }
                let first = (list.offset() + start) * width;
                (&values.values()[first..first + rows * width], *width)
            }
        };
        if values.iter().any(|v| !v.is_finite()) {
            return self.missing(i);
        }
        Ok((values, width))
    }

    fn missing<T>(&self, i: usize) -> Result<T> {
        let name = self.names.get(i).map_or("?", String::as_str);
        exec_err!(
            "feature '{name}' has a NULL, NaN or infinite value: filter those rows, or wrap it in impute({name}) for NULL and NaN"
        )
    }
}

/// A dense row-major block of feature rows.
pub struct FeatureBlock {
    /// `rows × width` values, row after row.
    pub values: Vec<f64>,
    /// Rows in use.
    pub rows: usize,
    /// Features per row.
    pub width: usize,
}

impl std::fmt::Debug for FeatureBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FeatureBlock({} rows of {})", self.rows, self.width)
    }
}

impl FeatureBlock {
    /// An empty block for rows of `width` features.
    pub fn new(width: usize) -> Self {
        Self {
            values: vec![0.0; width * BLOCK_ROWS],
            rows: 0,
            width,
        }
    }

    /// Prepares the block to receive `rows` rows (at most [`BLOCK_ROWS`]).
    pub fn resize(&mut self, rows: usize) {
        self.rows = rows;
    }

    /// Row `r`.
    pub fn row(&self, r: usize) -> &[f64] {
        &self.values[r * self.width..(r + 1) * self.width]
    }
}

/// Calls `f` on every block of the batch's rows.
pub fn for_each_block(
    columns: &FeatureColumns,
    block: &mut FeatureBlock,
    mut f: impl FnMut(usize, &FeatureBlock),
) -> Result<()> {
    let mut start = 0;
    while start < columns.rows() {
        let rows = BLOCK_ROWS.min(columns.rows() - start);
        block.resize(rows);
        columns.gather(start, block)?;
        f(start, block);
        start += rows;
    }
    Ok(())
}

/// Each row of the feature columns `arrays` (named `names`, for errors) as its
/// flattened feature vector.
pub fn feature_rows(arrays: &[ArrayRef], names: &[String]) -> Result<Vec<Vec<f64>>> {
    let columns = FeatureColumns::new(arrays, names)?;
    let mut block = FeatureBlock::new(columns.width());
    let mut rows = Vec::with_capacity(columns.rows());
    for_each_block(&columns, &mut block, |_, block| {
        for r in 0..block.rows {
            rows.push(block.row(r).to_vec());
        }
    })?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int32Array};
    use datafusion::arrow::datatypes::Field;
    use std::sync::Arc;

    #[test]
    fn gathers_scalars_and_vectors_row_major() {
        let a: ArrayRef = Arc::new(Int32Array::from(vec![1, 2]));
        let values = Arc::new(Float64Array::from(vec![10.0, 11.0, 20.0, 21.0]));
        let field = Arc::new(Field::new("item", DataType::Float64, true));
        let v: ArrayRef = Arc::new(FixedSizeListArray::new(field, 2, values, None));
        let columns = FeatureColumns::new(&[a, v], &["a".into(), "v".into()]).unwrap();
        assert_eq!(columns.width(), 3);
        let mut block = FeatureBlock::new(3);
        let mut seen = vec![];
        for_each_block(&columns, &mut block, |_, b| {
            seen.extend_from_slice(&b.values[..b.rows * 3])
        })
        .unwrap();
        assert_eq!(seen, vec![1.0, 10.0, 11.0, 2.0, 20.0, 21.0]);
    }

    #[test]
    fn null_and_nan_name_the_feature() {
        let a: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.0), None]));
        let columns = FeatureColumns::new(&[a], &["age".into()]).unwrap();
        let mut block = FeatureBlock::new(1);
        let err = for_each_block(&columns, &mut block, |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'age'") && err.contains("impute(age)"),
            "{err}"
        );
        let a: ArrayRef = Arc::new(Float64Array::from(vec![f64::NAN]));
        let columns = FeatureColumns::new(&[a], &["x".into()]).unwrap();
        assert!(for_each_block(&columns, &mut block, |_, _| {}).is_err());
    }

    #[test]
    fn text_is_refused_with_a_hint() {
        let a: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(vec!["a"]));
        let err = FeatureColumns::new(&[a], &["plan".into()])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("one_hot(plan)"), "{err}");
    }
}
