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

fn list_field() -> FieldRef {
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

fn as_list(values: &[f64]) -> ScalarValue {
    let list = ListArray::new(
        list_field(),
        OffsetBuffer::from_lengths([values.len()]),
        Arc::new(Float64Array::from(values.to_vec())),
        None,
    );
    ScalarValue::List(Arc::new(list))
}

/// The AUC of `scores` for binary `labels` (1 = positive), ties averaged.
pub fn roc_auc(scores: &[f64], labels: &[f64]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = labels.iter().filter(|&&l| l == 1.0).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let rank = (i + j + 2) as f64 / 2.0;
        rank_sum += rank * order[i..=j].iter().filter(|&&k| labels[k] == 1.0).count() as f64;
        i = j + 1;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_values() {
        // scikit-learn: roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[0.0, 0.0, 1.0, 1.0]),
            Some(0.75)
        );
        // A tie between a positive and a negative counts half.
        assert_eq!(roc_auc(&[0.5, 0.5], &[0.0, 1.0]), Some(0.5));
        assert_eq!(roc_auc(&[0.1, 0.2], &[1.0, 1.0]), None);
    }
}
