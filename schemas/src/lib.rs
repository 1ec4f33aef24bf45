//! Wire and persisted contracts of nevermore.
//!
//! - [`record::LogRecord`]: the log record, the same JSON in Kafka, in Elasticsearch and from the
//!   search API (ECS field names). `log-record.schema.json` beside this crate is its JSON Schema,
//!   kept in step by a golden test.
//! - [`checkpoint`]: the versioned on-disk checkpoint file of the collector.
//!
//! This crate does no IO and depends on no other workspace crate.

pub mod checkpoint;
pub mod record;

pub use checkpoint::{Checkpoint, CheckpointError, SegmentPos, StreamCheckpoint};
pub use record::LogRecord;
