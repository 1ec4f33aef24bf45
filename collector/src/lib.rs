//! The node log collector: discovery, rotation-safe tailing, checkpoints, pipeline and sinks.
//!
//! Does not depend on the query service. Parsing lives in the pure `nevermore-parse` crate.

pub mod checkpoint;
pub mod config;
pub mod discover;
pub mod es;
pub mod event;
pub mod fingerprint;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod relay;
pub mod run;
pub mod sinks;
pub mod tail;

pub use run::{RunError, run};
