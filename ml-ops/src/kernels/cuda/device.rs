//! The GPU, found once per process: driver loaded, device 0 opened, every
//! kernel compiled for its architecture and loaded.
//!
//! A machine without the CUDA driver, without a device or without NVRTC gets
//! the reason as text instead, never a panic: cudarc panics when a library it
//! needs is missing, so each is probed with `is_culib_present` first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaStream};

use datafusion::common::Result;

use super::resident::cuda_error;
use super::sources::{SOURCES, compile, nvrtc_present};

/// An opened CUDA device with ember's kernels loaded.
pub struct Gpu {
    pub(super) stream: Arc<CudaStream>,
    functions: HashMap<&'static str, CudaFunction>,
    /// Serialises ember's use of the one stream: partitions that reach the GPU
    /// at once take turns, each sequence of launches and copies whole.
    lock: Mutex<()>,
    /// Streaming multiprocessors, to size grids.
    pub(super) multiprocessors: u32,
    name: String,
    memory_bytes: usize,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl Gpu {
    /// "NVIDIA H100 80GB HBM3, 79 GiB".
    pub fn describe(&self) -> String {
        format!("{}, {} GiB", self.name, self.memory_bytes >> 30)
    }

    /// Device memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// Waits for ember's turn on the stream (see `lock`).
    pub(super) fn turn(&self) -> Result<MutexGuard<'_, ()>> {
        self.lock
            .lock()
            .map_err(|_| cuda_error("GPU lock poisoned"))
    }

    pub(super) fn function(&self, name: &str) -> &CudaFunction {
        &self.functions[name]
    }
}

static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();

/// The process's GPU, or why there is none usable (a one-line reason).
pub fn gpu() -> Result<&'static Gpu, &'static str> {
    GPU.get_or_init(|| {
        if std::env::var_os("EMBER_DISABLE_CUDA").is_some() {
            return Err("CUDA is disabled by EMBER_DISABLE_CUDA".to_string());
        }
        open()
    })
    .as_ref()
    .map_err(|reason| reason.as_str())
}

/// One line for the user: the GPU in use, or why there is none.
pub fn describe() -> String {
    match gpu() {
        Ok(gpu) => format!("GPU: {}", gpu.describe()),
        Err(reason) => format!("no GPU ({reason})"),
    }
}

fn open() -> Result<Gpu, String> {
    // SAFETY: only tries to dlopen the driver library by its usual names.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver library (libcuda.so) on this machine".to_string());
    }
    let count = CudaContext::device_count().map_err(|e| format!("CUDA driver: {e}"))?;
    if count < 1 {
        return Err("the CUDA driver sees no device".to_string());
    }
    if !nvrtc_present() {
        return Err(
            "a CUDA device is present but NVRTC (libnvrtc.so) is not, so ember's kernels cannot be compiled"
                .to_string(),
        );
    }
    let ctx = CudaContext::new(0).map_err(|e| format!("cannot open CUDA device 0: {e}"))?;
    let (major, minor) = ctx
        .compute_capability()
        .map_err(|e| format!("CUDA device 0: {e}"))?;
    // NVRTC wants a 'static architecture name; one per process.
    let arch: &'static str = Box::leak(format!("sm_{major}{minor}").into_boxed_str());
    let mut functions = HashMap::new();
    for source in SOURCES {
        let ptx = compile(source, Some(arch))?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| format!("cannot load {} on the device: {e}", source.name))?;
        for kernel in source.kernels {
            let function = module
                .load_function(kernel)
                .map_err(|e| format!("{} has no kernel {kernel}: {e}", source.name))?;
            functions.insert(*kernel, function);
        }
    }
    let multiprocessors = ctx
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .map_err(|e| format!("CUDA device 0: {e}"))? as u32;
    Ok(Gpu {
        name: ctx.name().map_err(|e| format!("CUDA device 0: {e}"))?,
        memory_bytes: ctx.total_mem().map_err(|e| format!("CUDA device 0: {e}"))?,
        stream: ctx.default_stream(),
        functions,
        lock: Mutex::new(()),
        multiprocessors,
    })
}
