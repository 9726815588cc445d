//! ember's ML operators: kernels, feature functions, estimators and the model store.
//!
//! ```text
//!   kernels/     dense numeric loops (Gram, logistic, k-means, gradient histograms)
//!   hashing/     the stable hash, and the seeded row hash splits and samples use
//!   metrics      EVALUATE's metrics over predictions in memory
//!   models/      one model type a file behind one trait (ModelKind) and their registry;
//!                training rounds, trees, the model.json format
//!   functions/   one SQL function a file: feature transforms, predict
//!   store        versioned, atomically written models on any object store
//! ```
//!
//! Imports point down the list: kernels, hashing and metrics import nothing else of
//! this crate (tests aside), models import them, functions import models.
//!
//! This crate knows nothing of planning or distribution. Every process (client,
//! scheduler, executor) asks [`functions::ember_functions`] for the set of functions
//! to register, so a function added here is available everywhere at once.

pub mod functions;
pub mod hashing;
pub mod kernels;
pub mod linalg;
pub mod metrics;
pub mod models;
pub mod store;
