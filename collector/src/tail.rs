//! Rotation-safe tailing: streams made of chains of segments, read strictly in order.
//!
//! The tailer runs on one dedicated thread and owns every stream. It never advances a checkpoint
//! itself: each batch carries the position its acknowledgement commits ([`Mark`]), and the
//! finalizer applies them in order.
//!
//! Invariants:
//! - a stream's segments are read one at a time, in chain order; a rotated segment is read to
//!   its end (and re-checked for growth) before the next one is started;
//! - a segment's descriptor stays open from discovery until it was read to its end, whatever
//!   happens to its name (rename, unlink, gzip);
//! - records are numbered (`event.sequence`) in emission order without gaps; after a restart,
//!   records that end at or before the acknowledged position are re-read but not sent again.

use crate::config::{PipelineConfig, SourceKind};
use crate::discover::{self, Found, PodContainer, SegmentName, StreamKey};
use crate::event::{Batch, Event, Mark, SegmentPath, StreamInfo, kubernetes_fields};
use crate::fingerprint;
use crate::metrics::{Metrics, SourceLabels, StreamLabels};
use flate2::read::MultiGzDecoder;
use nevermore_parse::{Merger, MergerConfig, RawLine, Record};
use nevermore_schemas::{SegmentPos, StreamCheckpoint};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A position in a stream: segment serial (chain order), then byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub seg: u64,
    pub offset: u64,
}

/// Finished segments remembered per stream (fingerprints, names), so a rescan or restart never
/// reads them again. kubelet keeps 5 files per container by default.
const FINISHED_MEMORY: usize = 64;

/// How long an idle stream waits between polls when no inotify event names it (inotify wakes a
/// stream at once; the poll only covers dropped events).
const IDLE_POLL: Duration = Duration::from_millis(1000);

/// A rotated segment at EOF is re-checked for late writes this long before it is closed, when
/// no newer segment exists yet.
const ROTATED_GRACE: Duration = Duration::from_millis(500);

/// How often one stream may be named in the rotation-risk warning.
const ROTATION_RISK_WARN_EVERY: Duration = Duration::from_secs(60);

/// One source as the tailer runs it.
#[derive(Debug)]
pub struct SourceRuntime {
    pub id: String,
    pub kind: SourceKind,
    pub merger: Arc<MergerConfig>,
    pub max_line_bytes: usize,
    pub include: globset::GlobSet,
    pub exclude: globset::GlobSet,
    pub roots: Vec<PathBuf>,
}

/// Everything the tailer thread needs.
#[derive(Debug)]
pub struct TailerParams {
    pub sources: Vec<SourceRuntime>,
    pub cluster: String,
    pub node: String,
    pub pipeline: PipelineConfig,
    pub checkpoint: BTreeMap<String, StreamCheckpoint>,
    /// Emptied event vectors of committed batches come back here, so a batch's storage is
    /// allocated once, not grown again for every batch.
    pub recycle: Option<std::sync::mpsc::Receiver<Vec<Event>>>,
}

/// How the tailer hands batches on. Blocking: this is where backpressure stops reading.
pub trait BatchOut {
    /// Sends a batch; returns false when the receiver is gone.
    fn send(&mut self, batch: Batch) -> bool;
    /// Waits up to `timeout` until `send` can go without blocking (backpressure); false when
    /// it still cannot.
    fn wait_ready(&mut self, _timeout: Duration) -> bool {
        true
    }
}

/// Wake-ups from inotify: paths that changed, or "look at everything".
#[derive(Debug)]
pub enum Wake {
    Paths(Vec<PathBuf>),
    All,
}

enum SegReader {
    Plain(File),
    Gz(Box<MultiGzDecoder<File>>),
}

impl std::fmt::Debug for SegReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SegReader::Plain(_) => f.write_str("Plain"),
            SegReader::Gz(_) => f.write_str("Gz"),
        }
    }
}

#[derive(Debug)]
struct Segment {
    serial: u64,
    dev: u64,
    inode: u64,
    fp: Option<u64>,
    path: Arc<SegmentPath>,
    name: SegmentName,
    reader: Option<SegReader>,
    /// Next byte to read (decompressed bytes for gzip).
    offset: u64,
    /// No longer the file being written: its end is final once read and re-checked.
    rotated: bool,
    gz: bool,
    size_seen: u64,
    eof_since: Option<Instant>,
    /// (length, mtime) when the periodic scan last verified the head: an unchanged file is not
    /// fingerprinted again, so thousands of idle files cost a stat each.
    head_verified: Option<(u64, Option<SystemTime>)>,
}

impl Segment {
    fn stamp(&self) -> Option<&str> {
        match &self.name {
            SegmentName::Rotated { stamp, .. } => Some(stamp),
            SegmentName::Live => None,
        }
    }
}

#[derive(Debug, Clone)]
struct SegMeta {
    serial: u64,
    fp: u64,
    dev: u64,
    inode: u64,
    path: Arc<SegmentPath>,
    size_seen: u64,
}

struct StreamMetrics {
    lines: Counter,
    bytes: Counter,
    lag_bytes: Gauge,
    lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    replayed_suppressed: Counter,
    /// Per-source merge counters, and how much of this stream's merger statistics they hold.
    partials_merged: Counter,
    multiline_merged: Counter,
    truncated: Counter,
    invalid_lines: Counter,
    unterminated: Counter,
    reported: nevermore_parse::MergeStats,
}

struct Stream {
    key: StreamKey,
    info: Arc<StreamInfo>,
    source: usize,
    segs: VecDeque<Segment>,
    /// Segments already finished whose positions may still be referenced (pending merges).
    metas: VecDeque<SegMeta>,
    next_serial: u64,
    /// Position after the last complete line handed to the merger.
    frontier: Pos,
    /// Bytes of an incomplete line (starting at `frontier`).
    carry: Vec<u8>,
    /// The incomplete line was longer than the limit: the rest is being dropped.
    carry_cut: bool,
    merger: Merger<Pos>,
    next_seq: u64,
    suppress_until: Option<Pos>,
    finished_fps: VecDeque<u64>,
    finished_stamps: VecDeque<String>,
    /// The newest rotation stamp of a finished segment: kubelet's stamps grow, so a rotated
    /// file stamped at or before it was read, whatever the bounded lists above forgot.
    finished_max_stamp: Option<String>,
    /// Files of the last scan (copytruncate looks for the copy here).
    last_found: Vec<Found>,
    /// Changed since the last batch cut: its mark goes into the next batch.
    touched: bool,
    /// Not found by the last scan: ends once its segments are read.
    gone: bool,
    removed: bool,
    idle: bool,
    next_poll: Instant,
    last_acked_ts_ns: i64,
    /// When this stream was last named in a rotation-risk warning.
    risk_warned: Option<Instant>,
    /// The checkpoint of this stream, until its resume segment is found (a scan can race with
    /// kubelet's gzip: the plain file is gone and the .gz not listed yet).
    pending_cp: Option<(StreamCheckpoint, Instant)>,
    /// The directory was listed a second time before the first read: a listing that raced a
    /// rename can show the new live file and miss the rotated one.
    listed_twice: bool,
    metrics: StreamMetrics,
}

/// The tailer: discovery reconciliation, reading, parsing, batching.
pub struct Tailer {
    params: TailerParams,
    metrics: Arc<Metrics>,
    streams: Vec<Stream>,
    by_key: HashMap<StreamKey, usize>,
    /// Directory (container dir, or a file source's file) → streams, for inotify wake-ups.
    by_dir: HashMap<PathBuf, Vec<usize>>,
    batch: Batch,
    batch_started: Option<Instant>,
    next_batch_id: u64,
    scratch: Vec<u8>,
    records: Vec<Record<Pos>>,
    epoch: Instant,
    last_full_scan: Option<Instant>,
    stop: Arc<AtomicBool>,
    wake: std::sync::mpsc::Receiver<Wake>,
    /// Keys of the checkpoint not seen at the first scan: dropped with a Remove mark.
    initial_checkpoint_keys: Option<HashSet<String>>,
    logged_skips: HashSet<PathBuf>,
    open_files: i64,
}

impl std::fmt::Debug for Tailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tailer")
            .field("streams", &self.streams.len())
            .finish()
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Tailer {
    pub fn new(
        params: TailerParams,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
        wake: std::sync::mpsc::Receiver<Wake>,
    ) -> Self {
        let chunk = params.pipeline.read_chunk_bytes.max(4096);
        let keys = params.checkpoint.keys().cloned().collect();
        Tailer {
            params,
            metrics,
            streams: Vec::new(),
            by_key: HashMap::new(),
            by_dir: HashMap::new(),
            batch: Batch::default(),
            batch_started: None,
            next_batch_id: 1,
            scratch: vec![0; chunk],
            records: Vec::new(),
            epoch: Instant::now(),
            last_full_scan: None,
            stop,
            wake,
            initial_checkpoint_keys: Some(keys),
            logged_skips: HashSet::new(),
            open_files: 0,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Runs until the stop flag is set, then cuts and sends the last batch.
    pub fn run(mut self, out: &mut dyn BatchOut) {
        let pl = self.params.pipeline.clone();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let due = self
                .last_full_scan
                .is_none_or(|t| t.elapsed() >= pl.scan_interval);
            if due {
                self.full_scan();
            }
            let mut progressed = 0usize;
            let now = Instant::now();
            for idx in 0..self.streams.len() {
                let s = &self.streams[idx];
                if s.removed || (s.idle && now < s.next_poll) {
                    continue;
                }
                progressed += self.read_stream(idx);
                if self.batch_full() && !self.cut_and_send(out) {
                    return;
                }
                if self.stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            self.flush_timeouts();
            self.end_streams();
            let batch_due = self
                .batch_started
                .is_some_and(|t| t.elapsed() >= pl.batch_timeout);
            if (batch_due || (progressed == 0 && self.batch_started.is_some()))
                && !self.cut_and_send(out)
            {
                return;
            }
            if progressed == 0 {
                let wait = self.idle_wait(&pl);
                match self.wake.recv_timeout(wait) {
                    Ok(w) => {
                        self.on_wake(w);
                        while let Ok(w) = self.wake.try_recv() {
                            self.on_wake(w);
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
        // Final batch: whatever was read, with its marks, so the final checkpoint is exact.
        self.mark_all_touched();
        let _ = self.cut_and_send(out);
    }

    fn idle_wait(&self, pl: &PipelineConfig) -> Duration {
        let mut wait = IDLE_POLL;
        let now_ms = self.now_ms();
        for s in &self.streams {
            if let Some(d) = s.merger.next_deadline() {
                wait = wait.min(Duration::from_millis(d.saturating_sub(now_ms)));
            }
        }
        if let Some(t) = self.batch_started {
            wait = wait.min(pl.batch_timeout.saturating_sub(t.elapsed()));
        }
        wait.max(Duration::from_millis(1))
    }

    fn on_wake(&mut self, w: Wake) {
        match w {
            Wake::All => self.last_full_scan = None,
            Wake::Paths(paths) => {
                for p in paths {
                    let hit = self
                        .by_dir
                        .get(&p)
                        .or_else(|| p.parent().and_then(|d| self.by_dir.get(d)));
                    match hit {
                        Some(idxs) => {
                            for &i in idxs {
                                // Still idle (the head is verified on the next read), but due now.
                                self.streams[i].next_poll = Instant::now();
                            }
                            // A new file in a known directory may be a rotation.
                            if let Some(dir) = p.parent() {
                                self.rescan_dir(&dir.to_path_buf());
                            }
                        }
                        // Unknown place: a new pod or file; look everywhere.
                        None => self.last_full_scan = None,
                    }
                }
            }
        }
    }

    // ---- discovery reconciliation ------------------------------------------------------------

    fn full_scan(&mut self) {
        self.last_full_scan = Some(Instant::now());
        let mut seen: HashSet<StreamKey> = HashSet::new();
        for si in 0..self.params.sources.len() {
            let scan = match &self.params.sources[si].kind {
                SourceKind::Kubernetes { pods_dir } => discover::scan_pods_dir(pods_dir),
                SourceKind::File { .. } => {
                    let src = &self.params.sources[si];
                    discover::scan_globs(&src.include, &src.exclude, &src.roots)
                }
            };
            self.log_skips(&scan.skipped);
            for (key, found) in scan.streams {
                seen.insert(key.clone());
                RACED.with(|r| r.set(false));
                let dir = found
                    .first()
                    .and_then(|f| f.path.parent())
                    .map(Path::to_path_buf);
                self.reconcile(si, key, found);
                if RACED.with(|r| r.get())
                    && let Some(dir) = dir
                {
                    self.rescan_dir(&dir);
                }
            }
        }
        for s in &mut self.streams {
            if !s.removed && !seen.contains(&s.key) {
                // A listing can miss a file mid-rename: a stream is gone only when its live path
                // is (the pod was deleted, or kubelet removed an old restart's log).
                let live = match &s.key {
                    StreamKey::Pod(pc) => {
                        pod_container_dir(&self.params.sources[s.source].kind, pc)
                            .join(format!("{}.log", pc.restart))
                    }
                    StreamKey::File(p) => p.clone(),
                };
                s.gone = !live.exists();
                if s.gone {
                    // Whatever is still open is final: read it to its end, then the stream ends.
                    for g in s.segs.iter_mut() {
                        g.rotated = true;
                    }
                }
            }
        }
        if let Some(keys) = self.initial_checkpoint_keys.take() {
            let live: HashSet<String> = self
                .streams
                .iter()
                .map(|s| s.info.key.to_string())
                .collect();
            for k in keys.difference(&live) {
                tracing::info!(stream = %k, "checkpointed stream no longer exists, forgetting it");
                self.batch.marks.push(Mark::Remove {
                    stream: k.as_str().into(),
                });
                self.batch_started.get_or_insert_with(Instant::now);
            }
        }
        // A stream that vanished while waiting for its checkpointed segment stops waiting.
        for idx in 0..self.streams.len() {
            if self.streams[idx].gone && self.streams[idx].pending_cp.is_some() {
                self.apply_checkpoint(idx);
            }
        }
        // Verify the head of live segments: content replaced under the same inode. A file whose
        // (length, mtime) did not change since its head was verified is not read again.
        for idx in 0..self.streams.len() {
            self.check_truncation_unless_unchanged(idx);
        }
        self.compact();
        self.metrics
            .streams
            .set(self.streams.iter().filter(|s| !s.removed).count() as i64);
    }

    /// Drops ended streams once they are the majority, so pod churn does not grow memory.
    fn compact(&mut self) {
        let removed = self.streams.iter().filter(|s| s.removed).count();
        if removed < 64 || removed * 2 < self.streams.len() {
            return;
        }
        self.publish_merge_stats();
        self.streams.retain(|s| !s.removed);
        self.by_key.clear();
        self.by_dir.clear();
        for (i, s) in self.streams.iter().enumerate() {
            self.by_key.insert(s.key.clone(), i);
            let dir = match &s.key {
                StreamKey::Pod(pc) => pod_container_dir(&self.params.sources[s.source].kind, pc),
                StreamKey::File(p) => p.clone(),
            };
            self.by_dir.entry(dir).or_default().push(i);
        }
    }

    fn rescan_dir(&mut self, dir: &PathBuf) {
        // A file that vanished between listing and opening: list again, a few times at most.
        for _ in 0..4 {
            RACED.with(|r| r.set(false));
            self.rescan_dir_once(dir);
            if !RACED.with(|r| r.get()) {
                break;
            }
        }
    }

    fn rescan_dir_once(&mut self, dir: &PathBuf) {
        let Some(idxs) = self.by_dir.get(dir).cloned() else {
            return;
        };
        let Some(&first) = idxs.first() else { return };
        let si = self.streams[first].source;
        match self.streams[first].key.clone() {
            StreamKey::Pod(pc) => {
                let mut scan = discover::Scan::default();
                discover::scan_container_dir(
                    dir,
                    &pc.namespace,
                    &pc.pod,
                    &pc.uid,
                    &pc.container,
                    &mut scan,
                );
                for (key, found) in scan.streams {
                    self.reconcile(si, key, found);
                }
            }
            StreamKey::File(_) => self.last_full_scan = None,
        }
    }

    fn log_skips(&mut self, skipped: &[(PathBuf, String)]) {
        for (p, why) in skipped {
            if self.logged_skips.len() < 10_000 && self.logged_skips.insert(p.clone()) {
                tracing::warn!(path = %p.display(), reason = %why, "skipping path");
            }
        }
    }

    fn stream_index(&mut self, si: usize, key: &StreamKey) -> usize {
        if let Some(&i) = self.by_key.get(key)
            && !self.streams[i].removed
        {
            return i;
        }
        let src = &self.params.sources[si];
        let key_text: Arc<str> = key.as_text().into();
        let (kubernetes, dataset, dir) = match key {
            StreamKey::Pod(pc) => (
                Some(kubernetes_fields(pc, &self.params.node, BTreeMap::new())),
                "container".to_owned(),
                pod_container_dir(&self.params.sources[si].kind, pc),
            ),
            StreamKey::File(p) => {
                let dataset = match &src.kind {
                    SourceKind::File { dataset, .. } => dataset.clone(),
                    SourceKind::Kubernetes { .. } => src.id.clone(),
                };
                (None, dataset, p.clone())
            }
        };
        let info = Arc::new(StreamInfo::new(
            si,
            key_text.clone(),
            kubernetes,
            self.params.cluster.clone(),
            self.params.node.clone(),
            dataset,
        ));
        let labels = StreamLabels {
            source: src.id.clone(),
            stream: key_text.to_string(),
        };
        let source_labels = SourceLabels {
            source: src.id.clone(),
        };
        let m = &self.metrics;
        let metrics = StreamMetrics {
            lines: m.lines_read.get_or_create_owned(&labels),
            bytes: m.bytes_read.get_or_create_owned(&labels),
            lag_bytes: m.lag_bytes.get_or_create_owned(&labels),
            lag_seconds: m.lag_seconds.get_or_create_owned(&labels),
            replayed_suppressed: m.replayed_suppressed.get_or_create_owned(&source_labels),
            partials_merged: m.partials_merged.get_or_create_owned(&source_labels),
            multiline_merged: m.multiline_merged.get_or_create_owned(&source_labels),
            truncated: m.truncated.get_or_create_owned(&source_labels),
            invalid_lines: m.invalid_lines.get_or_create_owned(&source_labels),
            unterminated: m.unterminated.get_or_create_owned(&source_labels),
            reported: nevermore_parse::MergeStats::default(),
        };
        let stream = Stream {
            key: key.clone(),
            info,
            source: si,
            segs: VecDeque::new(),
            metas: VecDeque::new(),
            next_serial: 0,
            frontier: Pos { seg: 0, offset: 0 },
            carry: Vec::new(),
            carry_cut: false,
            merger: Merger::new(src.merger.clone()),
            next_seq: 0,
            suppress_until: None,
            finished_fps: VecDeque::new(),
            finished_stamps: VecDeque::new(),
            finished_max_stamp: None,
            last_found: Vec::new(),
            touched: false,
            gone: false,
            removed: false,
            idle: false,
            next_poll: Instant::now(),
            last_acked_ts_ns: 0,
            risk_warned: None,
            pending_cp: None,
            listed_twice: false,
            metrics,
        };
        let idx = self.streams.len();
        self.streams.push(stream);
        self.by_key.insert(key.clone(), idx);
        self.by_dir.entry(dir).or_default().push(idx);
        idx
    }

    fn reconcile(&mut self, si: usize, key: StreamKey, mut found: Vec<Found>) {
        let fresh = self
            .by_key
            .get(&key)
            .is_none_or(|&i| self.streams[i].removed);
        let idx = self.stream_index(si, &key);
        found.sort_by(|a, b| a.name.cmp(&b.name));
        let mut opened = 0i64;
        {
            let s = &mut self.streams[idx];
            s.gone = false;
            let had_live_identity: Option<(u64, u64)> = s
                .segs
                .iter()
                .rev()
                .find(|g| matches!(g.name, SegmentName::Live) && !g.rotated)
                .map(|g| (g.dev, g.inode));
            // First settle what is no longer live, and fingerprint what can be, so a gzip copy
            // of a segment we hold is recognised by its content.
            let live_now = found
                .iter()
                .find(|f| matches!(f.name, SegmentName::Live))
                .map(|f| (f.dev, f.inode));
            let started_front = front_started(s);
            for (i, g) in s.segs.iter_mut().enumerate() {
                if matches!(g.name, SegmentName::Live) && Some((g.dev, g.inode)) != live_now {
                    g.rotated = true;
                }
                let Some(SegReader::Plain(file)) = &g.reader else {
                    continue;
                };
                if g.fp.is_none() {
                    g.fp = fingerprint::of_file(file, g.rotated).ok().flatten();
                    // First sight of the content of a segment not started: a copy of what it
                    // held before (copytruncate) may be newer than this listing.
                    if g.fp.is_some() && g.offset == 0 && !(i == 0 && started_front) {
                        RACED.with(|r| r.set(true));
                    }
                } else if g.offset == 0 && !(i == 0 && started_front) && head_replaced(g) {
                    // Not started, and copied and truncated (copytruncate) since it was
                    // fingerprinted, while an older segment is being read: its fingerprint
                    // follows its content, so the copy of its old content is no longer "the
                    // same content" below and takes its place by name, before the copies made
                    // after it. The listing may predate that copy: list again.
                    g.fp = fingerprint::of_file(file, g.rotated).ok().flatten();
                    RACED.with(|r| r.set(true));
                }
            }
            // Rotated names of held files first: a file listed with one of them (a copy made
            // before it was renamed) is ordered against it by name, not by modification times,
            // which can tie; and is not taken for its rotated name.
            for f in &found {
                if let SegmentName::Rotated { gz: false, .. } = f.name
                    && let Some(g) = s
                        .segs
                        .iter_mut()
                        .find(|g| !g.gz && g.dev == f.dev && g.inode == f.inode)
                {
                    g.name = f.name.clone();
                    g.rotated = true;
                }
            }
            let mut live_seen = false;
            let live_listed = found.iter().any(|f| matches!(f.name, SegmentName::Live));
            for f in &found {
                match &f.name {
                    SegmentName::Live => {
                        live_seen = true;
                        if let Some(seg) = s
                            .segs
                            .iter_mut()
                            .find(|g| !g.gz && g.dev == f.dev && g.inode == f.inode)
                        {
                            seg.size_seen = seg.size_seen.max(f.size);
                            continue;
                        }
                        // A new file at the live path: the previous live segment was rotated.
                        for g in s.segs.iter_mut() {
                            if matches!(g.name, SegmentName::Live) {
                                g.rotated = true;
                            }
                        }
                        if had_live_identity.is_some() || !fresh || !s.segs.is_empty() {
                            self.metrics
                                .rotations
                                .get_or_create(&SourceLabels {
                                    source: self.params.sources[si].id.clone(),
                                })
                                .inc();
                        }
                        if let Some(seg) = open_segment(s, f, false) {
                            s.segs.push_back(seg);
                            opened += 1;
                        }
                    }
                    SegmentName::Rotated { stamp, gz } => {
                        if let Some(seg) = s
                            .segs
                            .iter_mut()
                            .find(|g| !g.gz && !*gz && g.dev == f.dev && g.inode == f.inode)
                        {
                            seg.name = f.name.clone();
                            seg.rotated = true;
                            seg.size_seen = seg.size_seen.max(f.size);
                            continue;
                        }
                        if s.segs.iter().any(|g| g.stamp() == Some(stamp.as_str()))
                            || s.finished_stamps.iter().any(|x| x == stamp)
                            || s.finished_max_stamp.as_ref().is_some_and(|m| stamp <= m)
                        {
                            continue;
                        }
                        // An empty rotated file holds nothing to read; if it is a copy being
                        // written, a later scan sees its content.
                        if !*gz && f.size == 0 {
                            continue;
                        }
                        let Some(seg) = open_segment(s, f, *gz) else {
                            continue;
                        };
                        if seg.fp.is_some_and(|fp| s.finished_fps.contains(&fp)) {
                            continue;
                        }
                        // Same content already in the chain (e.g. gz of a plain we hold). If
                        // we hold it by its live name and it left the live path (renamed, not
                        // copied and truncated), this is its rotated name: it orders it before
                        // later rotated segments (a gz is not always the oldest).
                        if seg.fp.is_some()
                            && let Some(g) = s.segs.iter_mut().find(|g| g.fp == seg.fp)
                        {
                            if matches!(g.name, SegmentName::Live) && (g.rotated || !live_listed) {
                                g.name = SegmentName::Rotated {
                                    stamp: stamp.clone(),
                                    gz: false,
                                };
                                g.rotated = true;
                            }
                            continue;
                        }
                        opened += 1;
                        insert_in_order(s, seg, fresh);
                    }
                }
            }
            if !live_seen {
                for g in s.segs.iter_mut() {
                    if matches!(g.name, SegmentName::Live) {
                        g.rotated = true;
                    }
                }
            }
            s.last_found = found;
            s.idle = false;
        }
        self.open_files += opened;
        self.metrics.open_files.set(self.open_files);
        if fresh {
            let key = self.streams[idx].info.key.to_string();
            if let Some(cp) = self.params.checkpoint.remove(&key) {
                self.streams[idx].pending_cp = Some((cp, Instant::now()));
            }
        }
        if self.streams[idx].pending_cp.is_some() {
            self.apply_checkpoint(idx);
        }
    }

    /// Positions a new stream from its checkpoint, if it has one.
    fn apply_checkpoint(&mut self, idx: usize) {
        let key = self.streams[idx].info.key.to_string();
        let patience = self
            .params
            .pipeline
            .scan_interval
            .mul_f32(2.0)
            .max(Duration::from_secs(1));
        let s = &mut self.streams[idx];
        let Some((cp, since)) = s.pending_cp.take() else {
            return;
        };
        // A position without fingerprint names a segment nothing was read from: only the
        // finished list matters then (an inode alone may have been reused).
        // An empty segment's fingerprint is shared by every empty file: at offset 0 it names
        // nothing either.
        let unknown = cp.resume.fingerprint == 0
            || (cp.resume.offset == 0 && cp.resume.fingerprint == fingerprint::hash(b""));
        let present = s.segs.iter().any(|g| matches_pos(g, &cp.resume));
        if !present && !unknown && !s.gone && since.elapsed() < patience {
            // Not found yet: look again at the next scan before deciding it is gone.
            s.pending_cp = Some((cp, since));
            self.last_full_scan = None;
            return;
        }
        s.next_seq = cp.next_sequence;
        s.finished_fps = cp.finished.iter().copied().collect();
        // Segments already finished are dropped.
        let before = s.segs.len();
        s.segs
            .retain(|g| !g.fp.is_some_and(|fp| cp.finished.contains(&fp)));
        let mut closed = (before - s.segs.len()) as i64;
        // File sources: the checkpointed inode may have been renamed away from the path.
        if let StreamKey::File(path) = s.key.clone()
            && !s
                .segs
                .iter()
                .any(|g| g.dev == cp.resume.dev && g.inode == cp.resume.inode)
            && let Some(seg) = find_renamed(s, &path, &cp.resume)
        {
            s.segs.push_front(seg);
            closed -= 1;
            renumber(s);
        }
        let found = s.segs.iter().position(|g| matches_pos(g, &cp.resume));
        match found {
            Some(pos) => {
                // Earlier segments were read: remember them so a rescan does not add them back.
                for _ in 0..pos {
                    if let Some(done) = s.segs.pop_front() {
                        remember_finished(s, done.fp, done.stamp().map(str::to_owned));
                    }
                    closed += 1;
                }
                let valid = match s.segs.front() {
                    Some(seg) => resume_valid(seg, &cp.resume),
                    None => false,
                };
                if let Some(seg) = s.segs.front_mut() {
                    if valid {
                        if let Err(e) = seek_segment(seg, cp.resume.offset) {
                            tracing::warn!(stream = %key, error = %e, "cannot resume segment, reading it from the start");
                            seg.offset = 0;
                        }
                    } else {
                        tracing::warn!(stream = %key, path = %seg.path.path, "checkpoint does not match the file's bytes (truncated or inode reused), reading it from the start");
                    }
                    let serial = seg.serial;
                    s.frontier = Pos {
                        seg: serial,
                        offset: seg.offset,
                    };
                    // Records ending at or before the acknowledged position are not sent again.
                    let acked_serial = s
                        .segs
                        .iter()
                        .find(|g| matches_pos(g, &cp.acked))
                        .map(|g| g.serial);
                    if valid && let Some(a) = acked_serial {
                        s.suppress_until = Some(Pos {
                            seg: a,
                            offset: cp.acked.offset,
                        });
                    }
                }
            }
            None => {
                if !unknown {
                    let lost = cp.resume.size_seen.saturating_sub(cp.resume.offset);
                    tracing::warn!(stream = %key, path = %cp.resume.path, bytes = lost, "checkpointed segment is gone: its unread bytes are lost");
                    self.metrics.lost("deleted_before_read", lost);
                }
            }
        }
        // Nothing was read yet: reading starts at the (possibly new) front segment.
        let s = &mut self.streams[idx];
        if s.carry.is_empty()
            && s.merger.oldest_pending().is_none()
            && let Some(front) = s.segs.front()
        {
            s.frontier = Pos {
                seg: front.serial,
                offset: front.offset,
            };
        }
        self.open_files -= closed;
        self.metrics.open_files.set(self.open_files);
    }

    // ---- reading -------------------------------------------------------------------------------

    /// Reads up to one chunk budget from a stream; returns bytes read.
    fn read_stream(&mut self, idx: usize) -> usize {
        let budget = self.params.pipeline.read_chunk_bytes.max(4096);
        let mut total = 0usize;
        let now_ms = self.now_ms();
        if !self.streams[idx].listed_twice {
            self.streams[idx].listed_twice = true;
            if let StreamKey::Pod(pc) = &self.streams[idx].key {
                let dir =
                    pod_container_dir(&self.params.sources[self.streams[idx].source].kind, pc);
                self.rescan_dir(&dir);
            }
        }
        // Waking from idle: the file may have been truncated and rewritten past our offset in
        // the meantime, which only its head tells.
        if self.streams[idx].idle {
            self.check_truncation(idx, true);
        }
        while total < budget {
            let s = &mut self.streams[idx];
            if s.pending_cp.is_some() {
                break;
            }
            let Some(seg) = s.segs.front_mut() else { break };
            // Nothing read yet: the fingerprint taken at discovery may describe bytes that were
            // since replaced (truncated and rewritten): take it again from what will be read.
            if seg.offset == 0
                && seg.fp.is_some()
                && !seg.gz
                && !s.carry_cut
                && s.carry.is_empty()
                && let Some(SegReader::Plain(f)) = &seg.reader
            {
                let now = fingerprint::of_file(f, seg.rotated).ok().flatten();
                if now != seg.fp {
                    tracing::debug!(serial = seg.serial, inode = seg.inode, name = ?seg.name, rotated = seg.rotated, old = ?seg.fp, now = ?now, "front fingerprint changed before read");
                    let old = seg.fp;
                    seg.fp = now;
                    if let Some(fp) = now
                        && let Some((name, open)) = take_gz_twin(s, fp)
                    {
                        let seg = &mut s.segs[0];
                        seg.name = name;
                        seg.rotated = true;
                        self.open_files -= i64::from(open);
                    }
                    self.adopt_copy(idx, old);
                    continue;
                }
            }
            let s = &mut self.streams[idx];
            let chain_len = s.segs.len();
            let Some(seg) = s.segs.front_mut() else { break };
            if seg.fp.is_none() {
                match &seg.reader {
                    Some(SegReader::Plain(f)) => match fingerprint::of_file(f, seg.rotated) {
                        // Not started and its content was already read (a copy of a finished
                        // segment): nothing to read here.
                        Ok(Some(fp))
                            if seg.offset == 0 && s.finished_fps.contains(&fp) && chain_len > 1 =>
                        {
                            tracing::debug!(path = %seg.path.path, "segment repeats finished content, skipped");
                            s.segs.pop_front();
                            self.open_files -= 1;
                            renumber(&mut self.streams[idx]);
                            continue;
                        }
                        Ok(Some(fp)) if seg.offset == 0 && !s.carry_cut && s.carry.is_empty() => {
                            // First sight of its content, about to be read: if it was copied and
                            // truncated (copytruncate) before we ever saw it, the copy of what
                            // it held exists now and goes first; list the directory again.
                            seg.fp = Some(fp);
                            if let StreamKey::Pod(pc) = &s.key {
                                let dir =
                                    pod_container_dir(&self.params.sources[s.source].kind, pc);
                                self.rescan_dir(&dir);
                                continue;
                            }
                        }
                        Ok(Some(fp)) => seg.fp = Some(fp),
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(path = %seg.path.path, error = %e, "cannot read segment head");
                            break;
                        }
                    },
                    // Gzip and closed segments are final: an empty one has the empty fingerprint.
                    _ => seg.fp = Some(fingerprint::hash(b"")),
                }
            }
            let n = match read_segment(seg, &mut self.scratch) {
                Ok(n) => n,
                Err(e) => {
                    let lost = seg.size_seen.saturating_sub(seg.offset);
                    tracing::warn!(path = %seg.path.path, error = %e, bytes = lost, "segment unreadable, skipping the rest of it");
                    self.metrics
                        .lost(if seg.gz { "gzip_corrupt" } else { "read_error" }, lost);
                    seg.rotated = true;
                    seg.reader = None;
                    0
                }
            };
            // copytruncate while we were behind: the file may have been truncated and re-grown
            // past our offset before we looked (its size never looked smaller), so these bytes
            // may be new content read from the old offset. The head tells: it is checked after
            // the read, so an unchanged head proves the bytes are the old ones. If it changed,
            // the chunk is dropped unread and the rest of the old content comes from the copy
            // (made before the truncation, it holds every byte up to our offset and beyond);
            // the truncated file then continues from 0. One pread of the page-cached head per
            // chunk.
            if n > 0 && head_replaced(seg) {
                tracing::debug!(path = %seg.path.path, offset = seg.offset, "head changed under the read: truncated and re-grown");
                if seg.offset > 0 {
                    self.recover_truncation(idx);
                } else if let Some(SegReader::Plain(f)) = &seg.reader {
                    // Not started: as in the check before the read.
                    let old = seg.fp;
                    seg.fp = fingerprint::of_file(f, seg.rotated).ok().flatten();
                    self.adopt_copy(idx, old);
                }
                continue;
            }
            if n > 0 {
                let start = seg.offset;
                seg.offset += n as u64;
                seg.size_seen = seg.size_seen.max(seg.offset);
                seg.eof_since = None;
                let serial = seg.serial;
                total += n;
                s.metrics.bytes.inc_by(n as u64);
                let read_ns = now_ns();
                let data = &self.scratch[..n];
                let lines = process_chunk(
                    s,
                    data,
                    start,
                    serial,
                    &self.params.sources[s.source],
                    now_ms,
                    read_ns,
                    &mut self.records,
                );
                s.metrics.lines.inc_by(lines);
                s.touched = true;
                self.emit(idx);
                continue;
            }
            // End of what is there.
            if !self.at_eof(idx) {
                break;
            }
        }
        let s = &mut self.streams[idx];
        if total == 0 {
            s.idle = true;
            s.next_poll = Instant::now() + IDLE_POLL;
            self.check_truncation(idx, false);
        } else {
            s.idle = false;
        }
        self.update_lag(idx);
        total
    }

    /// Called when the front segment returned no bytes. Returns true when the stream moved on
    /// to the next segment (so reading continues).
    fn at_eof(&mut self, idx: usize) -> bool {
        let s = &mut self.streams[idx];
        let has_next = s.segs.len() > 1;
        let Some(seg) = s.segs.front_mut() else {
            return false;
        };
        if !seg.rotated {
            return false;
        }
        // A late write after the rename: re-check the size through the descriptor.
        if let Some(SegReader::Plain(f)) = &seg.reader
            && let Ok(m) = f.metadata()
            && m.len() > seg.offset
        {
            return true;
        }
        // Without a successor the writer may not have switched files yet: wait for one (or for
        // the stream to be gone). File sources (logrotate `create`) may write to the old file
        // after the new one exists until the application reopens: give them a grace period.
        if !has_next && !s.gone {
            return false;
        }
        let since = *seg.eof_since.get_or_insert_with(Instant::now);
        let file_source = matches!(s.key, StreamKey::File(_));
        if (!has_next || file_source) && since.elapsed() < ROTATED_GRACE {
            return false;
        }
        // Copied and truncated (copytruncate) while we were behind, then renamed: its end is not
        // where we are, and the rest of what we were reading is in the copy. Checked once, when
        // the segment is about to be dropped.
        let shrunk = matches!(&seg.reader, Some(SegReader::Plain(f))
            if f.metadata().is_ok_and(|m| m.len() < seg.offset));
        if seg.offset > 0 && (shrunk || head_replaced(seg)) {
            self.recover_truncation(idx);
            return true;
        }
        // A copy still being written (copytruncate copies, then truncates) followed by its
        // original, not truncated yet: the original holds the same bytes and more. Reading
        // goes on in it from here under the same serial, instead of again from its start.
        let (offset, fp, identity) = (seg.offset, seg.fp, (seg.dev, seg.inode));
        let original = s.segs.get(1).is_some_and(|next| {
            !next.gz
                && next.offset == 0
                && fp.is_some()
                && next.fp == fp
                && (next.dev, next.inode) != identity
                && !head_replaced(next)
                && matches!(&next.reader, Some(SegReader::Plain(f))
                    if f.metadata().is_ok_and(|m| m.len() >= offset))
        });
        if original && let Some(next) = s.segs.remove(1) {
            tracing::debug!(path = %next.path.path, offset, "a copy in progress: reading on in its original");
            let front = &mut s.segs[0];
            front.reader = next.reader;
            (front.dev, front.inode) = (next.dev, next.inode);
            front.path = next.path;
            front.name = next.name;
            front.rotated = next.rotated;
            front.size_seen = next.size_seen.max(offset);
            front.eof_since = None;
            front.head_verified = None;
            renumber(s);
            self.open_files -= 1;
            return true;
        }
        self.finish_segment(idx);
        true
    }

    fn finish_segment(&mut self, idx: usize) {
        let now_ms = self.now_ms();
        let read_ns = now_ns();
        let s = &mut self.streams[idx];
        let Some(seg) = s.segs.pop_front() else {
            return;
        };
        let end = Pos {
            seg: seg.serial,
            offset: seg.offset,
        };
        // The final line of a finished segment may lack its newline.
        if !s.carry.is_empty() || s.carry_cut {
            let carry = std::mem::take(&mut s.carry);
            let cut = std::mem::take(&mut s.carry_cut);
            let line = RawLine {
                bytes: &carry,
                start: s.frontier,
                end,
                cut,
            };
            s.merger.push(line, now_ms, read_ns, &mut self.records);
            s.metrics.lines.inc();
        }
        s.frontier = end;
        let fp = seg.fp.unwrap_or(0);
        s.metas.push_back(SegMeta {
            serial: seg.serial,
            fp,
            dev: seg.dev,
            inode: seg.inode,
            path: seg.path.clone(),
            size_seen: seg.size_seen,
        });
        remember_finished(s, Some(fp), seg.stamp().map(str::to_owned));
        if let Some(next) = s.segs.front() {
            s.frontier = Pos {
                seg: next.serial,
                offset: next.offset,
            };
        }
        s.touched = true;
        if seg.reader.is_some() {
            self.open_files -= 1;
            self.metrics.open_files.set(self.open_files);
        }
        drop(seg);
        self.emit(idx);
        prune_metas(&mut self.streams[idx]);
    }

    /// copytruncate and content replaced under the same inode: the live segment shrank, or its
    /// head no longer matches its fingerprint.
    fn check_truncation_unless_unchanged(&mut self, idx: usize) {
        let s = &mut self.streams[idx];
        let Some(seg) = s.segs.front_mut() else {
            return;
        };
        let Some(SegReader::Plain(f)) = &seg.reader else {
            return;
        };
        let Ok(meta) = f.metadata() else { return };
        let state = (meta.len(), meta.modified().ok());
        if seg.head_verified == Some(state) && meta.len() >= seg.offset {
            return;
        }
        self.check_truncation(idx, true);
        // Whatever the check did, what is there now was looked at.
        if let Some(seg) = self.streams[idx].segs.front_mut()
            && let Some(SegReader::Plain(f)) = &seg.reader
            && let Ok(m) = f.metadata()
        {
            seg.head_verified = Some((m.len(), m.modified().ok()));
        }
    }

    fn check_truncation(&mut self, idx: usize, check_head: bool) {
        let s = &mut self.streams[idx];
        let Some(seg) = s.segs.front() else { return };
        // A rotated plain segment can be truncated too (copytruncate, then rename).
        if seg.gz || seg.offset == 0 {
            return;
        }
        let Some(SegReader::Plain(f)) = &seg.reader else {
            return;
        };
        let Ok(meta) = f.metadata() else { return };
        let shrunk = meta.len() < seg.offset;
        let replaced = check_head
            && !shrunk
            && seg.fp.is_some()
            && fingerprint::of_file(f, false)
                .ok()
                .flatten()
                .is_some_and(|fp| Some(fp) != seg.fp);
        if !shrunk && !replaced {
            return;
        }
        self.recover_truncation(idx);
    }

    /// The front segment (started) was truncated: its old content is read on from the copy
    /// under the same serial, and the truncated file continues as a new segment from 0. Without
    /// a copy, the unread rest is lost. The directory is listed again afterwards, so copies made
    /// after the first one (the file was copied and truncated more than once while we were
    /// behind) are in the chain, in their order, before what the file holds now.
    fn recover_truncation(&mut self, idx: usize) {
        let s = &mut self.streams[idx];
        let Some(seg) = s.segs.front() else { return };
        let Some(SegReader::Plain(f)) = &seg.reader else {
            return;
        };
        let len = f.metadata().map_or(0, |m| m.len());
        let fp = seg.fp;
        let (dev, inode) = (seg.dev, seg.inode);
        // The copy of copytruncate carries the same first line under another inode.
        let offset = seg.offset;
        let copy = fp.and_then(|fp| {
            find_copy(s, &self.params.sources[s.source].kind, (dev, inode), fp)
                .and_then(|f| open_copy(&f, offset).map(|reader| (reader, f)))
        });
        let Some(seg) = s.segs.front_mut() else {
            return;
        };
        match copy {
            Some((reader, f)) => {
                tracing::info!(path = %seg.path.path, copy = %f.path.display(), "copytruncate: reading the rest from the copy");
                // Same serial and fingerprint: records keep their ids.
                let mut truncated = Segment {
                    serial: 0,
                    dev,
                    inode,
                    fp: None,
                    path: seg.path.clone(),
                    name: seg.name.clone(),
                    reader: seg.reader.take(),
                    offset: 0,
                    rotated: seg.rotated,
                    gz: false,
                    size_seen: len,
                    eof_since: None,
                    head_verified: None,
                };
                seg.gz = matches!(reader, SegReader::Gz(_));
                seg.reader = Some(reader);
                seg.dev = f.dev;
                seg.inode = f.inode;
                seg.name = f.name.clone();
                seg.rotated = true;
                seg.head_verified = None;
                // What the truncated file holds now is named by its own head from here on.
                if let Some(SegReader::Plain(f)) = &truncated.reader {
                    truncated.fp = fingerprint::of_file(f, truncated.rotated).ok().flatten();
                }
                if let Some(fp) = truncated.fp
                    && let Some((name, open)) = take_gz_twin(s, fp)
                {
                    truncated.name = name;
                    truncated.rotated = true;
                    self.open_files -= i64::from(open);
                }
                // What the truncated file holds now was written after every copy of it, and
                // before any newer file: its place is by name, after the copy being read
                // (this also renumbers the segments after it).
                insert_in_order(s, truncated, false);
                self.open_files += 1;
                if let StreamKey::Pod(pc) = &s.key {
                    let dir = pod_container_dir(&self.params.sources[s.source].kind, pc);
                    s.idle = false;
                    self.rescan_dir(&dir);
                }
            }
            None => {
                let lost = seg.size_seen.saturating_sub(seg.offset);
                tracing::warn!(path = %seg.path.path, bytes = lost, "file truncated in place (copytruncate) and no copy found");
                self.metrics.lost("truncated", lost);
                // What was read is finished: a copy showing up later is not read again.
                let done_fp = seg.fp;
                // The rest is a new segment from offset 0.
                seg.serial = s.next_serial;
                s.next_serial += 1;
                seg.offset = 0;
                seg.fp = None;
                seg.size_seen = len;
                let serial = seg.serial;
                s.carry.clear();
                s.carry_cut = false;
                s.frontier = Pos {
                    seg: serial,
                    offset: 0,
                };
                s.touched = true;
                remember_finished(s, done_fp, None);
                renumber(s);
            }
        }
        self.streams[idx].idle = false;
    }

    /// The front segment's content was replaced before it was read: its old bytes, if a copy
    /// of them exists (copytruncate), are read first.
    fn adopt_copy(&mut self, idx: usize, old_fp: Option<u64>) {
        let Some(old_fp) = old_fp else { return };
        let s = &mut self.streams[idx];
        // Its old content was read already (as a copy followed by this file).
        if s.finished_fps.contains(&old_fp) {
            return;
        }
        let Some(front) = s.segs.front() else { return };
        let identity = (front.dev, front.inode);
        let front_path = front.path.path.clone();
        let copy = find_copy(s, &self.params.sources[s.source].kind, identity, old_fp);
        match copy {
            Some(f) => {
                if s.segs.iter().any(|g| g.dev == f.dev && g.inode == f.inode) {
                    return;
                }
                let gz = matches!(f.name, SegmentName::Rotated { gz: true, .. });
                if let Some(seg) = open_segment(s, &f, gz) {
                    tracing::info!(path = %front_path, copy = %f.path.display(), old_fingerprint = old_fp, "file replaced before it was read: reading its copy first");
                    s.segs.push_front(seg);
                    renumber(s);
                    self.open_files += 1;
                }
            }
            None => {
                tracing::warn!(path = %front_path, "file replaced before it was read and no copy found");
            }
        }
    }

    fn flush_timeouts(&mut self) {
        let now_ms = self.now_ms();
        for idx in 0..self.streams.len() {
            let s = &mut self.streams[idx];
            if s.merger.next_deadline().is_some_and(|d| d <= now_ms) {
                s.merger.flush_expired(now_ms, &mut self.records);
                if !self.records.is_empty() {
                    s.touched = true;
                    self.emit(idx);
                }
            }
        }
    }

    /// Streams whose files are gone and whose segments are all read end with a Remove mark.
    fn end_streams(&mut self) {
        for idx in 0..self.streams.len() {
            let s = &mut self.streams[idx];
            if s.removed || !s.gone || !s.segs.is_empty() {
                continue;
            }
            // Pending partials of a stream that ended will never complete.
            s.merger.flush_all(&mut self.records);
            self.emit(idx);
            let s = &mut self.streams[idx];
            s.removed = true;
            let labels = StreamLabels {
                source: self.params.sources[s.source].id.clone(),
                stream: s.info.key.to_string(),
            };
            self.metrics.lines_read.remove(&labels);
            self.metrics.bytes_read.remove(&labels);
            self.metrics.lag_bytes.remove(&labels);
            self.metrics.lag_seconds.remove(&labels);
            if !self.batch.events.is_empty() || s.touched {
                let mark = snapshot(s);
                self.batch.marks.push(Mark::Advance {
                    stream: s.info.key.clone(),
                    checkpoint: mark,
                });
            }
            s.touched = false;
            self.batch.marks.push(Mark::Remove {
                stream: s.info.key.clone(),
            });
            self.batch_started.get_or_insert_with(Instant::now);
            self.by_key.remove(&s.key);
        }
    }

    /// Turns merged records into events of the current batch.
    fn emit(&mut self, idx: usize) {
        if self.records.is_empty() {
            return;
        }
        let s = &mut self.streams[idx];
        for rec in self.records.drain(..) {
            if let Some(limit) = s.suppress_until
                && rec.end <= limit
            {
                s.metrics.replayed_suppressed.inc();
                continue;
            }
            let (fp, path) = seg_identity(s, rec.start.seg);
            let id = s.info.event_id(fp, rec.start.offset);
            self.batch.bytes += rec.message.len();
            self.batch.events.push(Event {
                stream: s.info.clone(),
                path,
                timestamp_ns: rec.timestamp_ns,
                std: rec.stream,
                message: rec.message,
                level: rec.level,
                flags: rec.flags,
                offset: rec.start.offset,
                sequence: s.next_seq,
                id,
            });
            s.last_acked_ts_ns = rec.timestamp_ns;
            s.next_seq += 1;
        }
        if s.suppress_until.is_some_and(|l| s.frontier > l) {
            s.suppress_until = None;
        }
        s.touched = true;
        self.batch_started.get_or_insert_with(Instant::now);
    }

    fn batch_full(&self) -> bool {
        self.batch.events.len() >= self.params.pipeline.batch_max_records
            || self.batch.bytes >= self.params.pipeline.batch_max_bytes
    }

    fn mark_all_touched(&mut self) {
        for s in &mut self.streams {
            // A stream still waiting for its checkpoint keeps the loaded one.
            if !s.removed && s.pending_cp.is_none() && (!s.segs.is_empty() || !s.metas.is_empty()) {
                s.touched = true;
            }
        }
    }

    /// Cuts the current batch (with a mark for every touched stream) and sends it.
    fn cut_and_send(&mut self, out: &mut dyn BatchOut) -> bool {
        for s in &mut self.streams {
            if s.touched && !s.removed && s.pending_cp.is_none() {
                // A checkpoint that names its segment by content survives renames and gzip.
                if let Some(front) = s.segs.front_mut()
                    && front.fp.is_none()
                    && let Some(SegReader::Plain(f)) = &front.reader
                {
                    front.fp = fingerprint::of_file(f, front.rotated).ok().flatten();
                }
                let checkpoint = snapshot(s);
                self.batch.marks.push(Mark::Advance {
                    stream: s.info.key.clone(),
                    checkpoint,
                });
                s.touched = false;
            }
        }
        self.batch_started = None;
        if self.batch.events.is_empty() && self.batch.marks.is_empty() {
            return true;
        }
        self.publish_merge_stats();
        let mut batch = std::mem::take(&mut self.batch);
        self.batch.events = self
            .params
            .recycle
            .as_ref()
            .and_then(|r| r.try_recv().ok())
            .unwrap_or_else(|| {
                Vec::with_capacity(self.params.pipeline.batch_max_records.min(1 << 16))
            });
        batch.id = self.next_batch_id;
        self.next_batch_id += 1;
        // While the sinks hold every permit, reading stops; the scans go on, so the lag
        // metrics and the rotation-risk warning see what piles up on disk.
        while !out.wait_ready(self.params.pipeline.scan_interval)
            && !self.stop.load(Ordering::Relaxed)
        {
            self.full_scan();
            for idx in 0..self.streams.len() {
                self.update_lag(idx);
            }
        }
        out.send(batch)
    }

    fn publish_merge_stats(&mut self) {
        // Merger statistics are cumulative per stream: publish what is new since last time.
        for s in &mut self.streams {
            let st = s.merger.stats();
            let m = &mut s.metrics;
            let was = m.reported;
            m.partials_merged
                .inc_by(st.partials_merged.saturating_sub(was.partials_merged));
            m.multiline_merged
                .inc_by(st.multiline_merged.saturating_sub(was.multiline_merged));
            m.truncated
                .inc_by(st.truncated.saturating_sub(was.truncated));
            m.invalid_lines
                .inc_by(st.invalid_lines.saturating_sub(was.invalid_lines));
            m.unterminated
                .inc_by(st.unterminated.saturating_sub(was.unterminated));
            m.reported = st;
        }
    }

    fn update_lag(&mut self, idx: usize) {
        let s = &self.streams[idx];
        let lag: u64 = s
            .segs
            .iter()
            .map(|g| g.size_seen.saturating_sub(g.offset))
            .sum();
        s.metrics.lag_bytes.set(lag as i64);
        // Promtail's definition: how old the newest delivered record is, while more waits; a
        // stream that caught up lags by nothing, however old its last line.
        if lag == 0 {
            s.metrics.lag_seconds.set(0.0);
        } else if s.last_acked_ts_ns > 0 {
            let age = (now_ns() - s.last_acked_ts_ns).max(0) as f64 / 1e9;
            s.metrics.lag_seconds.set(age);
        }
        // kubelet keeps `containerLogMaxFiles` segments of `containerLogMaxSize`: a stream this
        // far behind (a slow or absent sink) can lose its oldest unread segment.
        let risk = self.params.pipeline.rotation_risk_bytes;
        let s = &mut self.streams[idx];
        if lag > risk
            && s.risk_warned
                .is_none_or(|t| t.elapsed() >= ROTATION_RISK_WARN_EVERY)
        {
            s.risk_warned = Some(Instant::now());
            tracing::warn!(
                stream = %s.key.as_text(),
                lag_bytes = lag,
                risk_bytes = risk,
                "stream is so far behind that kubelet may delete unread segments (a sink is slow or down)"
            );
        }
    }
}

fn pod_container_dir(kind: &SourceKind, pc: &PodContainer) -> PathBuf {
    match kind {
        SourceKind::Kubernetes { pods_dir } => pods_dir
            .join(format!("{}_{}_{}", pc.namespace, pc.pod, pc.uid))
            .join(&pc.container),
        SourceKind::File { .. } => PathBuf::new(),
    }
}

thread_local! {
    /// Set when a listing may be stale: a listed file vanished before it was opened, or a
    /// copy (copytruncate) may be newer than the listing (the tailer is single-threaded).
    static RACED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Files that could not be opened and were already reported.
    static WARNED: std::cell::RefCell<HashSet<PathBuf>> = std::cell::RefCell::new(HashSet::new());
}

fn open_segment(s: &mut Stream, f: &Found, gz: bool) -> Option<Segment> {
    let file = match File::open(&f.path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Renamed or gzipped between listing and opening: the caller scans again.
            RACED.with(|r| r.set(true));
            return None;
        }
        Err(e) => {
            // Every scan meets the file again: say it once.
            let first = WARNED.with(|w| {
                let mut w = w.borrow_mut();
                w.len() < 10_000 && w.insert(f.path.clone())
            });
            if first {
                tracing::warn!(path = %f.path.display(), error = %e, "cannot open log file");
            }
            return None;
        }
    };
    // The name may now point at another file: identity is what we opened.
    let meta = file.metadata().ok()?;
    let (fp, reader) = if gz {
        let fp = fingerprint::of_gz(&file).ok().flatten();
        (fp, SegReader::Gz(Box::new(MultiGzDecoder::new(file))))
    } else {
        // Even a rotated file may still be being written (a copy in progress): its fingerprint
        // needs a complete first line.
        let fp = fingerprint::of_file(&file, false).ok().flatten();
        (fp, SegReader::Plain(file))
    };
    let serial = s.next_serial;
    s.next_serial += 1;
    Some(Segment {
        serial,
        dev: meta.dev(),
        inode: meta.ino(),
        fp,
        path: Arc::new(SegmentPath::new(f.path.to_string_lossy().into_owned())),
        name: f.name.clone(),
        reader: Some(reader),
        offset: 0,
        rotated: gz || matches!(f.name, SegmentName::Rotated { .. }),
        gz,
        size_seen: if gz { 0 } else { meta.len() },
        eof_since: None,
        head_verified: None,
    })
}

/// Inserts an unknown rotated segment at its place by name, never before the segment being read
/// (unless the stream is new), and renumbers serials so they stay in chain order.
fn insert_in_order(s: &mut Stream, seg: Segment, fresh: bool) {
    let min = if fresh || !front_started(s) { 0 } else { 1 };
    // A segment still named live but already rotated (its new name not seen yet: a listing
    // can miss a file being renamed) is compared by last modification: writes go to one segment
    // at a time, so mtimes follow the chain. A `.gz` is always older (kubelet compresses the
    // previous segment at the next rotation).
    let seg_mtime = reader_mtime(&seg);
    let mut at = s.segs.len();
    for (i, g) in s.segs.iter().enumerate().skip(min) {
        let newer = match &g.name {
            SegmentName::Live if !g.rotated => true,
            SegmentName::Live => {
                seg.gz || matches!((reader_mtime(g), seg_mtime), (Some(a), Some(b)) if a > b)
            }
            SegmentName::Rotated { .. } => seg.name < g.name,
        };
        if newer {
            at = i;
            break;
        }
    }
    s.segs.insert(at, seg);
    renumber(s);
}

fn reader_mtime(g: &Segment) -> Option<std::time::SystemTime> {
    match &g.reader {
        Some(SegReader::Plain(f)) => f.metadata().and_then(|m| m.modified()).ok(),
        Some(SegReader::Gz(d)) => d.get_ref().metadata().and_then(|m| m.modified()).ok(),
        None => None,
    }
}

/// A copy (copytruncate) of a segment: another file of the stream (plain, or already gzipped)
/// whose first line has the fingerprint `fp`. The stream's directory is listed again first: the
/// copy may be too new for the last scan.
fn find_copy(s: &mut Stream, kind: &SourceKind, not: (u64, u64), fp: u64) -> Option<Found> {
    if let (StreamKey::Pod(pc), SourceKind::Kubernetes { .. }) = (&s.key, kind) {
        let dir = pod_container_dir(kind, pc);
        let mut scan = discover::Scan::default();
        discover::scan_container_dir(
            &dir,
            &pc.namespace,
            &pc.pod,
            &pc.uid,
            &pc.container,
            &mut scan,
        );
        if let Some(found) = scan.streams.remove(&s.key) {
            s.last_found = found;
        }
    }
    // A copy may already be compressed (kubelet gzips the previous segment at the next
    // rotation, logrotate's `compress`) when we were behind: plain copies first, then gzip.
    let is_copy = |f: &&Found, gz: bool| {
        (f.dev, f.inode) != not
            && matches!(f.name, SegmentName::Rotated { gz: g, .. } if g == gz)
            && File::open(&f.path).ok().and_then(|file| {
                if gz {
                    fingerprint::of_gz(&file).ok().flatten()
                } else {
                    fingerprint::of_file(&file, true).ok().flatten()
                }
            }) == Some(fp)
    };
    let plain = s.last_found.iter().find(|f| is_copy(f, false));
    plain
        .or_else(|| s.last_found.iter().find(|f| is_copy(f, true)))
        .cloned()
}

/// Opens a copy `find_copy` found, to be read on from `offset` (decompressed bytes of a gzip
/// copy, which are skipped).
fn open_copy(f: &Found, offset: u64) -> Option<SegReader> {
    let file = File::open(&f.path).ok()?;
    if !matches!(f.name, SegmentName::Rotated { gz: true, .. }) {
        return Some(SegReader::Plain(file));
    }
    let mut dec = MultiGzDecoder::new(file);
    let skipped = io::copy(&mut (&mut dec).take(offset), &mut io::sink()).ok()?;
    (skipped == offset).then(|| SegReader::Gz(Box::new(dec)))
}

/// A gzip copy of the content `fp` waiting in the chain (after the front): the file we hold
/// was truncated and written again (copytruncate), then renamed and compressed, and the
/// compressed copy was listed while we still knew the file by its older content. Both hold the
/// same bytes: the copy leaves the chain, and its rotated name (which orders the file) is
/// returned, with whether its descriptor was open.
fn take_gz_twin(s: &mut Stream, fp: u64) -> Option<(SegmentName, bool)> {
    let i = 1 + s
        .segs
        .iter()
        .skip(1)
        .position(|g| g.gz && g.offset == 0 && g.fp == Some(fp))?;
    let twin = s.segs.remove(i)?;
    let name = match twin.name {
        SegmentName::Rotated { stamp, .. } => SegmentName::Rotated { stamp, gz: false },
        live => live,
    };
    Some((name, twin.reader.is_some()))
}

/// Whether positions may point into the front segment (it was started, or merge state refers to
/// it): then its serial is fixed.
fn front_started(s: &Stream) -> bool {
    s.segs.front().is_some_and(|f| {
        f.offset > 0
            || !s.carry.is_empty()
            || s.carry_cut
            || s.merger.oldest_pending().is_some_and(|p| p.seg == f.serial)
    })
}

/// Serials must follow chain order: segments nothing points into yet get fresh serials, which
/// are larger than any serial handed out before.
fn renumber(s: &mut Stream) {
    let keep_front = front_started(s);
    for (i, g) in s.segs.iter_mut().enumerate() {
        if i == 0 && keep_front {
            continue;
        }
        g.serial = s.next_serial;
        s.next_serial += 1;
    }
    if !keep_front && let Some(front) = s.segs.front() {
        s.frontier = Pos {
            seg: front.serial,
            offset: front.offset,
        };
    }
}

fn find_renamed(s: &mut Stream, path: &Path, pos: &SegmentPos) -> Option<Segment> {
    let dir = path.parent()?;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_file() && m.dev() == pos.dev && m.ino() == pos.inode {
            let f = Found {
                path: e.path(),
                name: SegmentName::Rotated {
                    stamp: String::new(),
                    gz: false,
                },
                dev: m.dev(),
                inode: m.ino(),
                size: m.len(),
            };
            let mut seg = open_segment(s, &f, false)?;
            seg.name = SegmentName::Rotated {
                stamp: String::new(),
                gz: false,
            };
            if seg.fp == Some(pos.fingerprint) {
                return Some(seg);
            }
        }
    }
    None
}

/// Whether a segment is the one a checkpoint position names: same first-line fingerprint (a
/// `.gz` or renamed copy qualifies). A position without fingerprint names nothing.
fn matches_pos(g: &Segment, pos: &SegmentPos) -> bool {
    let same_inode = !g.gz && g.dev == pos.dev && g.inode == pos.inode;
    if pos.fingerprint == 0 || (pos.offset == 0 && pos.fingerprint == fingerprint::hash(b"")) {
        return false;
    }
    g.fp == Some(pos.fingerprint) && (g.gz || same_inode || g.rotated)
}

fn remember_finished(s: &mut Stream, fp: Option<u64>, stamp: Option<String>) {
    if let Some(fp) = fp {
        if s.finished_fps.len() >= FINISHED_MEMORY {
            s.finished_fps.pop_front();
        }
        s.finished_fps.push_back(fp);
    }
    if let Some(stamp) = stamp {
        if s.finished_max_stamp.as_ref().is_none_or(|m| stamp > *m) {
            s.finished_max_stamp = Some(stamp.clone());
        }
        if s.finished_stamps.len() >= FINISHED_MEMORY {
            s.finished_stamps.pop_front();
        }
        s.finished_stamps.push_back(stamp);
    }
}

fn resume_valid(seg: &Segment, pos: &SegmentPos) -> bool {
    if pos.before_hash == 0 || pos.offset == 0 {
        return true;
    }
    match &seg.reader {
        Some(SegReader::Plain(f)) => {
            fingerprint::before(f, pos.offset).ok() == Some(pos.before_hash)
        }
        // Gzip segments are validated by their fingerprint only.
        _ => true,
    }
}

/// Whether a plain segment's head no longer matches its fingerprint: its content was replaced
/// (truncated, then written again) under the same descriptor. Taken the way the fingerprint
/// was (`complete` for rotated segments), so a file that only grew is never a change. A head
/// that cannot be read says nothing.
fn head_replaced(seg: &Segment) -> bool {
    let (Some(SegReader::Plain(f)), Some(fp)) = (&seg.reader, seg.fp) else {
        return false;
    };
    fingerprint::of_file(f, seg.rotated).is_ok_and(|now| now != Some(fp))
}

fn seek_segment(seg: &mut Segment, offset: u64) -> io::Result<()> {
    match &mut seg.reader {
        Some(SegReader::Plain(_)) => seg.offset = offset,
        Some(SegReader::Gz(dec)) => {
            let skipped = io::copy(&mut (&mut **dec).take(offset), &mut io::sink())?;
            if skipped < offset {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "gzip segment shorter than checkpoint",
                ));
            }
            seg.offset = offset;
        }
        None => {}
    }
    Ok(())
}

fn read_segment(seg: &mut Segment, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let r = match &mut seg.reader {
            Some(SegReader::Plain(f)) => f.read_at(buf, seg.offset),
            Some(SegReader::Gz(d)) => d.read(buf),
            None => Ok(0),
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Splits a chunk into lines and feeds them to the merger. Returns the number of lines.
#[allow(clippy::too_many_arguments)]
fn process_chunk(
    s: &mut Stream,
    data: &[u8],
    chunk_start: u64,
    serial: u64,
    src: &SourceRuntime,
    now_ms: u64,
    read_ns: i64,
    out: &mut Vec<Record<Pos>>,
) -> u64 {
    let max = src.max_line_bytes;
    let mut lines = 0;
    let mut pos = 0usize;
    while pos < data.len() {
        match memchr::memchr(b'\n', &data[pos..]) {
            Some(i) => {
                let end_idx = pos + i;
                let end = Pos {
                    seg: serial,
                    offset: chunk_start + end_idx as u64 + 1,
                };
                let start = s.frontier;
                // A line wholly in this chunk is passed in place; one that began in an earlier
                // chunk is completed in the carry buffer (kept for reuse).
                let mut carry = Vec::new();
                let (bytes, cut) = if s.carry.is_empty() && !s.carry_cut {
                    let line = &data[pos..end_idx];
                    (&line[..line.len().min(max)], line.len() > max)
                } else {
                    append_bounded(&mut s.carry, &mut s.carry_cut, &data[pos..end_idx], max);
                    carry = std::mem::take(&mut s.carry);
                    (&carry[..], std::mem::take(&mut s.carry_cut))
                };
                s.merger.push(
                    RawLine {
                        bytes,
                        start,
                        end,
                        cut,
                    },
                    now_ms,
                    read_ns,
                    out,
                );
                if carry.capacity() > 0 {
                    carry.clear();
                    s.carry = carry;
                }
                s.frontier = end;
                lines += 1;
                pos = end_idx + 1;
            }
            None => {
                append_bounded(&mut s.carry, &mut s.carry_cut, &data[pos..], max);
                break;
            }
        }
    }
    lines
}

fn append_bounded(carry: &mut Vec<u8>, cut: &mut bool, bytes: &[u8], max: usize) {
    let room = max.saturating_sub(carry.len());
    if bytes.len() > room {
        *cut = true;
    }
    carry.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn seg_identity(s: &Stream, serial: u64) -> (u64, Arc<SegmentPath>) {
    if let Some(g) = s.segs.iter().find(|g| g.serial == serial) {
        return (g.fp.unwrap_or(0), g.path.clone());
    }
    if let Some(m) = s.metas.iter().find(|m| m.serial == serial) {
        return (m.fp, m.path.clone());
    }
    (0, Arc::new(SegmentPath::new(String::new())))
}

fn seg_pos(s: &Stream, p: Pos) -> SegmentPos {
    if let Some(g) = s.segs.iter().find(|g| g.serial == p.seg) {
        let before_hash = match &g.reader {
            Some(SegReader::Plain(f)) => match fingerprint::before(f, p.offset).unwrap_or(0) {
                // Truncated since it was read (copytruncate not noticed yet: the file is
                // shorter, or its head changed after the hashed bytes were read): they are not
                // the bytes we read, and a restart would take its copy for another file. The
                // fingerprint alone names the position then (its copy holds the same bytes).
                h if h == u64::MAX || head_replaced(g) => 0,
                h => h,
            },
            _ => 0,
        };
        return SegmentPos {
            fingerprint: g.fp.unwrap_or(0),
            dev: g.dev,
            inode: g.inode,
            offset: p.offset,
            before_hash,
            path: g.path.path.clone(),
            size_seen: g.size_seen,
        };
    }
    if let Some(m) = s.metas.iter().find(|m| m.serial == p.seg) {
        return SegmentPos {
            fingerprint: m.fp,
            dev: m.dev,
            inode: m.inode,
            offset: p.offset,
            before_hash: 0,
            path: m.path.path.clone(),
            size_seen: m.size_seen,
        };
    }
    SegmentPos {
        fingerprint: 0,
        dev: 0,
        inode: 0,
        offset: p.offset,
        before_hash: 0,
        path: String::new(),
        size_seen: 0,
    }
}

/// The checkpoint of a stream as of now: resume at the oldest unfinished record, acknowledge
/// up to the frontier.
fn snapshot(s: &Stream) -> StreamCheckpoint {
    let resume = s
        .merger
        .oldest_pending()
        .map_or(s.frontier, |p| p.min(s.frontier));
    StreamCheckpoint {
        resume: seg_pos(s, resume),
        acked: seg_pos(s, s.frontier),
        next_sequence: s.next_seq,
        finished: s.finished_fps.iter().copied().collect(),
    }
}

fn prune_metas(s: &mut Stream) {
    let oldest = s
        .merger
        .oldest_pending()
        .map_or(s.frontier.seg, |p| p.seg.min(s.frontier.seg));
    while s.metas.front().is_some_and(|m| m.serial < oldest) {
        s.metas.pop_front();
    }
}
