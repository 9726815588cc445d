//! `confusion_matrix('model' [, 'query'])`: how a classifier's predictions
//! fall against the labels, as BigQuery ML's `ML.CONFUSION_MATRIX` shows it:
//! a row per label class (`expected_label`), a column per predicted class,
//! each cell the number of rows. Over the model's held-out rows (all its
//! training query's rows without a split), or the query's.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use datafusion::common::{Result, plan_err};
use ember_ml_ops::models::LabelKind;

use super::evaluate::{collect_with, model_call, rows_to_measure};
use super::sql_text::{class_index, ident};
use super::{MlContext, MlOutput};

pub async fn confusion_matrix(ml: &MlContext, name: &str, on: Option<&str>) -> Result<MlOutput> {
    let model = ml.store.load_ref(name).await?;
    let (Some(label), LabelKind::Classes) = (&model.options.label, model.model_type.label()) else {
        return plan_err!(
            "confusion_matrix needs a classifier; '{}' is {}",
            model.name,
            model.model_type.name()
        );
    };
    let rows = rows_to_measure(ml, &model, on, "confusion_matrix").await?;
    let classes = if model.classes.is_empty() {
        vec!["0".to_string(), "1".to_string()]
    } else {
        model.classes.clone()
    };
    let predicted = model_call(&model, "predict");
    let sql = format!(
        "SELECT y, c, count(*) AS n FROM (SELECT {} AS y, {} AS c FROM ({rows}) AS r) AS s \
         WHERE y IS NOT NULL AND c IS NOT NULL GROUP BY y, c",
        class_index(&ident(label), &model.classes),
        class_index(&predicted, &model.classes),
    );
    let k = classes.len();
    let mut counts = vec![0i64; k * k];
    for batch in collect_with(ml, &model, &sql).await? {
        let y = cast(batch.column(0), &DataType::Float64)?;
        let c = cast(batch.column(1), &DataType::Float64)?;
        let n = cast(batch.column(2), &DataType::Int64)?;
        let (y, c) = (
            y.as_primitive::<Float64Type>(),
            c.as_primitive::<Float64Type>(),
        );
        let n = n.as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let (t, p) = (y.value(i), c.value(i));
            // A 0/1 model's label may hold other numbers: they are no class.
            let class = |v: f64| v.fract() == 0.0 && (0.0..k as f64).contains(&v);
            if class(t) && class(p) {
                counts[t as usize * k + p as usize] += n.value(i);
            }
        }
    }
    let mut fields = vec![Field::new("expected_label", DataType::Utf8, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(classes.clone()))];
    for (p, class) in classes.iter().enumerate() {
        fields.push(Field::new(class, DataType::Int64, false));
        columns.push(Arc::new(
            (0..k).map(|t| counts[t * k + p]).collect::<Int64Array>(),
        ));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    Ok(MlOutput::rows(batch))
}
