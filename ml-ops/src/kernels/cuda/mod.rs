//! CUDA versions of the kernels, loaded at run time.
//!
//! ```text
//!   gpu() ── probe libcuda, device 0, libnvrtc ── compile every .cu (NVRTC, once)
//!     │
//!   resident(arrays) ── device copy of a batch, kept while its arrays live
//!     │
//!   least_squares / logistic / kmeans ── same statistics as the CPU kernels
//!   TreeRows::histogram ── a tree node's gradient histogram over binned rows
//! ```
//!
//! Nothing here is needed on a machine without a GPU: [`gpu`] answers with the
//! reason, and callers use the CPU kernels.

mod device;
mod launch;
mod resident;
mod sources;
mod tree_rows;

pub use device::{Gpu, describe, gpu};
pub use launch::{
    affine_columns, copy_bandwidth, kmeans, least_squares, logistic, one_hot_expand,
    polynomial_expand, synchronize,
};
pub use resident::{DeviceData, cached, release_unused, resident, resident_bytes};
pub use sources::{SOURCES, Source, compile, nvrtc_present};
pub use tree_rows::TreeRows;

#[cfg(test)]
mod tests;
