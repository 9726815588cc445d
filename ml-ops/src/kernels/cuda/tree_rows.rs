//! A tree training's binned rows on the GPU: their codes copied once, each
//! tree's row gradients once per tree, and a node's histogram built there
//! (histogram.cu) as [`crate::kernels::histogram::accumulate`] builds it on
//! the CPU. The sums are fixed-point integers: the GPU's equal the CPU's bit
//! for bit, whatever order its atomics land in.

use std::sync::Mutex;

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use datafusion::common::Result;

use super::device::Gpu;
use super::resident::cuda_error;
use crate::kernels::histogram::{GradPair, RowGradient, SLOTS};

/// Rows of one training, binned, on the device.
pub struct TreeRows {
    gpu: &'static Gpu,
    codes: CudaSlice<u8>,
    width: usize,
    rows: usize,
    /// The current tree's (g, h) per row.
    gradients: Mutex<Option<CudaSlice<i32>>>,
    /// The first failure of a GPU step, whose work the CPU then did.
    failure: Mutex<Option<String>>,
}

impl std::fmt::Debug for TreeRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TreeRows({} x {} on {:?})",
            self.rows, self.width, self.gpu
        )
    }
}

impl TreeRows {
    /// Copies `codes` (row by row, `width` a row) to `gpu`.
    pub fn upload(gpu: &'static Gpu, codes: &[u8], width: usize) -> Result<Self> {
        let _turn = gpu.turn()?;
        let device = gpu.stream.clone_htod(codes).map_err(cuda_error)?;
        Ok(Self {
            gpu,
            codes: device,
            width,
            rows: codes.len() / width.max(1),
            gradients: Mutex::new(None),
            failure: Mutex::new(None),
        })
    }

    /// Copies the gradients the next histograms sum.
    pub fn set_gradients(&self, gradients: &[RowGradient]) -> Result<()> {
        if gradients.len() != self.rows {
            return Err(cuda_error(format!(
                "{} gradients for {} rows",
                gradients.len(),
                self.rows
            )));
        }
        let flat: Vec<i32> = gradients.iter().flatten().copied().collect();
        let _turn = self.gpu.turn()?;
        let device = self.gpu.stream.clone_htod(&flat).map_err(cuda_error)?;
        *self.lock_gradients()? = Some(device);
        Ok(())
    }

    fn lock_gradients(&self) -> Result<std::sync::MutexGuard<'_, Option<CudaSlice<i32>>>> {
        self.gradients
            .lock()
            .map_err(|_| cuda_error("GPU gradients lock poisoned"))
    }

    /// Keeps the first failure of a step the CPU then did in its place.
    pub fn note_failure(&self, error: &datafusion::error::DataFusionError) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert_with(|| error.to_string());
        }
    }

    /// The first failure noted, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// The histogram (`width` × [`SLOTS`] slots) of `rows` under the
    /// gradients last set.
    pub fn histogram(&self, rows: &[u32]) -> Result<Vec<GradPair>> {
        let slots = self.width * SLOTS;
        let gradients = self.lock_gradients()?;
        let Some(gradients) = gradients.as_ref() else {
            return Err(cuda_error("no gradients on the GPU"));
        };
        if rows.is_empty() || self.width == 0 {
            return Ok(vec![[0; 2]; slots]);
        }
        if let Some(bad) = rows.iter().find(|&&r| r as usize >= self.rows) {
            return Err(cuda_error(format!("row {bad} of {}", self.rows)));
        }
        let gpu = self.gpu;
        let _turn = gpu.turn()?;
        let stream = &gpu.stream;
        let rows_dev = stream.clone_htod(rows).map_err(cuda_error)?;
        let mut hist = stream.alloc_zeros::<i64>(slots * 2).map_err(cuda_error)?;
        let (width, count) = (self.width as i32, rows.len() as i64);
        // Enough blocks per feature to fill the device, each thread ~16 rows.
        let per_feature = rows
            .len()
            .div_ceil(256 * 16)
            .clamp(1, (gpu.multiprocessors as usize * 8).div_ceil(self.width));
        let config = LaunchConfig {
            grid_dim: (per_feature as u32, self.width as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(gpu.function("histogram_rows"));
        launch
            .arg(&self.codes)
            .arg(&width)
            .arg(&rows_dev)
            .arg(&count)
            .arg(gradients)
            .arg(&mut hist);
        // SAFETY: the arguments match histogram_rows' parameters in type and
        // order; codes hold rows·width bytes, every listed row is below rows
        // (checked above), gradients hold 2·rows i32s, hist 2·width·256
        // i64s, and the grid's y dimension is width.
        unsafe { launch.launch(config) }.map_err(cuda_error)?;
        let flat = stream.clone_dtoh(&hist).map_err(cuda_error)?;
        Ok(flat.chunks_exact(2).map(|p| [p[0], p[1]]).collect())
    }
}
