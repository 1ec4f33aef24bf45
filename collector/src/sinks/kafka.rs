//! The `kafka` sink: one message per record (the record's JSON), keyed by `event.stream_id` so a
//! container's lines stay in one partition, in order. The producer is idempotent with
//! `acks=all`; a flush waits for the delivery report of every message produced since the last
//! one, and only then are the batches acknowledged.
//!
//! A failed delivery (e.g. `message_timeout_ms` passed with the broker down) fails the flush:
//! the runner writes the unacknowledged batches again, so Kafka may hold a record twice, only
//! within that window (the relay's `_id`s turn it into one document).

use super::{Sink, SinkError, SinkStats};
use crate::config::{KafkaSinkConfig, Oversize, TopicPart, TopicTemplate};
use crate::event::{Batch, Event, JsonEncoder};
use crate::kafka::{TracingContext, producer_config};
use nevermore_schemas::record::LogFlag;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::PurgeConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bytes of a message besides its payload (record header, key, batch share): what
/// `message_max_bytes` must leave room for.
const MESSAGE_OVERHEAD_BYTES: usize = 512;
/// The longest a read-back after a failed delivery may take.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Delivery reports, counted by librdkafka's poll thread.
#[derive(Debug, Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    notify: tokio::sync::Notify,
}

#[derive(Debug, Clone)]
struct Context {
    tracing: TracingContext,
    deliveries: Arc<Deliveries>,
}

impl ClientContext for Context {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.tracing.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.tracing.error(error, reason);
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.deliveries.ok.fetch_add(1, Ordering::Release);
            }
            Err((e, _)) => {
                if let Ok(mut first) = self.deliveries.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
                self.deliveries.failed.fetch_add(1, Ordering::Release);
            }
        }
        // A stored permit when nobody waits: the flush re-checks the counts.
        self.deliveries.notify.notify_one();
    }
}

pub struct KafkaSink {
    name: String,
    cfg: KafkaSinkConfig,
    config: ClientConfig,
    producer: ThreadedProducer<Context>,
    deliveries: Arc<Deliveries>,
    topic: TopicTemplate,
    fallback_topic: String,
    oversize: Oversize,
    /// The largest record JSON a message may carry.
    max_payload: usize,
    encoder: JsonEncoder,
    buf: Vec<u8>,
    topic_buf: String,
    /// Messages handed to librdkafka since the last flush (their reports are awaited there).
    produced: u64,
    /// Delivery counts at the last flush.
    base_ok: u64,
    base_failed: u64,
    /// A replaced producer took unacknowledged messages with it.
    lost_unflushed: bool,
    /// Topics written since the last successful flush (where a read-back looks).
    topics_written: HashSet<String>,
    /// Messages of the window whose delivery failed: before they are written again, the
    /// tails of `topics_written` are read back for records the broker already has.
    read_back: Option<u64>,
    /// What the read-back found: skipped when the batches are written again, but only as a
    /// prefix of each stream (once one record of a stream is sent again, all its later ones
    /// are too, so the stream stays in order; the ids make the repeats harmless).
    already_stored: HashSet<u64>,
    /// Streams of which the rewrite has sent a record.
    rewrite_started: HashSet<u64>,
    /// Streams written since the last successful flush (the read-back keeps only their ids).
    streams_written: HashSet<u64>,
    /// Deliveries failed: the next `discard_unflushed` starts a new producer.
    fresh_producer: bool,
    /// A flush failed: until `discard_unflushed` succeeds, no flush may succeed (the runner
    /// must write the batches again first).
    needs_rewrite: bool,
    /// A write failed after producing part of this batch (id, index of the next event): the
    /// retry goes on from there instead of producing the prefix again.
    partial: Option<(u64, usize)>,
    stats: SinkStats,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("name", &self.name)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

fn err(sink: &str, e: impl std::fmt::Display) -> SinkError {
    SinkError::Write {
        sink: sink.to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// A producer and the counts of its delivery reports.
fn connect(
    name: &str,
    config: &ClientConfig,
) -> Result<(ThreadedProducer<Context>, Arc<Deliveries>), KafkaError> {
    let deliveries = Arc::new(Deliveries::default());
    let context = Context {
        tracing: TracingContext {
            name: format!("sink {name}"),
        },
        deliveries: deliveries.clone(),
    };
    let producer = config.create_with_context(context)?;
    Ok((producer, deliveries))
}

impl KafkaSink {
    pub fn new(name: String, cfg: &KafkaSinkConfig) -> Result<Self, SinkError> {
        let config = producer_config(cfg);
        let (producer, deliveries) = connect(&name, &config).map_err(|e| SinkError::Open {
            sink: name.clone(),
            path: cfg.bootstrap_servers.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let max_payload = usize::try_from(cfg.message_max_bytes)
            .unwrap_or(usize::MAX)
            .saturating_sub(MESSAGE_OVERHEAD_BYTES)
            .max(256);
        Ok(KafkaSink {
            name,
            cfg: cfg.clone(),
            config,
            producer,
            deliveries,
            topic: cfg.topic.clone(),
            fallback_topic: cfg.fallback_topic.clone(),
            oversize: cfg.oversize.clone(),
            max_payload,
            encoder: JsonEncoder::default(),
            buf: Vec::new(),
            topic_buf: String::new(),
            produced: 0,
            base_ok: 0,
            base_failed: 0,
            lost_unflushed: false,
            topics_written: HashSet::new(),
            read_back: None,
            already_stored: HashSet::new(),
            rewrite_started: HashSet::new(),
            streams_written: HashSet::new(),
            needs_rewrite: false,
            fresh_producer: false,
            partial: None,
            stats: SinkStats::default(),
        })
    }

    /// After a fatal error (e.g. the broker lost the idempotence state of our producer id when
    /// it restarted), the producer accepts nothing more: a new one, with a new producer id,
    /// takes over. What the old one had not delivered is written again by the runner.
    ///
    /// After failed deliveries the producer is replaced too (`fresh_producer`): its
    /// idempotence session may be unusable without being fatal (a broker that fenced the
    /// epoch librdkafka bumped after a timeout answers every retry with ProducerFenced).
    fn replace_if_fatal(&mut self) -> Result<(), SinkError> {
        let fatal = self.producer.client().fatal_error();
        if fatal.is_none() && !self.fresh_producer {
            return Ok(());
        }
        match fatal {
            Some((code, reason)) => {
                tracing::warn!(sink = %self.name, error = ?code, reason, "kafka producer failed fatally, starting a new one");
            }
            None => {
                tracing::info!(sink = %self.name, "starting a new kafka producer after failed deliveries");
            }
        }
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        let (producer, deliveries) =
            connect(&self.name, &self.config).map_err(|e| err(&self.name, e))?;
        // Messages of earlier batches since the last flush went with the old producer: the next
        // flush fails, so the runner writes every unacknowledged batch again.
        self.lost_unflushed |= self.produced > 0;
        // Dropping a producer joins its threads: not on the runtime.
        let old = std::mem::replace(&mut self.producer, producer);
        tokio::task::spawn_blocking(move || drop(old));
        self.deliveries = deliveries;
        self.produced = 0;
        self.base_ok = 0;
        self.base_failed = 0;
        self.fresh_producer = false;
        Ok(())
    }

    /// Reads back what the broker stored of a window whose delivery failed, so that writing
    /// it again duplicates nothing. If the read-back fails, the batches are written whole
    /// (duplicates within the window are possible, loss is not).
    async fn read_back_stored(&mut self, window: u64) -> Result<(), SinkError> {
        let topics: Vec<String> = self.topics_written.iter().cloned().collect();
        if topics.is_empty() || window == 0 {
            return Ok(());
        }
        let cfg = self.cfg.clone();
        let streams = self.streams_written.clone();
        let found = tokio::task::spawn_blocking(move || {
            crate::kafka::read_back_ids(&cfg, &topics, &streams, window, READ_BACK_TIMEOUT)
        })
        .await
        .map_err(|e| err(&self.name, e))?;
        match found {
            Ok(ids) => {
                tracing::info!(sink = %self.name, window, found = ids.len(), "read back the unacknowledged window after a failed delivery");
                self.already_stored.extend(ids);
            }
            Err(e) => {
                tracing::warn!(sink = %self.name, error = %e, "cannot read back the unacknowledged window; records may be written twice");
            }
        }
        Ok(())
    }

    /// Hands one message to librdkafka, waiting while its queue is full. A topic the broker
    /// does not have sends the record to `fallback_topic`; a record librdkafka refuses as too
    /// big even cut down is counted as dropped and logged.
    async fn produce(
        &mut self,
        mut to_template: bool,
        key: &[u8],
        id: u64,
    ) -> Result<(), SinkError> {
        loop {
            let topic: &str = if to_template {
                &self.topic_buf
            } else {
                match &self.oversize {
                    Oversize::DeadLetter { topic } => topic,
                    Oversize::Truncate => &self.fallback_topic,
                }
            };
            if !self.topics_written.contains(topic) {
                self.topics_written.insert(topic.to_owned());
            }
            let record = BaseRecord::to(topic).key(key).payload(&self.buf[..]);
            match self.producer.send(record) {
                Ok(()) => {
                    self.produced += 1;
                    self.stats.bytes_sent += self.buf.len() as u64;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // Deliveries free the queue; the poll thread wakes us on each.
                    let _ = tokio::time::timeout(
                        Duration::from_millis(100),
                        self.deliveries.notify.notified(),
                    )
                    .await;
                }
                Err((
                    KafkaError::MessageProduction(
                        RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownTopicOrPartition,
                    ),
                    _,
                )) if to_template && self.topic_buf != self.fallback_topic => {
                    tracing::warn!(sink = %self.name, topic = %self.topic_buf, fallback = %self.fallback_topic, "the broker has no such topic, the record goes to the fallback topic");
                    self.topic_buf.clear();
                    self.topic_buf.push_str(&self.fallback_topic);
                    to_template = true;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    self.stats.dropped += 1;
                    tracing::error!(sink = %self.name, event_id = format_args!("{id:016x}"), bytes = self.buf.len(), "record too big for message_max_bytes even without its message, dropped");
                    return Ok(());
                }
                Err((e, _)) => return Err(err(&self.name, e)),
            }
        }
    }

    /// The record's JSON in `buf`, cut to fit a message when it is too big.
    fn encode_fitting(&mut self, ev: &Event) -> Fit {
        self.buf.clear();
        self.encoder.encode(ev, &mut self.buf);
        pop_newline(&mut self.buf);
        if self.buf.len() <= self.max_payload {
            return Fit::Whole;
        }
        if let Oversize::DeadLetter { .. } = self.oversize {
            return Fit::DeadLetter;
        }
        // Escaping can make the message longer in JSON than in UTF-8: the longest prefix
        // that fits is found by bisection (oversize records are rare).
        let (mut lo, mut hi) = (0usize, ev.message.len());
        while lo < hi {
            let mid = floor_char_boundary(&ev.message, lo + (hi - lo).div_ceil(2));
            if mid <= lo {
                break;
            }
            if self.encode_cut(ev, mid) <= self.max_payload {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        self.encode_cut(ev, lo);
        Fit::Truncated
    }

    /// Encodes the record with its message cut at `cut` and flagged `truncated`; returns the
    /// length.
    fn encode_cut(&mut self, ev: &Event, cut: usize) -> usize {
        let mut flags = ev.flags;
        flags.insert(LogFlag::Truncated);
        let short = Event {
            stream: ev.stream.clone(),
            path: ev.path.clone(),
            timestamp_ns: ev.timestamp_ns,
            std: ev.std,
            message: ev.message[..cut].to_owned(),
            level: ev.level,
            flags,
            offset: ev.offset,
            sequence: ev.sequence,
            id: ev.id,
        };
        self.buf.clear();
        self.encoder.encode(&short, &mut self.buf);
        pop_newline(&mut self.buf);
        self.buf.len()
    }
}

enum Fit {
    Whole,
    Truncated,
    DeadLetter,
}

fn pop_newline(buf: &mut Vec<u8>) {
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The topic of a record: the template with its fields filled in, or `None` when a field is
/// missing or the result is no valid topic name.
pub fn render_topic(t: &TopicTemplate, ev: &Event, out: &mut String) -> bool {
    out.clear();
    let k = ev.stream.kubernetes.as_ref();
    for part in &t.parts {
        match part {
            TopicPart::Literal(l) => out.push_str(l),
            TopicPart::Field(f) => {
                let v: Option<&str> = match f.as_str() {
                    "kubernetes.namespace" => k.map(|k| k.namespace.as_str()),
                    "kubernetes.pod.name" => k.map(|k| k.pod.name.as_str()),
                    "kubernetes.container.name" => k.map(|k| k.container.name.as_str()),
                    "kubernetes.workload.name" => {
                        k.and_then(|k| k.workload.as_ref()).map(|w| w.name.as_str())
                    }
                    "kubernetes.node.name" => k.map(|k| k.node.name.as_str()),
                    "orchestrator.cluster.name" => Some(ev.stream.cluster.as_str()),
                    "event.dataset" => Some(ev.stream.dataset.as_str()),
                    "log.level" => ev.level.map(|l| l.as_str()),
                    "stream" => ev.std.map(|s| s.as_str()),
                    _ => None,
                };
                match v {
                    Some(v) if !v.is_empty() => out.push_str(v),
                    _ => return false,
                }
            }
        }
    }
    crate::config::valid_topic(out)
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write(&mut self, batch: &Batch, accepts: &[bool]) -> Result<usize, SinkError> {
        if let Some(window) = self.read_back.take() {
            self.read_back_stored(window).await?;
        }
        let start = match self.partial.take() {
            Some((id, i)) if id == batch.id => i,
            _ => 0,
        };
        let mut n = 0;
        let mut key = [0u8; 16];
        for (i, ev) in batch.events.iter().enumerate().skip(start) {
            if !accepts.get(ev.stream.source).copied().unwrap_or(false) {
                continue;
            }
            let sid = ev.stream.stream_id();
            if self.already_stored.contains(&ev.id) && !self.rewrite_started.contains(&sid) {
                // Stored before the failure that made the runner write this batch again.
                self.stats.duplicates += 1;
                n += 1;
                continue;
            }
            if !self.already_stored.is_empty() {
                self.rewrite_started.insert(sid);
            }
            self.streams_written.insert(sid);
            hex16(sid, &mut key);
            let to_template = match self.encode_fitting(ev) {
                Fit::Whole => true,
                Fit::Truncated => {
                    self.stats.truncated += 1;
                    true
                }
                Fit::DeadLetter => {
                    self.stats.dead_lettered += 1;
                    false
                }
            };
            if to_template && !render_topic(&self.topic, ev, &mut self.topic_buf) {
                self.topic_buf.clear();
                self.topic_buf.push_str(&self.fallback_topic);
            }
            if let Err(e) = self.produce(to_template, &key, ev.id).await {
                self.partial = Some((batch.id, i));
                return Err(e);
            }
            n += 1;
        }
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        if self.needs_rewrite {
            return Err(err(
                &self.name,
                "the batches of a failed flush are not written again yet",
            ));
        }
        if std::mem::take(&mut self.lost_unflushed) {
            self.needs_rewrite = true;
            return Err(err(
                &self.name,
                "a new producer replaced one that failed with unacknowledged messages",
            ));
        }
        let started = Instant::now();
        loop {
            if let Some((code, reason)) = self.producer.client().fatal_error() {
                // Nothing more will be delivered by this producer: no need to wait for
                // `message_timeout_ms`.
                self.read_back = Some(std::mem::take(&mut self.produced));
                self.needs_rewrite = true;
                return Err(err(
                    &self.name,
                    format!("the producer failed fatally: {code:?}: {reason}"),
                ));
            }
            let ok = self.deliveries.ok.load(Ordering::Acquire) - self.base_ok;
            let failed = self.deliveries.failed.load(Ordering::Acquire) - self.base_failed;
            self.stats.queue_depth = u64::try_from(self.producer.in_flight_count()).unwrap_or(0);
            if ok + failed >= self.produced {
                self.base_ok += ok;
                self.base_failed += failed;
                let window = std::mem::take(&mut self.produced);
                self.stats
                    .request_seconds
                    .push(started.elapsed().as_secs_f64());
                if failed > 0 {
                    self.stats.retried += failed;
                    self.read_back = Some(window);
                    self.needs_rewrite = true;
                    self.fresh_producer = true;
                    let first = self
                        .deliveries
                        .first_error
                        .lock()
                        .ok()
                        .and_then(|mut e| e.take())
                        .unwrap_or_default();
                    return Err(err(
                        &self.name,
                        format!(
                            "{failed} of {} deliveries failed, first: {first}",
                            ok + failed
                        ),
                    ));
                }
                self.topics_written.clear();
                self.streams_written.clear();
                self.already_stored.clear();
                self.rewrite_started.clear();
                return Ok(());
            }
            // Reports arrive on librdkafka's thread; a missed wake-up costs 100 ms at most.
            let _ = tokio::time::timeout(
                Duration::from_millis(100),
                self.deliveries.notify.notified(),
            )
            .await;
        }
    }

    /// Messages already produced cannot be taken back; writing the batch again may duplicate
    /// them in Kafka (within the unacknowledged window, as documented).
    async fn rollback(&mut self) -> Result<(), SinkError> {
        self.replace_if_fatal()
    }

    /// Nothing to take back (see `rollback`); a failed producer is replaced, and the runner
    /// may now write the batches again.
    async fn discard_unflushed(&mut self) -> Result<(), SinkError> {
        self.replace_if_fatal()?;
        self.partial = None;
        self.needs_rewrite = false;
        // The rewrite starts over: every stream may skip its stored prefix again.
        self.rewrite_started.clear();
        Ok(())
    }

    fn take_stats(&mut self) -> SinkStats {
        std::mem::take(&mut self.stats)
    }
}

fn hex16(v: u64, out: &mut [u8; 16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::hex16;

    #[test]
    fn hex_key() {
        let mut k = [0u8; 16];
        hex16(0x0123_4567_89ab_cdef, &mut k);
        assert_eq!(&k, b"0123456789abcdef");
    }
}
