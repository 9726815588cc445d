//! What a classifier's prediction functions return, whatever the model type:
//! the class as the label gave it (`predict`), the probability of class 1 of
//! a binary model or of the predicted class of a multiclass one
//! (`predict_proba`), and every class with its probability
//! (`predict_probabilities`, as BigQuery ML's `predicted_label_probs`).
//!
//! A model stores its classes as text in the label's order; a label that was
//! numbers 0 and 1 stores none (class i is the number i).

use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, ListArray, StringArray, StructArray, UInt32Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{Result, exec_err};

use super::{BoundModel, PredictOutput};

/// The most classes a classifier's label may have.
pub const MAX_CLASSES: usize = 1000;

/// What a classifier computed for each row.
pub enum ClassScores {
    /// Two classes: the probability of class 1, and whether class 1 is
    /// predicted (decided on the margin, free of the probability's rounding).
    Binary {
        probabilities: Vec<f64>,
        ones: Vec<bool>,
    },
    /// `classes` classes: each row's probabilities, row by row.
    Multi {
        classes: usize,
        probabilities: Vec<f64>,
    },
}

impl ClassScores {
    /// Multiclass scores from margins laid out class by class (`classes` ×
    /// rows): each row's softmax.
    pub fn softmax(classes: usize, margins: &[f64]) -> Self {
        let rows = margins.len() / classes.max(1);
        let mut probabilities = vec![0.0; margins.len()];
        for (r, row) in probabilities.chunks_mut(classes).enumerate() {
            for (c, p) in row.iter_mut().enumerate() {
                *p = margins[c * rows + r];
            }
            softmax_in_place(row);
        }
        ClassScores::Multi {
            classes,
            probabilities,
        }
    }

    /// Multiclass scores from a forest's class shares laid out class by class
    /// (`classes` × rows): each clipped to [0, 1], then scaled to sum to 1
    /// (evenly spread where every share is 0).
    pub fn shares(classes: usize, margins: &[f64]) -> Self {
        let rows = margins.len() / classes.max(1);
        let mut probabilities = vec![0.0; margins.len()];
        for (r, row) in probabilities.chunks_mut(classes).enumerate() {
            for (c, p) in row.iter_mut().enumerate() {
                *p = margins[c * rows + r].clamp(0.0, 1.0);
            }
            let total: f64 = row.iter().sum();
            for p in row.iter_mut() {
                *p = if total > 0.0 {
                    *p / total
                } else {
                    1.0 / classes as f64
                };
            }
        }
        ClassScores::Multi {
            classes,
            probabilities,
        }
    }

    /// Each row's predicted class: the most probable (the first on a tie, as
    /// numpy's `argmax`).
    pub fn predicted(&self) -> Vec<usize> {
        match self {
            ClassScores::Binary { ones, .. } => ones.iter().map(|&one| usize::from(one)).collect(),
            ClassScores::Multi {
                classes,
                probabilities,
            } => probabilities.chunks(*classes).map(argmax).collect(),
        }
    }

    /// Each row's probabilities of every class, row by row.
    fn all(self) -> (usize, Vec<f64>) {
        match self {
            ClassScores::Binary { probabilities, .. } => (
                2,
                probabilities.iter().flat_map(|p| [1.0 - p, *p]).collect(),
            ),
            ClassScores::Multi {
                classes,
                probabilities,
            } => (classes, probabilities),
        }
    }
}

/// The index of the largest value, the first of equals.
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// `z` ← softmax(`z`), stable for large margins.
pub fn softmax_in_place(z: &mut [f64]) {
    let top = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - top).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
}

/// The Arrow type of a class as `predict` returns it: booleans and numbers
/// as the label's type, text of any kind (Utf8View from Parquet) as Utf8,
/// and 0/1 (no stored classes) as Int64.
pub fn class_type(label_type: Option<&str>) -> DataType {
    match label_type.map(DataType::from_str) {
        None => DataType::Int64,
        Some(Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)) | Some(Err(_)) => {
            DataType::Utf8
        }
        Some(Ok(t)) => t,
    }
}

/// `predict_probabilities`' type: a list of (label, probability), one per class.
fn probabilities_type(label_type: Option<&str>) -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(probability_fields(label_type)),
        true,
    )))
}

fn probability_fields(label_type: Option<&str>) -> Fields {
    Fields::from(vec![
        Field::new("label", class_type(label_type), true),
        Field::new("probability", DataType::Float64, true),
    ])
}

/// What a classifier's `output` returns, for a label of `label_type`.
pub fn classifier_output_type(output: PredictOutput, label_type: Option<&str>) -> DataType {
    match output {
        PredictOutput::Value => class_type(label_type),
        PredictOutput::Probability => DataType::Float64,
        PredictOutput::Probabilities => probabilities_type(label_type),
    }
}

impl BoundModel {
    /// The classes with these indices, as the label gave them: the classes
    /// cast to the label's type once, then taken by index.
    pub fn labels_of(&self, indices: &[usize]) -> Result<ArrayRef> {
        if self.classes.is_empty() {
            return Ok(Arc::new(
                indices.iter().map(|&i| i as i64).collect::<Int64Array>(),
            ));
        }
        if let Some(bad) = indices.iter().find(|&&i| i >= self.classes.len()) {
            return exec_err!("model '{}' has no class {bad}", self.name);
        }
        let text: ArrayRef = Arc::new(StringArray::from(self.classes.clone()));
        let classes = cast(&text, &class_type(self.label_type.as_deref()))?;
        let indices: UInt32Array = indices.iter().map(|&i| i as u32).collect();
        Ok(take(&classes, &indices, None)?)
    }

    /// What `output` returns for rows scored `scores`.
    pub fn classify(&self, output: PredictOutput, scores: ClassScores) -> Result<ArrayRef> {
        match output {
            PredictOutput::Value => self.labels_of(&scores.predicted()),
            PredictOutput::Probability => Ok(match scores {
                ClassScores::Binary { probabilities, .. } => {
                    Arc::new(Float64Array::from(probabilities))
                }
                ClassScores::Multi {
                    classes,
                    probabilities,
                } => Arc::new(
                    probabilities
                        .chunks(classes)
                        .map(|row| row[argmax(row)])
                        .collect::<Float64Array>(),
                ),
            }),
            PredictOutput::Probabilities => self.probabilities(scores),
        }
    }

    /// Every class with its probability, in the model's class order, per row.
    fn probabilities(&self, scores: ClassScores) -> Result<ArrayRef> {
        let (classes, probabilities) = scores.all();
        let rows = probabilities.len() / classes;
        let every: Vec<usize> = (0..rows).flat_map(|_| 0..classes).collect();
        let entries = StructArray::try_new(
            probability_fields(self.label_type.as_deref()),
            vec![
                self.labels_of(&every)?,
                Arc::new(Float64Array::from(probabilities)),
            ],
            None,
        )?;
        let field = match probabilities_type(self.label_type.as_deref()) {
            DataType::List(field) => field,
            _ => unreachable!("a list type"),
        };
        Ok(Arc::new(ListArray::try_new(
            field,
            OffsetBuffer::from_lengths(std::iter::repeat_n(classes, rows)),
            Arc::new(entries),
            None,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let mut z = [1000.0, 1000.0, -1000.0];
        softmax_in_place(&mut z);
        assert_eq!(z, [0.5, 0.5, 0.0]);
        let mut z = [0.0, 2f64.ln()];
        softmax_in_place(&mut z);
        assert!((z[0] - 1.0 / 3.0).abs() < 1e-15 && (z[1] - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn ties_go_to_the_first_class() {
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
    }

    #[test]
    fn class_types_follow_the_label() {
        assert_eq!(class_type(None), DataType::Int64);
        assert_eq!(class_type(Some("Utf8View")), DataType::Utf8);
        assert_eq!(class_type(Some("Boolean")), DataType::Boolean);
        assert_eq!(class_type(Some("Int32")), DataType::Int32);
        assert_eq!(class_type(Some("Float64")), DataType::Float64);
    }
}
