//! Training rows kept on the executors that read them, and rounds run there
//! (see ember_ml_ops::models::ResidentRows).
//!
//! ```text
//!   driver ── keep job (Ballista) ──> each task packs its partition into its
//!                                     executor's ShareStore, says where
//!   driver ── round: Flight do_action per executor ──> partial statistics
//!   driver ── release (or the lease runs out) ──> shares freed
//! ```

mod driver;
mod keep;
mod service;
mod store;
mod tree_recovery;
mod tree_rows;
mod tree_service;
mod tree_wire;
mod wire;

pub use driver::ClusterKeeper;
pub(crate) use keep::KeepRowsExtension;
pub use keep::{KeepRowsExec, KeepRowsNode, decode_spec, encode_spec, number_partitions};
pub use service::{bind_shares, serve_shares};
pub use store::ShareStore;

/// Bytes an executor lets training rows take when not told: half its machine's
/// memory (4 GiB where that cannot be read).
pub fn default_training_memory() -> usize {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
        });
    match total_kib {
        Some(kib) => kib * 1024 / 2,
        None => 4 << 30,
    }
}
