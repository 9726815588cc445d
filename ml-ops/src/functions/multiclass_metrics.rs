//! `multiclass_metrics(probabilities, label)`: EVALUATE's metrics of a
//! multiclass classifier, as a list in [`MetricsFamily::names`] order
//! (accuracy, macro precision, recall and F1, log-loss, one-vs-rest macro
//! AUC; see [`crate::metrics::multiclass`]). `probabilities` is what
//! `predict_probabilities` returns (or a list of numbers), `label` the class
//! index. Exact, as `roc_auc`: partitions gather every row's probabilities
//! and label, the final stage measures them once (8 bytes a class and row).
//!
//! [`MetricsFamily::names`]: crate::models::MetricsFamily::names

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

use super::roc_auc::{as_list, list_field};
use crate::metrics::multiclass;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MulticlassMetricsFunc {
    signature: Signature,
}

impl Default for MulticlassMetricsFunc {
    fn default() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

fn list_type() -> DataType {
    DataType::List(list_field())
}

impl AggregateUDFImpl for MulticlassMetricsFunc {
    fn name(&self) -> &str {
        "multiclass_metrics"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !matches!(arg_types[0], DataType::List(_) | DataType::Null) {
            return plan_err!(
                "multiclass_metrics(probabilities, label) takes a list of probabilities, not {}",
                arg_types[0]
            );
        }
        Ok(list_type())
    }

    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new("probabilities", list_type(), true)),
            Arc::new(Field::new("labels", list_type(), true)),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(MulticlassAccumulator::default()))
    }
}

#[derive(Debug, Default)]
struct MulticlassAccumulator {
    /// Every row's probabilities, row by row.
    probabilities: Vec<f64>,
    labels: Vec<f64>,
}

impl MulticlassAccumulator {
    fn classes(&self) -> usize {
        self.probabilities.len() / self.labels.len().max(1)
    }
}

impl Accumulator for MulticlassAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if values[0].data_type() == &DataType::Null {
            return Ok(());
        }
        let lists = values[0].as_list::<i32>();
        // predict_probabilities' entries are (label, probability) pairs.
        let entries = match lists.values().as_struct_opt() {
            Some(pairs) => match pairs.column_by_name("probability") {
                Some(p) => p.clone(),
                None => return exec_err!("multiclass_metrics: entries have no 'probability'"),
            },
            None => lists.values().clone(),
        };
        let entries = cast(&entries, &DataType::Float64)?;
        let entries = entries.as_primitive::<Float64Type>();
        let labels = cast(&values[1], &DataType::Float64)?;
        let labels = labels.as_primitive::<Float64Type>();
        let offsets = lists.value_offsets();
        for i in 0..lists.len() {
            if lists.is_null(i) || labels.is_null(i) {
                continue;
            }
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            let classes = end - start;
            let label = labels.value(i);
            if label.fract() != 0.0 || label < 0.0 || label >= classes as f64 {
                return exec_err!("multiclass_metrics: label {label} is no class of {classes}");
            }
            if !self.labels.is_empty() && classes != self.classes() {
                return exec_err!(
                    "multiclass_metrics: rows of {classes} and {} classes",
                    self.classes()
                );
            }
            self.probabilities
                .extend((start..end).map(|j| entries.value(j)));
            self.labels.push(label);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.labels.is_empty() {
            return Ok(ScalarValue::List(Arc::new(ListArray::new_null(
                list_field(),
                1,
            ))));
        }
        let values = multiclass(self.classes(), &self.probabilities, &self.labels);
        let list = ListArray::new(
            list_field(),
            OffsetBuffer::from_lengths([values.len()]),
            Arc::new(Float64Array::from(values)),
            None,
        );
        Ok(ScalarValue::List(Arc::new(list)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + (self.probabilities.capacity() + self.labels.capacity()) * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![as_list(&self.probabilities), as_list(&self.labels)])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (probabilities, labels) = (states[0].as_list::<i32>(), states[1].as_list::<i32>());
        for i in 0..probabilities.len() {
            if probabilities.is_null(i) || labels.is_null(i) {
                continue;
            }
            let labels = labels.value(i);
            let labels = labels.as_primitive::<Float64Type>().values();
            if labels.is_empty() {
                continue;
            }
            let part = probabilities.value(i);
            let part = part.as_primitive::<Float64Type>().values();
            let classes = part.len() / labels.len();
            if !self.labels.is_empty() && classes != self.classes() {
                return exec_err!(
                    "multiclass_metrics: rows of {classes} and {} classes",
                    self.classes()
                );
            }
            self.probabilities.extend(part.iter());
            self.labels.extend(labels.iter());
        }
        Ok(())
    }
}
