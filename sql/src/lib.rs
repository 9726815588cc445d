//! ember's SQL front end: DataFusion's parser, extended with ember's statements.
//!
//! ```text
//!   "SET ...; SELECT ...;"  --parse_statements-->  [EmberStatement, ...]
//! ```
//!
//! A script is split into statements that run in order. Statements DataFusion knows
//! are passed through untouched; ember's own (model DDL, EVALUATE, ...) get their own
//! variants here so that the engine can plan them.

mod depth;
pub mod ml;
mod parser;

pub use parser::{CreateModel, EmberStatement, parse_statements};
