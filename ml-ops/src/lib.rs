//! ember's ML operators: kernels, feature functions, estimators and the model store.
//!
//! ```text
//!   kernels/     dense numeric loops over feature blocks (Gram, logistic, k-means)
//!   functions/   one SQL function a file: feature transforms, predict, training rounds
//!   models/      one estimator a file, behind one trait; the model.json format
//!   store        versioned, atomically written models on any object store
//! ```
//!
//! This crate knows nothing of planning or distribution. Every process (client,
//! scheduler, executor) asks [`functions::ember_functions`] for the set of functions
//! to register, so a function added here is available everywhere at once.

pub mod functions;
pub mod hashing;
pub mod kernels;
pub mod linalg;
pub mod models;
pub mod store;
