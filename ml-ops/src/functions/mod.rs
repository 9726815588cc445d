//! The SQL functions ember adds to DataFusion's.
//!
//! [`ember_functions`] is the single registration point: the engine's session
//! builder hands its contents to every client, scheduler and executor.

mod sigmoid;

use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

pub use sigmoid::SigmoidFunc;

/// Every function ember adds, grouped by kind.
#[derive(Debug, Default, Clone)]
pub struct EmberFunctions {
    /// Row-wise functions (feature transforms, `predict`, ...).
    pub scalar: Vec<Arc<ScalarUDF>>,
    /// Aggregates (per-partition training statistics, ...).
    pub aggregate: Vec<Arc<AggregateUDF>>,
}

/// The functions to register on every ember session.
pub fn ember_functions() -> EmberFunctions {
    EmberFunctions {
        scalar: vec![Arc::new(ScalarUDF::from(SigmoidFunc::new()))],
        aggregate: vec![],
    }
}
