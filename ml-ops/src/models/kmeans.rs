//! k-means: seeded initialisation, then Lloyd iterations, each one distributed
//! round of per-centroid sums and counts.
//!
//! Initialisation takes the `num_clusters` distinct rows with the smallest seeded
//! row hash: a uniform random sample that is the same on any partitioning. A
//! centroid that loses all its rows keeps its place. Training stops after
//! `max_iterations` or when no centroid moves more than `tolerance` (squared
//! distance, summed over centroids). The loss is the inertia, as scikit-learn's:
//! the sum of squared distances of rows to their nearest centroid.

use async_trait::async_trait;
use datafusion::common::{Result, plan_err};

use serde::{Deserialize, Serialize};

use super::checkpoint::exact;
use super::training::record;
use super::{
    Estimator, Fitted, Iteration, ModelOptions, ModelParams, ModelType, Progress, TrainingData,
};
use crate::functions::RoundSpec;

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
impl Estimator for KMeans {
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
                ModelType::KMeans,
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
