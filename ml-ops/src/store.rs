//! The model store: `NAME/v{N}/model.json` on any object store.
//!
//! Versions are immutable: CREATE OR REPLACE adds one and readers take the newest
//! complete one. Each `model.json` is written in one atomic put (the local file
//! system writes a temporary file and renames it; object stores publish a put
//! whole), so a crash never leaves half a model, and a version directory without
//! its `model.json` is ignored.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::{DataFusionError, Result, plan_err};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::models::Model;

/// The file each version holds.
const MODEL_FILE: &str = "model.json";
/// Longest model name.
const MAX_NAME_LEN: usize = 128;

/// Checks that `name` is a plain identifier (so it cannot leave the store) and
/// returns it lower-cased: model names are case-insensitive like SQL's.
pub fn validate_model_name(name: &str) -> Result<String> {
    let lower = name.to_ascii_lowercase();
    let mut chars = lower.chars();
    let plain = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && lower.len() <= MAX_NAME_LEN;
    if !plain {
        return plan_err!(
            "model name '{name}' is not a plain identifier: use letters, digits and _ (at most {MAX_NAME_LEN}), starting with a letter or _"
        );
    }
    Ok(lower)
}

fn store_error(context: String) -> impl FnOnce(object_store::Error) -> DataFusionError {
    move |e| DataFusionError::Execution(format!("{context}: {e}"))
}

/// Models on an object store, under a root path.
#[derive(Debug, Clone)]
pub struct ModelStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
}

impl ModelStore {
    /// The store at `root` on `store`; `url` names it in messages.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, url: impl Into<String>) -> Self {
        Self {
            store,
            root,
            url: url.into(),
        }
    }

    /// Where the store is, as the user gave it.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn model_dir(&self, name: &str) -> Path {
        self.root.clone().join(name)
    }

    /// Complete versions of `name`, ascending, and the highest version number
    /// seen at all (incomplete ones included).
    async fn scan(&self, name: &str) -> Result<(Vec<u64>, u64)> {
        let dir = self.model_dir(name);
        let objects: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(store_error(format!("cannot list model store {}", self.url)))?;
        let mut complete = Vec::new();
        let mut highest = 0;
        for meta in objects {
            let parts: Vec<_> = meta
                .location
                .prefix_match(&dir)
                .into_iter()
                .flatten()
                .collect();
            let Some(version) = parts
                .first()
                .and_then(|p| p.as_ref().strip_prefix('v'))
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            highest = highest.max(version);
            if parts.len() == 2 && parts[1].as_ref() == MODEL_FILE {
                complete.push(version);
            }
        }
        complete.sort_unstable();
        Ok((complete, highest))
    }

    /// The newest version of `name`, if the store has one.
    pub async fn latest(&self, name: &str) -> Result<Option<Model>> {
        let name = validate_model_name(name)?;
        let (versions, _) = self.scan(&name).await?;
        match versions.last() {
            None => Ok(None),
            Some(&v) => Ok(Some(self.load_version(&name, v).await?)),
        }
    }

    /// The newest version of `name`, or an error naming the unknown model.
    pub async fn load(&self, name: &str) -> Result<Model> {
        match self.latest(name).await? {
            Some(model) => Ok(model),
            None => plan_err!("unknown model '{}'", name.to_ascii_lowercase()),
        }
    }

    async fn load_version(&self, name: &str, version: u64) -> Result<Model> {
        let path = self
            .model_dir(name)
            .join(format!("v{version}"))
            .join(MODEL_FILE);
        let context = format!(
            "cannot read model '{name}' version {version} from {}",
            self.url
        );
        let bytes = self
            .store
            .get(&path)
            .await
            .map_err(store_error(context.clone()))?
            .bytes()
            .await
            .map_err(store_error(context.clone()))?;
        Model::from_json(&bytes).map_err(|e| e.context(context))
    }

    /// Writes `model` as a new version of its name, atomically, and returns the
    /// version number (also set on `model`).
    pub async fn save(&self, model: &mut Model) -> Result<u64> {
        let name = validate_model_name(&model.name)?;
        for _attempt in 0..8 {
            let (_, highest) = self.scan(&name).await?;
            model.version = highest + 1;
            let bytes = model.to_json()?;
            let path = self
                .model_dir(&name)
                .join(format!("v{}", model.version))
                .join(MODEL_FILE);
            let put = self
                .store
                .put_opts(
                    &path,
                    PutPayload::from(bytes.clone()),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            match put {
                Ok(_) => return Ok(model.version),
                // Another writer took this version number: take the next.
                Err(object_store::Error::AlreadyExists { .. }) => continue,
                // Stores without conditional puts: a plain atomic put.
                Err(object_store::Error::NotImplemented { .. }) => {
                    self.store
                        .put(&path, PutPayload::from(bytes))
                        .await
                        .map_err(store_error(format!(
                            "cannot write model '{name}' to {}",
                            self.url
                        )))?;
                    return Ok(model.version);
                }
                Err(e) => {
                    return Err(DataFusionError::Execution(format!(
                        "cannot write model '{name}' to {}: {e}",
                        self.url
                    )));
                }
            }
        }
        plan_err!("cannot write model '{name}': too many concurrent writers")
    }

    /// Every model with at least one complete version: name → newest version.
    pub async fn list(&self) -> Result<BTreeMap<String, u64>> {
        let objects: Vec<_> = self
            .store
            .list(Some(&self.root))
            .try_collect()
            .await
            .map_err(store_error(format!("cannot list model store {}", self.url)))?;
        let mut models = BTreeMap::new();
        for meta in objects {
            let parts: Vec<_> = meta
                .location
                .prefix_match(&self.root)
                .into_iter()
                .flatten()
                .collect();
            if parts.len() != 3 || parts[2].as_ref() != MODEL_FILE {
                continue;
            }
            let Some(version) = parts[1]
                .as_ref()
                .strip_prefix('v')
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            let entry = models.entry(parts[0].as_ref().to_string()).or_insert(0);
            *entry = (*entry).max(version);
        }
        Ok(models)
    }

    /// Deletes every version of `name`; false when there was none.
    pub async fn drop_model(&self, name: &str) -> Result<bool> {
        let name = validate_model_name(name)?;
        let (versions, _) = self.scan(&name).await?;
        let dir = self.model_dir(&name);
        let objects: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(store_error(format!("cannot list model store {}", self.url)))?;
        for meta in objects {
            self.store
                .delete(&meta.location)
                .await
                .map_err(store_error(format!("cannot delete model '{name}'")))?;
        }
        Ok(!versions.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_identifiers() {
        assert_eq!(validate_model_name("Churn_2").unwrap(), "churn_2");
        for bad in ["", "../x", "a/b", "a.b", "1a", "a b", "é"] {
            let err = validate_model_name(bad).unwrap_err().to_string();
            assert!(err.contains("not a plain identifier"), "{bad}: {err}");
        }
    }
}
