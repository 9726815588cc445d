//! Object stores: local files always, S3-compatible stores when configured.
//!
//! S3 (and S3-compatible stores such as MinIO) are configured from the standard
//! environment variables that `object_store` reads (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...).
//! Each process reads its own environment, so a cluster started by `ember cluster
//! up` passes the client's configuration to every executor.

use std::sync::Arc;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use url::Url;

/// DataFusion's registry (local files, anything registered by hand), which also
/// builds a store for an `s3://bucket/` URL the first time one is asked for.
#[derive(Debug, Default)]
pub struct EmberObjectStoreRegistry {
    inner: DefaultObjectStoreRegistry,
}

impl EmberObjectStoreRegistry {
    pub fn new() -> Self {
        Self::default()
    }
}

impl ObjectStoreRegistry for EmberObjectStoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        match self.inner.get_store(url) {
            Ok(store) => Ok(store),
            Err(_) if url.scheme() == "s3" || url.scheme() == "s3a" => {
                let bucket = url.host_str().ok_or_else(|| {
                    DataFusionError::Configuration(format!("no bucket in object store URL '{url}'"))
                })?;
                let store: Arc<dyn ObjectStore> = Arc::new(
                    AmazonS3Builder::from_env()
                        .with_bucket_name(bucket)
                        .build()
                        .map_err(|e| {
                            DataFusionError::Configuration(format!(
                                "cannot configure S3 store for '{url}': {e}"
                            ))
                        })?,
                );
                let base = Url::parse(&format!("{}://{bucket}", url.scheme()))
                    .map_err(|e| DataFusionError::Configuration(e.to_string()))?;
                self.inner.register_store(&base, Arc::clone(&store));
                Ok(store)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_files_are_always_there() {
        let registry = EmberObjectStoreRegistry::new();
        assert!(
            registry
                .get_store(&Url::parse("file:///tmp").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn unknown_scheme_is_an_error() {
        let registry = EmberObjectStoreRegistry::new();
        let err = registry
            .get_store(&Url::parse("gopher://host/x").unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("gopher"), "{err}");
    }

    #[test]
    fn s3_store_is_built_on_first_use() {
        let registry = EmberObjectStoreRegistry::new();
        let url = Url::parse("s3://some-bucket/path/data.parquet").unwrap();
        assert!(registry.get_store(&url).is_ok());
        // The second ask is answered by the store registered on the first.
        assert!(registry.inner.get_store(&url).is_ok());
    }
}
