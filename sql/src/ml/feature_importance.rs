//! `feature_importance('model')`: a row per feature column with what the
//! model type measures of it (trees: XGBoost's `get_score` measures; linear
//! models: |coefficient|). A feature `v` of width 3 has columns `v[0]`..`v[2]`.

use std::sync::Arc;

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::{Expr, lit};
use ember_ml_ops::functions::ModelCatalog;

use super::training_info::{named_model, values_table};

#[derive(Debug)]
pub struct FeatureImportanceFunc {
    catalog: ModelCatalog,
}

impl FeatureImportanceFunc {
    pub fn new(catalog: ModelCatalog) -> Self {
        Self { catalog }
    }
}

impl TableFunctionImpl for FeatureImportanceFunc {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let model = named_model(&self.catalog, "feature_importance", &args)?;
        let columns = model.feature_columns();
        let Some(importance) = model.model_type.importance(&model.params, columns.len()) else {
            return plan_err!(
                "feature_importance has nothing to show for '{}': a {} model weighs no features",
                model.name,
                model.model_type.name()
            );
        };
        let rows = columns
            .into_iter()
            .zip(importance.rows)
            .map(|(name, values)| {
                std::iter::once(lit(name))
                    .chain(values.into_iter().map(|v| lit(ScalarValue::Float64(v))))
                    .collect()
            })
            .collect::<Vec<Vec<Expr>>>();
        let names: Vec<&str> = std::iter::once("feature")
            .chain(importance.measures.iter().copied())
            .collect();
        values_table(&names, rows)
    }
}
