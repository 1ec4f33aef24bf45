//! Sinks: where batches go, and the acknowledgement that lets checkpoints advance.
//!
//! A sink writes batches in order and later makes them durable; only then are they acknowledged.
//! `write` + `flush` lets a sink group several batches into one durable commit (one fsync, one
//! wait for delivery reports).

pub mod elasticsearch;
pub mod embedded;
pub mod file;
pub mod kafka;

use crate::event::Batch;
use std::future::Future;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink {sink}: cannot open {path}: {source}")]
    Open {
        sink: String,
        path: String,
        source: std::io::Error,
    },
    #[error("sink {sink}: write failed: {source}")]
    Write {
        sink: String,
        source: std::io::Error,
    },
}

/// A destination of records.
pub trait Sink: Send + 'static {
    fn name(&self) -> &str;
    /// Hands a batch to the sink (events of sources this sink does not take are skipped by
    /// `accepts`). Not yet durable.
    fn write(
        &mut self,
        batch: &Batch,
        accepts: &[bool],
    ) -> impl Future<Output = Result<usize, SinkError>> + Send;
    /// Makes everything written so far durable. Batches written before are acknowledged when
    /// this returns Ok.
    fn flush(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// Undoes a failed write of a batch so it can be retried without duplicating it, where the
    /// destination allows (a file is truncated back).
    fn rollback(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// After a failed flush: drops everything written since the last successful flush, where
    /// the destination allows, so it can be written again (a file is truncated back).
    fn discard_unflushed(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// What the sink counted since the last call (the runner turns it into metrics).
    fn take_stats(&mut self) -> SinkStats {
        SinkStats::default()
    }
}

/// Counts of a sink's own work, beyond records written and acknowledged.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SinkStats {
    /// Payload bytes handed to the destination.
    pub bytes_sent: u64,
    /// Records (or requests) sent again after a retryable failure.
    pub retried: u64,
    /// Records sent to a dead-letter destination instead.
    pub dead_lettered: u64,
    /// Records the destination already had (Elasticsearch 409 on `create`).
    pub duplicates: u64,
    /// Records cut to fit the destination's size limit.
    pub truncated: u64,
    /// Records given up for good (a dead-letter destination refused them too, or not even an
    /// empty message fits the size limit): counted and logged, never silent.
    pub dropped: u64,
    /// Duration of each request (bulk request, or wait for delivery reports), in seconds.
    pub request_seconds: Vec<f64>,
    /// Messages queued in the client, not yet delivered (Kafka producer queue).
    pub queue_depth: u64,
}
