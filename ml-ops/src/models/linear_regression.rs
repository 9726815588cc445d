//! Linear regression, exact: one pass gathers XᵀX, Xᵀy, yᵀy and n; the driver
//! solves the normal equations.
//!
//! Objective: (1/n)·Σ(y − ŷ)² + l2·‖w‖² (the intercept is not penalised), i.e.
//! scikit-learn's `Ridge(alpha = n·l2)`, and `LinearRegression` when l2 = 0
//! (collinear features get the minimum-norm solution, as with `lstsq`).

use async_trait::async_trait;
use datafusion::common::{Result, plan_err};

use super::training::record;
use super::{Estimator, Fitted, ModelOptions, ModelParams, ModelType, Progress, TrainingData};
use crate::functions::RoundSpec;
use crate::kernels::gram::symmetrize;
use crate::linalg::solve_with_intercept;

pub struct LinearRegression;

#[async_trait]
impl Estimator for LinearRegression {
    async fn fit(
        &self,
        data: &TrainingData,
        options: &ModelOptions,
        progress: &dyn Progress,
    ) -> Result<Fitted> {
        let d = data.width();
        let m = d + 1;
        let mut stats = data.round(RoundSpec::LeastSquares).await?;
        let n = stats[m * m + m + 1];
        if n == 0.0 {
            return plan_err!("no training rows");
        }
        data.note_rows(n);
        symmetrize(&mut stats[..m * m], m);
        let gram = &stats[..m * m];
        let xty = &stats[m * m..m * m + m];
        let yty = stats[m * m + m];
        let mut system: Vec<f64> = gram.iter().map(|g| g / n).collect();
        for j in 0..d {
            system[j * m + j] += options.l2;
        }
        let rhs: Vec<f64> = xty.iter().map(|b| b / n).collect();
        let w = solve_with_intercept(&system, &rhs);
        // SSE = yᵀy − 2wᵀXᵀy + wᵀXᵀXw, from the statistics alone.
        let wxty: f64 = w.iter().zip(xty).map(|(a, b)| a * b).sum();
        let wgw: f64 = (0..m)
            .map(|j| w[j] * (0..m).map(|k| gram[j * m + k] * w[k]).sum::<f64>())
            .sum();
        let sse = (yty - 2.0 * wxty + wgw).max(0.0);
        let penalty: f64 = w[..d].iter().map(|c| c * c).sum::<f64>() * options.l2;
        let mut info = Vec::new();
        record(
            data,
            progress,
            ModelType::LinearRegression,
            1,
            &mut info,
            sse / n + penalty,
        );
        Ok(Fitted {
            params: ModelParams::Linear {
                coefficients: w[..d].to_vec(),
                intercept: w[d],
            },
            training_info: info,
            converged: true,
        })
    }
}
