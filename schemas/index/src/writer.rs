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
        self.writer
            .add_document(doc.to_document(self.index.fields()))
            .map_err(|source| IndexError::Tantivy {
                path: self.index.dir().to_path_buf(),
                source,
            })?;
        // Only once it is in: a failed add must not count as added.
        let next = self.pending.entry(doc.stream_id).or_insert(0);
        *next = (*next).max(doc.seq + 1);
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
        // The commit is done: a reader that cannot see it is made anew at the next check,
        // never an error (the caller would write the committed records again).
        if self.reader.as_ref().is_some_and(|r| r.reload().is_err()) {
            self.reader = None;
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
        {
            // Aim at 90% of the limit so one call does not leave it at the edge; at most half
            // the records go in one call (the next call sees the space come back).
            let excess = stats.bytes_before - max * 9 / 10;
            let fraction = (excess as f64 / stats.bytes_before as f64).min(0.5);
            if let Some(by_size) = self.cutoff_for_fraction(fraction)? {
                cutoff = Some(cutoff.map_or(by_size, |c| c.max(by_size)));
            }
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

    /// The timestamp below which about `fraction` of the live committed records lie, from
    /// their counts (not from the span of timestamps: one record from 1970 or 2099 must not
    /// decide). Two passes over the timestamp column: the live range, then 1024 buckets.
    fn cutoff_for_fraction(&self, fraction: f64) -> Result<Option<i64>, IndexError> {
        const BUCKETS: usize = 1024;
        let tv = |source| IndexError::Tantivy {
            path: self.index.dir().to_path_buf(),
            source,
        };
        let reader = self.index.index().reader().map_err(tv)?;
        let searcher = reader.searcher();
        let mut columns = Vec::new();
        for seg in searcher.segment_readers() {
            columns.push((
                seg.fast_fields().i64("ts").map_err(tv)?,
                seg.alive_bitset(),
                seg.max_doc(),
            ));
        }
        let live = |f: &mut dyn FnMut(i64)| {
            for (col, alive, max) in &columns {
                for doc in 0..*max {
                    if alive.is_none_or(|a| a.is_alive(doc))
                        && let Some(ts) = col.first(doc)
                    {
                        f(ts);
                    }
                }
            }
        };
        let (mut lo, mut hi, mut total) = (i64::MAX, i64::MIN, 0u64);
        live(&mut |ts| {
            lo = lo.min(ts);
            hi = hi.max(ts);
            total += 1;
        });
        if total == 0 {
            return Ok(None);
        }
        let target = ((total as f64 * fraction).ceil() as u64).max(1);
        // Narrow down: the bucket where the count crosses the target, then buckets within it,
        // until a bucket holds few records (timestamps can cluster far from an outlier).
        for _ in 0..8 {
            let width = ((hi as i128 - lo as i128) / BUCKETS as i128 + 1) as i64;
            let mut below = 0u64;
            let mut counts = vec![0u64; BUCKETS];
            live(&mut |ts| {
                if ts < lo {
                    below += 1;
                } else if ts <= hi {
                    let b = ((ts as i128 - lo as i128) / width as i128) as usize;
                    counts[b.min(BUCKETS - 1)] += 1;
                }
            });
            let mut seen = below;
            let Some(i) = counts.iter().position(|n| {
                seen += n;
                seen >= target
            }) else {
                return Ok(Some(hi.saturating_add(1)));
            };
            let start = lo.saturating_add(width.saturating_mul(i as i64));
            if counts[i] <= (total / 1000).max(1) || width == 1 {
                return Ok(Some(start.saturating_add(width)));
            }
            lo = start;
            hi = start.saturating_add(width - 1);
        }
        Ok(Some(hi.saturating_add(1)))
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
