//! Flight connections from an executor to the others, reused across shuffle
//! reads. Ballista's executor keeps such a pool for its own execution engine but
//! does not export it, and ember brings its own engine (see `task_stop.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballista_core::client::BallistaClient;
use ballista_core::client_pool::{BallistaClientPool, PooledClient};
use ballista_core::error::Result;
use ballista_core::extension::BallistaConfigGrpcEndpoint;
use ballista_core::utils::GrpcClientConfig;

type Key = (String, u16, GrpcClientConfig);
type Idle = Arc<Mutex<HashMap<Key, Vec<(BallistaClient, Instant)>>>>;

/// Idle clients by executor and settings; one idle longer than the timeout is
/// closed when the pool is next used.
pub struct ReusedClients {
    idle: Idle,
    idle_timeout: Duration,
}

impl ReusedClients {
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            idle: Idle::default(),
            idle_timeout,
        }
    }

    /// The idle clients, less those idle too long.
    fn fresh(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<(BallistaClient, Instant)>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = self.idle_timeout;
        idle.retain(|_, clients| {
            clients.retain(|(_, since)| since.elapsed() < timeout);
            !clients.is_empty()
        });
        idle
    }
}

impl std::fmt::Debug for ReusedClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReusedClients").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl BallistaClientPool for ReusedClients {
    async fn acquire(
        &self,
        host: &str,
        port: u16,
        config: &GrpcClientConfig,
        customize_endpoint: Option<Arc<BallistaConfigGrpcEndpoint>>,
    ) -> Result<PooledClient> {
        let key = (host.to_string(), port, config.clone());
        let reused = self.fresh().get_mut(&key).and_then(|clients| clients.pop());
        let client = match reused.map(|(client, _)| client) {
            Some(client) => client,
            None => {
                BallistaClient::try_new(
                    host,
                    port,
                    config.max_message_size,
                    config.use_tls,
                    customize_endpoint,
                    config.io_retries_times,
                    config.io_retry_wait_time_ms,
                    config.initial_connection_window_size,
                    config.initial_stream_window_size,
                )
                .await?
            }
        };
        let idle = self.idle.clone();
        Ok(PooledClient::new(
            client,
            Box::new(move |client| {
                let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.entry(key).or_default().push((client, Instant::now()));
            }),
        ))
    }

    async fn evict_idle(&self) {
        drop(self.fresh());
    }
}
