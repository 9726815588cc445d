//! The model store: `NAME/v{N}/model.json` on any object store.
//!
//! Versions are immutable: CREATE OR REPLACE adds one and readers take the newest
//! complete one. Each `model.json` is written in one atomic put (the local file
//! system writes a temporary file and renames it; object stores publish a put
//! whole), so a crash never leaves half a model, and a version directory without
//! its `model.json` is ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use datafusion::common::{DataFusionError, Result, plan_err};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::models::Model;

/// The file each version holds.
const MODEL_FILE: &str = "model.json";
/// Left in a version's folder by DROP MODEL ... VERSION, so the number is
/// never used again.
const DROPPED_MARKER: &str = "dropped";
/// The folder, beside a model's versions, of its trainings' checkpoints.
const TRAINING_DIR: &str = "training";
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

/// A model as SQL names it: `name` (the newest version) or `name@N` (version
/// N). Returns the checked, lower-cased name and the version.
pub fn parse_model_ref(reference: &str) -> Result<(String, Option<u64>)> {
    match reference.split_once('@') {
        None => Ok((validate_model_name(reference)?, None)),
        Some((name, version)) => {
            let name = validate_model_name(name)?;
            match version.parse::<u64>() {
                Ok(v) if v >= 1 => Ok((name, Some(v))),
                _ => plan_err!(
                    "'{reference}': a model version is a number from 1 ('{name}@2'), not '{version}'"
                ),
            }
        }
    }
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
    /// The directory, when the store is the local file system.
    local_dir: Option<PathBuf>,
}

/// How [`ModelStore::save`] treats a model that has versions already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveMode {
    /// `CREATE MODEL`: the first version, or an "already exists" error.
    First,
    /// `CREATE MODEL IF NOT EXISTS`: the first version, or nothing.
    FirstIfAbsent,
    /// `CREATE OR REPLACE MODEL`: the next version.
    NewVersion,
}

/// What [`ModelStore::save`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Wrote this version.
    Version(u64),
    /// Wrote nothing: the model exists ([`SaveMode::FirstIfAbsent`]).
    Exists,
}

/// How old a local staging file must be before a save removes it: older than any
/// write in progress, so only a killed writer's leftovers go.
const STALE_STAGING: Duration = Duration::from_secs(60);

impl ModelStore {
    /// The store at `root` on `store`; `url` names it in messages.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, url: impl Into<String>) -> Self {
        Self {
            store,
            root,
            url: url.into(),
            local_dir: None,
        }
    }

    /// Says the store is the local directory `dir`, so saves also remove what a
    /// writer killed mid-write left: the local file system stages each put in a
    /// `model.json#N` file beside its target, which readers never see.
    pub fn with_local_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.local_dir = Some(dir.into());
        self
    }

    /// Removes staging files older than [`STALE_STAGING`] under `name`'s versions
    /// and training checkpoints.
    fn remove_stale_staging(&self, name: &str) {
        let Some(dir) = &self.local_dir else { return };
        let Ok(versions) = std::fs::read_dir(dir.join(name)) else {
            return;
        };
        for version in versions.flatten() {
            let Ok(files) = std::fs::read_dir(version.path()) else {
                continue;
            };
            for file in files.flatten() {
                let file_name = file.file_name();
                // `model.json#N`, or a training checkpoint's `KEY.json#N`.
                let staging = file_name
                    .to_str()
                    .and_then(|n| n.rsplit_once(".json#"))
                    .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                let stale = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age >= STALE_STAGING);
                if staging && stale {
                    let _ = std::fs::remove_file(file.path());
                }
            }
        }
    }

    /// Whether writing to `target` (a path or URL, as `COPY ... TO` takes it)
    /// would write inside this store, where only ember writes.
    pub fn contains(&self, target: &str) -> bool {
        match &self.local_dir {
            Some(dir) => {
                let Some(path) = local_path(target) else {
                    return false;
                };
                match (resolve(&path), resolve(dir)) {
                    (Some(path), Some(dir)) => path.starts_with(dir),
                    _ => false,
                }
            }
            None => {
                let root = self.url.trim_end_matches('/');
                target == root || target.starts_with(&format!("{root}/"))
            }
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

    /// Whether `name` has a complete version (readable or not).
    pub async fn exists(&self, name: &str) -> Result<bool> {
        let name = validate_model_name(name)?;
        Ok(!self.scan(&name).await?.0.is_empty())
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

    /// The model a reference names (`name` or `name@N`), or an error naming
    /// what is missing.
    pub async fn load_ref(&self, reference: &str) -> Result<Model> {
        let (name, version) = parse_model_ref(reference)?;
        match version {
            None => self.load(&name).await,
            Some(version) => {
                let (versions, _) = self.scan(&name).await?;
                if versions.is_empty() {
                    return plan_err!("unknown model '{name}'");
                }
                if !versions.contains(&version) {
                    let list: Vec<String> = versions.iter().map(u64::to_string).collect();
                    return plan_err!(
                        "model '{name}' has no version {version} (it has {})",
                        list.join(", ")
                    );
                }
                self.load_version(&name, version).await
            }
        }
    }

    /// Version `version` of `name`.
    pub async fn load_version(&self, name: &str, version: u64) -> Result<Model> {
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
    /// version number (also set on `model`). With [`SaveMode::First`] the write
    /// fails when the model has a version already, even one another writer put a
    /// moment ago: each version is put only if absent (a conditional put), so of
    /// two writers racing for one version exactly one wins.
    pub async fn save(&self, model: &mut Model, mode: SaveMode) -> Result<Saved> {
        let name = validate_model_name(&model.name)?;
        // Never write what no reader could load (JSON has no NaN or infinity).
        model.check()?;
        self.remove_stale_staging(&name);
        let exists = || match mode {
            SaveMode::First => plan_err!(
                "model '{name}' already exists: use CREATE OR REPLACE MODEL to add a version"
            ),
            SaveMode::FirstIfAbsent => Ok(Saved::Exists),
            SaveMode::NewVersion => {
                datafusion::common::internal_err!("a new version never finds its model existing")
            }
        };
        for _attempt in 0..8 {
            let (complete, highest) = self.scan(&name).await?;
            if !complete.is_empty() && mode != SaveMode::NewVersion {
                return exists();
            }
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
                Ok(_) => return Ok(Saved::Version(model.version)),
                // Another writer took this version number first.
                Err(object_store::Error::AlreadyExists { .. }) => match mode {
                    SaveMode::NewVersion => continue,
                    SaveMode::First | SaveMode::FirstIfAbsent => return exists(),
                },
                // Stores without conditional puts: a plain atomic put (a race
                // between two writers of one version is then not detected).
                Err(object_store::Error::NotImplemented { .. }) => {
                    self.store
                        .put(&path, PutPayload::from(bytes))
                        .await
                        .map_err(store_error(format!(
                            "cannot write model '{name}' to {}",
                            self.url
                        )))?;
                    return Ok(Saved::Version(model.version));
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

    fn checkpoint_path(&self, name: &str, key: &str) -> Path {
        self.model_dir(name)
            .join(TRAINING_DIR)
            .join(format!("{key}.json"))
    }

    /// Replaces the checkpoint `key` of a training of `name` (one atomic put:
    /// never a half-written one). Checkpoints are not models: no reader of
    /// versions sees them.
    pub async fn save_checkpoint(&self, name: &str, key: &str, bytes: Vec<u8>) -> Result<()> {
        let name = validate_model_name(name)?;
        self.store
            .put(&self.checkpoint_path(&name, key), PutPayload::from(bytes))
            .await
            .map_err(store_error(format!(
                "cannot write a training checkpoint of '{name}' to {}",
                self.url
            )))?;
        Ok(())
    }

    /// The checkpoint `key` of a training of `name`, if one was left.
    pub async fn load_checkpoint(&self, name: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let name = validate_model_name(name)?;
        match self.store.get(&self.checkpoint_path(&name, key)).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(store_error(format!(
                    "cannot read a training checkpoint of '{name}' from {}",
                    self.url
                )))?;
                Ok(Some(bytes.to_vec()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(DataFusionError::Execution(format!(
                "cannot read a training checkpoint of '{name}' from {}: {e}",
                self.url
            ))),
        }
    }

    /// Removes the checkpoint `key` of a training of `name` (done with it).
    pub async fn remove_checkpoint(&self, name: &str, key: &str) -> Result<()> {
        let name = validate_model_name(name)?;
        match self.store.delete(&self.checkpoint_path(&name, key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(DataFusionError::Execution(format!(
                "cannot remove a training checkpoint of '{name}' from {}: {e}",
                self.url
            ))),
        }
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

    /// Deletes version `version` of `name`; false when there is no such version.
    /// The model's other versions stay; the newest left is the one used.
    pub async fn drop_version(&self, name: &str, version: u64) -> Result<bool> {
        let name = validate_model_name(name)?;
        let (versions, _) = self.scan(&name).await?;
        if !versions.contains(&version) {
            return Ok(false);
        }
        let dir = self.model_dir(&name).join(format!("v{version}"));
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
                .map_err(store_error(format!(
                    "cannot delete model '{name}' version {version}"
                )))?;
        }
        // A marker keeps the number taken: `name@N` never names another model.
        self.store
            .put(&dir.join(DROPPED_MARKER), PutPayload::default())
            .await
            .map_err(store_error(format!(
                "cannot delete model '{name}' version {version}"
            )))?;
        Ok(true)
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

/// The local path a `COPY ... TO` target names, if it names one.
fn local_path(target: &str) -> Option<PathBuf> {
    if let Some(path) = target.strip_prefix("file://") {
        return Some(PathBuf::from(path));
    }
    (!target.contains("://")).then(|| PathBuf::from(target))
}

/// `path` made absolute, `.` and `..` removed, links resolved as far as it exists.
fn resolve(path: &std::path::Path) -> Option<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let mut normal = PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::ParentDir => {
                normal.pop();
            }
            std::path::Component::CurDir => {}
            other => normal.push(other),
        }
    }
    // The longest part that exists resolves links; the rest is taken as written.
    let mut existing = normal.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        rest.push(existing.file_name()?.to_owned());
        existing = existing.parent()?;
    }
    let mut resolved = existing.canonicalize().ok()?;
    resolved.extend(rest.into_iter().rev());
    Some(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Feature, Model, ModelOptions, ModelParams, ModelType, OptionValue};
    use object_store::local::LocalFileSystem;

    fn one_feature_model(name: &str) -> Model {
        let given = [
            (
                "model_type".to_string(),
                OptionValue::Text("linear_regression".into()),
            ),
            ("label".to_string(), OptionValue::Text("y".into())),
        ];
        Model {
            format: 1,
            name: name.into(),
            version: 0,
            created_at: 0,
            model_type: ModelType::parse("linear_regression").unwrap(),
            options_given: BTreeMap::new(),
            options: ModelOptions::parse(&given).unwrap(),
            query: "select x, y from t".into(),
            query_columns: vec!["x".into(), "y".into()],
            inputs: vec![],
            transform: vec![],
            features: vec![Feature {
                name: "x".into(),
                width: 1,
            }],
            classes: vec![],
            label_type: None,
            params: ModelParams::Linear {
                coefficients: vec![2.0],
                intercept: 1.0,
            },
            training_info: vec![],
            rounds: vec![],
            converged: true,
            passes: 1,
            training_rows: 2,
            metrics: BTreeMap::new(),
            metrics_on: String::new(),
            data_fingerprint: String::new(),
        }
    }

    /// What a writer killed in the middle of a put leaves on a local store (a
    /// staging file beside the target) is invisible to readers and removed by the
    /// next save once stale; the next version number is still the next one.
    #[tokio::test]
    async fn a_killed_writers_staging_file_is_ignored_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
            Path::default(),
            "test",
        )
        .with_local_dir(dir.path());
        let mut model = one_feature_model("m");
        assert_eq!(
            store.save(&mut model, SaveMode::NewVersion).await.unwrap(),
            Saved::Version(1)
        );
        let v2 = dir.path().join("m/v2");
        std::fs::create_dir_all(&v2).unwrap();
        let staging = v2.join("model.json#7");
        std::fs::write(&staging, b"{\"format\": 1, \"na").unwrap();
        assert_eq!(store.latest("m").await.unwrap().unwrap().version, 1);
        assert_eq!(store.list().await.unwrap()["m"], 1);

        // A fresh staging file may be a live writer's: kept.
        assert_eq!(
            store.save(&mut model, SaveMode::NewVersion).await.unwrap(),
            Saved::Version(2)
        );
        assert!(staging.exists());
        let old = SystemTime::now() - STALE_STAGING - Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(&staging)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(
            store.save(&mut model, SaveMode::NewVersion).await.unwrap(),
            Saved::Version(3)
        );
        assert!(!staging.exists(), "stale staging file left");
        assert_eq!(store.latest("m").await.unwrap().unwrap().version, 3);
    }

    /// Of writers racing to create one model, exactly one writes it; the others
    /// are told it exists (issue 12: all of them wrote a version).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_creates_write_one_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
            Path::default(),
            "test",
        );
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut model = one_feature_model("m");
                    store.save(&mut model, SaveMode::First).await
                })
            })
            .collect();
        let mut written = 0;
        for writer in writers {
            match writer.await.unwrap() {
                Ok(saved) => {
                    assert_eq!(saved, Saved::Version(1));
                    written += 1;
                }
                Err(e) => assert!(e.to_string().contains("already exists"), "{e}"),
            }
        }
        assert_eq!(written, 1);
        assert_eq!(store.list().await.unwrap()["m"], 1);
        let mut model = one_feature_model("m");
        let again = store.save(&mut model, SaveMode::FirstIfAbsent).await;
        assert_eq!(again.unwrap(), Saved::Exists);
    }

    #[test]
    fn copy_targets_inside_the_store_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
            Path::default(),
            dir.path().to_str().unwrap(),
        )
        .with_local_dir(dir.path());
        let inside = dir.path().join("m/v1/model.json");
        assert!(store.contains(inside.to_str().unwrap()));
        assert!(store.contains(&format!("file://{}", inside.display())));
        let sneaky = dir.path().join("x/../m/new.parquet");
        assert!(store.contains(sneaky.to_str().unwrap()));
        assert!(!store.contains("/tmp/elsewhere/out.parquet"));
        assert!(!store.contains("s3://bucket/x"));
        let s3 = ModelStore::new(
            Arc::new(LocalFileSystem::new()),
            Path::default(),
            "s3://bucket/models",
        );
        assert!(s3.contains("s3://bucket/models/m/v1/x.parquet"));
        assert!(!s3.contains("s3://bucket/models2/x.parquet"));
    }

    #[test]
    fn names_are_plain_identifiers() {
        assert_eq!(validate_model_name("Churn_2").unwrap(), "churn_2");
        for bad in ["", "../x", "a/b", "a.b", "1a", "a b", "é"] {
            let err = validate_model_name(bad).unwrap_err().to_string();
            assert!(err.contains("not a plain identifier"), "{bad}: {err}");
        }
    }
}
