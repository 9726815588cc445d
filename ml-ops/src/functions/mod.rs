//! The SQL functions ember adds to DataFusion's.
//!
//! [`ember_functions`] is the single registration point: the engine's session
//! builder hands its contents to every client, scheduler and executor. Functions
//! that carry state (a bound `predict`, a training round) cross process
//! boundaries through [`encode_udf`]/[`decode_udf`] and
//! [`encode_udaf`]/[`decode_udaf`], which ember's plan codecs call.

pub mod features;
mod multiclass_metrics;
mod predict;
mod roc_auc;
mod sigmoid;

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

pub use features::FITTED_FEATURE_FUNCTIONS;
pub use multiclass_metrics::MulticlassMetricsFunc;
pub use predict::{ModelCatalog, PredictFunc};
pub use roc_auc::RocAucFunc;
pub use sigmoid::SigmoidFunc;

use crate::hashing::RowHashFunc;
use crate::models::{PredictOutput, TRAIN_ROUND, TrainRoundFunc};

/// Every function ember adds, grouped by kind.
#[derive(Debug, Default, Clone)]
pub struct EmberFunctions {
    /// Row-wise functions (feature transforms, `predict`, ...).
    pub scalar: Vec<Arc<ScalarUDF>>,
    /// Aggregates (per-partition training statistics, ...).
    pub aggregate: Vec<Arc<AggregateUDF>>,
}

/// The functions to register on every ember session. `predict` and
/// `predict_proba` resolve model names in an empty catalog here: clients replace
/// them with [`predict_functions`] over their own.
pub fn ember_functions() -> EmberFunctions {
    let mut scalar = vec![
        Arc::new(ScalarUDF::from(SigmoidFunc::new())),
        Arc::new(ScalarUDF::from(RowHashFunc::new())),
        Arc::new(ScalarUDF::from(features::StandardScaleFunc::default())),
        Arc::new(ScalarUDF::from(features::MinMaxScaleFunc::default())),
        Arc::new(ScalarUDF::from(features::ImputeFunc::default())),
        Arc::new(ScalarUDF::from(features::OneHotFunc::default())),
        Arc::new(ScalarUDF::from(features::BucketizeFunc::default())),
        Arc::new(ScalarUDF::from(features::QuantileBucketizeFunc::default())),
        Arc::new(ScalarUDF::from(features::FeatureHashFunc::default())),
        Arc::new(ScalarUDF::from(features::PolynomialExpandFunc::default())),
    ];
    scalar.extend(predict_functions(ModelCatalog::default()));
    EmberFunctions {
        scalar,
        aggregate: vec![
            Arc::new(AggregateUDF::from(RocAucFunc::default())),
            Arc::new(AggregateUDF::from(MulticlassMetricsFunc::default())),
        ],
    }
}

/// `predict`, `predict_proba` and `predict_probabilities` resolving model
/// names in `catalog`.
pub fn predict_functions(catalog: ModelCatalog) -> Vec<Arc<ScalarUDF>> {
    [
        PredictOutput::Value,
        PredictOutput::Probability,
        PredictOutput::Probabilities,
    ]
    .into_iter()
    .map(|output| {
        Arc::new(ScalarUDF::from(PredictFunc::unbound(
            output,
            catalog.clone(),
        )))
    })
    .collect()
}

/// The bytes of a stateful scalar function, `None` for ordinary ones.
pub fn encode_udf(udf: &ScalarUDF) -> Option<Result<Vec<u8>>> {
    udf.inner().downcast_ref::<PredictFunc>()?.to_bytes()
}

/// Rebuilds a stateful scalar function from [`encode_udf`]'s bytes; `None` when
/// `name` is not one of ember's stateful functions.
pub fn decode_udf(name: &str, bytes: &[u8]) -> Option<Result<Arc<ScalarUDF>>> {
    match name {
        "predict" | "predict_proba" | "predict_probabilities" => {
            Some(PredictFunc::from_bytes(bytes).map(|f| Arc::new(ScalarUDF::from(f))))
        }
        _ => None,
    }
}

/// The bytes of a stateful aggregate, `None` for ordinary ones.
pub fn encode_udaf(udaf: &AggregateUDF) -> Option<Result<Vec<u8>>> {
    let round = udaf.inner().downcast_ref::<TrainRoundFunc>()?;
    Some(round.to_bytes())
}

/// Rebuilds a stateful aggregate from [`encode_udaf`]'s bytes.
pub fn decode_udaf(name: &str, bytes: &[u8]) -> Option<Result<Arc<AggregateUDF>>> {
    (name == TRAIN_ROUND)
        .then(|| TrainRoundFunc::from_bytes(bytes).map(|f| Arc::new(AggregateUDF::from(f))))
}
