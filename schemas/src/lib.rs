//! Wire and persisted contracts of nevermore.
//!
//! - [`record::LogRecord`]: the log record, the same JSON in Kafka, in Elasticsearch and from the
//!   search API (ECS field names). `log-record.schema.json` beside this crate is its JSON Schema,
//!   kept in step by a golden test.
//! - [`ES_INDEX_TEMPLATE`]: the Elasticsearch index template of the record (and its OpenSearch
//!   twin), files in `elasticsearch/` beside this crate.
//! - [`checkpoint`]: the versioned on-disk checkpoint file of the collector.
//!
//! This crate does no IO and depends on no other workspace crate.

pub mod checkpoint;
pub mod record;
pub mod time;

/// The Elasticsearch 8 composable index template of `logs-nevermore*` (the LogRecord mapping);
/// `PUT _index_template/<name>` with this body.
pub const ES_INDEX_TEMPLATE: &str = include_str!("../elasticsearch/index-template.json");

/// The same template for OpenSearch, which lacks `subobjects`: `kubernetes.labels` is a
/// `flat_object` there. Otherwise identical to [`ES_INDEX_TEMPLATE`].
pub const OPENSEARCH_INDEX_TEMPLATE: &str =
    include_str!("../elasticsearch/index-template.opensearch.json");

pub use checkpoint::{Checkpoint, CheckpointError, SegmentPos, StreamCheckpoint};
pub use record::LogRecord;
