//! ember's cross-crate integration tests, in one binary (linking is the cost).

mod cluster;
mod slt;
mod tpch;
