//! Running ember's model statements on a DataFusion context (embedded or a
//! Ballista cluster): CREATE MODEL's driver loop, EVALUATE's metrics, SHOW /
//! DESCRIBE / DROP MODEL, `training_info` and `training_rounds`, and binding `predict` calls to models.

mod bind;
mod confusion_matrix;
mod create_model;
mod evaluate;
mod export;
mod feature_importance;
mod features;
mod fit_transform;
mod inspect;
mod sql_text;
mod table_functions;
mod training_info;
mod training_key;

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Schema, SchemaRef};
use datafusion::common::Result;
use datafusion::prelude::SessionContext;
use ember_ml_ops::functions::ModelCatalog;
use ember_ml_ops::models::{KeepRows, Progress, Retry};
use ember_ml_ops::store::ModelStore;

pub use bind::{bind_models, load_referenced_models};
pub use create_model::{create_model, explain_create_model};
pub use evaluate::evaluate_model;
pub use export::export_model;
pub use feature_importance::FeatureImportanceFunc;
pub use inspect::{describe_model, drop_model, show_models};
pub use table_functions::expand_model_tables;
pub use training_info::{TrainingInfoFunc, TrainingRoundsFunc};

/// What model statements need from the session that runs them.
#[derive(Clone)]
pub struct MlContext {
    /// The context queries run on.
    pub ctx: SessionContext,
    /// Where models are read and written.
    pub store: ModelStore,
    /// Models loaded for the statement being planned.
    pub catalog: ModelCatalog,
    /// Whether training may hold its feature matrix in memory between rounds
    /// (embedded sessions).
    pub cache_features: bool,
    /// Where a cluster keeps the training rows between rounds: on the
    /// executors that read them (`None`: each round reads the input again).
    pub keep_rows: Option<Arc<dyn KeepRows>>,
    /// Told about each training iteration.
    pub progress: Arc<dyn Progress>,
    /// When a training round whose job failed runs again.
    pub retry: Retry,
}

/// Rows a model statement returns, or none.
#[derive(Debug, Clone)]
pub struct MlOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub returns_rows: bool,
    /// What the user should know about the result (rows left out, a training
    /// that stopped before converging), one sentence each.
    pub notes: Vec<String>,
}

impl MlOutput {
    /// A statement that returns no rows.
    pub fn none() -> Self {
        Self {
            schema: Arc::new(Schema::empty()),
            batches: vec![],
            returns_rows: false,
            notes: vec![],
        }
    }

    /// One batch of rows.
    pub fn rows(batch: RecordBatch) -> Self {
        Self {
            schema: batch.schema(),
            batches: vec![batch],
            returns_rows: true,
            notes: vec![],
        }
    }
}

/// The first non-empty batch's first row, each value cast to a float (NULL as
/// `None`); no rows gives no values.
fn first_row_floats(batches: &[RecordBatch]) -> Result<Vec<Option<f64>>> {
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(vec![]);
    };
    batch
        .columns()
        .iter()
        .map(|c| {
            let c = cast(c, &DataType::Float64)?;
            let c = c.as_primitive::<Float64Type>();
            Ok(c.is_valid(0).then(|| c.value(0)))
        })
        .collect()
}
