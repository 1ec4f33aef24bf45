//! Grep-like patterns (glob and regex anywhere in the message) as an exact tantivy query.
//!
//! The inverted index only knows words, so a pattern is answered in two steps: the candidates
//! are the records holding the whole words the pattern cannot match without (a superset), and
//! each candidate the search actually visits is checked against its stored message. Checks are
//! lazy (joining an intersection, only the records the other clauses hold are read: the plan
//! puts the time range first, and a conjunction is one flat intersection) and remembered per
//! segment and pattern in a bounded [`VerdictCache`]: segments never change, so the next page,
//! the histogram of the same query or a wider range reads only what no search has checked yet.
//!
//! Messages are read from the index's message column (`nevermore_index::messages`), a slice
//! of a memory-mapped file each, not from the compressed doc store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nevermore_index::messages::MessageColumn;
use regex::bytes::Regex;
use tantivy::index::SegmentId;
use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SeekDangerResult, SegmentReader, TERMINATED};

/// Records whose message `regex` matches somewhere, among the records `candidates` returns.
pub struct GrepQuery {
    pub candidates: Box<dyn Query>,
    pub regex: Arc<Regex>,
    /// Names the pattern in the cache: two queries with the same key match the same records.
    pub key: Arc<str>,
    pub cache: Arc<VerdictCache>,
    /// Set when the caller stopped waiting: unchecked candidates are then rejected (and not
    /// remembered), so an abandoned search ends quickly.
    pub cancel: Arc<AtomicBool>,
}

impl Clone for GrepQuery {
    fn clone(&self) -> Self {
        GrepQuery {
            candidates: self.candidates.box_clone(),
            regex: self.regex.clone(),
            key: self.key.clone(),
            cache: self.cache.clone(),
            cancel: self.cancel.clone(),
        }
    }
}

impl std::fmt::Debug for GrepQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrepQuery")
            .field("candidates", &self.candidates)
            .field("key", &self.key)
            .finish()
    }
}

impl Query for GrepQuery {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(GrepWeight {
            candidates: self.candidates.weight(scoring)?,
            query: self.clone(),
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a tantivy::Term, bool)) {
        self.candidates.query_terms(visitor);
    }
}

struct GrepWeight {
    candidates: Box<dyn Weight>,
    query: GrepQuery,
}

impl GrepWeight {
    /// A scorer on `candidates` that has checked nothing yet.
    fn wrap(
        &self,
        reader: &SegmentReader,
        candidates: Box<dyn Scorer>,
    ) -> tantivy::Result<GrepScorer> {
        Ok(GrepScorer {
            candidates,
            verdicts: self.query.cache.verdicts(
                reader.segment_id(),
                &self.query.key,
                reader.max_doc(),
            ),
            messages: MessageColumn::open(reader)?,
            // A clone per segment scorer: its own match caches, no pool shared across threads.
            regex: Regex::clone(&self.query.regex),
            cancel: self.query.cancel.clone(),
        })
    }
}

impl Weight for GrepWeight {
    /// Positioned on the first match, as a docset starts: this checks candidates from the
    /// segment's start, which is what leading an intersection or a union needs.
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let candidates = self.candidates.scorer(reader, boost)?;
        let mut scorer = self.wrap(reader, candidates)?;
        let first = scorer.candidates.doc();
        if first != TERMINATED && !scorer.check(first) {
            scorer.advance();
        }
        Ok(Box::new(scorer))
    }

    /// Joining an intersection (the time range leads it): only `target` is checked, never the
    /// candidates before it, so a search of the last hour reads no message of the days before.
    fn scorer_danger(
        &self,
        reader: &SegmentReader,
        target: DocId,
        boost: Score,
    ) -> tantivy::Result<(SeekDangerResult, Box<dyn Scorer>)> {
        let (found, candidates) = self.candidates.scorer_danger(reader, target, boost)?;
        let mut scorer = self.wrap(reader, candidates)?;
        let found = scorer.settle(target, found);
        Ok((found, Box::new(scorer)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        match self.scorer_danger(reader, doc, 1.0)?.0 {
            SeekDangerResult::Found => Ok(Explanation::new("grep", 1.0)),
            SeekDangerResult::SeekLowerBound(_) => Err(tantivy::TantivyError::InvalidArgument(
                format!("document {doc} does not match"),
            )),
        }
    }
}

struct GrepScorer {
    candidates: Box<dyn Scorer>,
    verdicts: Arc<Verdicts>,
    messages: MessageColumn,
    regex: Regex,
    cancel: Arc<AtomicBool>,
}

impl GrepScorer {
    /// The answer for `target` once the candidates answered: a candidate is a match only if
    /// its message is; a miss leaves the scorer past `target` only (the danger zone).
    fn settle(&mut self, target: DocId, candidates: SeekDangerResult) -> SeekDangerResult {
        match candidates {
            SeekDangerResult::Found if self.check(target) => SeekDangerResult::Found,
            SeekDangerResult::Found => SeekDangerResult::SeekLowerBound(target + 1),
            lower_bound => lower_bound,
        }
    }

    fn check(&mut self, doc: DocId) -> bool {
        if let Some(v) = self.verdicts.get(doc) {
            return v;
        }
        if self.cancel.load(Ordering::Relaxed) {
            return false;
        }
        // The regex is the language's, compiled for bytes: messages are tantivy text (UTF-8).
        let ok = self
            .messages
            .get(doc)
            .is_some_and(|m| self.regex.is_match(m));
        self.verdicts.set(doc, ok);
        ok
    }
}

impl DocSet for GrepScorer {
    fn advance(&mut self) -> DocId {
        loop {
            let doc = self.candidates.advance();
            if doc == TERMINATED || self.check(doc) {
                return doc;
            }
        }
    }

    fn seek(&mut self, target: DocId) -> DocId {
        let doc = self.candidates.seek(target);
        if doc == TERMINATED || self.check(doc) {
            doc
        } else {
            self.advance()
        }
    }

    fn seek_danger(&mut self, target: DocId) -> SeekDangerResult {
        let candidates = self.candidates.seek_danger(target);
        self.settle(target, candidates)
    }

    fn doc(&self) -> DocId {
        self.candidates.doc()
    }

    fn size_hint(&self) -> u32 {
        self.candidates.size_hint()
    }

    /// Reading a record costs far more than a posting: let cheaper clauses lead intersections
    /// and seek this one only to the records they hold.
    fn cost(&self) -> u64 {
        self.candidates.cost().saturating_mul(20)
    }
}

impl Scorer for GrepScorer {
    fn score(&mut self) -> Score {
        1.0
    }
}

/// Which records of one segment have been checked, and which of those matched. Shared by every
/// search of the same pattern on the segment, concurrently.
pub struct Verdicts {
    checked: Box<[AtomicU64]>,
    matched: Box<[AtomicU64]>,
}

impl Verdicts {
    fn new(max_doc: u32) -> Self {
        let words = (max_doc as usize).div_ceil(64);
        let zeros = || (0..words).map(|_| AtomicU64::new(0)).collect();
        Verdicts {
            checked: zeros(),
            matched: zeros(),
        }
    }

    fn bytes(&self) -> usize {
        (self.checked.len() + self.matched.len()) * 8
    }

    fn get(&self, doc: DocId) -> Option<bool> {
        let (w, bit) = (doc as usize / 64, 1u64 << (doc % 64));
        // Acquire pairs with `set`'s release: a checked bit makes its matched bit visible.
        (self.checked.get(w)?.load(Ordering::Acquire) & bit != 0)
            .then(|| self.matched[w].load(Ordering::Relaxed) & bit != 0)
    }

    fn set(&self, doc: DocId, matched: bool) {
        let (w, bit) = (doc as usize / 64, 1u64 << (doc % 64));
        let Some(checked) = self.checked.get(w) else {
            return;
        };
        if matched {
            self.matched[w].fetch_or(bit, Ordering::Relaxed);
        }
        checked.fetch_or(bit, Ordering::Release);
    }
}

/// Per (segment, pattern) verdicts, least recently used evicted past a byte budget (two bits a
/// record of the segment per entry).
pub struct VerdictCache {
    budget_bytes: usize,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    entries: HashMap<(SegmentId, Arc<str>), (Arc<Verdicts>, u64)>,
    bytes: usize,
    clock: u64,
}

impl VerdictCache {
    pub fn new(budget_bytes: usize) -> Self {
        VerdictCache {
            budget_bytes,
            state: Mutex::default(),
        }
    }

    /// The verdicts of `key` on a segment, empty ones if none are kept. An entry evicted while
    /// a search still uses it lives on until that search ends, unshared.
    fn verdicts(&self, segment: SegmentId, key: &Arc<str>, max_doc: u32) -> Arc<Verdicts> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.clock += 1;
        let now = st.clock;
        if let Some((v, used)) = st.entries.get_mut(&(segment, key.clone())) {
            *used = now;
            return v.clone();
        }
        let v = Arc::new(Verdicts::new(max_doc));
        let size = v.bytes();
        if size > self.budget_bytes {
            return v;
        }
        while st.bytes + size > self.budget_bytes {
            let Some(oldest) = st
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((gone, _)) = st.entries.remove(&oldest) {
                st.bytes -= gone.bytes();
            }
        }
        st.bytes += size;
        st.entries.insert((segment, key.clone()), (v.clone(), now));
        v
    }

    /// Records checked, over every kept entry.
    #[cfg(test)]
    pub(crate) fn checked(&self) -> u64 {
        let st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.entries
            .values()
            .flat_map(|(v, _)| v.checked.iter())
            .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
            .sum()
    }

    /// Bytes held by the kept verdicts.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_remember_both_answers() {
        let v = Verdicts::new(130);
        assert_eq!(v.get(129), None);
        v.set(129, true);
        v.set(64, false);
        assert_eq!(
            (v.get(129), v.get(64), v.get(0)),
            (Some(true), Some(false), None)
        );
        assert_eq!(v.get(130), None);
        v.set(1000, true);
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let cache = VerdictCache::new(3 * 2 * 8 * 2);
        let seg = SegmentId::generate_random();
        let keys: Vec<Arc<str>> = (0..5).map(|i| Arc::from(format!("k{i}"))).collect();
        let first = cache.verdicts(seg, &keys[0], 128);
        first.set(3, true);
        assert_eq!(cache.verdicts(seg, &keys[0], 128).get(3), Some(true));
        for k in &keys[1..] {
            cache.verdicts(seg, k, 128);
            assert!(cache.bytes() <= 96);
        }
        // The oldest entry went first.
        assert_eq!(cache.verdicts(seg, &keys[0], 128).get(3), None);
        // Larger than the whole budget: used, never kept.
        cache.verdicts(seg, &keys[0], 1 << 20);
        assert!(cache.bytes() <= 96);
    }
}
