//! Where a kernel runs: the user's choice (`ember.ml.device` or a model's
//! `device` option) and what this process has.

use std::fmt;
use std::str::FromStr;

use datafusion::common::{DataFusionError, Result, config_err, exec_err};
use datafusion::config::{ConfigField, Visit};
use serde::{Deserialize, Serialize};

use super::cuda::{Gpu, gpu};

/// The session setting that holds a [`DeviceChoice`].
pub const DEVICE_SETTING: &str = "ember.ml.device";

/// The user's choice of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when this process has a GPU and the batch pays for the transfer.
    #[default]
    Auto,
    /// The CPU kernels always.
    Cpu,
    /// CUDA always; an error where there is no GPU.
    Cuda,
}

impl FromStr for DeviceChoice {
    type Err = DataFusionError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            other => exec_err!("device must be 'auto', 'cpu' or 'cuda', not '{other}'"),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        })
    }
}

/// `SET ember.ml.device = ...`: a setting of ember's config extension.
impl ConfigField for DeviceChoice {
    fn visit<V: Visit>(&self, visitor: &mut V, key: &str, description: &'static str) {
        visitor.some(key, self, description)
    }

    fn set(&mut self, _key: &str, value: &str) -> Result<()> {
        *self = match value.parse() {
            Ok(choice) => choice,
            Err(_) => {
                return config_err!(
                    "{DEVICE_SETTING} must be 'auto', 'cpu' or 'cuda', not '{}'",
                    value.trim().to_ascii_lowercase()
                );
            }
        };
        Ok(())
    }
}

/// Rows from which `auto` sends a batch to the GPU. A batch that is read again
/// every round stays there after the first copy; a batch read once must carry
/// its copy over PCIe (~25 GB/s), which a Gram or distance pass of tens of
/// features amortises from about this size on.
pub const AUTO_MIN_ROWS: usize = 65_536;

/// Where a batch of `rows` runs under `choice`: `None` for the CPU.
pub fn place(choice: DeviceChoice, rows: usize) -> Result<Option<&'static Gpu>> {
    match choice {
        DeviceChoice::Cpu => Ok(None),
        DeviceChoice::Cuda => match gpu() {
            Ok(gpu) => Ok(Some(gpu)),
            Err(reason) => exec_err!("device = 'cuda' but {reason}"),
        },
        DeviceChoice::Auto if rows >= AUTO_MIN_ROWS => Ok(gpu().ok()),
        DeviceChoice::Auto => Ok(None),
    }
}
