//! `ember_train_round(...)`: one pass of training as an aggregate.
//!
//! Each partition accumulates the statistics of its rows (see [`crate::kernels`]);
//! partial states merge by element-wise addition in the final stage; the result is
//! one `List<Float64>` the driver turns into its next step. The function carries
//! what the round needs (current weights or centroids), so it travels to the
//! executors inside the plan through ember's codecs.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use serde::{Deserialize, Serialize};

use crate::kernels::cuda::{self, DeviceData, Gpu};
use crate::kernels::{
    DeviceChoice, FeatureBlock, FeatureColumns, for_each_block, gram, kmeans, logistic, place,
    softmax,
};

/// The name the function is registered and encoded under.
pub const TRAIN_ROUND: &str = "ember_train_round";

/// What one pass computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoundSpec {
    /// XᵀX, Xᵀy, yᵀy, n (arguments: label, features...).
    LeastSquares,
    /// Log-loss, gradient and optionally Hessian at `weights` (arguments: label,
    /// features...; the label must be 0 or 1).
    Logistic { weights: Vec<f64>, hessian: bool },
    /// Softmax log-loss, gradient and optionally Hessian at `weights` (class
    /// by class; arguments: label, features...; the label a class index).
    /// Its kernels run on the CPU.
    Softmax {
        weights: Vec<f64>,
        classes: usize,
        hessian: bool,
    },
    /// Nearest-centroid sums, counts and distances (arguments: features...).
    KMeans {
        centroids: Vec<f64>,
        measure: Option<Vec<f64>>,
    },
}

/// The aggregate for one round of training.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRoundFunc {
    spec: RoundSpec,
    /// Feature names, for errors.
    features: Vec<String>,
    /// Label name, for errors; `None` for unsupervised rounds.
    label: Option<String>,
    /// Features per row after vectors are flattened.
    width: usize,
    /// Where the kernels run (`auto` picks per batch and per process).
    #[serde(default)]
    device: DeviceChoice,
    /// Whether the rows come from an in-memory cache that every round reads
    /// again, so a GPU copy of a batch is worth keeping between rounds.
    #[serde(default)]
    resident: bool,
    #[serde(skip, default = "any_signature")]
    signature: Signature,
    /// What this function's accumulators saw; shared by its copies in this
    /// process, never sent (an executor counts its own).
    #[serde(skip)]
    tally: Arc<RoundTally>,
}

/// `cpu`, `cuda`, `cpu+cuda` (batches went both ways), or `none` (no rows).
pub fn device_name(cpu_rows: u64, gpu_rows: u64) -> &'static str {
    match (cpu_rows > 0, gpu_rows > 0) {
        (true, true) => "cpu+cuda",
        (false, true) => "cuda",
        (true, false) => "cpu",
        (false, false) => "none",
    }
}

/// Rows a round's accumulators took, by where their kernels ran, and how many
/// partitions had rows.
#[derive(Debug, Default)]
pub struct RoundTally {
    cpu_rows: AtomicU64,
    gpu_rows: AtomicU64,
    partitions: AtomicU64,
}

impl RoundTally {
    pub fn rows(&self) -> u64 {
        self.cpu_rows.load(Ordering::Relaxed) + self.gpu_rows.load(Ordering::Relaxed)
    }

    pub fn partitions(&self) -> u64 {
        self.partitions.load(Ordering::Relaxed)
    }

    pub fn cpu_rows(&self) -> u64 {
        self.cpu_rows.load(Ordering::Relaxed)
    }

    pub fn gpu_rows(&self) -> u64 {
        self.gpu_rows.load(Ordering::Relaxed)
    }

    /// Where the rows went, as [`device_name`] says it.
    pub fn device(&self) -> &'static str {
        device_name(self.cpu_rows(), self.gpu_rows())
    }

    fn add(&self, rows: usize, on_gpu: bool) {
        let counter = if on_gpu {
            &self.gpu_rows
        } else {
            &self.cpu_rows
        };
        counter.fetch_add(rows as u64, Ordering::Relaxed);
    }
}

fn any_signature() -> Signature {
    Signature::variadic_any(Volatility::Immutable)
}

impl PartialEq for TrainRoundFunc {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
            && self.features == other.features
            && self.label == other.label
            && self.width == other.width
            && self.device == other.device
            && self.resident == other.resident
    }
}

impl Eq for TrainRoundFunc {}

impl Hash for TrainRoundFunc {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.features.hash(state);
        self.label.hash(state);
        self.width.hash(state);
        std::mem::discriminant(&self.spec).hash(state);
    }
}

impl TrainRoundFunc {
    /// A round computing `spec` over `features` (flattened `width` wide), with
    /// `label` first among the arguments when given.
    pub fn new(
        spec: RoundSpec,
        features: Vec<String>,
        label: Option<String>,
        width: usize,
    ) -> Self {
        Self {
            spec,
            features,
            label,
            width,
            device: DeviceChoice::Auto,
            resident: false,
            signature: any_signature(),
            tally: Arc::default(),
        }
    }

    /// Runs the kernels on `device`; `resident` says the same batches come back
    /// every round (see the field).
    pub fn with_device(mut self, device: DeviceChoice, resident: bool) -> Self {
        self.device = device;
        self.resident = resident;
        self
    }

    /// Where the kernels run.
    pub fn device(&self) -> DeviceChoice {
        self.device
    }

    /// What this function's accumulators in this process have seen.
    pub fn tally(&self) -> &RoundTally {
        &self.tally
    }

    /// A copy with a tally of its own.
    pub fn counted_afresh(&self) -> Self {
        Self {
            tally: Arc::default(),
            ..self.clone()
        }
    }

    /// Whether the round's kernels run on the CPU only (no CUDA twin).
    fn cpu_only(&self) -> bool {
        matches!(self.spec, RoundSpec::Softmax { .. })
    }

    /// Length of the statistics vector this round returns.
    pub fn stats_len(&self) -> usize {
        match &self.spec {
            RoundSpec::LeastSquares => gram::stats_len(self.width),
            RoundSpec::Logistic { hessian, .. } => logistic::stats_len(self.width, *hessian),
            RoundSpec::Softmax {
                classes, hessian, ..
            } => softmax::stats_len(self.width, *classes, *hessian),
            RoundSpec::KMeans { centroids, .. } => {
                kmeans::stats_len(centroids.len() / self.width.max(1), self.width)
            }
        }
    }

    /// The label column's name, when the round reads one.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The feature columns' names, in argument order.
    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// The round's statistics over `batches` (each holding the function's
    /// arguments in order), exactly as one partition's accumulator computes them.
    pub fn stats_over<'a>(
        &self,
        batches: impl IntoIterator<Item = &'a [ArrayRef]>,
    ) -> Result<Vec<f64>> {
        let mut accumulator = self.round_accumulator();
        for values in batches {
            accumulator.update_batch(values)?;
        }
        Ok(accumulator.stats)
    }

    fn round_accumulator(&self) -> RoundAccumulator {
        RoundAccumulator {
            stats: vec![0.0; self.stats_len()],
            block: FeatureBlock::new(self.width),
            function: self.clone(),
            merged: Vec::new(),
            saw_rows: false,
        }
    }

    /// Serialized form, for the plan codecs.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| datafusion::error::DataFusionError::External(e.into()))
    }

    /// Inverse of [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| datafusion::error::DataFusionError::External(e.into()))
    }
}

fn stats_field() -> FieldRef {
    Arc::new(Field::new("item", DataType::Float64, true))
}

fn stats_type() -> DataType {
    DataType::List(stats_field())
}

/// A one-row `List<Float64>` scalar holding `values`.
pub fn stats_scalar(values: Vec<f64>) -> ScalarValue {
    let len = values.len();
    let list = ListArray::new(
        stats_field(),
        OffsetBuffer::from_lengths([len]),
        Arc::new(Float64Array::from(values)),
        None,
    );
    ScalarValue::List(Arc::new(list))
}

/// The numbers of a `List<Float64>` scalar such as a round's result.
pub fn stats_values(value: &ScalarValue) -> Result<Vec<f64>> {
    match value {
        ScalarValue::List(list) if list.len() == 1 && !list.is_null(0) => {
            let values = list.value(0);
            Ok(values.as_primitive::<Float64Type>().values().to_vec())
        }
        other => exec_err!("a training round returned {other} instead of statistics"),
    }
}

impl AggregateUDFImpl for TrainRoundFunc {
    fn name(&self) -> &str {
        TRAIN_ROUND
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let expected = self.features.len() + usize::from(self.label.is_some());
        if arg_types.len() != expected {
            return plan_err!(
                "{TRAIN_ROUND} expects {expected} arguments, got {}",
                arg_types.len()
            );
        }
        Ok(stats_type())
    }

    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new("stats", stats_type(), true))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(self.round_accumulator()))
    }
}

/// `array` as the numbers a model learns from: numeric or boolean, no NULL,
/// NaN or infinity; errors name the label `name`.
pub(crate) fn numeric_labels(array: &ArrayRef, name: &str) -> Result<Float64Array> {
    if !(array.data_type().is_numeric() || *array.data_type() == DataType::Boolean) {
        return exec_err!("label '{name}' is {}, not a number", array.data_type());
    }
    if array.null_count() > 0 {
        return exec_err!("label '{name}' is NULL in some rows: filter them out");
    }
    let labels = cast(array, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone();
    if labels.values().iter().any(|v| !v.is_finite()) {
        return exec_err!("label '{name}' has NaN or infinite values");
    }
    Ok(labels)
}

#[derive(Debug)]
struct RoundAccumulator {
    function: TrainRoundFunc,
    stats: Vec<f64>,
    block: FeatureBlock,
    /// Other partitions' statistics, summed only when the round's result is
    /// asked for: in an order set by their values, not by which partition
    /// finished first, so a round over the same partitions gives the same bits.
    merged: Vec<Vec<f64>>,
    /// Whether this accumulator has seen rows (it counts as a partition then).
    saw_rows: bool,
}

impl RoundAccumulator {
    fn labels(&self, array: &ArrayRef) -> Result<Float64Array> {
        let name = self.function.label.as_deref().unwrap_or("label");
        let labels = numeric_labels(array, name)?;
        if matches!(self.function.spec, RoundSpec::Logistic { .. })
            && let Some(bad) = labels.values().iter().find(|v| **v != 0.0 && **v != 1.0)
        {
            return exec_err!(
                "label '{name}' must be 0 or 1 (or a boolean) for logistic_regression, found {bad}"
            );
        }
        if let RoundSpec::Softmax { classes, .. } = self.function.spec
            && let Some(bad) = labels
                .values()
                .iter()
                .find(|v| v.fract() != 0.0 || **v < 0.0 || **v >= classes as f64)
        {
            return exec_err!("label '{name}' must be a class index below {classes}, found {bad}");
        }
        Ok(labels)
    }
}

impl RoundAccumulator {
    /// The round's kernels on `gpu`, over a device copy of the batch that is
    /// kept between rounds when the rows are resident.
    fn update_on_gpu(
        &mut self,
        gpu: &'static Gpu,
        values: &[ArrayRef],
        columns: &FeatureColumns,
        labels: Option<&Float64Array>,
    ) -> Result<()> {
        let y = labels.map(|l| l.values().as_ref());
        let upload = || DeviceData::upload(gpu, columns, y);
        let data = if self.function.resident {
            cuda::resident(gpu, values, upload)?
        } else {
            Arc::new(upload()?)
        };
        self.run_on_gpu(gpu, &data)
    }

    /// The round's kernels over `data`, already on `gpu`.
    fn run_on_gpu(&mut self, gpu: &'static Gpu, data: &DeviceData) -> Result<()> {
        let mut stats = vec![0.0; self.stats.len()];
        match &self.function.spec {
            RoundSpec::LeastSquares => cuda::least_squares(gpu, data, &mut stats)?,
            RoundSpec::Logistic { weights, hessian } => {
                cuda::logistic(gpu, data, weights, *hessian, &mut stats)?
            }
            RoundSpec::KMeans { centroids, measure } => {
                cuda::kmeans(gpu, data, centroids, measure.as_deref(), &mut stats)?
            }
            RoundSpec::Softmax { .. } => return exec_err!("softmax rounds have no CUDA kernel"),
        }
        // Added only once the whole batch succeeded, so a CPU retry never counts twice.
        for (s, v) in self.stats.iter_mut().zip(stats) {
            *s += v;
        }
        self.count(data.rows, true);
        Ok(())
    }

    /// Counts `rows` taken on the GPU or the CPU in the function's tally.
    fn count(&mut self, rows: usize, on_gpu: bool) {
        if rows > 0 && !self.saw_rows {
            self.saw_rows = true;
            self.function
                .tally
                .partitions
                .fetch_add(1, Ordering::Relaxed);
        }
        self.function.tally.add(rows, on_gpu);
    }

    /// Whether a GPU attempt answered the batch: `cuda` fails with its error;
    /// `auto` asked for speed, not for the GPU, so the CPU answers instead.
    fn gpu_answered(&self, attempt: Result<()>) -> Result<bool> {
        match attempt {
            Ok(()) => Ok(true),
            Err(e) if self.function.device == DeviceChoice::Cuda => Err(e),
            Err(e) => {
                log::warn!("GPU kernel failed, using the CPU: {e}");
                Ok(false)
            }
        }
    }
}

impl Accumulator for RoundAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        // A batch already on the GPU was cast and checked when it was copied
        // there: later rounds go straight to the kernels.
        if self.function.resident
            && self.function.device != DeviceChoice::Cpu
            && let Some(data) = cuda::cached(values)
            && !self.function.cpu_only()
            && let Some(gpu) = place(self.function.device, data.rows)?
        {
            let attempt = self.run_on_gpu(gpu, &data);
            if self.gpu_answered(attempt)? {
                return Ok(());
            }
        }
        let (labels, features) = if self.function.label.is_some() {
            let (first, rest) = values.split_first().expect("signature checked");
            (Some(self.labels(first)?), rest)
        } else {
            (None, values)
        };
        let columns = FeatureColumns::new(features, &self.function.features)?;
        if columns.width() != self.function.width {
            return exec_err!(
                "features are {} wide, the model expects {}",
                columns.width(),
                self.function.width
            );
        }
        if columns.rows() == 0 {
            return Ok(());
        }

        if !self.function.cpu_only()
            && let Some(gpu) = place(self.function.device, columns.rows())?
        {
            let attempt = self.update_on_gpu(gpu, values, &columns, labels.as_ref());
            if self.gpu_answered(attempt)? {
                return Ok(());
            }
        }
        self.count(columns.rows(), false);
        let stats = &mut self.stats;
        let y = labels.as_ref().map(|l| l.values().as_ref()).unwrap_or(&[]);
        match &self.function.spec {
            RoundSpec::LeastSquares => for_each_block(&columns, &mut self.block, |start, block| {
                gram::accumulate(block, &y[start..start + block.rows], stats)
            }),
            RoundSpec::Logistic { weights, hessian } => {
                for_each_block(&columns, &mut self.block, |start, block| {
                    logistic::accumulate(
                        block,
                        &y[start..start + block.rows],
                        weights,
                        *hessian,
                        stats,
                    )
                })
            }
            RoundSpec::KMeans { centroids, measure } => {
                kmeans::accumulate_columns(&columns, centroids, measure.as_deref(), stats)
            }
            RoundSpec::Softmax {
                weights,
                classes,
                hessian,
            } => for_each_block(&columns, &mut self.block, |start, block| {
                softmax::accumulate(
                    block,
                    &y[start..start + block.rows],
                    weights,
                    *classes,
                    *hessian,
                    stats,
                )
            }),
        }
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(stats_scalar(self.total()))
    }

    fn size(&self) -> usize {
        let merged: usize = self.merged.iter().map(Vec::len).sum();
        std::mem::size_of_val(self) + (self.stats.len() + self.block.values.len() + merged) * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        for i in 0..lists.len() {
            if lists.is_null(i) {
                continue;
            }
            let part = lists.value(i);
            let part = part.as_primitive::<Float64Type>().values();
            if part.len() != self.stats.len() {
                return exec_err!(
                    "{TRAIN_ROUND}: partial state of {} values, expected {}",
                    part.len(),
                    self.stats.len()
                );
            }
            self.merged.push(part.to_vec());
        }
        Ok(())
    }
}

impl RoundAccumulator {
    /// This partition's statistics plus every merged one, added in the order
    /// of their values (floating-point addition depends on order; arrival
    /// order does not repeat from run to run).
    fn total(&self) -> Vec<f64> {
        if self.merged.is_empty() {
            return self.stats.clone();
        }
        let mut parts: Vec<&[f64]> = self.merged.iter().map(Vec::as_slice).collect();
        parts.push(&self.stats);
        parts.sort_by(|a, b| {
            a.iter()
                .zip(b.iter())
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut total = vec![0.0; self.stats.len()];
        for part in parts {
            for (t, v) in total.iter_mut().zip(part) {
                *t += v;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Partial statistics whose float sum depends on the order they are added in.
    fn partials(len: usize) -> Vec<Vec<f64>> {
        [1e16, 1.0, -1e16, 3.0, 0.1]
            .iter()
            .map(|v| vec![*v; len])
            .collect()
    }

    fn merged_in(order: &[usize]) -> Result<Vec<f64>> {
        let function = TrainRoundFunc::new(
            RoundSpec::LeastSquares,
            vec!["x".into()],
            Some("y".into()),
            1,
        );
        let parts = partials(function.stats_len());
        let mut accumulator = function.round_accumulator();
        for i in order {
            let state = stats_scalar(parts[*i].clone()).to_array()?;
            accumulator.merge_batch(&[state])?;
        }
        stats_values(&accumulator.evaluate()?)
    }

    #[test]
    fn partial_statistics_merge_to_the_same_bits_in_any_arrival_order() -> Result<()> {
        let first = merged_in(&[0, 1, 2, 3, 4])?;
        for order in [[4, 3, 2, 1, 0], [2, 0, 4, 1, 3], [1, 2, 3, 4, 0]] {
            let other = merged_in(&order)?;
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&first), bits(&other), "order {order:?}");
        }
        // The naive sum in arrival order differs between the first two orders:
        // the test would catch a return to it.
        assert_ne!((1e16 + 1.0) + -1e16, (-1e16 + 1e16) + 1.0);
        Ok(())
    }
}
