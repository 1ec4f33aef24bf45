//! The Elasticsearch / OpenSearch bulk layer: a `_bulk` client that knows documents, not
//! [`Event`](crate::event::Event)s, so the Elasticsearch sink and the relay share it.
//!
//! Delivery contract of [`BulkClient::send`]: when it returns `Ok`, every document was created
//! (201), was already there (409 on `create` with the same `_id`: a replay), or was rejected for
//! good and written to the dead letter destination (durably, for a file). Everything transient
//! (429, 5xx, connection errors, timeouts, per request or per item) is retried with exponential
//! backoff and jitter, without limit: the caller's backpressure is the bound. A request the server
//! refuses as a whole (413, 400, ...) is split in halves down to single documents, so one bad
//! document never takes its neighbours to the dead letter.
//!
//! Dropping the future of `send` loses nothing that was acknowledged: sending the same documents
//! again gives 409s for those already created.

mod client;
mod dead_letter;
mod target;

pub use client::{BulkClient, Flavor};
pub use target::{IndexResolver, template_body, template_index_pattern};

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

/// One document of a bulk request.
#[derive(Debug, Clone)]
pub struct BulkDoc<'a> {
    /// The `_id` (the record's `event.id`): what makes a replay a 409 instead of a duplicate.
    pub id: &'a str,
    /// The resolved index (or data stream) name.
    pub index: Cow<'a, str>,
    /// One JSON object, without a trailing newline.
    pub source: &'a [u8],
}

/// What one [`BulkClient::send`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkReport {
    /// Documents created (201).
    pub created: u64,
    /// Documents that were already there (409 `version_conflict_engine_exception`).
    pub duplicates: u64,
    /// Document sends that were retried (a document retried three times counts three).
    pub retried: u64,
    /// Documents rejected for good and written to the dead letter destination.
    pub dead_lettered: u64,
    /// Dead letter records the dead letter index refused too (logged as errors).
    pub dead_letter_failed: u64,
    /// HTTP requests made (`_bulk`, including retries and dead letter requests).
    pub requests: u64,
    /// Request body bytes sent (after compression).
    pub bytes_sent: u64,
    /// The latency of every request that got an answer or failed, in order.
    pub latencies: Vec<Duration>,
}

impl BulkReport {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: BulkReport) {
        self.created += other.created;
        self.duplicates += other.duplicates;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
        self.dead_letter_failed += other.dead_letter_failed;
        self.requests += other.requests;
        self.bytes_sent += other.bytes_sent;
        self.latencies.extend(other.latencies);
    }

    /// Documents delivered: created, already there, or dead-lettered.
    pub fn delivered(&self) -> u64 {
        self.created + self.duplicates + self.dead_lettered
    }
}

/// Errors of the bulk layer. Transient failures are retried and logged, never returned.
#[derive(Debug, thiserror::Error)]
pub enum EsError {
    #[error("no elasticsearch endpoint configured")]
    NoEndpoint,
    #[error("invalid elasticsearch endpoint {endpoint}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("cannot read tls ca file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid tls ca file {path}: {source}")]
    CaCert {
        path: PathBuf,
        source: reqwest::Error,
    },
    #[error("invalid credentials for the authorization header: {reason}")]
    Auth { reason: String },
    #[error("cannot build the http client: {source}")]
    Client { source: reqwest::Error },
    #[error("cannot open dead letter file {path}: {source}")]
    DeadLetterOpen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write dead letter file {path}: {source}")]
    DeadLetterWrite {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{endpoint}: unexpected answer to GET / (status {status}): {reason}")]
    Detect {
        endpoint: String,
        status: u16,
        reason: String,
    },
    #[error("{endpoint}: index template {name} refused (status {status}): {reason}")]
    Template {
        endpoint: String,
        name: String,
        status: u16,
        reason: String,
    },
    #[error("invalid built-in index template: {source}")]
    TemplateJson { source: serde_json::Error },
}
