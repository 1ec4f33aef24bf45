//! The `embedded` sink: records into the embedded tantivy index. A flush is a tantivy commit,
//! the point after which batches are acknowledged; replays after a crash are skipped by the
//! index writer (see `nevermore-index`), so the index holds each record once.

use super::{Sink, SinkError};
use crate::config::EmbeddedSinkConfig;
use crate::event::{Batch, Event, JsonEncoder};
use nevermore_index::{IndexDoc, LogIndex, Retention, Writer};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often retention runs (it is a delete query, applied with the next commit).
const RETENTION_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct EmbeddedSink {
    name: String,
    /// Taken while a commit runs on the blocking pool.
    writer: Option<Writer>,
    encoder: JsonEncoder,
    buf: Vec<u8>,
    commit_interval: Duration,
    last_commit: Instant,
    last_retention: Instant,
    /// A failed write rolled the writer back: batches the runner thinks are written are not.
    lost_unflushed: bool,
}

fn err(sink: &str, e: impl std::fmt::Display) -> SinkError {
    SinkError::Write {
        sink: sink.to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl EmbeddedSink {
    /// Opens (or creates) the index and takes its writer lock.
    pub fn open(name: String, dir: &Path, cfg: &EmbeddedSinkConfig) -> Result<Self, SinkError> {
        let open_err = |e: nevermore_index::IndexError| SinkError::Open {
            sink: name.clone(),
            path: dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        };
        let index = LogIndex::open(dir).map_err(open_err)?;
        let retention = Retention {
            max_age_ns: cfg
                .max_age
                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            max_bytes: cfg.max_bytes,
        };
        let memory = usize::try_from(cfg.writer_memory_bytes).unwrap_or(usize::MAX);
        let writer = Writer::new(index, memory, retention).map_err(open_err)?;
        Ok(EmbeddedSink {
            name,
            writer: Some(writer),
            encoder: JsonEncoder::default(),
            buf: Vec::new(),
            commit_interval: cfg.commit_interval,
            last_commit: Instant::now(),
            last_retention: Instant::now(),
            lost_unflushed: false,
        })
    }

    fn writer(&mut self) -> Result<&mut Writer, SinkError> {
        let name = self.name.clone();
        self.writer
            .as_mut()
            .ok_or_else(|| err(&name, "the index writer was lost in a failed commit"))
    }

    /// Runs `f` on the writer on the blocking pool (commits fsync and merge).
    async fn blocking<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Writer) -> Result<T, nevermore_index::IndexError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let mut w = self
            .writer
            .take()
            .ok_or_else(|| err(&self.name, "the index writer was lost in a failed commit"))?;
        let (w, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut w);
            (w, r)
        })
        .await
        .map_err(|e| err(&self.name, e))?;
        self.writer = Some(w);
        r.map_err(|e| err(&self.name, e))
    }
}

fn index_doc<'a>(ev: &'a Event, source: &'a [u8]) -> IndexDoc<'a> {
    IndexDoc {
        ts_ns: ev.timestamp_ns,
        stream_id: ev.stream.stream_id(),
        seq: ev.sequence,
        event_id: "",
        message: &ev.message,
        level: ev.level.map(|l| l.as_str()),
        stream: ev.std.map(|s| s.as_str()),
        namespace: None,
        pod: None,
        container: None,
        workload: None,
        node: &ev.stream.node,
        cluster: &ev.stream.cluster,
        dataset: &ev.stream.dataset,
        labels: Vec::new(),
        source,
    }
    .with_kubernetes(ev.stream.kubernetes.as_ref())
}

impl Sink for EmbeddedSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write(&mut self, batch: &Batch, accepts: &[bool]) -> Result<usize, SinkError> {
        let mut n = 0;
        let mut id = String::with_capacity(16);
        for ev in &batch.events {
            if !accepts.get(ev.stream.source).copied().unwrap_or(false) {
                continue;
            }
            self.buf.clear();
            self.encoder.encode(ev, &mut self.buf);
            // The stored source is the record without its NDJSON newline.
            let source = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
            id.clear();
            {
                use std::fmt::Write as _;
                let _ = write!(id, "{:016x}", ev.id);
            }
            let mut doc = index_doc(ev, source);
            doc.event_id = &id;
            let name = self.name.clone();
            // Adding queues the document for the indexing threads (it waits only when their
            // queue is full).
            let w = self
                .writer
                .as_mut()
                .ok_or_else(|| err(&name, "the index writer was lost in a failed commit"))?;
            if let Err(e) = w.add(&doc) {
                // The indexing threads are gone (e.g. a full disk): only a rollback makes a
                // new writer, and it drops every batch written since the last commit. The
                // next flush fails, so the runner writes all of them again.
                self.lost_unflushed = true;
                let _ = self.blocking(Writer::rollback).await;
                return Err(err(&name, e));
            }
            n += 1;
        }
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        if std::mem::take(&mut self.lost_unflushed) {
            return Err(err(
                &self.name,
                "a rollback dropped batches written since the last commit",
            ));
        }
        // Commits are the costly part: space them out. Batches wait (bounded by the permits),
        // reading slows, nothing grows.
        let wait = self
            .commit_interval
            .saturating_sub(self.last_commit.elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if self.last_retention.elapsed() >= RETENTION_EVERY {
            self.last_retention = Instant::now();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            let stats = self.blocking(move |w| w.enforce_retention(now)).await?;
            if let Some(cutoff) = stats.cutoff_ns {
                tracing::info!(sink = %self.name, cutoff_ns = cutoff, bytes = stats.bytes_before, "retention deletes older records");
            }
        }
        self.blocking(Writer::commit).await?;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Nothing to undo: writing the batch again skips the records this writer already has.
    async fn rollback(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn discard_unflushed(&mut self) -> Result<(), SinkError> {
        self.writer()?;
        self.blocking(Writer::rollback).await
    }
}
