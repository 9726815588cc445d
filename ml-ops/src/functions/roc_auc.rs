//! `roc_auc(score, label)`: the area under the ROC curve, as scikit-learn's
//! `roc_auc_score` (ties between scores count half; NULL when only one class is
//! present). Exact: partitions gather (score, label) pairs, the final stage sorts
//! them once and sums the ranks of the positives (Mann-Whitney U). Memory is
//! 16 bytes a row at the final stage.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

use crate::metrics::roc_auc;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RocAucFunc {
    signature: Signature,
}

impl Default for RocAucFunc {
    fn default() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

pub(super) fn list_field() -> FieldRef {
    Arc::new(Field::new("item", DataType::Float64, true))
}

impl AggregateUDFImpl for RocAucFunc {
    fn name(&self) -> &str {
        "roc_auc"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        for t in arg_types {
            if !(t.is_numeric() || *t == DataType::Boolean || *t == DataType::Null) {
                return plan_err!("roc_auc(score, label) takes numbers, not {t}");
            }
        }
        Ok(DataType::Float64)
    }

    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new("scores", DataType::List(list_field()), true)),
            Arc::new(Field::new("labels", DataType::List(list_field()), true)),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(RocAucAccumulator::default()))
    }
}

#[derive(Debug, Default)]
struct RocAucAccumulator {
    scores: Vec<f64>,
    labels: Vec<f64>,
}

pub(super) fn as_list(values: &[f64]) -> ScalarValue {
    let list = ListArray::new(
        list_field(),
        OffsetBuffer::from_lengths([values.len()]),
        Arc::new(Float64Array::from(values.to_vec())),
        None,
    );
    ScalarValue::List(Arc::new(list))
}

impl Accumulator for RocAucAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let scores = cast(&values[0], &DataType::Float64)?;
        let labels = cast(&values[1], &DataType::Float64)?;
        let scores = scores.as_primitive::<Float64Type>();
        let labels = labels.as_primitive::<Float64Type>();
        for i in 0..scores.len() {
            if scores.is_null(i) || labels.is_null(i) {
                continue;
            }
            let label = labels.value(i);
            if label != 0.0 && label != 1.0 {
                return exec_err!("roc_auc: labels must be 0 or 1, found {label}");
            }
            self.scores.push(scores.value(i));
            self.labels.push(label);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(roc_auc(&self.scores, &self.labels)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + (self.scores.capacity() + self.labels.capacity()) * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![as_list(&self.scores), as_list(&self.labels)])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (scores, labels) = (states[0].as_list::<i32>(), states[1].as_list::<i32>());
        for i in 0..scores.len() {
            if scores.is_null(i) {
                continue;
            }
            self.scores.extend(
                scores
                    .value(i)
                    .as_primitive::<Float64Type>()
                    .values()
                    .iter(),
            );
            self.labels.extend(
                labels
                    .value(i)
                    .as_primitive::<Float64Type>()
                    .values()
                    .iter(),
            );
        }
        Ok(())
    }
}
