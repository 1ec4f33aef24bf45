//! The one writer of an index directory: adds records, commits (the durability point the
//! collector acknowledges on), skips replayed records, and applies retention.

use crate::{IndexDoc, IndexError, LogIndex};
use std::collections::BTreeMap;
use std::ops::Bound;
use tantivy::indexer::LogMergePolicy;
use tantivy::query::RangeQuery;
use tantivy::{IndexWriter, TantivyDocument, Term};

/// Retention limits; `None` keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age_ns: Option<i64>,
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionStats {
    /// Records older than this were deleted (nanoseconds since the epoch), if any were.
    pub cutoff_ns: Option<i64>,
    pub bytes_before: u64,
}

/// What a commit stores besides the documents (tantivy writes it into `meta.json` atomically
/// with the commit).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Payload {
    version: u32,
    /// Per stream id: the next sequence not yet indexed.
    next_seq: BTreeMap<u64, u64>,
}

pub struct Writer {
    index: LogIndex,
    writer: IndexWriter<TantivyDocument>,
    committed: BTreeMap<u64, u64>,
    pending: BTreeMap<u64, u64>,
    retention: Retention,
    added_since_commit: u64,
    /// Sees the committed index, for replay checks; reloaded after each commit.
    reader: Option<tantivy::IndexReader>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("dir", &self.index.dir())
            .field("streams", &self.committed.len())
            .finish()
    }
}

impl Writer {
    /// Takes the directory's writer lock; a second writer gets [`IndexError::Locked`].
    pub fn new(
        index: LogIndex,
        memory_bytes: usize,
        retention: Retention,
    ) -> Result<Writer, IndexError> {
        let path = index.dir().to_path_buf();
        let writer = index
            .index()
            .writer_with_num_threads(1, memory_bytes.max(15_000_000))
            .map_err(|source| match source {
                tantivy::TantivyError::LockFailure(..) => IndexError::Locked { path: path.clone() },
                source => IndexError::Tantivy {
                    path: path.clone(),
                    source,
                },
            })?;
        let mut policy = LogMergePolicy::default();
        // Retention deletes the oldest records; merge segments that lost many of them so the
        // space comes back.
        policy.set_del_docs_ratio_before_merge(0.3);
        writer.set_merge_policy(Box::new(policy));
        let metas = index
            .index()
            .load_metas()
            .map_err(|source| IndexError::Tantivy {
                path: path.clone(),
                source,
            })?;
        let committed = match metas.payload.as_deref() {
            None => BTreeMap::new(),
            Some(p) => {
                serde_json::from_str::<Payload>(p)
                    .map_err(|e| IndexError::BadVersionFile {
                        path: path.clone(),
                        message: format!("commit payload: {e}"),
                    })?
                    .next_seq
            }
        };
        Ok(Writer {
            index,
            writer,
            pending: committed.clone(),
            committed,
            retention,
            added_since_commit: 0,
            reader: None,
        })
    }

    pub fn index(&self) -> &LogIndex {
        &self.index
    }

    /// Adds a record unless a previous commit (or this uncommitted batch) already has it.
    /// Returns whether it was added.
    pub fn add(&mut self, doc: &IndexDoc<'_>) -> Result<bool, IndexError> {
        // Within one writer a stream's sequences only grow, so a sequence already passed but
        // not committed was added by this writer (a retried write): skip it. Below the
        // committed mark it is a replay after a restart, unless the collector lost its
        // checkpoint and numbers the stream from 0 again: the event id decides.
        let committed = self.committed.get(&doc.stream_id).copied().unwrap_or(0);
        let pending = self.pending.get(&doc.stream_id).copied().unwrap_or(0);
        if doc.seq < pending && doc.seq >= committed {
            return Ok(false);
        }
        if doc.seq < committed && self.committed_has(doc.event_id)? {
            return Ok(false);
        }
        let next = self.pending.entry(doc.stream_id).or_insert(0);
        *next = (*next).max(doc.seq + 1);
        self.writer
            .add_document(doc.to_document(self.index.fields()))
            .map_err(|source| IndexError::Tantivy {
                path: self.index.dir().to_path_buf(),
                source,
            })?;
        self.added_since_commit += 1;
        Ok(true)
    }

    /// Makes everything added durable (one tantivy commit, payload included).
    pub fn commit(&mut self) -> Result<(), IndexError> {
        let payload = serde_json::to_string(&Payload {
            version: 1,
            next_seq: self.pending.clone(),
        })
        .unwrap_or_default();
        let path = self.index.dir().to_path_buf();
        let mut prepared = self
            .writer
            .prepare_commit()
            .map_err(|source| IndexError::Tantivy {
                path: path.clone(),
                source,
            })?;
        prepared.set_payload(&payload);
        prepared
            .commit()
            .map_err(|source| IndexError::Tantivy { path, source })?;
        self.committed = self.pending.clone();
        self.added_since_commit = 0;
        if let Some(r) = &self.reader {
            r.reload().map_err(|source| IndexError::Tantivy {
                path: self.index.dir().to_path_buf(),
                source,
            })?;
        }
        Ok(())
    }

    /// Drops everything added since the last commit.
    pub fn rollback(&mut self) -> Result<(), IndexError> {
        self.writer
            .rollback()
            .map_err(|source| IndexError::Tantivy {
                path: self.index.dir().to_path_buf(),
                source,
            })?;
        self.pending = self.committed.clone();
        self.added_since_commit = 0;
        Ok(())
    }

    /// Deletes records older than the age limit, then the oldest records while the directory
    /// is over the size limit. The deletions land with the next commit; the space comes back
    /// as segments merge. Size retention assumes records arrive evenly over time: it deletes
    /// the oldest fraction of the time span that matches the excess, and converges over
    /// several calls when that guess is short.
    pub fn enforce_retention(&mut self, now_ns: i64) -> Result<RetentionStats, IndexError> {
        let mut stats = RetentionStats {
            bytes_before: self.index.disk_bytes()?,
            ..RetentionStats::default()
        };
        let mut cutoff = self
            .retention
            .max_age_ns
            .map(|age| now_ns.saturating_sub(age));
        if let Some(max) = self.retention.max_bytes
            && stats.bytes_before > max
            && let Some((lo, hi)) = self.time_span()?
        {
            // Aim at 90% of the limit so one call does not leave it at the edge.
            let excess = stats.bytes_before - max * 9 / 10;
            let fraction = excess as f64 / stats.bytes_before as f64;
            let by_size = lo + ((hi - lo) as f64 * fraction) as i64 + 1;
            cutoff = Some(cutoff.map_or(by_size, |c| c.max(by_size)));
        }
        if let Some(c) = cutoff {
            let f = self.index.fields().ts;
            let q = RangeQuery::new(
                Bound::Unbounded,
                Bound::Excluded(Term::from_field_i64(f, c)),
            );
            self.writer
                .delete_query(Box::new(q))
                .map_err(|source| IndexError::Tantivy {
                    path: self.index.dir().to_path_buf(),
                    source,
                })?;
            stats.cutoff_ns = Some(c);
        }
        Ok(stats)
    }

    /// Oldest and newest timestamps in the committed index.
    fn time_span(&self) -> Result<Option<(i64, i64)>, IndexError> {
        let tv = |source| IndexError::Tantivy {
            path: self.index.dir().to_path_buf(),
            source,
        };
        let reader = self.index.index().reader().map_err(tv)?;
        let searcher = reader.searcher();
        let mut span: Option<(i64, i64)> = None;
        for seg in searcher.segment_readers() {
            let col = seg.fast_fields().i64("ts").map_err(tv)?;
            let (lo, hi) = (col.min_value(), col.max_value());
            if seg.num_docs() == 0 {
                continue;
            }
            span = Some(span.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        }
        Ok(span)
    }

    fn committed_has(&mut self, event_id: &str) -> Result<bool, IndexError> {
        let tv = |source| IndexError::Tantivy {
            path: self.index.dir().to_path_buf(),
            source,
        };
        if self.reader.is_none() {
            self.reader = Some(
                self.index
                    .index()
                    .reader_builder()
                    .reload_policy(tantivy::ReloadPolicy::Manual)
                    .try_into()
                    .map_err(tv)?,
            );
        }
        let Some(reader) = &self.reader else {
            return Ok(false);
        };
        let term = Term::from_field_text(self.index.fields().id, event_id);
        Ok(reader.searcher().doc_freq(&term).map_err(tv)? > 0)
    }

    /// Records added since the last commit.
    pub fn uncommitted(&self) -> u64 {
        self.added_since_commit
    }
}
