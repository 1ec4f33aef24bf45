//! The pure metrics core of the query service.
//!
//! - [`model`]: labels, samples, series, and the [`model::Storage`] trait, the only way the engine
//!   sees data.
//! - [`dedup`]: merging the series of HA replicas (penalty, interval, chain) before evaluation.
//! - [`engine`]: PromQL evaluation (parsed by `promql-parser`, evaluated here).
//!
//! No IO, no tokio, no clock: time is always an argument, cancellation is a flag the caller sets.

pub mod dedup;
pub mod engine;
pub mod model;

pub use promql_parser;
