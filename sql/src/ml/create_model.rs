//! CREATE MODEL: plan the query, fit the TRANSFORM, run the estimator's rounds,
//! measure the model, and write it to the store as a new version.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::datasource::{MemTable, ViewTable};
use datafusion::logical_expr::LogicalPlan;
use ember_ml_ops::hashing::StableHasher;
use ember_ml_ops::kernels::{DeviceChoice, cuda};
use ember_ml_ops::models::{
    Checkpoint, DataSplit, Feature, InputColumn, LabelKind, MAX_CLASSES, MAX_ITERATIONS_SETTING,
    MODEL_FORMAT, MetricsFamily, Model, ModelOptions, ModelType, TrainingData, TransformItem,
    training_state,
};
use ember_ml_ops::store::{SaveMode, Saved, validate_model_name};

use super::evaluate::{compute_metrics, kmeans_metrics_over};
use super::features::{device_for, feature_select, feature_widths, setting};
use super::fit_transform::{collect, column_texts, fit_transform};
use super::sql_text::{Rows, ident, label_value, rows_sql};
use super::training_key::training_key;
use super::{MlContext, MlOutput};
use crate::parser::CreateModel;

/// A CREATE MODEL statement made ready to train.
struct Prepared {
    name: String,
    options: ModelOptions,
    query: String,
    query_columns: Vec<String>,
    inputs: Vec<InputColumn>,
    transform: Vec<TransformItem>,
    features: Vec<Feature>,
    /// A classifier's classes as text, in the label's order (empty for a
    /// label of numbers 0 and 1), and how many (0 when no classifier).
    classes: Vec<String>,
    class_count: usize,
    label_type: Option<String>,
    /// label (when supervised) and features of the training rows.
    plan: LogicalPlan,
    /// The same of the held-out rows, for types that read their rows once
    /// (they measure the held-out rows as they train).
    evaluation: Option<LogicalPlan>,
    /// What the user should know before training starts.
    notes: Vec<String>,
}

async fn prepare(ml: &MlContext, create: &CreateModel) -> Result<Prepared> {
    let name = validate_model_name(&create.name)?;
    let mut options = ModelOptions::parse(&create.options)?;
    let mut notes = Vec::new();
    if let Some(cap) = setting(ml, MAX_ITERATIONS_SETTING).and_then(|v| v.parse::<usize>().ok())
        && options.max_iterations > cap
    {
        notes.push(format!(
            "max_iterations lowered from {} to {cap} by {MAX_ITERATIONS_SETTING}",
            options.max_iterations
        ));
        options.max_iterations = cap.max(1);
    }
    let query = create.query.to_string();
    let state = ml.ctx.state();
    let query_plan = state.create_logical_plan(&query).await?;
    let schema = query_plan.schema();
    let query_columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    for (i, c) in query_columns.iter().enumerate() {
        if query_columns[..i].contains(c) {
            return plan_err!("the training query has two columns named '{c}': alias them apart");
        }
    }
    let mut classes = Vec::new();
    let mut class_count = 0;
    let mut label_type = None;
    if let Some(label) = &options.label {
        let Some(field) = schema.fields().iter().find(|f| f.name() == label) else {
            return plan_err!(
                "label '{label}' is not a column of the training query (columns: {})",
                query_columns.join(", ")
            );
        };
        let t = field.data_type().clone();
        let text = matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
        let classifier = options.model_type.label() == LabelKind::Classes;
        if text && !classifier {
            return plan_err!(
                "label '{label}' is {t}, not numeric: a {} needs numbers",
                options.model_type.name()
            );
        }
        if !(text || t.is_numeric() || t == DataType::Boolean) {
            return plan_err!("label '{label}' is {t}, not numeric");
        }
        if classifier {
            let found = label_classes(ml, &query, label, options.model_type).await?;
            // As scikit-learn's `type_of_target`: fractions are no classes.
            let fractional =
                t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..));
            if fractional
                && let Some(c) = found
                    .iter()
                    .find(|c| c.parse::<f64>().is_ok_and(|v| v.fract() != 0.0))
            {
                return plan_err!(
                    "label '{label}' holds fractions ('{c}'): a {} needs classes; round the label or use a regressor",
                    options.model_type.name()
                );
            }
            class_count = found.len();
            // A label of numbers 0 and 1 is its own class index.
            let zero_one = t.is_numeric()
                && found
                    .iter()
                    .map(|c| c.parse::<f64>().ok())
                    .collect::<Vec<_>>()
                    == [Some(0.0), Some(1.0)];
            if !zero_one {
                classes = found;
                label_type = Some(t.to_string());
            }
        }
    }
    let inputs: Vec<InputColumn> = schema
        .fields()
        .iter()
        .filter(|f| Some(f.name()) != options.label.as_ref())
        .map(|f| InputColumn {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
        })
        .collect();
    if inputs.is_empty() {
        return plan_err!("the training query has no feature columns besides the label");
    }
    let training_rows = rows_sql(&query, &query_columns, &options, Rows::Training);
    let transform = if create.transform.is_empty() {
        vec![]
    } else {
        fit_transform(
            &ml.ctx,
            &create.transform,
            options.label.as_deref(),
            &training_rows,
        )
        .await?
    };
    let mut select = feature_select(&inputs, &transform);
    if let Some(label) = &options.label {
        if classes.is_empty() {
            select.push(ident(label));
        } else {
            select.push(format!(
                "{} AS {}",
                label_value(label, &classes),
                ident(label)
            ));
        }
    }
    let features_sql = format!(
        "SELECT {} FROM ({training_rows}) AS __ember_rows",
        select.join(", ")
    );
    let plan = state.create_logical_plan(&features_sql).await?;
    let evaluation = if options.data_split == DataSplit::Random && !options.model_type.iterative() {
        let held_out = rows_sql(&query, &query_columns, &options, Rows::Evaluation);
        let sql = format!(
            "SELECT {} FROM ({held_out}) AS __ember_rows",
            select.join(", ")
        );
        Some(state.create_logical_plan(&sql).await?)
    } else {
        None
    };
    let names: Vec<String> = if transform.is_empty() {
        inputs.iter().map(|i| i.name.clone()).collect()
    } else {
        transform.iter().map(|t| t.name.clone()).collect()
    };
    let features = feature_widths(&plan, &names)?;
    Ok(Prepared {
        name,
        options,
        query,
        query_columns,
        inputs,
        transform,
        features,
        classes,
        class_count,
        label_type,
        plan,
        evaluation,
        notes,
    })
}

/// A classifier's classes as text, in the label's order (numbers as
/// numbers, text as text): two, or up to [`MAX_CLASSES`] for a type that
/// learns more; else an error that says what the label holds.
async fn label_classes(
    ml: &MlContext,
    query: &str,
    label: &str,
    model_type: ModelType,
) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT CAST(v AS VARCHAR) AS c, v FROM (SELECT DISTINCT {l} AS v FROM ({query}) AS q \
         WHERE {l} IS NOT NULL) AS d ORDER BY v LIMIT {}",
        MAX_CLASSES + 1,
        l = ident(label)
    );
    let classes = column_texts(&collect(&ml.ctx, &sql).await?)?;
    let listed = |classes: &[String]| {
        let shown: Vec<String> = classes.iter().take(3).map(|c| format!("'{c}'")).collect();
        format!("{}, ...", shown.join(", "))
    };
    match classes.len() {
        0 => plan_err!("label '{label}' has no values: every label is NULL"),
        1 => plan_err!(
            "label '{label}' has a single class ('{}'): a classifier needs two",
            classes[0]
        ),
        2 => Ok(classes),
        n if n > MAX_CLASSES => plan_err!(
            "label '{label}' has more than {MAX_CLASSES} classes ({}): is it a class?",
            listed(&classes)
        ),
        n if !model_type.multiclass() => plan_err!(
            "{} is binary, but label '{label}' has {n} classes ({}): {} learn more",
            model_type.name(),
            listed(&classes),
            ModelType::multiclass_names()
        ),
        _ => Ok(classes),
    }
}

/// Runs CREATE MODEL.
pub async fn create_model(ml: &MlContext, create: &CreateModel) -> Result<MlOutput> {
    let name = validate_model_name(&create.name)?;
    // Options first: a bad option fails before any data is read.
    ModelOptions::parse(&create.options)?;
    if ml.store.exists(&name).await? {
        if create.if_not_exists {
            return Ok(MlOutput::none());
        }
        if !create.or_replace {
            return plan_err!(
                "model '{name}' already exists: use CREATE OR REPLACE MODEL to add a version"
            );
        }
    }
    let prepared = prepare(ml, create).await?;
    let options = &prepared.options;
    let mut plan = prepared.plan.clone();
    let iterative = options.model_type.iterative();
    let cached = ml.cache_features && iterative;
    let device = device_choice(ml, create, options)?;
    let mut batch_rows = None;
    if cached {
        // Decode and transform the input once; every round then reads memory.
        (plan, batch_rows) = cache_features(ml, plan, device).await?;
    }
    let mut data = TrainingData::new(
        ml.ctx.clone(),
        plan.clone(),
        options.label.clone(),
        prepared.features.clone(),
    )
    .with_device(device, cached)
    .with_batch_rows(batch_rows)
    .with_retry(ml.retry.clone())
    .with_classes(prepared.class_count);
    if let Some(evaluation) = &prepared.evaluation {
        data = data.with_evaluation(evaluation.clone());
    }
    let checkpoint = if iterative {
        let transform: Vec<&str> = prepared.transform.iter().map(|t| t.sql.as_str()).collect();
        let key = training_key(
            &ml.ctx,
            &[
                &name,
                &format!("{options:?}"),
                &prepared.query,
                &transform.join(";"),
            ],
            &prepared.plan,
        )
        .await?;
        let checkpoint = Checkpoint::new(ml.store.clone(), &name, key);
        data = data.with_checkpoint(checkpoint.clone());
        Some(checkpoint)
    } else {
        None
    };
    let trees = options.trees.is_some();
    if (iterative || trees)
        && !cached
        && let Some(keeper) = &ml.keep_rows
    {
        // Read, transform and pack the rows once, where they are read.
        data = data.with_kept_rows(keeper.keep(&ml.ctx, plan.clone(), device).await?);
        // Trees measure the held-out rows as they grow: kept there too.
        if trees && let Some(evaluation) = &prepared.evaluation {
            let kept = keeper.keep(&ml.ctx, evaluation.clone(), device).await?;
            data = data.with_kept_evaluation(kept);
        }
    }
    let fitted = options
        .model_type
        .fit(&data, options, ml.progress.as_ref())
        .await;
    let fitted = match fitted {
        Ok(fitted) => fitted,
        Err(e) => {
            drop((plan, data));
            cuda::release_unused();
            return Err(e);
        }
    };
    let training_metrics = fitted.training_metrics;
    let evaluation_metrics = fitted.evaluation_metrics;
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut fingerprint = StableHasher::new(0);
    fingerprint.write(prepared.query.as_bytes());
    fingerprint.write(&data.rows().to_le_bytes());
    let mut model = Model {
        format: MODEL_FORMAT,
        name: prepared.name.clone(),
        version: 0,
        created_at,
        model_type: options.model_type,
        options_given: create.options.iter().cloned().collect::<BTreeMap<_, _>>(),
        options: options.clone(),
        query: prepared.query.clone(),
        query_columns: prepared.query_columns.clone(),
        inputs: prepared.inputs.clone(),
        transform: prepared.transform.clone(),
        features: prepared.features.clone(),
        classes: prepared.classes.clone(),
        label_type: prepared.label_type.clone(),
        params: fitted.params,
        training_info: fitted.training_info,
        rounds: data.rounds(),
        converged: fitted.converged,
        passes: data.passes(),
        training_rows: data.rows(),
        metrics: BTreeMap::new(),
        metrics_on: String::new(),
        data_fingerprint: format!("{:016x}", fingerprint.finish()),
    };
    model.check()?;
    let (metrics, on) = match options.data_split {
        // Fitting left every held-out row's prediction in memory.
        DataSplit::Random if let Some(values) = evaluation_metrics => (
            options.model_type.metrics().named(values),
            "evaluation split",
        ),
        DataSplit::Random => {
            let rows = rows_sql(
                &model.query,
                &model.query_columns,
                options,
                Rows::Evaluation,
            );
            (
                compute_metrics(ml, &model, &rows).await?.values,
                "evaluation split",
            )
        }
        // Fitting left every training row's prediction in memory.
        DataSplit::None if let Some(values) = training_metrics => {
            (options.model_type.metrics().named(values), "training data")
        }
        // k-means metrics are rounds: they run where training's did (in memory,
        // or on the executors' kept rows), not over the files again.
        DataSplit::None if options.model_type.metrics() == MetricsFamily::Clustering => {
            let (values, _) = kmeans_metrics_over(&model, &data).await?;
            (MetricsFamily::Clustering.named(values), "training data")
        }
        // The training rows are in memory already, transformed: measure them there.
        DataSplit::None if cached => (
            metrics_on_features(ml, &model, plan.clone()).await?,
            "training data",
        ),
        DataSplit::None => {
            let rows = rows_sql(&model.query, &model.query_columns, options, Rows::All);
            (
                compute_metrics(ml, &model, &rows).await?.values,
                "training data",
            )
        }
    };
    model.metrics = metrics
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect();
    model.metrics_on = on.to_string();
    let resumed_from = data.resumed_from();
    drop((plan, data));
    // The cached features are gone: so are their GPU copies.
    cuda::release_unused();
    let mode = if create.or_replace {
        SaveMode::NewVersion
    } else if create.if_not_exists {
        SaveMode::FirstIfAbsent
    } else {
        SaveMode::First
    };
    let mut output = MlOutput::none();
    output.notes.extend(prepared.notes.iter().cloned());
    if let Some(iterations) = resumed_from {
        output.notes.push(format!(
            "went on from iteration {iterations} of an interrupted training of '{}'",
            model.name
        ));
    }
    match ml.store.save(&mut model, mode).await? {
        Saved::Version(_) => output.notes.push(summary(&model)),
        Saved::Exists => output
            .notes
            .push(format!("model '{}' exists: nothing trained", model.name)),
    }
    // The model is saved: its training state is no longer needed.
    if let Some(checkpoint) = checkpoint
        && let Err(e) = checkpoint.remove().await
    {
        log::warn!("{e}");
    }
    Ok(output)
}

/// One line on what training did: `trained churn version 2: logistic_regression
/// on 8000 rows, 6 iterations, loss 0.3412, converged`.
fn summary(model: &Model) -> String {
    let iterations = model.training_info.len();
    let loss = model
        .training_info
        .last()
        .map(|i| format!(", loss {:.6}", i.loss))
        .unwrap_or_default();
    let ending = if model.converged {
        "converged".to_string()
    } else {
        format!(
            "stopped at max_iterations = {} before converging (raise max_iterations, or loosen tolerance)",
            model.options.max_iterations
        )
    };
    format!(
        "trained {} version {}: {} on {} rows, {iterations} iteration{}{loss}, {ending}",
        model.name,
        model.version,
        model.model_type.name(),
        model.training_rows,
        if iterations == 1 { "" } else { "s" }
    )
}

/// The device training runs on: the model's `device` option, else the
/// session's `ember.ml.device`. Embedded, `cuda` without a GPU fails here,
/// before any data is read.
fn device_choice(
    ml: &MlContext,
    create: &CreateModel,
    options: &ModelOptions,
) -> Result<DeviceChoice> {
    let given = create.options.iter().any(|(k, _)| k == "device");
    let choice = device_for(ml, given.then_some(options.device.as_str()))?;
    if choice == DeviceChoice::Cuda
        && ml.cache_features
        && let Err(reason) = cuda::gpu()
    {
        return plan_err!("device = 'cuda' but {reason}");
    }
    Ok(choice)
}

/// The training rows in memory. Where a GPU may take them, each partition is
/// one batch (its rows are returned too): one device copy and a few launches
/// per round instead of one per small batch.
async fn cache_features(
    ml: &MlContext,
    plan: LogicalPlan,
    device: DeviceChoice,
) -> Result<(LogicalPlan, Option<usize>)> {
    let frame = datafusion::prelude::DataFrame::new(training_state(&ml.ctx), plan);
    if device == DeviceChoice::Cpu || cuda::gpu().is_err() {
        return Ok((frame.cache().await?.into_unoptimized_plan(), None));
    }
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let partitions = frame
        .collect_partitioned()
        .await?
        .into_iter()
        .filter(|batches| !batches.is_empty())
        .map(|batches| Ok(vec![concat_batches(&schema, &batches)?]))
        .collect::<Result<Vec<_>>>()?;
    let rows = partitions.iter().map(|p| p[0].num_rows()).max();
    let table = MemTable::try_new(schema, partitions)?;
    let plan = ml.ctx.read_table(Arc::new(table))?.into_unoptimized_plan();
    Ok((plan, rows))
}

/// Distinguishes the temporary views of concurrent statements.
static NEXT_VIEW: AtomicU64 = AtomicU64::new(0);

/// The metrics of `model` over `features`, the plan of its training rows with the
/// TRANSFORM already applied: measured as a model without TRANSFORM whose inputs
/// are those features, through a temporary view of the plan.
async fn metrics_on_features(
    ml: &MlContext,
    model: &Model,
    features: LogicalPlan,
) -> Result<Vec<(&'static str, Option<f64>)>> {
    let view = format!(
        "__ember_training_{}",
        NEXT_VIEW.fetch_add(1, Ordering::Relaxed)
    );
    let mut measured = model.clone();
    measured.name = view.clone();
    measured.transform = vec![];
    // The view's label is already its class index.
    measured.classes = vec![];
    measured.label_type = None;
    measured.inputs = model
        .features
        .iter()
        .map(|f| {
            let field = features.schema().field_with_unqualified_name(&f.name)?;
            Ok(InputColumn {
                name: f.name.clone(),
                data_type: field.data_type().to_string(),
            })
        })
        .collect::<Result<_>>()?;
    ml.ctx
        .register_table(view.as_str(), Arc::new(ViewTable::new(features, None)))?;
    let metrics = compute_metrics(ml, &measured, &format!("SELECT * FROM {view}"))
        .await
        .map(|m| m.values);
    ml.ctx.deregister_table(view.as_str())?;
    if let Ok(mut catalog) = ml.catalog.write() {
        catalog.remove(&view);
    }
    metrics
}

/// EXPLAIN CREATE MODEL: the plan of one training round, or of the read of the
/// rows for a model that reads them once (fits the TRANSFORM's statistics,
/// trains nothing).
pub async fn explain_create_model(ml: &MlContext, create: &CreateModel) -> Result<MlOutput> {
    let prepared = prepare(ml, create).await?;
    let width: usize = prepared.features.iter().map(|f| f.width).sum();
    let spec =
        prepared
            .options
            .model_type
            .first_round(width, prepared.class_count, &prepared.options);
    let data = TrainingData::new(
        ml.ctx.clone(),
        prepared.plan,
        prepared.options.label.clone(),
        prepared.features,
    );
    let frame = match spec {
        Some(spec) => data.round_frame(spec)?.0,
        // Training reads the rows once: that read is the plan.
        None => data.rows_frame(),
    };
    let batches = frame.explain(false, false)?.collect().await?;
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| std::sync::Arc::new(datafusion::arrow::datatypes::Schema::empty()));
    Ok(MlOutput {
        schema,
        batches,
        returns_rows: true,
        notes: vec![],
    })
}
