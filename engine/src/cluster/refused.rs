//! Refusing partial re-runs. Ballista 55 re-runs the partitions a lost executor
//! held, but on TPC-H q18 at scale 1 the re-run partitions were sometimes
//! counted twice (sums doubled; RELIABILITY.md). A wrong answer is worse than a
//! failed one, so when the scheduler is about to bind a partition a second time
//! it binds the task over a [`RefusedExec`] instead: an ordinary task failure,
//! which Ballista reports to the client with [`EXECUTOR_LOST`] in the message.
//! The client then runs the whole statement (or training round) again.

use std::fmt;
use std::sync::Arc;

use ballista_scheduler::state::execution_stage::RunningStage;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, exec_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use prost::Message;

use super::fault::EXECUTOR_LOST;

/// Marks the codec bytes of a [`RefusedExec`].
const TAG: &[u8] = b"ember-refused\0";

/// Fails with `message` on every partition; same schema and partition count as
/// the plan it stands in for, so the shuffle writer above it still fits.
#[derive(Debug)]
pub struct RefusedExec {
    message: String,
    properties: Arc<PlanProperties>,
}

impl RefusedExec {
    /// A node that stands in for `plan` and fails with `message`.
    pub fn instead_of(plan: &Arc<dyn ExecutionPlan>, message: String) -> Self {
        let partitions = plan.properties().output_partitioning().partition_count();
        Self::new(plan.schema(), partitions, message)
    }

    fn new(schema: SchemaRef, partitions: usize, message: String) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            message,
            properties: Arc::new(properties),
        }
    }

    /// The codec bytes: tag, then a protobuf of schema, partitions and message.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<()> {
        let schema = datafusion_proto::protobuf::Schema::try_from(self.schema().as_ref())?;
        let wire = Wire {
            schema: Some(schema),
            partitions: self.properties.output_partitioning().partition_count() as u64,
            message: self.message.clone(),
        };
        buf.extend_from_slice(TAG);
        buf.extend(wire.encode_to_vec());
        Ok(())
    }

    /// Decodes [`Self::encode`]'s bytes; `None` when they are not a RefusedExec.
    pub fn decode(buf: &[u8]) -> Option<Result<Self>> {
        let bytes = buf.strip_prefix(TAG)?;
        Some((|| {
            let wire = Wire::decode(bytes).map_err(|e| DataFusionError::Internal(e.to_string()))?;
            let schema = wire
                .schema
                .as_ref()
                .ok_or_else(|| DataFusionError::Internal("RefusedExec without schema".into()))?;
            let schema: Schema = schema.try_into()?;
            Ok(Self::new(
                Arc::new(schema),
                wire.partitions as usize,
                wire.message,
            ))
        })())
    }
}

/// Why `stage` is about to run some of its partitions a second time, if it is.
pub(super) fn rerun_reason(stage: &RunningStage) -> Option<String> {
    let bound_before: usize = stage
        .task_infos
        .iter()
        .map(|t| t.global_input_partition_ids.len())
        .sum();
    why_rerun(StageBindings {
        stage_id: stage.stage_id,
        attempt: stage.stage_attempt_num,
        bound_before,
        pending: stage.pending.remaining(),
        partitions: stage.partitions,
    })
}

/// What [`rerun_reason`] reads of a running stage.
struct StageBindings {
    stage_id: usize,
    /// 0 on the stage's first attempt.
    attempt: usize,
    /// Input partitions bound to tasks so far, finished or not.
    bound_before: usize,
    /// Input partitions waiting to be bound.
    pending: usize,
    partitions: usize,
}

fn why_rerun(stage: StageBindings) -> Option<String> {
    if stage.attempt > 0 {
        return Some(format!(
            "stage {} is on attempt {}",
            stage.stage_id,
            stage.attempt + 1
        ));
    }
    // Each partition is bound once: more bindings, past and pending, than
    // partitions means some are about to run again.
    let bindings = stage.bound_before + stage.pending;
    (bindings > stage.partitions).then(|| {
        format!(
            "stage {} would run {} partitions again",
            stage.stage_id,
            bindings - stage.partitions
        )
    })
}

/// `stage_plan` (a shuffle writer over the stage's input) with its input
/// replaced by a [`RefusedExec`] that says `why`.
pub(super) fn refuse_rerun(
    stage_plan: &Arc<dyn ExecutionPlan>,
    why: &str,
) -> Result<Arc<dyn ExecutionPlan>> {
    let message = format!(
        "{EXECUTOR_LOST} ({why}); ember does not trust Ballista's partial re-runs and runs the whole statement again"
    );
    let inputs = stage_plan
        .children()
        .into_iter()
        .map(|input| Arc::new(RefusedExec::instead_of(input, message.clone())) as _)
        .collect();
    datafusion::physical_plan::replace_children_if_necessary(stage_plan.clone(), inputs)
}

#[derive(Clone, PartialEq, Message)]
struct Wire {
    #[prost(message, optional, tag = "1")]
    schema: Option<datafusion_proto::protobuf::Schema>,
    #[prost(uint64, tag = "2")]
    partitions: u64,
    #[prost(string, tag = "3")]
    message: String,
}

impl DisplayAs for RefusedExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RefusedExec: {}", self.message)
    }
}

impl ExecutionPlan for RefusedExec {
    fn name(&self) -> &str {
        "RefusedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn execute(&self, _: usize, _: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        exec_err!("{}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::physical_plan::empty::EmptyExec;

    #[test]
    fn round_trips_through_the_codec_bytes_and_fails_with_its_message() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]));
        let input: Arc<dyn ExecutionPlan> =
            Arc::new(EmptyExec::new(schema.clone()).with_partitions(3));
        let refused = RefusedExec::instead_of(&input, "lost an executor".into());
        let mut buf = Vec::new();
        refused.encode(&mut buf).unwrap();
        let back = RefusedExec::decode(&buf).unwrap().unwrap();
        assert_eq!(back.schema(), schema);
        assert_eq!(back.properties().output_partitioning().partition_count(), 3);
        let err = back
            .execute(0, Arc::new(TaskContext::default()))
            .err()
            .unwrap();
        assert!(err.to_string().contains("lost an executor"), "{err}");
        assert!(RefusedExec::decode(b"other codec bytes").is_none());
    }

    fn stage(attempt: usize, bound_before: usize, pending: usize) -> StageBindings {
        StageBindings {
            stage_id: 4,
            attempt,
            bound_before,
            pending,
            partitions: 8,
        }
    }

    #[test]
    fn a_stage_binding_each_partition_once_runs_on() {
        assert_eq!(why_rerun(stage(0, 0, 8)), None);
        assert_eq!(why_rerun(stage(0, 5, 3)), None);
        assert_eq!(why_rerun(stage(0, 8, 0)), None);
    }

    #[test]
    fn a_partition_bound_again_or_a_second_attempt_is_refused() {
        // A lost executor's 3 finished partitions went back to pending.
        assert_eq!(
            why_rerun(stage(0, 8, 3)).as_deref(),
            Some("stage 4 would run 3 partitions again")
        );
        assert_eq!(
            why_rerun(stage(1, 0, 8)).as_deref(),
            Some("stage 4 is on attempt 2")
        );
    }
}
