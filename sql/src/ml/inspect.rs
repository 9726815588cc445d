//! SHOW MODELS, DESCRIBE MODEL, DROP MODEL.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::temporal_conversions::timestamp_s_to_datetime;
use datafusion::common::{DataFusionError, Result, plan_err};
use ember_ml_ops::models::Model;
use ember_ml_ops::store::validate_model_name;

use super::{MlContext, MlOutput};

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// SHOW MODELS: one row per model, its newest version (DESCRIBE MODEL has the
/// rest). A model whose file cannot be read is listed with its problem in
/// `status` rather than failing the whole list.
pub async fn show_models(ml: &MlContext) -> Result<MlOutput> {
    let mut names = Vec::new();
    let mut versions = Vec::new();
    let mut types = Vec::new();
    let mut labels = Vec::new();
    let mut features = Vec::new();
    let mut rows = Vec::new();
    let mut statuses = Vec::new();
    for (name, version) in ml.store.list().await? {
        let model = match ml.store.load_version(&name, version).await {
            Ok(model) => model,
            Err(e) => {
                names.push(name);
                versions.push(version);
                types.push(None);
                labels.push(None);
                features.push(None);
                rows.push(None);
                statuses.push(format!("unreadable: {}", root_message(&e)));
                continue;
            }
        };
        names.push(model.name.clone());
        versions.push(model.version);
        types.push(Some(model.model_type.name().to_string()));
        labels.push(model.options.label.clone());
        features.push(Some(
            model
                .features
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ));
        rows.push(Some(model.training_rows));
        statuses.push("ok".to_string());
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("model_name", DataType::Utf8, false),
        Field::new("version", DataType::UInt64, false),
        Field::new("model_type", DataType::Utf8, true),
        Field::new("label", DataType::Utf8, true),
        Field::new("features", DataType::Utf8, true),
        Field::new("training_rows", DataType::UInt64, true),
        Field::new("status", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(UInt64Array::from(versions)),
        Arc::new(StringArray::from(types)),
        Arc::new(StringArray::from(labels)),
        Arc::new(StringArray::from(features)),
        Arc::new(UInt64Array::from(rows)),
        Arc::new(StringArray::from(statuses)),
    ];
    Ok(MlOutput::rows(RecordBatch::try_new(schema, columns)?))
}

/// The innermost message of `error`, on one line.
fn root_message(error: &DataFusionError) -> String {
    let text = match error.find_root() {
        DataFusionError::Execution(m) | DataFusionError::Plan(m) => m.clone(),
        other => other.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The (property, value) rows DESCRIBE MODEL shows.
pub fn describe_rows(model: &Model, store: &str) -> Vec<(String, String)> {
    let mut rows = vec![
        ("name".to_string(), model.name.clone()),
        ("version".to_string(), model.version.to_string()),
        (
            "model_type".to_string(),
            model.model_type.name().to_string(),
        ),
        ("created_at".to_string(), created_at(model.created_at)),
        ("options".to_string(), json(&model.options)),
        ("query".to_string(), model.query.clone()),
        ("inputs".to_string(), json(&model.inputs)),
        ("transform".to_string(), json(&model.transform)),
        ("features".to_string(), json(&model.features)),
    ];
    if !model.classes.is_empty() {
        rows.push(("classes".to_string(), json(&model.classes)));
    }
    for (property, value) in model.model_type.describe(&model.params) {
        rows.push((property.to_string(), value.to_string()));
    }
    rows.extend([
        ("metrics".to_string(), json(&model.metrics)),
        ("metrics_on".to_string(), model.metrics_on.clone()),
        (
            "iterations".to_string(),
            model.training_info.len().to_string(),
        ),
        ("converged".to_string(), model.converged.to_string()),
        (
            "final_loss".to_string(),
            model
                .training_info
                .last()
                .map(|i| i.loss.to_string())
                .unwrap_or_default(),
        ),
        ("passes".to_string(), model.passes.to_string()),
        ("training_rows".to_string(), model.training_rows.to_string()),
        (
            "data_fingerprint".to_string(),
            model.data_fingerprint.clone(),
        ),
        (
            "store".to_string(),
            format!("{store}/{}/v{}/model.json", model.name, model.version),
        ),
    ]);
    rows
}

/// Seconds since the epoch as a UTC time, `2026-12-01 10:38:45 UTC`.
fn created_at(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(timestamp_s_to_datetime)
        .map(|t| format!("{t} UTC"))
        .unwrap_or_else(|| seconds.to_string())
}

/// DESCRIBE MODEL name [VERSION n]: one row per property.
pub async fn describe_model(ml: &MlContext, name: &str, version: Option<u64>) -> Result<MlOutput> {
    let model = match version {
        Some(v) => ml.store.load_ref(&format!("{name}@{v}")).await?,
        None => ml.store.load(name).await?,
    };
    let rows = describe_rows(&model, ml.store.url());
    let schema = Arc::new(Schema::new(vec![
        Field::new("property", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ]));
    let (keys, values): (Vec<String>, Vec<String>) = rows.into_iter().unzip();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(keys)),
        Arc::new(StringArray::from(values)),
    ];
    Ok(MlOutput::rows(RecordBatch::try_new(schema, columns)?))
}

/// DROP MODEL [IF EXISTS] name [VERSION n]: removes every version, or one.
pub async fn drop_model(
    ml: &MlContext,
    name: &str,
    if_exists: bool,
    version: Option<u64>,
) -> Result<MlOutput> {
    let name = validate_model_name(name)?;
    let dropped = match version {
        None => ml.store.drop_model(&name).await?,
        Some(v) => ml.store.drop_version(&name, v).await?,
    };
    if !dropped && !if_exists {
        return match version {
            None => plan_err!("unknown model '{name}'"),
            Some(v) => plan_err!("model '{name}' has no version {v}"),
        };
    }
    if let Ok(mut catalog) = ml.catalog.write() {
        catalog.retain(|key, _| key != &name && !key.starts_with(&format!("{name}@")));
    }
    Ok(MlOutput::none())
}
