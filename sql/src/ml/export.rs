//! EXPORT MODEL name [VERSION n] TO 'path.json': the model in a format other
//! tools read (trees: XGBoost's JSON model; others: their parameters as
//! JSON), to a local path or any object store URL, written whole or not at
//! all.

use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::datasource::listing::ListingTableUrl;
use object_store::ObjectStoreExt;

use super::{MlContext, MlOutput};

pub async fn export_model(
    ml: &MlContext,
    name: &str,
    version: Option<u64>,
    path: &str,
) -> Result<MlOutput> {
    if !path.to_ascii_lowercase().ends_with(".json") {
        // XGBoost reads a file as JSON by its extension (else as UBJSON).
        return plan_err!("EXPORT MODEL writes JSON: the path must end in .json, not '{path}'");
    }
    let model = match version {
        Some(v) => ml.store.load_ref(&format!("{name}@{v}")).await?,
        None => ml.store.load(name).await?,
    };
    let exported = model.model_type.export(&model)?;
    let bytes = serde_json::to_vec(&exported)
        .map_err(|e| DataFusionError::Internal(format!("cannot encode model '{name}': {e}")))?;
    let url = ListingTableUrl::parse(path)?;
    let store = ml.ctx.runtime_env().object_store(url.object_store())?;
    // One put: the object store writes a whole file or none.
    store.put(url.prefix(), bytes.into()).await.map_err(|e| {
        DataFusionError::Execution(format!("cannot write model '{name}' to '{path}': {e}"))
    })?;
    let mut output = MlOutput::none();
    output.notes.push(format!(
        "exported {} version {} ({}) to {path}",
        model.name,
        model.version,
        model.model_type.name()
    ));
    Ok(output)
}
