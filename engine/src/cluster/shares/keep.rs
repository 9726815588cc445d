//! The job that packs a training's rows where they are read: a plan node whose
//! every partition hands its rows to the executor's [`ShareStore`] and returns
//! one row saying where they are.
//!
//! ```text
//!   KeepRowsNode (logical, client) ─codec─> scheduler: KeepRowsPlanner
//!     ─> KeepRowsExec (physical) ─codec─> executor: rows into its ShareStore
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, StringArray, UInt32Array, UInt64Array};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError, Result, exec_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use ember_ml_ops::kernels::{DeviceChoice, cuda};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::store::ShareStore;

/// What a keep job does, the same in every form of its node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeepSpec {
    /// The training the rows belong to (unique per CREATE MODEL attempt).
    pub training: String,
    /// Seconds the rows stay without a round before the executor frees them.
    pub lease_seconds: u64,
    /// Where the rounds will run: a GPU takes one batch per partition.
    pub device: DeviceChoice,
}

/// Where one partition's rows went: the keep job's result rows.
pub fn placement_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("partition", DataType::UInt32, false),
            Field::new("endpoint", DataType::Utf8, false),
            Field::new("rows", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
            Field::new("device", DataType::Utf8, false),
        ]))
    });
    SCHEMA.clone()
}

/// The logical node: keep `input`'s rows on the executors that read them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeepRowsNode {
    pub input: LogicalPlan,
    pub spec: KeepSpec,
    schema: DFSchemaRef,
}

impl KeepRowsNode {
    pub fn new(input: LogicalPlan, spec: KeepSpec) -> Result<Self> {
        let schema = Arc::new(DFSchema::try_from(placement_schema().as_ref().clone())?);
        Ok(Self {
            input,
            spec,
            schema,
        })
    }

    /// The plan of the keep job.
    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }
}

impl PartialOrd for KeepRowsNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        // Plans are not ordered; two nodes differ by their training.
        self.spec.training.partial_cmp(&other.spec.training)
    }
}

impl UserDefinedLogicalNodeCore for KeepRowsNode {
    fn name(&self) -> &str {
        "KeepRows"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "KeepRows: training={}", self.spec.training)
    }

    fn with_exprs_and_inputs(&self, _: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        match (inputs.pop(), inputs.is_empty()) {
            (Some(input), true) => Self::new(input, self.spec.clone()),
            _ => exec_err!("KeepRows takes one input"),
        }
    }
}

/// Tags the codec bytes of both forms of the node.
const TAG: &[u8] = b"ember.keep_rows:";

/// The codec bytes of `spec`.
pub fn encode_spec(spec: &KeepSpec, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(TAG);
    serde_json::to_writer(buf, spec).map_err(|e| DataFusionError::External(e.into()))
}

/// The spec in `buf`; `None` when the bytes are another node's.
pub fn decode_spec(buf: &[u8]) -> Option<Result<KeepSpec>> {
    let json = buf.strip_prefix(TAG)?;
    Some(serde_json::from_slice(json).map_err(|e| DataFusionError::External(e.into())))
}

/// The physical node: each partition of `input` packed into the executor's store.
#[derive(Debug)]
pub struct KeepRowsExec {
    input: Arc<dyn ExecutionPlan>,
    spec: KeepSpec,
    /// The job-wide number of each partition this task runs: a Ballista task
    /// runs a slice of the stage's partitions numbered from 0 (set by the
    /// executor, see [`number_partitions`]; `None`: numbered as given).
    global_partitions: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl KeepRowsExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, spec: KeepSpec) -> Self {
        let partitions = input.properties().output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(placement_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            input,
            spec,
            global_partitions: None,
            properties,
        }
    }

    pub fn spec(&self) -> &KeepSpec {
        &self.spec
    }
}

/// Gives the keep nodes of a task's `plan` the job-wide numbers of the
/// partitions the task runs (`global` in the task's order), so that each share
/// is known by its partition of the whole input wherever it ran.
pub fn number_partitions(
    plan: Arc<dyn ExecutionPlan>,
    global: &[usize],
) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    Ok(plan
        .transform_up(|node| match node.downcast_ref::<KeepRowsExec>() {
            Some(keep) => Ok(Transformed::yes(Arc::new(KeepRowsExec {
                input: keep.input.clone(),
                spec: keep.spec.clone(),
                global_partitions: Some(global.to_vec()),
                properties: keep.properties.clone(),
            }) as Arc<dyn ExecutionPlan>)),
            None => Ok(Transformed::no(node)),
        })?
        .data)
}

impl DisplayAs for KeepRowsExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "KeepRowsExec: training={}", self.spec.training)
    }
}

impl ExecutionPlan for KeepRowsExec {
    fn name(&self) -> &str {
        "KeepRowsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = super::super::only_child(children, "KeepRowsExec")?;
        Ok(Arc::new(Self::new(input, self.spec.clone())))
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // Each partition is kept where it is read: no repartitioning for this node.
        vec![false]
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let Some(store) = context.session_config().get_extension::<ShareStore>() else {
            return exec_err!(
                "training rows can be kept only on an ember executor (this process has no share store)"
            );
        };
        let input = self.input.execute(partition, context)?;
        let spec = self.spec.clone();
        let global = match &self.global_partitions {
            Some(global) => *global.get(partition).ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "keep task got partition {partition} of {}",
                    global.len()
                ))
            })?,
            None => partition,
        };
        let packed =
            futures::stream::once(async move { pack(&store, spec, global as u32, input).await });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            placement_schema(),
            packed,
        )))
    }
}

/// Reads one partition into `store`, accounting its bytes as they come; its
/// placement row.
async fn pack(
    store: &ShareStore,
    spec: KeepSpec,
    partition: u32,
    mut input: SendableRecordBatchStream,
) -> Result<RecordBatch> {
    let schema = input.schema();
    let mut reservation = store.reserve(0)?;
    let mut batches = Vec::new();
    while let Some(batch) = input.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        reservation.grow(batch.get_array_memory_size())?;
        batches.push(batch);
    }
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let gpu = spec.device != DeviceChoice::Cpu && cuda::gpu().is_ok();
    if gpu && batches.len() > 1 {
        batches = vec![concat_batches(&schema, &batches)?];
    }
    let bytes = reservation.bytes();
    let lease = Duration::from_secs(spec.lease_seconds.max(1));
    store.put(&spec.training, partition, lease, batches, reservation);
    log::info!(
        "training {}: kept partition {partition}, {rows} rows",
        spec.training
    );
    Ok(RecordBatch::try_new(
        placement_schema(),
        vec![
            Arc::new(UInt32Array::from(vec![partition])),
            Arc::new(StringArray::from(vec![store.endpoint()])),
            Arc::new(UInt64Array::from(vec![rows as u64])),
            Arc::new(UInt64Array::from(vec![bytes as u64])),
            Arc::new(StringArray::from(vec![if gpu { "cuda" } else { "cpu" }])),
        ],
    )?)
}

/// Plans [`KeepRowsNode`] as [`KeepRowsExec`].
#[derive(Debug, Default)]
pub(crate) struct KeepRowsExtension;

#[async_trait]
impl ExtensionPlanner for KeepRowsExtension {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session_state: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(keep) = node.as_any().downcast_ref::<KeepRowsNode>() else {
            return Ok(None);
        };
        match physical_inputs {
            [input] => Ok(Some(Arc::new(KeepRowsExec::new(
                input.clone(),
                keep.spec.clone(),
            )))),
            _ => exec_err!("KeepRows takes one input"),
        }
    }
}
