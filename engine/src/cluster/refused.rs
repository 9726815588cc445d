//! A stand-in for a stage's input that fails when run: how the scheduler turns a
//! re-run it does not trust (see placement.rs) into an ordinary task failure,
//! which Ballista reports to the client with this node's message.

use std::fmt;
use std::sync::Arc;

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
}
