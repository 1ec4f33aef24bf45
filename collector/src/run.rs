//! `nevermore collect`: wires discovery, the tailer thread, sinks, the ordered finalizer and the
//! telemetry endpoint together.
//!
//! ```text
//! inotify ─wake─► tailer thread ─(batch, permit)─► finalizer ─Arc<batch>─► sink tasks
//!                    ▲  blocks on permits                ▲                     │
//!                    └── permits released on commit ─────┴──────── acks ◄──────┘
//! ```
//! Backpressure: a batch needs a permit before it is sent; permits come back only when the
//! batch was acknowledged by every sink and committed. When sinks are slow, the tailer blocks
//! and the log files on disk are the buffer.

use crate::checkpoint;
use crate::config::{CollectorConfig, SinkKind, SourceKind};
use crate::event::{Batch, Mark};
use crate::metrics::{Metrics, SinkLabels};
use crate::sinks::{
    Sink, elasticsearch::ElasticsearchSink, embedded::EmbeddedSink, file::FileSink,
    kafka::KafkaSink,
};
use crate::tail::{BatchOut, SourceRuntime, Tailer, TailerParams, Wake};
use nevermore_parse::{MergerConfig, MultilineConfig};
use nevermore_schemas::Checkpoint;
use notify::Watcher;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Slack above `max_record_bytes` for a raw line (the CRI or docker envelope).
const LINE_ENVELOPE_BYTES: usize = 64 << 10;
/// After shutdown, how long sinks get to acknowledge what was sent.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("source {source_id}: invalid glob {pattern:?}: {message}")]
    Glob {
        source_id: String,
        pattern: String,
        message: String,
    },
    #[error("cannot listen for telemetry on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("tailer thread failed to start: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Sink(crate::sinks::SinkError),
}

/// A sink opened before anything is read (so that a bad destination fails the start).
enum Opened {
    Embedded(EmbeddedSink),
    Kafka(KafkaSink),
    Elasticsearch(ElasticsearchSink),
}

/// Where the embedded index lives when its sink names no path.
pub fn default_index_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("index")
}

/// Runs the collector until `shutdown` resolves, then drains, waits for acknowledgements and
/// writes a final checkpoint.
pub async fn run(cfg: CollectorConfig, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| RunError::DataDir {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let metrics = Arc::new(Metrics::new());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let registry = Arc::new(registry);

    if let Some(addr) = cfg.telemetry.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Listen { addr, source })?;
        tracing::info!(%addr, "telemetry listening (/metrics, /health)");
        tokio::spawn(crate::http::serve(listener, registry.clone()));
    }

    let sources = build_sources(&cfg)?;
    // Sinks that can fail to open do so before anything is read.
    let mut opened: Vec<Option<Opened>> = Vec::with_capacity(cfg.sinks.len());
    for sc in &cfg.sinks {
        opened.push(match &sc.kind {
            SinkKind::Embedded(ec) => {
                let dir = ec
                    .path
                    .clone()
                    .unwrap_or_else(|| default_index_dir(&cfg.data_dir));
                let sink = EmbeddedSink::open(sc.id.clone(), &dir, ec).map_err(RunError::Sink)?;
                tracing::info!(sink = %sc.id, dir = %dir.display(), "embedded index open");
                Some(Opened::Embedded(sink))
            }
            SinkKind::Kafka(kc) => Some(Opened::Kafka(
                KafkaSink::new(sc.id.clone(), kc).map_err(RunError::Sink)?,
            )),
            SinkKind::Elasticsearch(ec) => Some(Opened::Elasticsearch(
                ElasticsearchSink::new(sc.id.clone(), ec).map_err(RunError::Sink)?,
            )),
            SinkKind::File { .. } | SinkKind::Stdout => None,
        });
    }
    let loaded = checkpoint::load(&cfg.data_dir);
    tracing::info!(streams = loaded.streams.len(), data_dir = %cfg.data_dir.display(), "checkpoint loaded");

    // inotify wake-ups. Bounded: when full, the periodic scan and idle polls still find
    // everything; only latency suffers.
    let (wake_tx, wake_rx) = std::sync::mpsc::sync_channel::<Wake>(1024);
    let _watcher = start_watcher(&cfg, wake_tx.clone());

    let stop = Arc::new(AtomicBool::new(false));
    let (recycle_tx, recycle_rx) =
        std::sync::mpsc::sync_channel(cfg.pipeline.max_batches_in_flight.max(1) + 1);
    let params = TailerParams {
        sources,
        cluster: cfg.cluster.clone(),
        node: cfg.node_name.clone(),
        pipeline: cfg.pipeline.clone(),
        checkpoint: loaded.streams.clone(),
        recycle: Some(recycle_rx),
    };
    let in_flight = cfg.pipeline.max_batches_in_flight.max(1);
    let permits = Arc::new(Semaphore::new(in_flight));
    let (batch_tx, batch_rx) = mpsc::channel::<(Batch, OwnedSemaphorePermit)>(1);
    let tailer = Tailer::new(params, metrics.clone(), stop.clone(), wake_rx);
    let mut out = TailerOut {
        permit: None,
        tx: batch_tx,
        permits: permits.clone(),
        handle: tokio::runtime::Handle::current(),
    };
    let tailer_thread = std::thread::Builder::new()
        .name("tailer".into())
        .spawn(move || tailer.run(&mut out))
        .map_err(RunError::Thread)?;

    // Sinks.
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<(usize, u64)>();
    let mut sink_txs = Vec::new();
    let mut sink_tasks = Vec::new();
    for (i, sc) in cfg.sinks.iter().enumerate() {
        let accepts: Vec<bool> = cfg
            .sources
            .iter()
            .map(|s| sc.inputs.contains(&s.id))
            .collect();
        let (tx, rx) = mpsc::channel::<Arc<Batch>>(in_flight);
        sink_txs.push(tx);
        let m = metrics.clone();
        let acks = ack_tx.clone();
        let task = match &sc.kind {
            SinkKind::File { path } => tokio::spawn(sink_task(
                FileSink::file(sc.id.clone(), path.clone()),
                i,
                accepts,
                rx,
                acks,
                m,
            )),
            SinkKind::Stdout => tokio::spawn(sink_task(
                FileSink::stdout(sc.id.clone()),
                i,
                accepts,
                rx,
                acks,
                m,
            )),
            SinkKind::Embedded(_) | SinkKind::Kafka(_) | SinkKind::Elasticsearch(_) => match opened
                [i]
                .take()
            {
                Some(Opened::Embedded(sink)) => {
                    tokio::spawn(sink_task(sink, i, accepts, rx, acks, m))
                }
                Some(Opened::Kafka(sink)) => tokio::spawn(sink_task(sink, i, accepts, rx, acks, m)),
                Some(Opened::Elasticsearch(sink)) => {
                    tokio::spawn(sink_task(sink, i, accepts, rx, acks, m))
                }
                None => continue,
            },
        };
        sink_tasks.push(task);
    }
    drop(ack_tx);

    let finalizer = tokio::spawn(finalize(
        batch_rx,
        ack_rx,
        sink_txs,
        loaded,
        CheckpointStore {
            data_dir: cfg.data_dir.clone(),
            interval: cfg.pipeline.checkpoint_interval,
        },
        metrics.clone(),
        recycle_tx,
    ));

    shutdown.await;
    tracing::info!("shutting down: draining and writing the final checkpoint");
    stop.store(true, Ordering::Relaxed);
    let _ = wake_tx.try_send(Wake::All);
    // The tailer may be blocked on a permit (released as batches commit) and a sink may be
    // stuck: the whole drain is bounded. What was committed by then is in the periodic
    // checkpoint; the rest is read again at the next start.
    let drain = async {
        let joined = tokio::task::spawn_blocking(move || tailer_thread.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            tracing::error!("tailer thread panicked");
        }
        let _ = finalizer.await;
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::error!(
            timeout_s = DRAIN_TIMEOUT.as_secs(),
            "sinks did not acknowledge in time; unacknowledged records will be read again at the next start"
        );
    }
    for t in sink_tasks {
        t.abort();
    }
    Ok(())
}

struct TailerOut {
    /// Taken by `wait_ready`, used by the next `send`.
    permit: Option<OwnedSemaphorePermit>,
    tx: mpsc::Sender<(Batch, OwnedSemaphorePermit)>,
    permits: Arc<Semaphore>,
    handle: tokio::runtime::Handle,
}

impl BatchOut for TailerOut {
    fn send(&mut self, batch: Batch) -> bool {
        let permit = match self.permit.take() {
            Some(p) => p,
            None => match self.handle.block_on(self.permits.clone().acquire_owned()) {
                Ok(p) => p,
                Err(_) => return false,
            },
        };
        self.tx.blocking_send((batch, permit)).is_ok()
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        if self.permit.is_none() {
            let acquire = self.permits.clone().acquire_owned();
            // A closed semaphore: `send` reports it.
            self.permit = match self
                .handle
                .block_on(async { tokio::time::timeout(timeout, acquire).await })
            {
                Ok(Ok(p)) => Some(p),
                Ok(Err(_)) => return true,
                Err(_) => None,
            };
        }
        self.permit.is_some()
    }
}

fn build_sources(cfg: &CollectorConfig) -> Result<Vec<SourceRuntime>, RunError> {
    let mut out = Vec::new();
    for s in &cfg.sources {
        let merger = MergerConfig {
            format: s.parse.format,
            max_record_bytes: s.parse.max_record_bytes,
            partial_timeout_ms: s.parse.partial_timeout.as_millis() as u64,
            multiline: s.parse.multiline.as_ref().map(|m| MultilineConfig {
                start_pattern: m.start_pattern.clone(),
                timeout_ms: m.timeout.as_millis() as u64,
                max_lines: m.max_lines,
            }),
            json_level: s.parse.json_level,
        };
        let (include, exclude, roots) = match &s.kind {
            SourceKind::File {
                include, exclude, ..
            } => (
                globset_of(&s.id, include)?,
                globset_of(&s.id, exclude)?,
                include
                    .iter()
                    .map(|p| crate::discover::glob_root(p))
                    .collect(),
            ),
            SourceKind::Kubernetes { .. } => (
                globset::GlobSet::empty(),
                globset::GlobSet::empty(),
                Vec::new(),
            ),
        };
        out.push(SourceRuntime {
            id: s.id.clone(),
            kind: s.kind.clone(),
            merger: Arc::new(merger),
            max_line_bytes: s.parse.max_record_bytes + LINE_ENVELOPE_BYTES,
            include,
            exclude,
            roots,
        });
    }
    Ok(out)
}

fn globset_of(source_id: &str, patterns: &[String]) -> Result<globset::GlobSet, RunError> {
    let mut b = globset::GlobSetBuilder::new();
    for p in patterns {
        let g = globset::GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| RunError::Glob {
                source_id: source_id.to_owned(),
                pattern: p.clone(),
                message: e.to_string(),
            })?;
        b.add(g);
    }
    b.build().map_err(|e| RunError::Glob {
        source_id: source_id.to_owned(),
        pattern: String::new(),
        message: e.to_string(),
    })
}

fn start_watcher(
    cfg: &CollectorConfig,
    wake: std::sync::mpsc::SyncSender<Wake>,
) -> Option<notify::RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(ev) => {
            if matches!(ev.kind, notify::EventKind::Access(_)) {
                return;
            }
            let _ = wake.try_send(Wake::Paths(ev.paths));
        }
        Err(_) => {
            let _ = wake.try_send(Wake::All);
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "inotify unavailable, relying on periodic scans");
            return None;
        }
    };
    for s in &cfg.sources {
        let roots: Vec<PathBuf> = match &s.kind {
            SourceKind::Kubernetes { pods_dir } => vec![pods_dir.clone()],
            SourceKind::File { include, .. } => include
                .iter()
                .map(|p| crate::discover::glob_root(p))
                .collect(),
        };
        for root in roots {
            if let Err(e) = watcher.watch(&root, notify::RecursiveMode::Recursive) {
                tracing::warn!(source = %s.id, path = %root.display(), error = %e, "cannot watch, relying on periodic scans");
            }
        }
    }
    Some(watcher)
}

/// One sink's loop: write batches as they come, make them durable in groups, acknowledge.
struct SinkRunner<S> {
    sink: S,
    index: usize,
    accepts: Vec<bool>,
    acks: mpsc::UnboundedSender<(usize, u64)>,
    /// Written, not yet durable: kept so a failed flush can write them again.
    pending: Vec<(Arc<Batch>, usize)>,
    sent: prometheus_client::metrics::counter::Counter,
    acked: prometheus_client::metrics::counter::Counter,
    errors: prometheus_client::metrics::counter::Counter,
    flush_seconds: prometheus_client::metrics::histogram::Histogram,
    metrics: Arc<Metrics>,
    labels: SinkLabels,
}

async fn sink_task<S: Sink>(
    sink: S,
    index: usize,
    accepts: Vec<bool>,
    mut rx: mpsc::Receiver<Arc<Batch>>,
    acks: mpsc::UnboundedSender<(usize, u64)>,
    metrics: Arc<Metrics>,
) {
    let labels = SinkLabels {
        sink: sink.name().to_owned(),
    };
    let mut r = SinkRunner {
        sent: metrics.records_sent.get_or_create_owned(&labels),
        acked: metrics.records_acked.get_or_create_owned(&labels),
        errors: metrics.sink_errors.get_or_create_owned(&labels),
        flush_seconds: metrics.sink_flush_seconds.get_or_create_owned(&labels),
        sink,
        index,
        accepts,
        acks,
        pending: Vec::new(),
        metrics,
        labels,
    };
    loop {
        let next = if r.pending.is_empty() {
            rx.recv().await
        } else {
            match rx.try_recv() {
                Ok(b) => Some(b),
                Err(mpsc::error::TryRecvError::Empty) => {
                    r.flush_and_ack().await;
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            }
        };
        let Some(batch) = next else {
            r.flush_and_ack().await;
            return;
        };
        let n = r.write(&batch).await;
        r.sent.inc_by(n as u64);
        r.pending.push((batch, n));
        if r.pending.len() >= 8 {
            r.flush_and_ack().await;
        }
    }
}

impl<S: Sink> SinkRunner<S> {
    /// Writes one batch, retrying with backoff; a failed attempt is rolled back first.
    async fn write(&mut self, batch: &Batch) -> usize {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.sink.write(batch, &self.accepts).await {
                Ok(n) => return n,
                Err(e) => {
                    self.errors.inc();
                    tracing::warn!(sink = %self.sink.name(), error = %e, retry_ms = backoff.as_millis() as u64, "sink write failed, retrying");
                    if let Err(e) = self.sink.rollback().await {
                        tracing::warn!(sink = %self.sink.name(), error = %e, "sink rollback failed");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Makes the pending batches durable, then acknowledges them. A failed flush says nothing
    /// about what reached the disk (a retried fsync can succeed after the data was dropped), so
    /// everything since the last durable point is discarded and written again.
    async fn flush_and_ack(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = std::time::Instant::now();
            match self.sink.flush().await {
                Ok(()) => {
                    self.flush_seconds.observe(started.elapsed().as_secs_f64());
                    break;
                }
                Err(e) => {
                    self.errors.inc();
                    tracing::warn!(sink = %self.sink.name(), error = %e, "sink flush failed, writing the unflushed batches again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    if let Err(e) = self.sink.discard_unflushed().await {
                        tracing::warn!(sink = %self.sink.name(), error = %e, "cannot discard unflushed bytes");
                        continue;
                    }
                    let batches: Vec<Arc<Batch>> =
                        self.pending.iter().map(|(b, _)| b.clone()).collect();
                    for b in &batches {
                        self.write(b).await;
                    }
                }
            }
        }
        self.metrics
            .sink_stats(&self.labels, &self.sink.take_stats());
        let done: Vec<(u64, usize)> = self.pending.drain(..).map(|(b, n)| (b.id, n)).collect();
        // Our references are gone before the acknowledgement, so the finalizer can recycle.
        for (id, n) in done {
            self.acked.inc_by(n as u64);
            let _ = self.acks.send((self.index, id));
        }
    }
}

struct Pending {
    marks: Vec<Mark>,
    remaining: usize,
    batch: Arc<Batch>,
    _permit: OwnedSemaphorePermit,
}

/// The ordered finalizer: fans batches out to the sinks, and commits the marks of the
/// contiguous prefix of batches that every sink acknowledged.
/// Where the finalizer persists, and how often.
struct CheckpointStore {
    data_dir: PathBuf,
    interval: Duration,
}

async fn finalize(
    mut batches: mpsc::Receiver<(Batch, OwnedSemaphorePermit)>,
    mut acks: mpsc::UnboundedReceiver<(usize, u64)>,
    sinks: Vec<mpsc::Sender<Arc<Batch>>>,
    mut state: Checkpoint,
    store: CheckpointStore,
    metrics: Arc<Metrics>,
    recycle: std::sync::mpsc::SyncSender<Vec<crate::event::Event>>,
) {
    let CheckpointStore { data_dir, interval } = store;
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut next_commit: u64 = 1;
    let mut dirty = false;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut input_open = true;
    let mut sinks = Some(sinks);
    loop {
        if !input_open && pending.is_empty() {
            break;
        }
        tokio::select! {
            got = batches.recv(), if input_open => match got {
                Some((mut batch, permit)) => {
                    let marks = std::mem::take(&mut batch.marks);
                    let id = batch.id;
                    let batch = Arc::new(batch);
                    let targets = sinks.as_ref().map(Vec::len).unwrap_or(0);
                    pending.insert(id, Pending { marks, remaining: targets, batch: batch.clone(), _permit: permit });
                    metrics.batches_in_flight.set(pending.len() as i64);
                    if let Some(txs) = &sinks {
                        for tx in txs {
                            if tx.send(batch.clone()).await.is_err() {
                                // Nothing can acknowledge this batch any more: reading stops
                                // when permits run out, and the files keep the data.
                                tracing::error!(batch = id, "a sink task ended; its batches stay unacknowledged");
                            }
                        }
                    }
                    dirty |= commit(&mut pending, &mut next_commit, &mut state, &recycle);
                }
                None => {
                    input_open = false;
                    // Closing the sink channels makes them flush and exit.
                    sinks = None;
                }
            },
            Some((_sink, id)) = acks.recv() => {
                if let Some(p) = pending.get_mut(&id) {
                    p.remaining = p.remaining.saturating_sub(1);
                }
                dirty |= commit(&mut pending, &mut next_commit, &mut state, &recycle);
                metrics.batches_in_flight.set(pending.len() as i64);
            }
            _ = tick.tick() => {
                if dirty {
                    dirty = !write_checkpoint(&data_dir, &state, &metrics).await;
                }
            }
        }
    }
    if !write_checkpoint(&data_dir, &state, &metrics).await {
        tracing::error!("final checkpoint could not be written");
    } else {
        tracing::info!(streams = state.streams.len(), "final checkpoint written");
    }
}

fn commit(
    pending: &mut BTreeMap<u64, Pending>,
    next: &mut u64,
    state: &mut Checkpoint,
    recycle: &std::sync::mpsc::SyncSender<Vec<crate::event::Event>>,
) -> bool {
    let mut changed = false;
    while pending.get(next).is_some_and(|p| p.remaining == 0) {
        let Some(p) = pending.remove(next) else { break };
        if let Ok(mut b) = Arc::try_unwrap(p.batch) {
            b.events.clear();
            let _ = recycle.try_send(b.events);
        }
        for m in p.marks {
            match m {
                Mark::Advance { stream, checkpoint } => {
                    state.streams.insert(stream.to_string(), checkpoint);
                }
                Mark::Remove { stream } => {
                    state.streams.remove(&*stream);
                }
            }
        }
        *next += 1;
        changed = true;
    }
    changed
}

async fn write_checkpoint(dir: &std::path::Path, state: &Checkpoint, metrics: &Metrics) -> bool {
    let dir = dir.to_owned();
    let state = state.clone();
    let res = tokio::task::spawn_blocking(move || checkpoint::store(&dir, &state)).await;
    match res {
        Ok(Ok(())) => {
            metrics.checkpoint_writes.inc();
            true
        }
        Ok(Err(e)) => {
            metrics.checkpoint_errors.inc();
            tracing::error!(error = %e, "checkpoint write failed");
            false
        }
        Err(e) => {
            metrics.checkpoint_errors.inc();
            tracing::error!(error = %e, "checkpoint task failed");
            false
        }
    }
}
