//! Failures on a cluster that running the same work again gets past, as a
//! type rather than as words to look for.
//!
//! Ballista reports a failed job to its client as text only: the one place
//! ember reads a message for its meaning is [`executor_lost`], which knows the
//! words ember itself puts there ([`EXECUTOR_LOST`], see [`super::refused`]).

use std::fmt;

use datafusion::arrow::error::ArrowError;
use datafusion::common::DataFusionError;
use ember_ml_ops::models::Retry;

/// How the scheduler fails a job that lost work to a failed executor (ember
/// does not let Ballista re-run part of a job); such a job can simply run again.
pub const EXECUTOR_LOST: &str =
    "part of this job must run again (an executor was lost or a task failed)";

/// How many times work that only reads runs before a lost executor's error is
/// the answer: a statement on a cluster, a training round, packing training rows.
pub const RUN_ATTEMPTS: usize = 3;

/// A failure that the same work, run again, gets past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The executor holding a training's rows cannot be reached, or no longer
    /// holds them (it restarted, or their lease ran out): pack them again.
    RowsLost(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::RowsLost(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Fault {}

impl From<Fault> for DataFusionError {
    fn from(fault: Fault) -> Self {
        DataFusionError::External(Box::new(fault))
    }
}

impl Fault {
    /// The fault `error` is, or wraps.
    pub fn of(error: &DataFusionError) -> Option<&Fault> {
        match error {
            DataFusionError::External(inner) => inner
                .downcast_ref::<Fault>()
                .or_else(|| inner.downcast_ref::<DataFusionError>().and_then(Fault::of)),
            DataFusionError::Context(_, inner) => Fault::of(inner),
            DataFusionError::Shared(inner) => Fault::of(inner),
            DataFusionError::ArrowError(arrow, _) => match arrow.as_ref() {
                ArrowError::ExternalError(inner) => {
                    inner.downcast_ref::<DataFusionError>().and_then(Fault::of)
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// Whether `error` is a job the scheduler failed because an executor was lost:
/// the work can run again as it is. The message comes from another process
/// (the scheduler, through Ballista's job status), so it is text here.
pub fn executor_lost(error: &DataFusionError) -> bool {
    error.to_string().contains(EXECUTOR_LOST)
}

/// The retry rule of work that only reads, on a cluster: again after a lost
/// executor, [`RUN_ATTEMPTS`] times in all.
pub fn cluster_retry() -> Retry {
    Retry::new(RUN_ATTEMPTS, executor_lost)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_fault_is_found_through_the_wrappers_datafusion_adds() {
        let fault = || DataFusionError::from(Fault::RowsLost("gone".into()));
        let wrapped = [
            fault(),
            fault().context("running a round"),
            DataFusionError::Shared(Arc::new(fault())),
            DataFusionError::ArrowError(
                Box::new(ArrowError::ExternalError(Box::new(fault()))),
                None,
            ),
        ];
        for error in &wrapped {
            assert_eq!(
                Fault::of(error),
                Some(&Fault::RowsLost("gone".into())),
                "{error}"
            );
        }
        assert_eq!(Fault::of(&DataFusionError::Execution("gone".into())), None);
    }

    #[test]
    fn the_retry_rule_runs_again_only_what_a_lost_executor_failed() {
        let retry = cluster_retry();
        let lost = DataFusionError::Execution(format!("job failed: {EXECUTOR_LOST} (stage 2)"));
        assert!(retry.again(1, &lost));
        assert!(retry.again(RUN_ATTEMPTS - 1, &lost));
        assert!(!retry.again(RUN_ATTEMPTS, &lost));
        assert!(!retry.again(1, &DataFusionError::Execution("division by zero".into())));
    }
}
