//! `nevermore relay`: Kafka topics → Elasticsearch, the embedded index or an NDJSON file.
//!
//! ```text
//! consumer group ─► batch (count / time) ─► every output acknowledges ─► commit offsets
//! ```
//! Offsets are committed only after every output acknowledged the batch, so a crash, a
//! rebalance or a broker restart can only make records arrive again, never go missing; the
//! outputs turn replays into nothing (`create` with `_id = event.id` in Elasticsearch, the
//! per-stream sequence in the embedded index). Records that are no log record (not JSON, no
//! `event.id`) go to a dead-letter file with their topic, partition, offset and reason.

use crate::config::{CollectorConfig, RelayConfig, SinkKind};
use crate::es::{BulkClient, BulkDoc, IndexResolver};
use crate::kafka::{TracingContext, consumer_config};
use nevermore_index::{IndexDoc, LogIndex, Retention, Writer};
use nevermore_schemas::record::LogRecord;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rdkafka::ClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After a stop, how long the batch being written may take before the relay exits without
/// committing it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the embedded output applies its retention.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the config file has no `relay` section")]
    NoRelaySection,
    #[error("cannot create the kafka consumer: {0}")]
    Consumer(KafkaError),
    #[error("cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        source: KafkaError,
    },
    #[error("output {output}: cannot open {path}: {message}")]
    Open {
        output: String,
        path: String,
        message: String,
    },
    #[error("output {output}: {message}")]
    Write { output: String, message: String },
    #[error("cannot listen for telemetry on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One record taken from Kafka.
#[derive(Debug)]
pub struct RelayRecord {
    pub payload: Vec<u8>,
    pub record: LogRecord,
    pub ts_ns: i64,
}

/// The relay's metrics.
#[derive(Debug)]
struct RelayMetrics {
    consumed: Counter,
    written: Counter,
    dead_lettered: Counter,
    commits: Counter,
    commit_errors: Counter,
    write_retries: Counter,
    output_dead_lettered: Counter,
    output_dropped: Counter,
    output_duplicates: Counter,
    batch_seconds: Histogram,
}

impl RelayMetrics {
    fn new() -> Self {
        RelayMetrics {
            consumed: Counter::default(),
            written: Counter::default(),
            dead_lettered: Counter::default(),
            commits: Counter::default(),
            commit_errors: Counter::default(),
            write_retries: Counter::default(),
            output_dead_lettered: Counter::default(),
            output_dropped: Counter::default(),
            output_duplicates: Counter::default(),
            batch_seconds: Histogram::new([0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
        }
    }

    fn register(&self, reg: &mut Registry) {
        let r = reg.sub_registry_with_prefix("nevermore_relay");
        r.register(
            "records_consumed",
            "Records read from Kafka",
            self.consumed.clone(),
        );
        r.register(
            "records_written",
            "Records acknowledged by every output",
            self.written.clone(),
        );
        r.register(
            "records_dead_lettered",
            "Messages that were no log record, written to the dead-letter file",
            self.dead_lettered.clone(),
        );
        r.register("commits", "Offset commits", self.commits.clone());
        r.register(
            "commit_errors",
            "Offset commits that failed (the records are read again)",
            self.commit_errors.clone(),
        );
        r.register(
            "write_retries",
            "Batch writes retried after an output failed",
            self.write_retries.clone(),
        );
        r.register(
            "output_dead_lettered",
            "Records an output sent to its dead-letter destination (Elasticsearch mapping errors)",
            self.output_dead_lettered.clone(),
        );
        r.register(
            "output_dropped",
            "Records an output gave up for good (its dead-letter destination refused them too), each logged",
            self.output_dropped.clone(),
        );
        r.register(
            "output_duplicates",
            "Records an output already had (Kafka replays)",
            self.output_duplicates.clone(),
        );
        r.register(
            "batch_seconds",
            "Time to write a batch to every output",
            self.batch_seconds.clone(),
        );
    }
}

/// Logs partition assignments.
#[derive(Debug)]
struct RelayContext {
    tracing: TracingContext,
}

impl ClientContext for RelayContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.tracing.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.tracing.error(error, reason);
    }
}

impl ConsumerContext for RelayContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "relay: partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "relay: partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "relay: rebalance error"),
        }
    }
}

/// What an output counted while writing a batch.
#[derive(Debug, Default, Clone, Copy)]
struct OutputCounts {
    dead_lettered: u64,
    dropped: u64,
    /// Records the output already had (replays).
    duplicates: u64,
}

/// Where the relay writes.
enum Output {
    Elasticsearch {
        name: String,
        client: BulkClient,
        resolver: IndexResolver,
    },
    Embedded {
        name: String,
        writer: Option<Writer>,
        last_retention: Instant,
    },
    File {
        name: String,
        file: std::fs::File,
    },
}

impl Output {
    fn name(&self) -> &str {
        match self {
            Output::Elasticsearch { name, .. }
            | Output::Embedded { name, .. }
            | Output::File { name, .. } => name,
        }
    }

    /// Writes a batch; returns what the output counted (dead-lettered, dropped, skipped).
    async fn write(&mut self, records: &[RelayRecord]) -> Result<OutputCounts, RelayError> {
        match self {
            Output::Elasticsearch {
                name,
                client,
                resolver,
            } => {
                let docs: Vec<BulkDoc<'_>> = records
                    .iter()
                    .map(|r| BulkDoc {
                        id: &r.record.event.id,
                        index: Cow::Owned(resolver.resolve(r.ts_ns).to_owned()),
                        source: &r.payload,
                    })
                    .collect();
                client
                    .send(&docs)
                    .await
                    .map(|r| OutputCounts {
                        dead_lettered: r.dead_lettered,
                        dropped: r.dead_letter_failed,
                        duplicates: r.duplicates,
                    })
                    .map_err(|e| RelayError::Write {
                        output: name.clone(),
                        message: e.to_string(),
                    })
            }
            Output::Embedded {
                name,
                writer,
                last_retention,
            } => {
                // Retention is a delete query applied with the commit below, once a minute.
                let retention_now = (last_retention.elapsed() >= RETENTION_EVERY).then(|| {
                    *last_retention = Instant::now();
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                });
                let mut w = writer.take().ok_or_else(|| RelayError::Write {
                    output: name.clone(),
                    message: "the index writer was lost in a failed commit".into(),
                })?;
                // The writer takes a stream in sequence order within a commit (a lower one after
                // a higher one would count as already written): a stream split over several
                // topics arrives interleaved, so the batch is sorted per stream first.
                let mut docs: Vec<(Vec<u8>, LogRecord)> = records
                    .iter()
                    .map(|r| (r.payload.clone(), r.record.clone()))
                    .collect();
                docs.sort_by(|a, b| {
                    (&a.1.event.stream_id, a.1.event.sequence)
                        .cmp(&(&b.1.event.stream_id, b.1.event.sequence))
                });
                let (w, result) = tokio::task::spawn_blocking(move || {
                    let r = (|| {
                        let mut counts = OutputCounts::default();
                        for (payload, record) in &docs {
                            match IndexDoc::from_record(record, payload) {
                                Some(doc) => {
                                    if !w.add(&doc)? {
                                        counts.duplicates += 1;
                                    }
                                }
                                None => {
                                    counts.dropped += 1;
                                    tracing::error!(event_id = %record.event.id, "relay: record not indexable (timestamp or stream id), dropped");
                                }
                            }
                        }
                        if let Some(now) = retention_now {
                            w.enforce_retention(now)?;
                        }
                        w.commit().map(|()| counts)
                    })();
                    (w, r)
                })
                .await
                .map_err(|e| RelayError::Write {
                    output: name.clone(),
                    message: e.to_string(),
                })?;
                *writer = Some(w);
                result.map_err(|e| RelayError::Write {
                    output: name.clone(),
                    message: e.to_string(),
                })
            }
            Output::File { name, file } => {
                let mut buf = Vec::new();
                for r in records {
                    buf.extend_from_slice(&r.payload);
                    buf.push(b'\n');
                }
                // A failed write is cut back, so writing the batch again duplicates nothing.
                let len = file.metadata().map(|m| m.len());
                let result = file.write_all(&buf).and_then(|()| file.sync_data());
                if result.is_err()
                    && let Ok(len) = len
                {
                    let _ = file.set_len(len);
                }
                result
                    .map(|()| OutputCounts::default())
                    .map_err(|e| RelayError::Write {
                        output: name.clone(),
                        message: e.to_string(),
                    })
            }
        }
    }

    /// After a failed write: the embedded writer drops what it did not commit.
    async fn reset(&mut self) {
        if let Output::Embedded { writer, .. } = self
            && let Some(mut w) = writer.take()
        {
            let w = tokio::task::spawn_blocking(move || {
                let _ = w.rollback();
                w
            })
            .await;
            if let Ok(w) = w {
                *writer = Some(w);
            }
        }
    }
}

/// Runs the relay until `shutdown` resolves; the batch being written is finished and
/// committed first.
pub async fn run(
    cfg: CollectorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RelayError> {
    let relay = cfg.relay.clone().ok_or(RelayError::NoRelaySection)?;
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| RelayError::DataDir {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let metrics = Arc::new(RelayMetrics::new());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    if let Some(addr) = cfg.telemetry.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RelayError::Listen { addr, source })?;
        tracing::info!(%addr, "telemetry listening (/metrics, /health)");
        tokio::spawn(crate::http::serve(listener, Arc::new(registry)));
    }
    let mut outputs = open_outputs(&cfg, &relay).await?;
    let dead_letter_path = cfg.data_dir.join("relay-dead-letter.ndjson");
    let mut dead_letter = DeadLetterFile::new(dead_letter_path);

    let consumer: Arc<StreamConsumer<RelayContext>> = consumer_config(&relay.kafka)
        .create_with_context(RelayContext {
            tracing: TracingContext {
                name: "relay".into(),
            },
        })
        .map(Arc::new)
        .map_err(RelayError::Consumer)?;
    let topics: Vec<&str> = relay.kafka.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| RelayError::Subscribe {
            topics: relay.kafka.topics.clone(),
            source,
        })?;
    tracing::info!(topics = ?relay.kafka.topics, group = %relay.kafka.group_id, outputs = outputs.len(), "relay started");

    tokio::pin!(shutdown);
    let mut stopping = false;
    let mut batch: Vec<RelayRecord> = Vec::with_capacity(relay.batch_max_records);
    // Next offset to commit, per (topic, partition).
    let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
    while !stopping {
        let deadline = tokio::time::Instant::now() + relay.batch_timeout;
        while batch.len() < relay.batch_max_records {
            tokio::select! {
                biased;
                () = &mut shutdown => { stopping = true; break; }
                () = tokio::time::sleep_until(deadline), if !batch.is_empty() || !offsets.is_empty() => break,
                m = consumer.recv() => match m {
                    Ok(m) => {
                        metrics.consumed.inc();
                        offsets.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
                        let payload = m.payload().unwrap_or_default();
                        match decode(payload) {
                            Ok(r) => batch.push(r),
                            Err(reason) => {
                                metrics.dead_lettered.inc();
                                dead_letter.add(m.topic(), m.partition(), m.offset(), reason, payload);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "relay: consume failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
            }
        }
        if batch.is_empty() && offsets.is_empty() {
            continue;
        }
        let started = Instant::now();
        // Every output must take the batch before offsets move; failures are retried with
        // backoff (the consumer waits: Kafka is the buffer). An output that took the batch is
        // not written again. A stop while writing gives the batch `DRAIN_TIMEOUT`; then it is
        // left uncommitted, to be read again at the next start.
        let mut done = vec![false; outputs.len()];
        let mut backoff = Duration::from_millis(200);
        let mut drain_deadline = stopping.then(|| tokio::time::Instant::now() + DRAIN_TIMEOUT);
        loop {
            let attempt = write_all(&mut outputs, &mut done, &batch, &mut dead_letter, &metrics);
            let ok = match drain_deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, attempt).await {
                    Ok(ok) => ok,
                    Err(_) => {
                        tracing::warn!(
                            "relay: stopping with an unwritten batch; it will be read again"
                        );
                        return Ok(());
                    }
                },
                None => {
                    tokio::select! {
                        ok = attempt => ok,
                        () = &mut shutdown => {
                            stopping = true;
                            drain_deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                            false
                        }
                    }
                }
            };
            if ok {
                break;
            }
            metrics.write_retries.inc();
            match drain_deadline {
                Some(deadline) if tokio::time::Instant::now() + backoff >= deadline => {
                    tracing::warn!(
                        "relay: stopping with an unwritten batch; it will be read again"
                    );
                    return Ok(());
                }
                Some(_) => tokio::time::sleep(backoff).await,
                None => {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = &mut shutdown => {
                            stopping = true;
                            drain_deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                        }
                    }
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.written.inc_by(batch.len() as u64);
        batch.clear();
        commit(&consumer, &mut offsets, &metrics).await;
    }
    tracing::info!("relay stopped");
    Ok(())
}

/// Writes the batch to every output not yet `done`, and the dead letters; true when all took it.
async fn write_all(
    outputs: &mut [Output],
    done: &mut [bool],
    batch: &[RelayRecord],
    dead_letter: &mut DeadLetterFile,
    metrics: &RelayMetrics,
) -> bool {
    if let Err(e) = dead_letter.flush() {
        tracing::error!(error = %e, path = %dead_letter.path.display(), "relay: cannot write the dead-letter file");
        return false;
    }
    if batch.is_empty() {
        return true;
    }
    for (out, done) in outputs.iter_mut().zip(done.iter_mut()) {
        if *done {
            continue;
        }
        match out.write(batch).await {
            Ok(c) => {
                *done = true;
                metrics.output_dead_lettered.inc_by(c.dead_lettered);
                metrics.output_dropped.inc_by(c.dropped);
                metrics.output_duplicates.inc_by(c.duplicates);
            }
            Err(e) => {
                tracing::warn!(output = out.name(), error = %e, "relay: write failed, retrying the batch");
                out.reset().await;
                return false;
            }
        }
    }
    true
}

/// Commits the next offsets of the written batch. A failure (a rebalance took the partition)
/// only means the new owner reads those records again.
async fn commit(
    consumer: &Arc<StreamConsumer<RelayContext>>,
    offsets: &mut BTreeMap<(String, i32), i64>,
    metrics: &RelayMetrics,
) {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in offsets.iter() {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
            tracing::warn!(error = %e, topic, partition, "relay: bad offset");
        }
    }
    offsets.clear();
    // A synchronous commit is a broker round trip: off the async workers.
    let c = consumer.clone();
    let result = match tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync)).await {
        Ok(result) => result,
        Err(e) => {
            metrics.commit_errors.inc();
            tracing::warn!(error = %e, "relay: the offset commit task failed; the records will be read again");
            return;
        }
    };
    match result {
        Ok(()) => {
            metrics.commits.inc();
        }
        Err(e) => {
            metrics.commit_errors.inc();
            tracing::warn!(error = %e, "relay: offset commit failed; the records will be read again (outputs skip duplicates)");
        }
    }
}

/// Reads a Kafka payload as a log record.
fn decode(payload: &[u8]) -> Result<RelayRecord, String> {
    let record: LogRecord =
        serde_json::from_slice(payload).map_err(|e| format!("not a log record: {e}"))?;
    if record.event.id.is_empty() {
        return Err("the record has no event.id".into());
    }
    if u64::from_str_radix(&record.event.stream_id, 16).is_err() {
        return Err(format!(
            "invalid event.stream_id {:?}",
            record.event.stream_id
        ));
    }
    let ts_ns = nevermore_schemas::time::parse_rfc3339(record.timestamp.as_bytes())
        .ok_or_else(|| format!("invalid @timestamp {:?}", record.timestamp))?;
    Ok(RelayRecord {
        payload: payload.to_vec(),
        record,
        ts_ns,
    })
}

/// Messages that are no log record: kept, with where they came from and why.
struct DeadLetterFile {
    path: PathBuf,
    pending: Vec<u8>,
}

impl DeadLetterFile {
    fn new(path: PathBuf) -> Self {
        DeadLetterFile {
            path,
            pending: Vec::new(),
        }
    }

    fn add(&mut self, topic: &str, partition: i32, offset: i64, reason: String, payload: &[u8]) {
        tracing::warn!(topic, partition, offset, reason = %reason, "relay: message is no log record, dead-lettered");
        let line = serde_json::json!({
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "reason": reason,
            "payload": String::from_utf8_lossy(payload),
        });
        if serde_json::to_writer(&mut self.pending, &line).is_ok() {
            self.pending.push(b'\n');
        }
    }

    /// Appends and syncs what was added (before the offsets past it are committed).
    fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&self.pending)?;
        f.sync_data()?;
        self.pending.clear();
        Ok(())
    }
}

async fn open_outputs(
    cfg: &CollectorConfig,
    relay: &RelayConfig,
) -> Result<Vec<Output>, RelayError> {
    let mut outputs = Vec::new();
    for name in &relay.sinks {
        let Some(sc) = cfg.sinks.iter().find(|s| &s.id == name) else {
            continue;
        };
        let open_err = |path: String, message: String| RelayError::Open {
            output: name.clone(),
            path,
            message,
        };
        let out = match &sc.kind {
            SinkKind::Elasticsearch(ec) => {
                let client = BulkClient::new(ec)
                    .map_err(|e| open_err(ec.endpoints.join(","), e.to_string()))?;
                client
                    .install_template()
                    .await
                    .map_err(|e| open_err(ec.endpoints.join(","), e.to_string()))?;
                Output::Elasticsearch {
                    name: name.clone(),
                    client,
                    resolver: IndexResolver::new(&ec.target),
                }
            }
            SinkKind::Embedded(ec) => {
                let dir = ec
                    .path
                    .clone()
                    .unwrap_or_else(|| crate::run::default_index_dir(&cfg.data_dir));
                let index = LogIndex::open(&dir)
                    .map_err(|e| open_err(dir.display().to_string(), e.to_string()))?;
                let retention = Retention {
                    max_age_ns: ec
                        .max_age
                        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
                    max_bytes: ec.max_bytes,
                };
                let memory = usize::try_from(ec.writer_memory_bytes).unwrap_or(usize::MAX);
                let writer = Writer::new(index, memory, retention)
                    .map_err(|e| open_err(dir.display().to_string(), e.to_string()))?;
                Output::Embedded {
                    name: name.clone(),
                    writer: Some(writer),
                    last_retention: Instant::now(),
                }
            }
            SinkKind::File { path } => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| open_err(path.display().to_string(), e.to_string()))?;
                Output::File {
                    name: name.clone(),
                    file,
                }
            }
            // Rejected by the config loader.
            SinkKind::Kafka(_) | SinkKind::Stdout => continue,
        };
        outputs.push(out);
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const RECORD: &str = r#"{"@timestamp":"2026-11-26T10:00:00.000000001Z","message":"m","log":{"file":{"path":"/p"},"offset":0},"orchestrator":{"cluster":{"name":"c"}},"host":{"name":"n"},"event":{"id":"00000000000000aa","stream_id":"00000000000000bb","sequence":3,"dataset":"container"}}"#;

    #[test]
    fn decode_takes_log_records_and_names_what_is_not_one() {
        let r = decode(RECORD.as_bytes()).unwrap();
        assert_eq!(r.ts_ns, 1_795_687_200_000_000_001);
        assert_eq!(r.record.event.sequence, 3);
        for (bad, why) in [
            (&b"\xff\xfe garbage"[..], "not a log record"),
            (b"{\"message\":\"no envelope\"}", "not a log record"),
            (
                RECORD.replace("00000000000000bb", "zz").as_bytes(),
                "invalid event.stream_id",
            ),
            (
                RECORD.replace("00000000000000aa", "").as_bytes(),
                "no event.id",
            ),
            (
                RECORD.replace("2026-11-26T10", "2026-13-26T10").as_bytes(),
                "invalid @timestamp",
            ),
        ] {
            let e = decode(bad).err().unwrap();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn dead_letters_keep_where_they_came_from_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.ndjson");
        let mut dl = DeadLetterFile::new(path.clone());
        dl.add("logs", 2, 41, "not a log record: x".into(), b"\xffraw");
        dl.flush().unwrap();
        let line: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
        assert_eq!(
            line,
            serde_json::json!({"topic": "logs", "partition": 2, "offset": 41,
                "reason": "not a log record: x", "payload": "\u{fffd}raw"})
        );
    }
}
