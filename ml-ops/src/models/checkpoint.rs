//! Training state kept in the model store after every iteration, so that the
//! same CREATE MODEL run again after its client died goes on from the last
//! completed iteration instead of from zero.
//!
//! A checkpoint is named by a key over everything that decides the model (the
//! statement's query, options and TRANSFORM, and the input files' names, sizes
//! and modification times): changed data or a changed statement starts afresh.
//! It lives beside the model's versions (`NAME/training/KEY.json`), is never
//! visible as a model, and goes when the model is saved.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::RoundInfo;
use crate::store::ModelStore;

/// Where one training's checkpoint is kept. Writes go on in the background,
/// the newest state replacing one not yet written: an iteration never waits for
/// the store (a put to S3 takes longer than a round), and a client killed
/// mid-write goes on, next time, from the state written before.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    store: ModelStore,
    name: String,
    key: String,
    /// The newest state not yet handed to the store.
    pending: Arc<Mutex<Option<Vec<u8>>>>,
    /// The background writer, while there is one.
    writer: Arc<tokio::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Checkpoint {
    pub fn new(store: ModelStore, name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            store,
            name: name.into(),
            key: key.into(),
            pending: Arc::default(),
            writer: Arc::default(),
        }
    }

    /// Hands `bytes` to the background writer (starting one when none runs).
    pub(crate) async fn save(&self, bytes: Vec<u8>) {
        if let Ok(mut pending) = self.pending.lock() {
            *pending = Some(bytes);
        }
        let mut writer = self.writer.lock().await;
        if writer.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        let this = self.clone();
        *writer = Some(tokio::spawn(async move {
            while let Some(bytes) = this.pending.lock().ok().and_then(|mut p| p.take()) {
                if let Err(e) = this
                    .store
                    .save_checkpoint(&this.name, &this.key, bytes)
                    .await
                {
                    log::warn!("training state not kept: {e}");
                }
            }
        }));
    }

    pub(crate) async fn load(&self) -> datafusion::common::Result<Option<Vec<u8>>> {
        self.store.load_checkpoint(&self.name, &self.key).await
    }

    /// Removes the checkpoint (the model it led to is saved), once a write in
    /// flight has ended; a state still waiting is dropped.
    pub async fn remove(&self) -> datafusion::common::Result<()> {
        if let Ok(mut pending) = self.pending.lock() {
            pending.take();
        }
        if let Some(writer) = self.writer.lock().await.take() {
            let _ = writer.await;
        }
        self.store.remove_checkpoint(&self.name, &self.key).await
    }
}

/// What a checkpoint holds: an estimator's state between iterations and the
/// training's own counters.
#[derive(Serialize, Deserialize)]
pub(crate) struct Saved<S> {
    pub state: S,
    pub iterations: usize,
    pub passes: usize,
    pub rows: u64,
    pub elapsed_seconds: f64,
    pub rounds: Vec<RoundInfo>,
}

/// Floats kept as their bits: a resumed training goes on from exactly the
/// numbers it stopped at (JSON's decimal text need not give them back).
pub(crate) mod exact {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
        values
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?
            .into_iter()
            .map(f64::from_bits)
            .collect())
    }

    /// One float, as its bits.
    pub mod one {
        use super::*;

        pub fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
            value.to_bits().serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
            Ok(f64::from_bits(u64::deserialize(d)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct State {
        #[serde(with = "exact")]
        weights: Vec<f64>,
        #[serde(with = "exact::one")]
        loss: f64,
    }

    #[test]
    fn floats_come_back_bit_for_bit() {
        let state = State {
            weights: vec![0.1 + 0.2, -0.0, f64::MIN_POSITIVE / 3.0, 1.0 / 3.0],
            loss: std::f64::consts::PI * 1e-300,
        };
        let text = serde_json::to_vec(&state).unwrap();
        let back: State = serde_json::from_slice(&text).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.weights), bits(&state.weights));
        assert_eq!(back.loss.to_bits(), state.loss.to_bits());
    }
}
