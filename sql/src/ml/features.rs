//! What the SQL side of a model shares between training and evaluation: the
//! SELECT list that computes its features from its inputs, their widths, and
//! the device its rounds run on.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::LogicalPlan;
use ember_ml_ops::kernels::{DEVICE_SETTING, DeviceChoice};
use ember_ml_ops::models::{Feature, InputColumn, TransformItem};

use super::MlContext;
use super::sql_text::ident;

/// The SELECT list computing a model's features from its input columns.
pub fn feature_select(inputs: &[InputColumn], transform: &[TransformItem]) -> Vec<String> {
    if transform.is_empty() {
        inputs.iter().map(|i| ident(&i.name)).collect()
    } else {
        transform
            .iter()
            .map(|t| format!("{} AS {}", t.sql, ident(&t.name)))
            .collect()
    }
}

/// Features and their widths from the planned feature columns.
pub fn feature_widths(plan: &LogicalPlan, names: &[String]) -> Result<Vec<Feature>> {
    names
        .iter()
        .map(|name| {
            let field = plan.schema().field_with_unqualified_name(name)?;
            let width = match field.data_type() {
                DataType::FixedSizeList(_, n) => *n as usize,
                t if t.is_numeric() || *t == DataType::Boolean => 1,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                    return plan_err!(
                        "feature '{name}' is text: encode it in TRANSFORM with one_hot({name}) or feature_hash({name}, buckets)"
                    );
                }
                other => return plan_err!("feature '{name}' is {other}: features must be numbers"),
            };
            Ok(Feature { name: name.clone(), width })
        })
        .collect()
}

/// The device a model's `device` option names, else the session's
/// `ember.ml.device`.
pub fn device_for(ml: &MlContext, option: Option<&str>) -> Result<DeviceChoice> {
    if let Some(option) = option {
        return option.parse();
    }
    setting(ml, DEVICE_SETTING)
        .map(|v| v.parse())
        .transpose()
        .map(Option::unwrap_or_default)
}

/// The session's value of the ember setting `key` (`ember.ml.device`, ...),
/// `None` where the session has no ember settings.
pub fn setting(ml: &MlContext, key: &str) -> Option<String> {
    ml.ctx
        .state()
        .config()
        .options()
        .entries()
        .into_iter()
        .find(|e| e.key == key)
        .and_then(|e| e.value)
}
