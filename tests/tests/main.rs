//! ember's cross-crate integration tests, in one binary (linking is the cost).

mod bad_input;
mod cluster;
mod cluster_secret;
mod evaluate;
mod fuzz;
mod join_order;
mod kept_rows;
mod ml;
mod multiclass;
mod predict;
mod regularization;
mod slt;
mod tpch;
mod trees;
