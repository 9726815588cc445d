//! ember's ML operators: kernels, feature functions, estimators and the model store.
//!
//! ```text
//!   functions/   one SQL function a file (UDF shells over the kernels)
//! ```
//!
//! This crate knows nothing of planning or distribution. Every process (client,
//! scheduler, executor) asks [`functions::ember_functions`] for the set of functions
//! to register, so a function added here is available everywhere at once.

pub mod functions;
