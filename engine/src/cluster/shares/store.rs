//! An executor's training shares: the rows of a training that this executor
//! read, transformed and packed once, kept in memory for every round.
//!
//! Memory is bounded: a share that would take the store past its limit is
//! refused with an error naming the limit, never allocated past it. Every
//! training holds a lease that each round renews; a training whose driver
//! stopped calling (killed, disconnected) is dropped when its lease runs out.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use ember_ml_ops::models::trees::Shard;

use crate::cluster::fault::Fault;

/// One partition of a training's rows.
#[derive(Debug, Clone)]
pub struct Share {
    /// The rows: one batch where a GPU may run the rounds (it copies the batch
    /// once and keeps it between rounds), else as they were read.
    pub batches: Vec<RecordBatch>,
    /// Bytes the batch holds, as accounted against the limit.
    pub bytes: usize,
}

/// A training's rows binned for trees, and the bytes set aside for them.
type TreeShard = (Arc<Mutex<Shard>>, usize);

struct Training {
    shares: BTreeMap<u32, Arc<Share>>,
    /// The shares' rows binned for trees, once asked for.
    tree: Option<TreeShard>,
    lease: Duration,
    expires: Instant,
}

impl Training {
    fn bytes(&self) -> usize {
        self.shares.values().map(|s| s.bytes).sum::<usize>() + self.tree.as_ref().map_or(0, |t| t.1)
    }
}

#[derive(Default)]
struct Held {
    trainings: HashMap<String, Training>,
    /// Bytes held and promised to shares being packed.
    used: usize,
}

/// The shares this executor holds, by training and partition.
pub struct ShareStore {
    endpoint: String,
    limit: usize,
    held: Mutex<Held>,
}

impl std::fmt::Debug for ShareStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareStore")
            .field("endpoint", &self.endpoint)
            .field("limit", &self.limit)
            .field("used", &self.used())
            .finish()
    }
}

impl ShareStore {
    /// A store whose shares are served at `endpoint` (`host:port`) and take at
    /// most `limit` bytes together.
    pub fn new(endpoint: String, limit: usize) -> Self {
        Self {
            endpoint,
            limit,
            held: Mutex::default(),
        }
    }

    /// Where the driver reaches this store's rounds.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.lock().used
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        // A panic while holding the lock leaves plain counters behind: go on.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Promises `bytes` more to a share being packed, or says which limit it
    /// would break.
    pub fn reserve(&self, bytes: usize) -> Result<Reservation<'_>> {
        let mut held = self.lock();
        self.expire(&mut held);
        if held.used + bytes > self.limit {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "training data does not fit in this executor's training memory ({} of {} in use, {} more wanted): \
                 give executors more with `ember executor --training-memory`, or train on fewer rows",
                human_bytes(held.used),
                human_bytes(self.limit),
                human_bytes(bytes)
            )));
        }
        held.used += bytes;
        Ok(Reservation { store: self, bytes })
    }

    /// Keeps `batches` as partition `partition` of `training`, in place of what
    /// `reservation` promised; the training's lease starts again.
    pub fn put(
        &self,
        training: &str,
        partition: u32,
        lease: Duration,
        batches: Vec<RecordBatch>,
        mut reservation: Reservation<'_>,
    ) -> Arc<Share> {
        let bytes = std::mem::take(&mut reservation.bytes);
        let share = Arc::new(Share { batches, bytes });
        let mut held = self.lock();
        let now = Instant::now();
        let entry = held
            .trainings
            .entry(training.to_string())
            .or_insert_with(|| Training {
                shares: BTreeMap::new(),
                tree: None,
                lease,
                expires: now + lease,
            });
        entry.lease = lease;
        entry.expires = now + lease;
        // A partition packed twice (a task run again) replaces the first copy.
        let replaced = entry.shares.insert(partition, share.clone());
        if let Some(old) = replaced {
            held.used -= old.bytes;
        }
        share
    }

    /// The shares of `training` among `partitions`, renewing its lease; an
    /// error names the first partition this executor does not hold.
    pub fn shares(&self, training: &str, partitions: &[u32]) -> Result<Vec<(u32, Arc<Share>)>> {
        let mut held = self.lock();
        self.expire(&mut held);
        let Some(entry) = held.trainings.get_mut(training) else {
            return Err(missing(training, partitions.first().copied()));
        };
        entry.expires = Instant::now() + entry.lease;
        partitions
            .iter()
            .map(|p| match entry.shares.get(p) {
                Some(share) => Ok((*p, share.clone())),
                None => Err(missing(training, Some(*p))),
            })
            .collect()
    }

    /// Holds `shard` as `training`'s rows binned for trees (in place of any
    /// before), in the bytes `reservation` promised; renews the lease.
    pub fn set_tree(
        &self,
        training: &str,
        shard: Shard,
        mut reservation: Reservation<'_>,
    ) -> Result<Arc<Mutex<Shard>>> {
        let mut held = self.lock();
        self.expire(&mut held);
        let Some(entry) = held.trainings.get_mut(training) else {
            return Err(missing(training, None));
        };
        entry.expires = Instant::now() + entry.lease;
        let shard = Arc::new(Mutex::new(shard));
        let bytes = std::mem::take(&mut reservation.bytes);
        let old = entry.tree.replace((shard.clone(), bytes));
        if let Some((_, old)) = old {
            held.used -= old;
        }
        Ok(shard)
    }

    /// `training`'s rows binned for trees, renewing its lease.
    pub fn tree(&self, training: &str) -> Result<Arc<Mutex<Shard>>> {
        let mut held = self.lock();
        self.expire(&mut held);
        let Some(entry) = held.trainings.get_mut(training) else {
            return Err(missing(training, None));
        };
        entry.expires = Instant::now() + entry.lease;
        match &entry.tree {
            Some((shard, _)) => Ok(shard.clone()),
            None => Err(missing(training, None)),
        }
    }

    /// Frees every share of `training`; how many bytes that was.
    pub fn release(&self, training: &str) -> usize {
        let mut held = self.lock();
        let freed = held
            .trainings
            .remove(training)
            .map(|t| t.bytes())
            .unwrap_or(0);
        held.used -= freed;
        freed
    }

    /// Trainings held now.
    pub fn trainings(&self) -> Vec<String> {
        let mut held = self.lock();
        self.expire(&mut held);
        held.trainings.keys().cloned().collect()
    }

    /// Drops trainings whose lease ran out; how many.
    pub fn expire_leases(&self) -> usize {
        let mut held = self.lock();
        self.expire(&mut held)
    }

    fn expire(&self, held: &mut Held) -> usize {
        let now = Instant::now();
        let expired: Vec<String> = held
            .trainings
            .iter()
            .filter(|(_, t)| t.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let count = expired.len();
        for id in expired {
            if let Some(t) = held.trainings.remove(&id) {
                let bytes = t.bytes();
                held.used -= bytes;
                log::info!("training {id}: lease ran out, {} freed", human_bytes(bytes));
            }
        }
        count
    }
}

/// The error for a share this executor does not hold (lost with a restarted
/// executor, or its lease ran out): the driver packs the rows again.
fn missing(training: &str, partition: Option<u32>) -> DataFusionError {
    let which = partition
        .map(|p| format!(" partition {p}"))
        .unwrap_or_default();
    Fault::RowsLost(format!("{SHARE_MISSING}: training {training}{which}")).into()
}

/// How an executor says it does not hold a share the driver asked for.
pub const SHARE_MISSING: &str = "this executor does not hold the training share";

/// Bytes promised to a share being packed; given back when dropped unused.
#[derive(Debug)]
pub struct Reservation<'a> {
    store: &'a ShareStore,
    bytes: usize,
}

impl Reservation<'_> {
    /// Promises `bytes` more, or fails as [`ShareStore::reserve`] does.
    pub fn grow(&mut self, bytes: usize) -> Result<()> {
        let mut more = self.store.reserve(bytes)?;
        self.bytes += std::mem::take(&mut more.bytes);
        Ok(())
    }

    /// Bytes promised.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.store.lock().used -= self.bytes;
        }
    }
}

/// `1.5 GiB`, `300.0 MiB`.
pub fn human_bytes(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Float64Array};

    fn batch(rows: usize) -> RecordBatch {
        let values: ArrayRef = Arc::new(Float64Array::from(vec![1.0; rows]));
        RecordBatch::try_from_iter([("x", values)]).unwrap()
    }

    #[test]
    fn a_share_past_the_limit_is_refused_and_nothing_is_kept() {
        let store = ShareStore::new("h:1".into(), 1000);
        let reservation = store.reserve(800).unwrap();
        store.put(
            "t",
            0,
            Duration::from_secs(60),
            vec![batch(10)],
            reservation,
        );
        let error = store.reserve(300).unwrap_err().to_string();
        assert!(error.contains("training memory"), "{error}");
        assert!(error.contains("--training-memory"), "{error}");
        assert_eq!(store.used(), 800);
        {
            let mut reservation = store.reserve(100).unwrap();
            assert!(reservation.grow(200).is_err());
            assert_eq!(store.used(), 900);
        }
        assert_eq!(store.used(), 800, "an unused reservation is given back");
        assert_eq!(store.release("t"), 800);
        assert_eq!(store.used(), 0);
    }

    #[test]
    fn a_lease_not_renewed_frees_the_training() {
        let store = ShareStore::new("h:1".into(), 1 << 20);
        let reservation = store.reserve(100).unwrap();
        store.put(
            "t",
            3,
            Duration::from_millis(50),
            vec![batch(1)],
            reservation,
        );
        assert_eq!(store.shares("t", &[3]).unwrap().len(), 1);
        let error = store.shares("t", &[4]).unwrap_err();
        assert!(
            matches!(Fault::of(&error), Some(Fault::RowsLost(m)) if m.contains("partition 4")),
            "{error}"
        );
        std::thread::sleep(Duration::from_millis(80));
        store.expire_leases();
        assert!(store.trainings().is_empty());
        assert_eq!(store.used(), 0);
        assert!(store.shares("t", &[3]).is_err());
    }
}
