//! The collector's Prometheus metrics: what was read, merged, truncated, lost and delivered.
//!
//! Hot paths hold metric handles (cheap atomics), never look labels up per line.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub source: String,
    pub stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

/// Every metric of the collector, registered once.
#[derive(Debug)]
pub struct Metrics {
    pub lines_read: Family<StreamLabels, Counter>,
    pub bytes_read: Family<StreamLabels, Counter>,
    pub lag_bytes: Family<StreamLabels, Gauge>,
    pub lag_seconds: Family<StreamLabels, Gauge<f64, AtomicU64>>,
    pub rotations: Family<SourceLabels, Counter>,
    pub partials_merged: Family<SourceLabels, Counter>,
    pub multiline_merged: Family<SourceLabels, Counter>,
    pub truncated: Family<SourceLabels, Counter>,
    pub invalid_lines: Family<SourceLabels, Counter>,
    pub unterminated: Family<SourceLabels, Counter>,
    pub replayed_suppressed: Family<SourceLabels, Counter>,
    pub bytes_lost: Family<ReasonLabels, Counter>,
    pub streams: Gauge,
    pub open_files: Gauge,
    pub records_sent: Family<SinkLabels, Counter>,
    pub records_acked: Family<SinkLabels, Counter>,
    pub sink_errors: Family<SinkLabels, Counter>,
    pub batches_in_flight: Gauge,
    pub checkpoint_writes: Counter,
    pub checkpoint_errors: Counter,
    pub sink_flush_seconds: Family<SinkLabels, Histogram, fn() -> Histogram>,
    pub sink_bytes_sent: Family<SinkLabels, Counter>,
    pub sink_retried: Family<SinkLabels, Counter>,
    pub sink_dead_lettered: Family<SinkLabels, Counter>,
    pub sink_duplicates: Family<SinkLabels, Counter>,
    pub sink_truncated: Family<SinkLabels, Counter>,
    pub sink_dropped: Family<SinkLabels, Counter>,
    pub sink_request_seconds: Family<SinkLabels, Histogram, fn() -> Histogram>,
    pub sink_queue_depth: Family<SinkLabels, Gauge>,
}

fn flush_buckets() -> Histogram {
    Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            lines_read: Default::default(),
            bytes_read: Default::default(),
            lag_bytes: Default::default(),
            lag_seconds: Default::default(),
            rotations: Default::default(),
            partials_merged: Default::default(),
            multiline_merged: Default::default(),
            truncated: Default::default(),
            invalid_lines: Default::default(),
            unterminated: Default::default(),
            replayed_suppressed: Default::default(),
            bytes_lost: Default::default(),
            streams: Default::default(),
            open_files: Default::default(),
            records_sent: Default::default(),
            records_acked: Default::default(),
            sink_errors: Default::default(),
            batches_in_flight: Default::default(),
            checkpoint_writes: Default::default(),
            checkpoint_errors: Default::default(),
            sink_flush_seconds: Family::new_with_constructor(flush_buckets),
            sink_bytes_sent: Default::default(),
            sink_retried: Default::default(),
            sink_dead_lettered: Default::default(),
            sink_duplicates: Default::default(),
            sink_truncated: Default::default(),
            sink_dropped: Default::default(),
            sink_request_seconds: Family::new_with_constructor(flush_buckets),
            sink_queue_depth: Default::default(),
        }
    }

    pub fn register(&self, reg: &mut Registry) {
        let r = reg.sub_registry_with_prefix("nevermore");
        r.register(
            "lines_read",
            "Lines read, per stream",
            self.lines_read.clone(),
        );
        r.register(
            "bytes_read",
            "Bytes read, per stream",
            self.bytes_read.clone(),
        );
        r.register(
            "lag_bytes",
            "Bytes written to a stream's segments and not yet read",
            self.lag_bytes.clone(),
        );
        r.register(
            "lag_seconds",
            "Age of the newest acknowledged record of a stream that still has unread bytes",
            self.lag_seconds.clone(),
        );
        r.register(
            "rotations",
            "Rotations followed (a new segment in a stream)",
            self.rotations.clone(),
        );
        r.register(
            "partials_merged",
            "Records merged from CRI/docker partial chunks",
            self.partials_merged.clone(),
        );
        r.register(
            "multiline_merged",
            "Records merged from several lines",
            self.multiline_merged.clone(),
        );
        r.register(
            "records_truncated",
            "Records cut at max_record_bytes",
            self.truncated.clone(),
        );
        r.register(
            "invalid_lines",
            "Lines that were not valid CRI/docker and were kept as plain text",
            self.invalid_lines.clone(),
        );
        r.register(
            "unterminated",
            "Partial records sent after partial_timeout_ms without their final chunk",
            self.unterminated.clone(),
        );
        r.register(
            "replayed_suppressed",
            "Records re-read after a restart and not sent again because they were acknowledged",
            self.replayed_suppressed.clone(),
        );
        r.register(
            "bytes_lost",
            "Bytes that could not be read, by reason",
            self.bytes_lost.clone(),
        );
        r.register("streams", "Streams being tailed", self.streams.clone());
        r.register(
            "open_files",
            "Open segment descriptors",
            self.open_files.clone(),
        );
        r.register(
            "sink_records_sent",
            "Records handed to a sink",
            self.records_sent.clone(),
        );
        r.register(
            "sink_records_acked",
            "Records acknowledged by a sink",
            self.records_acked.clone(),
        );
        r.register(
            "sink_errors",
            "Failed sink writes (retried)",
            self.sink_errors.clone(),
        );
        r.register(
            "sink_flush_seconds",
            "Time to make a sink's writes durable",
            self.sink_flush_seconds.clone(),
        );
        r.register(
            "sink_bytes_sent",
            "Payload bytes a sink sent to its destination",
            self.sink_bytes_sent.clone(),
        );
        r.register(
            "sink_retried",
            "Records or requests a sink sent again after a retryable failure",
            self.sink_retried.clone(),
        );
        r.register(
            "sink_dead_lettered",
            "Records a sink sent to its dead-letter destination",
            self.sink_dead_lettered.clone(),
        );
        r.register(
            "sink_duplicates",
            "Records the destination already held (replays, answered 409 by Elasticsearch)",
            self.sink_duplicates.clone(),
        );
        r.register(
            "sink_truncated",
            "Records cut to fit the destination's size limit",
            self.sink_truncated.clone(),
        );
        r.register(
            "sink_dropped",
            "Records a sink gave up for good (its dead-letter destination refused them too), each logged",
            self.sink_dropped.clone(),
        );
        r.register(
            "sink_request_seconds",
            "Duration of a sink's requests (a bulk request; a wait for Kafka delivery reports)",
            self.sink_request_seconds.clone(),
        );
        r.register(
            "sink_queue_depth",
            "Messages queued in a sink's client and not yet delivered (the Kafka producer queue)",
            self.sink_queue_depth.clone(),
        );
        r.register(
            "batches_in_flight",
            "Batches sent and not yet acknowledged",
            self.batches_in_flight.clone(),
        );
        r.register(
            "checkpoint_writes",
            "Checkpoint files written",
            self.checkpoint_writes.clone(),
        );
        r.register(
            "checkpoint_errors",
            "Checkpoint writes that failed",
            self.checkpoint_errors.clone(),
        );
    }

    /// Adds what a sink counted to its metrics.
    pub fn sink_stats(&self, sink: &SinkLabels, s: &crate::sinks::SinkStats) {
        self.sink_bytes_sent
            .get_or_create(sink)
            .inc_by(s.bytes_sent);
        self.sink_retried.get_or_create(sink).inc_by(s.retried);
        self.sink_dead_lettered
            .get_or_create(sink)
            .inc_by(s.dead_lettered);
        self.sink_duplicates
            .get_or_create(sink)
            .inc_by(s.duplicates);
        self.sink_truncated.get_or_create(sink).inc_by(s.truncated);
        self.sink_dropped.get_or_create(sink).inc_by(s.dropped);
        let h = self.sink_request_seconds.get_or_create(sink);
        for secs in &s.request_seconds {
            h.observe(*secs);
        }
        self.sink_queue_depth
            .get_or_create(sink)
            .set(i64::try_from(s.queue_depth).unwrap_or(i64::MAX));
    }

    pub fn lost(&self, reason: &str, bytes: u64) {
        self.bytes_lost
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc_by(bytes);
    }
}
