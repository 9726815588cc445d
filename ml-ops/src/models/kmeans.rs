//! k-means: seeded initialisation, then Lloyd iterations, each one distributed
//! round of per-centroid sums and counts.
//!
//! Initialisation takes the `num_clusters` distinct rows with the smallest seeded
//! row hash: a uniform random sample that is the same on any partitioning. A
//! centroid that loses all its rows keeps its place. Training stops after
//! `max_iterations` or when no centroid moves more than `tolerance` (squared
//! distance, summed over centroids). The loss is the inertia, as scikit-learn's:
//! the sum of squared distances of rows to their nearest centroid.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};

use serde::{Deserialize, Serialize};

use super::checkpoint::exact;
use super::options::GivenOptions;
use super::training::record;
use super::{
    BoundModel, Fitted, Iteration, LabelKind, MetricsFamily, ModelKind, ModelOptions, ModelParams,
    ModelType, PredictOutput, Progress, RoundSpec, TrainingData,
};
use crate::kernels::{FeatureBlock, FeatureColumns, for_each_block, kmeans};

pub struct KMeans;

/// Where k-means stands between two iterations.
#[derive(Deserialize)]
struct State {
    #[serde(with = "exact")]
    centroids: Vec<f64>,
    info: Vec<Iteration>,
}

/// [`State`], borrowed, to be kept.
#[derive(Serialize)]
struct StateRef<'a> {
    #[serde(with = "exact")]
    centroids: &'a [f64],
    info: &'a [Iteration],
}

#[async_trait]
impl ModelKind for KMeans {
    fn name(&self) -> &'static str {
        "kmeans"
    }

    fn label(&self) -> LabelKind {
        LabelKind::None
    }

    fn metrics(&self) -> MetricsFamily {
        MetricsFamily::Clustering
    }

    fn own_options(&self) -> &'static [&'static str] {
        &["num_clusters"]
    }

    fn parse_options(&self, given: &GivenOptions, options: &mut ModelOptions) -> Result<()> {
        let Some(k) = given.integer("num_clusters", 1, 100_000)? else {
            return plan_err!("kmeans needs OPTIONS (num_clusters = <k>)");
        };
        options.num_clusters = k as usize;
        Ok(())
    }

    fn default_iterations(&self) -> usize {
        20
    }

    /// Lloyd's iterations stop when no centroid moves, unless told otherwise.
    fn default_tolerance(&self) -> f64 {
        0.0
    }

    fn first_round(
        &self,
        width: usize,
        _classes: usize,
        options: &ModelOptions,
    ) -> Option<RoundSpec> {
        Some(RoundSpec::KMeans {
            centroids: vec![0.0; width * options.num_clusters],
            measure: None,
        })
    }

    fn check_params(&self, params: &ModelParams, width: usize) -> std::result::Result<(), String> {
        let ModelParams::Centroids { centroids } = params else {
            return Err("parameters do not match the model type".into());
        };
        if centroids.is_empty() || centroids.iter().any(|c| c.len() != width) {
            return Err(format!("centroids are not {width} wide"));
        }
        if centroids.iter().flatten().any(|c| !c.is_finite()) {
            return Err("a centroid is not a finite number".into());
        }
        Ok(())
    }

    fn output_type(
        &self,
        output: PredictOutput,
        model: &str,
        _label_type: Option<&str>,
    ) -> Result<DataType> {
        match output {
            PredictOutput::Value => Ok(DataType::Int64),
            PredictOutput::Probability | PredictOutput::Probabilities => {
                ModelType::no_probability(output, model, self.name())
            }
        }
    }

    /// The nearest centroid's number.
    fn predict(
        &self,
        model: &BoundModel,
        _output: PredictOutput,
        columns: &FeatureColumns,
    ) -> Result<ArrayRef> {
        let ModelParams::Centroids { centroids } = &model.params else {
            return plan_err!("model '{}' has no centroids", model.name);
        };
        let flat = centroids.concat();
        let mut block = FeatureBlock::new(columns.width());
        let mut out = Vec::with_capacity(columns.rows());
        for_each_block(columns, &mut block, |_, block| {
            for r in 0..block.rows {
                out.push(kmeans::nearest(block.row(r), &flat, model.width).0 as i64);
            }
        })?;
        Ok(Arc::new(Int64Array::from(out)))
    }

    fn describe(&self, params: &ModelParams) -> Vec<(&'static str, serde_json::Value)> {
        match params {
            ModelParams::Centroids { centroids } => {
                vec![("centroids", serde_json::json!(centroids))]
            }
            _ => vec![],
        }
    }

    async fn fit(
        &self,
        data: &TrainingData,
        options: &ModelOptions,
        progress: &dyn Progress,
    ) -> Result<Fitted> {
        let k = options.num_clusters;
        let d = data.width();
        let State {
            mut centroids,
            mut info,
        } = match data.resume().await {
            Some(state) => state,
            None => State {
                centroids: initial_centroids(data, options.seed, k).await?,
                info: Vec::new(),
            },
        };
        let mut converged = false;
        while info.len() < options.max_iterations {
            if !info.is_empty() {
                data.checkpoint(StateRef {
                    centroids: &centroids,
                    info: &info,
                })
                .await;
            }
            let stats = data
                .round(RoundSpec::KMeans {
                    centroids: centroids.clone(),
                    measure: None,
                })
                .await?;
            let (sums, rest) = stats.split_at(k * d);
            let counts = &rest[..k];
            let inertia: f64 = rest[k..2 * k].iter().sum();
            data.note_rows(counts.iter().sum());
            record(
                data,
                progress,
                self.name(),
                options.max_iterations,
                &mut info,
                inertia,
            );
            let mut shift = 0.0;
            for c in 0..k {
                if counts[c] == 0.0 {
                    continue;
                }
                for j in 0..d {
                    let mean = sums[c * d + j] / counts[c];
                    shift += (mean - centroids[c * d + j]).powi(2);
                    centroids[c * d + j] = mean;
                }
            }
            if shift <= options.tolerance {
                converged = true;
                break;
            }
        }
        Ok(Fitted {
            params: ModelParams::Centroids {
                centroids: centroids.chunks(d).map(<[f64]>::to_vec).collect(),
            },
            training_info: info,
            converged,
            training_metrics: None,
            evaluation_metrics: None,
        })
    }
}

/// `k` distinct rows with the smallest seeded hash, flattened row-major.
async fn initial_centroids(data: &TrainingData, seed: u64, k: usize) -> Result<Vec<f64>> {
    // Ask for extra rows so that duplicates can be skipped.
    let wanted = (4 * k).max(k + 16);
    let sample = data.sample_rows(seed, wanted).await?;
    let sampled = sample.len();
    let mut chosen: Vec<Vec<f64>> = Vec::with_capacity(k);
    for row in sample {
        if !chosen.contains(&row) {
            chosen.push(row);
            if chosen.len() == k {
                break;
            }
        }
    }
    if chosen.len() < k && sampled < wanted {
        return plan_err!(
            "num_clusters = {k} is more than the {} distinct rows of the training data",
            chosen.len()
        );
    }
    if chosen.len() < k {
        return plan_err!(
            "num_clusters = {k}: only {} distinct rows among {sampled} sampled; the data has too few distinct rows",
            chosen.len()
        );
    }
    Ok(chosen.concat())
}
