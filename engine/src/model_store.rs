//! Where models live: a local directory by default, any object store URL.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreRegistry;
use ember_ml_ops::store::ModelStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use url::Url;

/// The environment variable naming the default model store.
pub const MODEL_STORE_ENV: &str = "EMBER_MODEL_STORE";

/// The model store used when none is given: `$EMBER_MODEL_STORE`, else
/// `~/.ember/models`.
pub fn default_model_store() -> String {
    if let Ok(url) = std::env::var(MODEL_STORE_ENV)
        && !url.is_empty()
    {
        return url;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".ember")
        .join("models")
        .to_string_lossy()
        .into_owned()
}

/// Opens the model store at `url`: a directory path or `file://` URL (created if
/// missing), or an object store URL such as `s3://bucket/prefix` resolved through
/// `registry`.
pub fn open_model_store(url: &str, registry: &dyn ObjectStoreRegistry) -> Result<ModelStore> {
    let is_local = !url.contains("://") || url.starts_with("file://");
    if is_local {
        let dir = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
        std::fs::create_dir_all(&dir).map_err(|e| {
            DataFusionError::Execution(format!("cannot create model store {}: {e}", dir.display()))
        })?;
        let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| {
            DataFusionError::Execution(format!("cannot open model store {}: {e}", dir.display()))
        })?;
        return Ok(ModelStore::new(Arc::new(store), Path::default(), url).with_local_dir(dir));
    }
    let parsed = Url::parse(url)
        .map_err(|e| DataFusionError::Configuration(format!("bad model store URL '{url}': {e}")))?;
    let store = registry.get_store(&parsed)?;
    let root = Path::from_url_path(parsed.path())
        .map_err(|e| DataFusionError::Configuration(format!("bad model store URL '{url}': {e}")))?;
    Ok(ModelStore::new(store, root, url.trim_end_matches('/')))
}
