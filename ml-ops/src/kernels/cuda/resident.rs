//! Feature matrices kept on the GPU across training rounds.
//!
//! A round over cached training data hands the accumulator the very same Arrow
//! arrays every time, so the arrays' identity is the key: an entry holds weak
//! references to them and matches only while they are alive and are the same
//! allocations (a freed array's address can be reused, a live one's cannot).
//! Moving the data over PCIe (~25–50 GB/s) costs far more than a pass over it
//! in device memory (~3 TB/s), so only data read again is worth keeping.

use std::sync::{Arc, Mutex, Weak};

use cudarc::driver::CudaSlice;
use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::common::{DataFusionError, Result};

use super::device::Gpu;
use crate::kernels::FeatureColumns;

/// Features (column-major, float64) and optional labels in device memory.
pub struct DeviceData {
    pub(super) x: CudaSlice<f64>,
    pub(super) y: Option<CudaSlice<f64>>,
    pub rows: usize,
    pub width: usize,
}

impl DeviceData {
    /// Copies `columns` (and `labels`) to the device.
    pub fn upload(gpu: &Gpu, columns: &FeatureColumns, labels: Option<&[f64]>) -> Result<Self> {
        let (rows, width) = (columns.rows(), columns.width());
        let mut host = vec![0.0; rows * width];
        columns.gather_columns(0, rows, &mut host)?;
        let _turn = gpu.turn()?;
        let x = gpu.stream.clone_htod(&host).map_err(cuda_error)?;
        let y = match labels {
            Some(labels) => Some(gpu.stream.clone_htod(labels).map_err(cuda_error)?),
            None => None,
        };
        Ok(Self { x, y, rows, width })
    }

    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        (self.rows * self.width + if self.y.is_some() { self.rows } else { 0 }) * 8
    }
}

/// Wraps a CUDA error as an execution error naming CUDA.
pub(super) fn cuda_error(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("CUDA: {e}"))
}

struct Entry {
    arrays: Vec<Weak<dyn Array>>,
    data: Arc<DeviceData>,
    last_used: u64,
}

impl Entry {
    fn alive(&self) -> bool {
        self.arrays.iter().all(|a| a.strong_count() > 0)
    }

    fn matches(&self, arrays: &[ArrayRef]) -> bool {
        self.arrays.len() == arrays.len()
            && self
                .arrays
                .iter()
                .zip(arrays)
                .all(|(held, given)| held.upgrade().is_some_and(|held| Arc::ptr_eq(&held, given)))
    }
}

#[derive(Default)]
struct Cache {
    entries: Vec<Entry>,
    clock: u64,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    entries: Vec::new(),
    clock: 0,
});

/// The share of device memory the cache may fill.
const BUDGET_FRACTION: f64 = 0.7;

/// The device copy of `arrays` (label first when present, then the features),
/// uploading it with `upload` the first time; older entries are dropped when
/// their arrays are gone or to stay within the budget.
pub fn resident(
    gpu: &Gpu,
    arrays: &[ArrayRef],
    upload: impl FnOnce() -> Result<DeviceData>,
) -> Result<Arc<DeviceData>> {
    if let Some(data) = cached(arrays) {
        return Ok(data);
    }
    let data = Arc::new(upload()?);
    let budget = (gpu.memory_bytes() as f64 * BUDGET_FRACTION) as usize;
    let mut cache = CACHE
        .lock()
        .map_err(|_| cuda_error("GPU cache lock poisoned"))?;
    cache.entries.retain(Entry::alive);
    let mut held: usize = cache.entries.iter().map(|e| e.data.bytes()).sum();
    while held + data.bytes() > budget && !cache.entries.is_empty() {
        let oldest = (0..cache.entries.len())
            .min_by_key(|&i| cache.entries[i].last_used)
            .expect("not empty");
        held -= cache.entries.swap_remove(oldest).data.bytes();
    }
    let now = cache.clock;
    cache.entries.push(Entry {
        arrays: arrays.iter().map(Arc::downgrade).collect(),
        data: data.clone(),
        last_used: now,
    });
    Ok(data)
}

/// The device copy of `arrays` if one is held (see [`resident`]).
pub fn cached(arrays: &[ArrayRef]) -> Option<Arc<DeviceData>> {
    let mut cache = CACHE.lock().ok()?;
    cache.clock += 1;
    let now = cache.clock;
    let entry = cache.entries.iter_mut().find(|e| e.matches(arrays))?;
    entry.last_used = now;
    Some(entry.data.clone())
}

/// Frees the device copies of arrays that no longer exist (after training).
pub fn release_unused() {
    if let Ok(mut cache) = CACHE.lock() {
        cache.entries.retain(Entry::alive);
    }
}

/// Device bytes the cache holds now.
pub fn resident_bytes() -> usize {
    CACHE
        .lock()
        .map(|c| c.entries.iter().map(|e| e.data.bytes()).sum())
        .unwrap_or(0)
}
