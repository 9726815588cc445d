//! Numeric kernels over dense blocks of feature rows.
//!
//! ```text
//!   Arrow columns --FeatureBlock::gather--> row-major f64 block --kernel--> statistics
//! ```
//!
//! Kernels take plain slices and know nothing of plans or SQL. Each accumulates
//! into a flat `Vec<f64>` of statistics that partitions merge by element-wise
//! addition, which is what makes a training round one distributed aggregate.

mod block;
pub mod cuda;
pub mod gram;
pub mod histogram;
pub mod kmeans;
pub mod linear;
pub mod logistic;
mod placement;
pub mod softmax;
pub mod syrk;
pub mod transform;

pub use block::{BLOCK_ROWS, FeatureBlock, FeatureColumns, feature_rows, for_each_block};
pub use placement::{AUTO_MIN_ROWS, DEVICE_SETTING, DeviceChoice, place};
