//! `polynomial_expand(x1, ..., xk [, degree])`: every product of the inputs of
//! degree 1 to `degree` (default 2), in scikit-learn's
//! `PolynomialFeatures(degree, include_bias=False)` order. A trailing integer
//! literal is the degree.

use datafusion::arrow::array::{Array, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use std::sync::Arc;

use super::{numbers, vector_type, vectors};

/// The widest expansion polynomial_expand makes.
pub const MAX_TERMS: usize = 100_000;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PolynomialExpandFunc {
    signature: Signature,
}

impl Default for PolynomialExpandFunc {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

/// Index tuples of every monomial, degree by degree, each tuple non-decreasing
/// (`itertools.combinations_with_replacement` order).
pub fn monomials(inputs: usize, degree: usize) -> Vec<Vec<usize>> {
    let mut all = Vec::new();
    let mut level: Vec<Vec<usize>> = (0..inputs).map(|i| vec![i]).collect();
    for _ in 1..degree {
        all.extend(level.iter().cloned());
        let next = level
            .iter()
            .flat_map(|t| {
                let last = *t.last().expect("non-empty");
                (last..inputs).map(move |i| {
                    let mut t = t.clone();
                    t.push(i);
                    t
                })
            })
            .collect();
        level = next;
    }
    all.extend(level);
    all
}

/// (inputs, degree) from the argument types and constants.
fn shape(types: &[DataType], last: Option<&ScalarValue>) -> Result<(usize, usize)> {
    let n = types.len();
    let degree_given = n >= 2 && types[n - 1].is_integer() && last.is_some();
    let (inputs, degree) = if degree_given {
        match last.and_then(|v| v.cast_to(&DataType::Int64).ok()) {
            Some(ScalarValue::Int64(Some(d))) if (1..=10).contains(&d) => (n - 1, d as usize),
            _ => {
                return plan_err!(
                    "polynomial_expand: the degree must be a whole number from 1 to 10"
                );
            }
        }
    } else {
        (n, 2)
    };
    if inputs == 0 {
        return plan_err!("polynomial_expand needs at least one input");
    }
    Ok((inputs, degree))
}

impl ScalarUDFImpl for PolynomialExpandFunc {
    fn name(&self) -> &str {
        "polynomial_expand"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!("polynomial_expand is typed from its arguments")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let (inputs, degree) = shape(&types, args.scalar_arguments.last().copied().flatten())?;
        let terms = monomials(inputs, degree).len();
        if terms > MAX_TERMS {
            return plan_err!("polynomial_expand: {terms} terms is more than {MAX_TERMS}");
        }
        Ok(Arc::new(Field::new(self.name(), vector_type(terms), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let last = match args.args.last() {
            Some(ColumnarValue::Scalar(s)) => Some(s.clone()),
            _ => None,
        };
        let (inputs, degree) = shape(&types, last.as_ref())?;
        let columns = args.args[..inputs]
            .iter()
            .map(|a| numbers(self.name(), a, args.number_rows))
            .collect::<Result<Vec<Float64Array>>>()?;
        let terms = monomials(inputs, degree);
        let rows = args.number_rows;
        let mut values = Vec::with_capacity(rows * terms.len());
        for row in 0..rows {
            if columns.iter().any(|c| c.is_null(row)) {
                return exec_err!("polynomial_expand: an input is NULL; impute it first");
            }
            for term in &terms {
                values.push(term.iter().map(|&i| columns[i].value(row)).product());
            }
        }
        Ok(ColumnarValue::Array(vectors(values, terms.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_matches_scikit_learn() {
        assert_eq!(
            monomials(2, 2),
            vec![vec![0], vec![1], vec![0, 0], vec![0, 1], vec![1, 1]]
        );
        assert_eq!(monomials(3, 3).len(), 3 + 6 + 10);
    }
}
