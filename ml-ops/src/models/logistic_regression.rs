//! Logistic regression: binary, or multinomial (softmax) when the label has
//! more than two classes.
//!
//! Objective: (1/n)·Σ log-loss + (l2/2)·‖w‖² (the intercepts are not
//! penalised), i.e. scikit-learn's `LogisticRegression(C = 1/(n·l2))`, and
//! `penalty=None` when l2 = 0. Each pass is one distributed round returning the
//! loss and gradient (and, for Newton, the Hessian) at the current weights.
//!
//! A softmax model's margins change nothing when one number is added to every
//! class's intercept (or to every class's weight of one feature, without a
//! penalty): of those equal optima ember keeps the centred one, whose weights
//! sum to zero over the classes, as scikit-learn's. Newton's steps find it by
//! adding (μ/2)·Σ_j (Σ_c w_cj)², zero there, to the objective they solve.
//!
//! Newton steps reach the optimum in a handful of passes on dense features; a step
//! that raises the loss is halved (each trial costs a pass). Wide feature vectors
//! (hashing, large one-hot blocks) use L-BFGS, whose passes need no Hessian.

use std::collections::VecDeque;

use async_trait::async_trait;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};

use serde::{Deserialize, Serialize};

use super::checkpoint::exact;
use super::linear_regression::{describe_linear, linear_importance};
use super::options::GivenOptions;
use super::training::record;
use super::{
    BoundModel, ClassScores, Fitted, Importance, Iteration, LabelKind, MetricsFamily, ModelKind,
    ModelOptions, ModelParams, NEWTON_MAX_WIDTH, Optimizer, PredictOutput, Progress, RoundSpec,
    TrainingData, classifier_output_type,
};
use crate::kernels::linear::margins;
use crate::kernels::logistic::{self, sigmoid};
use crate::kernels::{DeviceChoice, FeatureColumns, softmax};
use crate::linalg::{solve_symmetric, solve_with_intercept};

pub struct LogisticRegression;

/// Loss and gradient of the objective at some weights.
struct Evaluation {
    loss: f64,
    gradient: Vec<f64>,
    hessian: Option<Vec<f64>>,
}

/// Which log-loss the weights fit: binary (one set of weights), or softmax
/// (a set per class, class by class). Each set is `width + 1` long, its
/// intercept last.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Loss {
    Binary,
    Softmax { classes: usize },
}

impl Loss {
    fn of(data: &TrainingData) -> Self {
        Self::of_classes(data.classes())
    }

    fn of_classes(classes: usize) -> Self {
        if classes > 2 {
            Loss::Softmax { classes }
        } else {
            Loss::Binary
        }
    }

    fn sets(self) -> usize {
        match self {
            Loss::Binary => 1,
            Loss::Softmax { classes } => classes,
        }
    }

    fn round(self, weights: &[f64], hessian: bool) -> RoundSpec {
        let weights = weights.to_vec();
        match self {
            Loss::Binary => RoundSpec::Logistic { weights, hessian },
            Loss::Softmax { classes } => RoundSpec::Softmax {
                weights,
                classes,
                hessian,
            },
        }
    }

    /// The Newton step `H⁻¹ g`. For softmax, the centred one: the shifts
    /// of every class's weights alike get curvature μ (the Hessian's mean
    /// diagonal), leaving the step within the centred weights.
    fn newton_step(self, mut hessian: Vec<f64>, gradient: &[f64]) -> Vec<f64> {
        match self {
            Loss::Binary => solve_with_intercept(&hessian, gradient),
            Loss::Softmax { classes } => {
                let n = gradient.len();
                let m = n / classes;
                let mu = (0..n).map(|i| hessian[i * n + i]).sum::<f64>() / n as f64;
                let mu = if mu > 0.0 { mu } else { 1.0 };
                for j in 0..m {
                    for c in 0..classes {
                        for c2 in 0..classes {
                            hessian[(c * m + j) * n + c2 * m + j] += mu;
                        }
                    }
                }
                solve_symmetric(&hessian, gradient)
            }
        }
    }
}

async fn evaluate(
    data: &TrainingData,
    loss: Loss,
    weights: &[f64],
    l2: f64,
    hessian: bool,
) -> Result<Evaluation> {
    let d = data.width();
    let m = d + 1;
    let n_weights = loss.sets() * m;
    let mut stats = data.round(loss.round(weights, hessian)).await?;
    let n = stats[1];
    if n == 0.0 {
        return plan_err!("no training rows");
    }
    data.note_rows(n);
    let penalised = |i: usize| i % m != d;
    let penalty: f64 = (0..n_weights)
        .filter(|&i| penalised(i))
        .map(|i| weights[i] * weights[i])
        .sum::<f64>()
        * l2
        / 2.0;
    let mut gradient: Vec<f64> = stats[2..2 + n_weights].iter().map(|g| g / n).collect();
    for i in (0..n_weights).filter(|&i| penalised(i)) {
        gradient[i] += l2 * weights[i];
    }
    let hessian = hessian.then(|| {
        let mut h: Vec<f64> = match loss {
            Loss::Binary => {
                logistic::finish(&mut stats, d, true);
                stats[2 + m..].to_vec()
            }
            Loss::Softmax { classes } => softmax::hessian(&stats, d, classes),
        };
        h.iter_mut().for_each(|v| *v /= n);
        for i in (0..n_weights).filter(|&i| penalised(i)) {
            h[i * n_weights + i] += l2;
        }
        h
    });
    Ok(Evaluation {
        loss: stats[0] / n + penalty,
        gradient,
        hessian,
    })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

#[async_trait]
impl ModelKind for LogisticRegression {
    fn name(&self) -> &'static str {
        "logistic_regression"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["logistic_reg"]
    }

    fn label(&self) -> LabelKind {
        LabelKind::Classes
    }

    fn multiclass(&self) -> bool {
        true
    }

    fn metrics(&self) -> MetricsFamily {
        MetricsFamily::Classification
    }

    fn own_options(&self) -> &'static [&'static str] {
        &["l2", "optimizer"]
    }

    fn parse_options(&self, given: &GivenOptions, options: &mut ModelOptions) -> Result<()> {
        options.l2 = given.non_negative("l2")?.unwrap_or(0.0);
        options.optimizer = match given.text("optimizer")?.as_deref() {
            None | Some("auto") => Optimizer::Auto,
            Some("newton") | Some("irls") => Optimizer::Newton,
            Some("lbfgs") | Some("l-bfgs") => Optimizer::Lbfgs,
            Some(other) => {
                return plan_err!("optimizer must be 'auto', 'newton' or 'lbfgs', not '{other}'");
            }
        };
        Ok(())
    }

    fn default_iterations(&self) -> usize {
        50
    }

    fn first_round(
        &self,
        width: usize,
        classes: usize,
        _options: &ModelOptions,
    ) -> Option<RoundSpec> {
        let loss = Loss::of_classes(classes);
        Some(loss.round(&vec![0.0; loss.sets() * (width + 1)], true))
    }

    fn check_params(&self, params: &ModelParams, width: usize) -> std::result::Result<(), String> {
        match params {
            ModelParams::Softmax { .. } => params.check_softmax(width),
            _ => params.check_linear(width),
        }
    }

    fn output_type(
        &self,
        output: PredictOutput,
        _model: &str,
        label_type: Option<&str>,
    ) -> Result<DataType> {
        Ok(classifier_output_type(output, label_type))
    }

    fn predict(
        &self,
        model: &BoundModel,
        output: PredictOutput,
        columns: &FeatureColumns,
    ) -> Result<ArrayRef> {
        let scores = match &model.params {
            ModelParams::Linear {
                coefficients,
                intercept,
            } => {
                let z = margins(columns, coefficients, *intercept)?;
                ClassScores::Binary {
                    probabilities: z.iter().map(|z| sigmoid(*z)).collect(),
                    ones: z.iter().map(|z| *z > 0.0).collect(),
                }
            }
            ModelParams::Softmax {
                coefficients,
                intercepts,
            } => {
                let mut z = Vec::with_capacity(columns.rows() * intercepts.len());
                for (w, b) in coefficients.iter().zip(intercepts) {
                    z.extend(margins(columns, w, *b)?);
                }
                ClassScores::softmax(intercepts.len(), &z)
            }
            _ => return plan_err!("model '{}' has no coefficients", model.name),
        };
        model.classify(output, scores)
    }

    fn describe(&self, params: &ModelParams) -> Vec<(&'static str, serde_json::Value)> {
        describe_linear(params)
    }

    fn importance(&self, params: &ModelParams, _width: usize) -> Option<Importance> {
        linear_importance(params)
    }

    async fn fit(
        &self,
        data: &TrainingData,
        options: &ModelOptions,
        progress: &dyn Progress,
    ) -> Result<Fitted> {
        let loss = Loss::of(data);
        if loss != Loss::Binary && data.device() == DeviceChoice::Cuda {
            return plan_err!(
                "device = 'cuda': multiclass logistic_regression runs on the CPU only; use 'auto' or 'cpu'"
            );
        }
        let newton = match options.optimizer {
            Optimizer::Newton => true,
            Optimizer::Lbfgs => false,
            Optimizer::Auto => loss.sets() * data.width() <= NEWTON_MAX_WIDTH,
        };
        let (weights, info, converged) = if newton {
            fit_newton(data, loss, options, progress).await?
        } else {
            fit_lbfgs(data, loss, options, progress).await?
        };
        let d = data.width();
        let params = match loss {
            Loss::Binary => ModelParams::Linear {
                coefficients: weights[..d].to_vec(),
                intercept: weights[d],
            },
            Loss::Softmax { classes } => {
                // The centred optimum (see the module's note), free of rounding.
                let mut sets: Vec<Vec<f64>> = weights.chunks(d + 1).map(<[f64]>::to_vec).collect();
                for j in 0..=d {
                    let mean = sets.iter().map(|w| w[j]).sum::<f64>() / classes as f64;
                    sets.iter_mut().for_each(|w| w[j] -= mean);
                }
                ModelParams::Softmax {
                    intercepts: sets.iter_mut().map(|w| w.pop().unwrap_or(0.0)).collect(),
                    coefficients: sets,
                }
            }
        };
        Ok(Fitted {
            params,
            training_info: info,
            converged,
            training_metrics: None,
            evaluation_metrics: None,
        })
    }
}

/// Newton's last accepted point: the weights, their loss, and the step taken
/// from them (halved when it overshoots).
#[derive(Clone, Serialize, Deserialize)]
struct Accepted {
    #[serde(with = "exact")]
    previous: Vec<f64>,
    #[serde(with = "exact::one")]
    loss: f64,
    #[serde(with = "exact")]
    step: Vec<f64>,
}

/// Where Newton's method stands between two iterations.
#[derive(Serialize, Deserialize)]
struct NewtonState {
    #[serde(with = "exact")]
    weights: Vec<f64>,
    info: Vec<Iteration>,
    accepted: Option<Accepted>,
    #[serde(with = "exact::one")]
    step_scale: f64,
}

/// One remembered L-BFGS pair: a step, the gradient's change, 1 / (s·y).
#[derive(Clone, Serialize, Deserialize)]
struct Pair {
    #[serde(with = "exact")]
    s: Vec<f64>,
    #[serde(with = "exact")]
    y: Vec<f64>,
    #[serde(with = "exact::one")]
    rho: f64,
}

/// Where L-BFGS stands between two iterations.
#[derive(Serialize, Deserialize)]
struct LbfgsState {
    #[serde(with = "exact")]
    weights: Vec<f64>,
    info: Vec<Iteration>,
    #[serde(with = "exact::one")]
    loss: f64,
    #[serde(with = "exact")]
    gradient: Vec<f64>,
    memory: VecDeque<Pair>,
}

/// Gradient small enough to call the optimum reached.
const GRADIENT_TOLERANCE: f64 = 1e-10;

async fn fit_newton(
    data: &TrainingData,
    loss: Loss,
    options: &ModelOptions,
    progress: &dyn Progress,
) -> Result<(Vec<f64>, Vec<Iteration>, bool)> {
    let m = loss.sets() * (data.width() + 1);
    let NewtonState {
        mut weights,
        mut info,
        mut accepted,
        mut step_scale,
    } = data.resume().await.unwrap_or(NewtonState {
        weights: vec![0.0; m],
        info: Vec::new(),
        accepted: None,
        step_scale: 1.0,
    });
    let mut converged = false;
    while info.len() < options.max_iterations {
        if !info.is_empty() {
            data.checkpoint(NewtonState {
                weights: weights.clone(),
                info: info.clone(),
                accepted: accepted.clone(),
                step_scale,
            })
            .await;
        }
        let eval = evaluate(data, loss, &weights, options.l2, true).await?;
        record(
            data,
            progress,
            LogisticRegression.name(),
            options.max_iterations,
            &mut info,
            eval.loss,
        );
        if let Some(Accepted {
            previous,
            loss: previous_loss,
            step,
        }) = &accepted
            && eval.loss > *previous_loss + 1e-12 * previous_loss.abs()
        {
            // The full step overshot: halve it from the last accepted point.
            step_scale /= 2.0;
            if step_scale < 1e-6 {
                // No step lowers the loss any more: as close as float64 gets.
                weights = previous.clone();
                converged = true;
                break;
            }
            weights = previous
                .iter()
                .zip(step)
                .map(|(w, s)| w - step_scale * s)
                .collect();
            continue;
        }
        if max_abs(&eval.gradient) < GRADIENT_TOLERANCE {
            converged = true;
            break;
        }
        let hessian = eval.hessian.expect("asked for the Hessian");
        let step = loss.newton_step(hessian, &eval.gradient);
        let decrement = dot(&eval.gradient, &step);
        let previous_loss = eval.loss;
        let previous = weights.clone();
        step_scale = 1.0;
        weights = weights.iter().zip(&step).map(|(w, s)| w - s).collect();
        converged = decrement / 2.0 <= options.tolerance * previous_loss.abs().max(1e-300);
        accepted = Some(Accepted {
            previous,
            loss: previous_loss,
            step,
        });
        if converged {
            break;
        }
    }
    Ok((weights, info, converged))
}

/// L-BFGS's first point: the intercepts-only optimum. At zero weights an
/// intercept's gradient is its class's share under the model (½, or 1/k)
/// less its share of the labels; the optimum puts each intercept at the log
/// of that share (binary: logit(mean label); softmax: centred). The penalty
/// never moves the intercepts, so however large it is (and the steps on the
/// other weights small), they start where they belong.
async fn lbfgs_start(data: &TrainingData, loss: Loss, l2: f64) -> Result<(Vec<f64>, Evaluation)> {
    let m = data.width() + 1;
    let mut weights = vec![0.0; loss.sets() * m];
    let mut current = evaluate(data, loss, &weights, l2, false).await?;
    let intercepts: Option<Vec<f64>> = match loss {
        Loss::Binary => {
            let rate = 0.5 - current.gradient[m - 1];
            (rate > 0.0 && rate < 1.0).then(|| vec![(rate / (1.0 - rate)).ln()])
        }
        Loss::Softmax { classes } => {
            let logs: Vec<f64> = (0..classes)
                .map(|c| (1.0 / classes as f64 - current.gradient[c * m + m - 1]).ln())
                .collect();
            let mean = logs.iter().sum::<f64>() / classes as f64;
            logs.iter()
                .all(|l| l.is_finite())
                .then(|| logs.iter().map(|l| l - mean).collect())
        }
    };
    if let Some(intercepts) = intercepts {
        for (c, b) in intercepts.into_iter().enumerate() {
            weights[c * m + m - 1] = b;
        }
        current = evaluate(data, loss, &weights, l2, false).await?;
    }
    Ok((weights, current))
}

/// Pairs of (step, gradient change) L-BFGS remembers.
const LBFGS_MEMORY: usize = 10;

async fn fit_lbfgs(
    data: &TrainingData,
    loss: Loss,
    options: &ModelOptions,
    progress: &dyn Progress,
) -> Result<(Vec<f64>, Vec<Iteration>, bool)> {
    let iteration_done = |info: &mut Vec<Iteration>, loss: f64| {
        let max = options.max_iterations;
        record(data, progress, LogisticRegression.name(), max, info, loss)
    };
    let (mut weights, mut info, mut current, mut memory) = match data.resume().await {
        Some(LbfgsState {
            weights,
            info,
            loss,
            gradient,
            memory,
        }) => {
            let current = Evaluation {
                loss,
                gradient,
                hessian: None,
            };
            (weights, info, current, memory)
        }
        None => {
            let (weights, current) = lbfgs_start(data, loss, options.l2).await?;
            let mut info = Vec::new();
            iteration_done(&mut info, current.loss);
            (weights, info, current, VecDeque::new())
        }
    };
    let mut converged = false;
    while info.len() < options.max_iterations && max_abs(&current.gradient) >= GRADIENT_TOLERANCE {
        data.checkpoint(LbfgsState {
            weights: weights.clone(),
            info: info.clone(),
            loss: current.loss,
            gradient: current.gradient.clone(),
            memory: memory.clone(),
        })
        .await;
        // Two-loop recursion: direction = −H⁻¹ g.
        let mut q = current.gradient.clone();
        let mut alphas = Vec::with_capacity(memory.len());
        for Pair { s, y, rho } in memory.iter().rev() {
            let alpha = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(q, y)| *q -= alpha * y);
            alphas.push(alpha);
        }
        // The first step is scaled to the gradient and to the penalty's
        // curvature (l2 on every weight but the intercept); later ones to the
        // curvature seen.
        let gamma = memory.back().map_or(
            1.0 / (max_abs(&current.gradient).max(1.0) * (1.0 + options.l2)),
            |Pair { s, y, .. }| dot(s, y) / dot(y, y),
        );
        q.iter_mut().for_each(|v| *v *= gamma);
        for (Pair { s, y, rho }, alpha) in memory.iter().zip(alphas.iter().rev()) {
            let beta = rho * dot(y, &q);
            q.iter_mut()
                .zip(s)
                .for_each(|(q, s)| *q += (alpha - beta) * s);
        }
        let direction: Vec<f64> = q.iter().map(|v| -v).collect();
        let slope = dot(&current.gradient, &direction);
        // Backtracking line search (Armijo); each trial is one pass.
        let mut t = 1.0;
        let next = loop {
            let trial: Vec<f64> = weights
                .iter()
                .zip(&direction)
                .map(|(w, p)| w + t * p)
                .collect();
            let eval = evaluate(data, loss, &trial, options.l2, false).await?;
            if eval.loss <= current.loss + 1e-4 * t * slope {
                break Some((trial, eval));
            }
            if t < 1e-10 {
                break None;
            }
            t /= 2.0;
        };
        // No step along this direction lowers the loss: this is as low as it goes.
        let Some((trial, eval)) = next else {
            converged = true;
            break;
        };
        let s: Vec<f64> = trial.iter().zip(&weights).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = eval
            .gradient
            .iter()
            .zip(&current.gradient)
            .map(|(a, b)| a - b)
            .collect();
        let sy = dot(&s, &y);
        let improvement = current.loss - eval.loss;
        weights = trial;
        let previous_loss = current.loss;
        current = eval;
        iteration_done(&mut info, current.loss);
        if sy > 1e-300 {
            memory.push_back(Pair {
                s,
                y,
                rho: 1.0 / sy,
            });
            if memory.len() > LBFGS_MEMORY {
                memory.pop_front();
            }
        }
        if improvement <= options.tolerance * previous_loss.abs() {
            converged = true;
            break;
        }
    }
    if max_abs(&current.gradient) < GRADIENT_TOLERANCE {
        converged = true;
    }
    Ok((weights, info, converged))
}
