//! ember's settings: a DataFusion [`ConfigExtension`] under the `ember` prefix.
//!
//! `SET ember.ml.device = 'cpu'` works like any DataFusion setting, and because the
//! extension is registered on every process (see [`crate::session`]), the values
//! travel with each job to the scheduler and the executors.

use std::fmt;

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::{Result, config_err};
use datafusion::config::{ConfigField, Visit};

/// `ember.ml.device`: where ML kernels run (the kernels' own choice type).
pub const ML_DEVICE: &str = ember_ml_ops::kernels::DEVICE_SETTING;
pub use ember_ml_ops::kernels::DeviceChoice as MlDevice;
/// `ember.ml.max_iterations`: upper bound on training iterations, whatever a
/// model asks for (read by CREATE MODEL).
pub const ML_MAX_ITERATIONS: &str = ember_ml_ops::models::MAX_ITERATIONS_SETTING;

/// `ember.ml.lease_seconds`: how long an executor keeps a training's rows
/// without hearing from its driver.
pub const ML_LEASE_SECONDS: &str = "ember.ml.lease_seconds";

/// ML settings, under `ember.ml.`.
#[derive(Debug, Clone)]
pub struct MlOptions {
    /// Where ML kernels run: 'auto', 'cpu' or 'cuda'.
    pub device: MlDevice,
    /// Upper bound on training iterations, whatever a model's options ask for.
    pub max_iterations: usize,
    /// Seconds an executor keeps a training's rows without a round from its
    /// driver (a driver that died leaves nothing behind for longer).
    pub lease_seconds: u64,
}

impl Default for MlOptions {
    fn default() -> Self {
        Self {
            device: MlDevice::Auto,
            max_iterations: 1000,
            lease_seconds: 60,
        }
    }
}

impl ConfigField for MlOptions {
    fn visit<V: Visit>(&self, visitor: &mut V, key: &str, _description: &'static str) {
        self.device.visit(
            visitor,
            &format!("{key}.device"),
            "Where ML kernels run: 'auto', 'cpu' or 'cuda'.",
        );
        self.max_iterations.visit(
            visitor,
            &format!("{key}.max_iterations"),
            "Upper bound on training iterations, whatever a model's options ask for.",
        );
        self.lease_seconds.visit(
            visitor,
            &format!("{key}.lease_seconds"),
            "Seconds an executor keeps a training's rows without a round from its driver.",
        );
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let (field, rest) = key.split_once('.').unwrap_or((key, ""));
        match field {
            "device" => self.device.set(rest, value),
            "max_iterations" => {
                self.max_iterations.set(rest, value)?;
                if self.max_iterations == 0 {
                    return config_err!("{ML_MAX_ITERATIONS} must be at least 1");
                }
                Ok(())
            }
            "lease_seconds" => {
                self.lease_seconds.set(rest, value)?;
                if self.lease_seconds == 0 {
                    return config_err!("{ML_LEASE_SECONDS} must be at least 1");
                }
                Ok(())
            }
            _ => config_err!("unknown ember setting 'ember.ml.{key}'"),
        }
    }
}

/// `ember.optimizer.join_reorder`: whether inner joins are reordered from
/// statistics ([`crate::join_order`]).
pub const JOIN_REORDER: &str = "ember.optimizer.join_reorder";

/// Planning settings, under `ember.optimizer.`.
#[derive(Debug, Clone)]
pub struct OptimizerOptions {
    /// Whether inner joins are reordered from statistics.
    pub join_reorder: bool,
}

impl Default for OptimizerOptions {
    fn default() -> Self {
        Self { join_reorder: true }
    }
}

impl ConfigField for OptimizerOptions {
    fn visit<V: Visit>(&self, visitor: &mut V, key: &str, _description: &'static str) {
        self.join_reorder.visit(
            visitor,
            &format!("{key}.join_reorder"),
            "Whether inner joins are reordered from table statistics.",
        );
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let (field, rest) = key.split_once('.').unwrap_or((key, ""));
        match field {
            "join_reorder" => self.join_reorder.set(rest, value),
            _ => config_err!("unknown ember setting 'ember.optimizer.{key}'"),
        }
    }
}

/// All of ember's settings; registered on every session as a config extension.
#[derive(Debug, Clone, Default)]
pub struct EmberConfig {
    /// `ember.ml.*`
    pub ml: MlOptions,
    /// `ember.optimizer.*`
    pub optimizer: OptimizerOptions,
}

impl ConfigExtension for EmberConfig {
    const PREFIX: &'static str = "ember";
}

impl ExtensionOptions for EmberConfig {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key.split_once('.') {
            Some(("ml", rest)) => self.ml.set(rest, value),
            Some(("optimizer", rest)) => self.optimizer.set(rest, value),
            _ => config_err!("unknown ember setting 'ember.{key}'"),
        }
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        struct Entries(Vec<ConfigEntry>);
        impl Visit for Entries {
            fn some<V: fmt::Display>(&mut self, key: &str, value: V, description: &'static str) {
                self.0.push(ConfigEntry {
                    key: format!("{}.{key}", EmberConfig::PREFIX),
                    value: Some(value.to_string()),
                    description,
                });
            }
            fn none(&mut self, key: &str, description: &'static str) {
                self.0.push(ConfigEntry {
                    key: format!("{}.{key}", EmberConfig::PREFIX),
                    value: None,
                    description,
                });
            }
        }
        let mut entries = Entries(Vec::new());
        self.ml.visit(&mut entries, "ml", "");
        self.optimizer.visit(&mut entries, "optimizer", "");
        entries.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionConfig;

    fn config() -> SessionConfig {
        SessionConfig::new().with_option_extension(EmberConfig::default())
    }

    #[test]
    fn defaults_and_entries() {
        let config = config();
        let keys: Vec<(String, Option<String>)> = config
            .options()
            .entries()
            .into_iter()
            .filter(|e| e.key.starts_with("ember."))
            .map(|e| (e.key, e.value))
            .collect();
        assert!(
            keys.contains(&(ML_DEVICE.into(), Some("auto".into()))),
            "{keys:?}"
        );
        assert!(
            keys.contains(&(ML_MAX_ITERATIONS.into(), Some("1000".into()))),
            "{keys:?}"
        );
    }

    #[test]
    fn set_through_session_options() {
        let mut config = config();
        config.options_mut().set(ML_DEVICE, "CPU").unwrap();
        config.options_mut().set(ML_MAX_ITERATIONS, "7").unwrap();
        let ember = config.options().extensions.get::<EmberConfig>().unwrap();
        assert_eq!(ember.ml.device, MlDevice::Cpu);
        assert_eq!(ember.ml.max_iterations, 7);
    }

    #[test]
    fn bad_values_are_refused_with_the_key_named() {
        let mut config = config();
        let err = config
            .options_mut()
            .set(ML_DEVICE, "tpu")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ember.ml.device") && err.contains("tpu"),
            "{err}"
        );
        let err = config
            .options_mut()
            .set(ML_MAX_ITERATIONS, "0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_iterations"), "{err}");
        let err = config
            .options_mut()
            .set("ember.ml.colour", "red")
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }
}
