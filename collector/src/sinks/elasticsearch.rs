//! The `elasticsearch` sink: records as `_bulk` `create`s with `_id` = `event.id`, so a replay
//! after a crash is a 409 ("already there"), never a duplicate.
//!
//! `write` encodes the accepted events into a buffer bounded by one request
//! (`batch_max_records` / `batch_max_bytes`) and sends it when full; `flush` sends the rest,
//! spaced by `flush_interval` since the last send, and returns Ok once every document written
//! since the last flush was created, already there, or dead-lettered. Transient failures are
//! retried inside the bulk layer without limit: the sink just takes longer, and backpressure
//! slows reading.

use super::{Sink, SinkError, SinkStats};
use crate::config::ElasticsearchSinkConfig;
use crate::es::{BulkClient, BulkDoc, BulkReport, EsError, IndexResolver};
use crate::event::{Batch, JsonEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// What the sink did, as metric handles (cheap, shared atomics): clone them, or build the
/// struct from the children of registered families and pass it to
/// [`ElasticsearchSink::with_stats`].
#[derive(Debug, Clone)]
pub struct EsStats {
    /// Documents created.
    pub created: Counter,
    /// Documents that were already there (replays).
    pub duplicates: Counter,
    /// Document sends retried (429, 5xx, connection errors).
    pub retried: Counter,
    /// Documents written to the dead letter destination.
    pub dead_lettered: Counter,
    /// Rejected documents the dead letter index refused too (logged, then dropped).
    pub dead_letter_failed: Counter,
    /// `_bulk` requests made.
    pub requests: Counter,
    /// Request body bytes sent (compressed when gzip is on).
    pub bytes_sent: Counter,
    /// Latency of each `_bulk` request, in seconds.
    pub request_seconds: Histogram,
}

impl Default for EsStats {
    fn default() -> Self {
        EsStats {
            created: Counter::default(),
            duplicates: Counter::default(),
            retried: Counter::default(),
            dead_lettered: Counter::default(),
            dead_letter_failed: Counter::default(),
            requests: Counter::default(),
            bytes_sent: Counter::default(),
            request_seconds: Histogram::new(Self::LATENCY_BUCKETS),
        }
    }
}

impl EsStats {
    /// Buckets of [`EsStats::request_seconds`].
    pub const LATENCY_BUCKETS: [f64; 12] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];

    /// Adds a report of the bulk layer.
    pub fn record(&self, r: &BulkReport) {
        self.created.inc_by(r.created);
        self.duplicates.inc_by(r.duplicates);
        self.retried.inc_by(r.retried);
        self.dead_lettered.inc_by(r.dead_lettered);
        self.dead_letter_failed.inc_by(r.dead_letter_failed);
        self.requests.inc_by(r.requests);
        self.bytes_sent.inc_by(r.bytes_sent);
        for l in &r.latencies {
            self.request_seconds.observe(l.as_secs_f64());
        }
    }
}

/// A buffered document: its `_id` is `ids[16 * i..16 * (i + 1)]`.
#[derive(Debug, Clone, Copy)]
struct Buffered {
    /// Index into `names`.
    index: usize,
    start: usize,
    end: usize,
}

#[derive(Debug)]
pub struct ElasticsearchSink {
    name: String,
    client: BulkClient,
    resolver: IndexResolver,
    encoder: JsonEncoder,
    /// Sources of the buffered documents, back to back.
    buf: Vec<u8>,
    /// `_id`s of the buffered documents, 16 hex digits each.
    ids: Vec<u8>,
    docs: Vec<Buffered>,
    /// Index names of the buffered documents.
    names: Vec<String>,
    /// Where the current write started (`docs`, `buf` lengths): what a rollback restores.
    mark: (usize, usize),
    max_records: usize,
    max_bytes: usize,
    flush_interval: Duration,
    last_send: Instant,
    template_installed: bool,
    stats: EsStats,
    /// What `take_stats` hands the runner next.
    delta: SinkStats,
}

fn sink_err(sink: &str, e: EsError) -> SinkError {
    SinkError::Write {
        sink: sink.to_owned(),
        source: std::io::Error::other(e),
    }
}

impl ElasticsearchSink {
    /// Builds the client; connects nothing yet. The index template is installed by
    /// [`ElasticsearchSink::start`], or before the first write.
    pub fn new(name: String, cfg: &ElasticsearchSinkConfig) -> Result<Self, SinkError> {
        let client = BulkClient::new(cfg).map_err(|e| SinkError::Open {
            sink: name.clone(),
            path: cfg.endpoints.join(","),
            source: std::io::Error::other(e),
        })?;
        Ok(ElasticsearchSink {
            name,
            client,
            resolver: IndexResolver::new(&cfg.target),
            encoder: JsonEncoder::default(),
            buf: Vec::new(),
            ids: Vec::new(),
            docs: Vec::new(),
            names: Vec::new(),
            mark: (0, 0),
            max_records: cfg.batch_max_records.max(1),
            max_bytes: cfg.batch_max_bytes.max(1),
            flush_interval: cfg.flush_interval,
            last_send: Instant::now(),
            template_installed: false,
            stats: EsStats::default(),
            delta: SinkStats::default(),
        })
    }

    /// Uses these metric handles instead of the sink's own.
    pub fn with_stats(mut self, stats: EsStats) -> Self {
        self.stats = stats;
        self
    }

    pub fn stats(&self) -> &EsStats {
        &self.stats
    }

    /// The bulk client (e.g. to ask for the server's flavor).
    pub fn client(&self) -> &BulkClient {
        &self.client
    }

    /// Installs the index template (once; retries while the server is unavailable).
    pub async fn start(&mut self) -> Result<(), SinkError> {
        if !self.template_installed {
            self.client
                .install_template()
                .await
                .map_err(|e| sink_err(&self.name, e))?;
            self.template_installed = true;
        }
        Ok(())
    }

    /// Documents buffered, not sent yet.
    pub fn buffered(&self) -> usize {
        self.docs.len()
    }

    /// Sends the buffer. On error the buffer is kept (resending is safe).
    async fn send_buffer(&mut self) -> Result<(), SinkError> {
        if self.docs.is_empty() {
            return Ok(());
        }
        let docs: Vec<BulkDoc<'_>> = self
            .docs
            .iter()
            .enumerate()
            .map(|(i, d)| BulkDoc {
                id: std::str::from_utf8(&self.ids[16 * i..16 * (i + 1)]).unwrap_or_default(),
                index: Cow::Borrowed(self.names[d.index].as_str()),
                source: &self.buf[d.start..d.end],
            })
            .collect();
        let report = self.client.send(&docs).await;
        self.last_send = Instant::now();
        let report = report.map_err(|e| sink_err(&self.name, e))?;
        self.stats.record(&report);
        self.delta.bytes_sent += report.bytes_sent;
        self.delta.retried += report.retried;
        self.delta.dead_lettered += report.dead_lettered;
        self.delta.duplicates += report.duplicates;
        self.delta.dropped += report.dead_letter_failed;
        self.delta
            .request_seconds
            .extend(report.latencies.iter().map(Duration::as_secs_f64));
        tracing::debug!(sink = %self.name, docs = self.docs.len(), created = report.created, duplicates = report.duplicates, dead_lettered = report.dead_lettered, retried = report.retried, requests = report.requests, "bulk sent");
        self.docs.clear();
        self.buf.clear();
        self.ids.clear();
        self.names.clear();
        self.mark = (0, 0);
        Ok(())
    }

    fn name_slot(&mut self, ts_ns: i64) -> usize {
        let name = self.resolver.resolve(ts_ns);
        if let Some(i) = self.names.iter().rposition(|n| n == name) {
            return i;
        }
        self.names.push(name.to_owned());
        self.names.len() - 1
    }
}

impl Sink for ElasticsearchSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write(&mut self, batch: &Batch, accepts: &[bool]) -> Result<usize, SinkError> {
        self.start().await?;
        self.mark = (self.docs.len(), self.buf.len());
        let mut n = 0;
        for ev in &batch.events {
            if !accepts.get(ev.stream.source).copied().unwrap_or(false) {
                continue;
            }
            let start = self.buf.len();
            self.encoder.encode(ev, &mut self.buf);
            if self.buf.last() == Some(&b'\n') {
                self.buf.pop();
            }
            let index = self.name_slot(ev.timestamp_ns);
            {
                use std::io::Write as _;
                let _ = write!(self.ids, "{:016x}", ev.id);
            }
            self.docs.push(Buffered {
                index,
                start,
                end: self.buf.len(),
            });
            n += 1;
            if self.docs.len() >= self.max_records || self.buf.len() >= self.max_bytes {
                self.send_buffer().await?;
            }
        }
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        if self.docs.is_empty() {
            return Ok(());
        }
        // Partly filled requests wait for more records, up to the flush interval.
        let wait = self.flush_interval.saturating_sub(self.last_send.elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        self.send_buffer().await
    }

    /// Drops what the failed write added to the buffer (what it sent already is delivered:
    /// writing the batch again makes 409s of it).
    async fn rollback(&mut self) -> Result<(), SinkError> {
        let (docs, bytes) = self.mark;
        if docs <= self.docs.len() {
            self.docs.truncate(docs);
            self.ids.truncate(16 * docs);
            self.buf.truncate(bytes);
        }
        Ok(())
    }

    /// Drops the buffer: the runner writes every batch since the last flush again, and what
    /// was sent already becomes 409s.
    async fn discard_unflushed(&mut self) -> Result<(), SinkError> {
        self.docs.clear();
        self.buf.clear();
        self.ids.clear();
        self.names.clear();
        self.mark = (0, 0);
        Ok(())
    }

    fn take_stats(&mut self) -> SinkStats {
        std::mem::take(&mut self.delta)
    }
}
