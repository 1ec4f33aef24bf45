//! The embedded tantivy index as a search backend. The AST is lowered to tantivy queries here,
//! never through tantivy's own query parser.
//!
//! What the inverted index cannot answer exactly (glob and regex on the message: "anywhere in the
//! line") is lowered to a superset and checked per candidate against the stored record with the
//! language's own evaluator, inside the collectors, so pages, histograms and facets stay exact.

use super::grep::{GrepQuery, VerdictCache};
use super::{
    BackendError, Bucket, Cursor, HistogramRequest, Hit, Order, Page, SearchRequest, SortKey,
    TimeRange, ValueCount, ValuesRequest,
};
use crate::logs::record_doc::LiteDoc;
use nevermore_index::{Fields, LogIndex};
use nevermore_lang::eval::Matcher;
use nevermore_lang::{CmpOp, Expr, Field, Pred, Term as AstTerm};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, ColumnIndex, StrColumn};
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, Occur, PhraseQuery, Query, RangeQuery, RegexQuery,
    TermQuery, TermSetQuery,
};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::store::StoreReader;
use tantivy::{
    DocAddress, DocId, IndexReader, Score, SegmentOrdinal, SegmentReader, TantivyDocument,
};

#[derive(Clone)]
pub struct EmbeddedBackend {
    inner: Arc<Inner>,
}

struct Inner {
    index: LogIndex,
    reader: IndexReader,
    /// What grep-like patterns matched, per segment (see [`super::grep`]).
    verdicts: Arc<VerdictCache>,
}

/// Bytes of remembered grep verdicts: two bits a record per (segment, pattern), so 64 MiB
/// keeps about 25 patterns over 10 M records.
const VERDICT_CACHE_BYTES: usize = 64 << 20;

impl std::fmt::Debug for EmbeddedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBackend")
            .field("dir", &self.inner.index.dir())
            .finish()
    }
}

fn index_err(e: impl std::fmt::Display) -> BackendError {
    BackendError::Index(e.to_string())
}

impl EmbeddedBackend {
    pub fn new(mut index: LogIndex) -> Result<Self, BackendError> {
        // Segments are searched in parallel, one thread a core.
        index.search_in_parallel().map_err(index_err)?;
        let reader = index.reader().map_err(index_err)?;
        Ok(EmbeddedBackend {
            inner: Arc::new(Inner {
                index,
                reader,
                verdicts: Arc::new(VerdictCache::new(VERDICT_CACHE_BYTES)),
            }),
        })
    }

    /// Sees the latest commit now (tests; the reader also reloads by itself shortly after).
    pub fn refresh(&self) -> Result<(), BackendError> {
        self.inner.reader.reload().map_err(index_err)
    }

    /// Runs a search on the blocking pool. When the caller stops waiting (a request deadline),
    /// the search is told to stop: its post-filter, the one costly part, then rejects the rest.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &Cancel) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        struct CancelOnDrop(Cancel);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let inner = self.inner.clone();
        let cancel = Cancel::default();
        let _guard = CancelOnDrop(cancel.clone());
        tokio::task::spawn_blocking(move || f(&inner, &cancel))
            .await
            .map_err(index_err)?
    }

    pub async fn search(&self, req: SearchRequest) -> Result<Page, BackendError> {
        self.blocking(move |i, c| i.search(&req, c)).await
    }

    pub async fn histogram(&self, req: HistogramRequest) -> Result<Vec<Bucket>, BackendError> {
        self.blocking(move |i, c| i.histogram(&req, c)).await
    }

    pub async fn search_counted(&self, req: SearchRequest) -> Result<(Page, u64), BackendError> {
        self.blocking(move |i, c| i.search_counted(&req, c)).await
    }

    pub async fn values(&self, req: ValuesRequest) -> Result<Vec<ValueCount>, BackendError> {
        self.blocking(move |i, c| i.values(&req, c)).await
    }

    pub async fn get(&self, event_id: &str, restrict: &Expr) -> Result<Option<Hit>, BackendError> {
        let (id, restrict) = (event_id.to_string(), restrict.clone());
        self.blocking(move |i, c| i.get(&id, &restrict, c)).await
    }
}

/// Set when the caller stopped waiting for a search.
type Cancel = Arc<std::sync::atomic::AtomicBool>;

/// The evaluator of an inexact plan, and the search's cancel flag.
#[derive(Debug)]
struct Check {
    matcher: Matcher,
    cancel: Cancel,
}

/// What lowering a grep-like pattern needs besides the schema.
struct Grep {
    cache: Arc<VerdictCache>,
    cancel: Cancel,
}

impl Grep {
    /// An exact query for messages matching `pattern` (the language's regex semantics: anywhere
    /// in the line, `.` matching newlines) among `candidates`.
    fn query(
        &self,
        candidates: Box<dyn Query>,
        pattern: &str,
        case_insensitive: bool,
    ) -> Result<Box<dyn Query>, BackendError> {
        // The language's regex (what the evaluator and Elasticsearch accept), run on bytes.
        nevermore_lang::eval::compile_regex(pattern, case_insensitive, false).map_err(index_err)?;
        let regex = nevermore_lang::eval::compile_bytes_regex(pattern, case_insensitive, false)
            .map_err(index_err)?;
        Ok(Box::new(GrepQuery {
            candidates,
            regex: Arc::new(regex),
            key: Arc::from(format!(
                "{}{pattern}",
                if case_insensitive { "i:" } else { "s:" }
            )),
            cache: self.cache.clone(),
            cancel: self.cancel.clone(),
        }))
    }
}

/// A lowered query: the tantivy query plus, when it is only a superset, the evaluator that
/// decides per record.
struct Plan {
    query: Box<dyn Query>,
    post: Option<Arc<Check>>,
}

impl Inner {
    fn plan(
        &self,
        searcher: &tantivy::Searcher,
        expr: &Expr,
        range: Option<TimeRange>,
        stream: Option<&str>,
        cancel: &Cancel,
    ) -> Result<Plan, BackendError> {
        let f = self.index.fields();
        let grep = Grep {
            cache: self.verdicts.clone(),
            cancel: cancel.clone(),
        };
        let (q, exact) = lower(expr, f, &grep)?;
        // The time range and the stream first: an intersection's scorers are made in this
        // order, and a grep clause joining after them checks only the records they hold.
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if let Some(r) = range
            && !covers_everything(searcher, r)
        {
            clauses.push((
                Occur::Must,
                ts_range(f, Bound::Included(r.start_ns), Bound::Excluded(r.end_ns)),
            ));
        }
        if let Some(s) = stream {
            let sid = u64::from_str_radix(s, 16).map_err(|_| BackendError::BadCursor)?;
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    tantivy::Term::from_field_u64(f.sid, sid),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        // `All` is no clause: an intersection with every record still costs a walk. A
        // conjunction joins the range's intersection clause by clause (tantivy builds a nested
        // one from its first match, not from the range's).
        match q.downcast_ref::<BooleanQuery>() {
            _ if matches!(expr, Expr::All) => {}
            Some(b) if b.clauses().iter().all(|(o, _)| *o == Occur::Must) => {
                clauses.extend(b.clauses().iter().map(|(o, c)| (*o, c.box_clone())));
            }
            _ => clauses.push((Occur::Must, q)),
        }
        let post = if exact {
            None
        } else {
            Some(Arc::new(Check {
                matcher: Matcher::new(expr).map_err(index_err)?,
                cancel: cancel.clone(),
            }))
        };
        let query: Box<dyn Query> = match clauses.len() {
            0 => Box::new(AllQuery),
            1 => clauses
                .pop()
                .map_or_else(|| Box::new(AllQuery) as Box<dyn Query>, |(_, q)| q),
            _ => Box::new(BooleanQuery::new(clauses)),
        };
        Ok(Plan { query, post })
    }

    fn search(&self, req: &SearchRequest, cancel: &Cancel) -> Result<Page, BackendError> {
        let mut range = req.range;
        // Past the cursor only: the timestamp bound lets the range query skip what came before.
        if let Some(c) = &req.after {
            match req.order {
                Order::Desc => range.end_ns = range.end_ns.min(c.key.ts_ns.saturating_add(1)),
                Order::Asc => range.start_ns = range.start_ns.max(c.key.ts_ns),
            }
        }
        let searcher = self.reader.searcher();
        let plan = self.plan(
            &searcher,
            &req.expr,
            Some(range),
            req.stream.as_deref(),
            cancel,
        )?;
        let collector = TopKeys {
            limit: req.limit,
            order: req.order,
            after: req
                .after
                .as_ref()
                .map(|c| c.key.clone())
                .map(KeyNum::try_from)
                .transpose()?,
            post: plan.post.clone(),
        };
        let top = if plan.post.is_none() {
            top_by_segment(&searcher, &*plan.query, &collector)
        } else {
            searcher.search(&*plan.query, &collector)
        }
        .map_err(index_err)?;
        self.page(&searcher, top, req.limit)
    }

    /// One pass: every matching record is counted, and the page is kept on the way.
    fn search_counted(
        &self,
        req: &SearchRequest,
        cancel: &Cancel,
    ) -> Result<(Page, u64), BackendError> {
        let searcher = self.reader.searcher();
        let plan = self.plan(
            &searcher,
            &req.expr,
            Some(req.range),
            req.stream.as_deref(),
            cancel,
        )?;
        let collector = Counted(TopKeys {
            limit: req.limit,
            order: req.order,
            after: None,
            post: plan.post.clone(),
        });
        let q = &*plan.query;
        if plan.post.is_none()
            && (q.is::<AllQuery>() || q.is::<TermQuery>() || q.is::<TermSetQuery>())
        {
            // Counted from the index's statistics (no record read), and the page read from
            // the newest segments only. Other queries count as they collect, in one pass
            // (measured: a count pass then a page pass is slower for them).
            let total = count(&searcher, &*plan.query).map_err(index_err)?;
            let top = top_by_segment(&searcher, &*plan.query, &collector.0).map_err(index_err)?;
            return Ok((self.page(&searcher, top, req.limit)?, total));
        }
        let (top, total) = searcher
            .search(&*plan.query, &collector)
            .map_err(index_err)?;
        Ok((self.page(&searcher, top, req.limit)?, total))
    }

    fn page(
        &self,
        searcher: &tantivy::Searcher,
        top: Vec<(KeyNum, DocAddress)>,
        limit: usize,
    ) -> Result<Page, BackendError> {
        let mut hits = Vec::with_capacity(top.len());
        for (key, addr) in top {
            hits.push(self.hit(searcher, key, addr)?);
        }
        let next = (hits.len() == limit && limit > 0)
            .then(|| {
                hits.last().map(|h| Cursor {
                    key: h.key.clone(),
                    pit: None,
                })
            })
            .flatten();
        Ok(Page { hits, next })
    }

    fn hit(
        &self,
        searcher: &tantivy::Searcher,
        key: KeyNum,
        addr: DocAddress,
    ) -> Result<Hit, BackendError> {
        let doc: TantivyDocument = searcher.doc(addr).map_err(index_err)?;
        let source = doc
            .get_first(self.index.fields().source)
            .and_then(|v| v.as_bytes())
            .unwrap_or(b"{}");
        let record = serde_json::from_slice(source).map_err(index_err)?;
        Ok(Hit {
            record,
            key: key.into(),
        })
    }

    fn histogram(
        &self,
        req: &HistogramRequest,
        cancel: &Cancel,
    ) -> Result<Vec<Bucket>, BackendError> {
        let interval = req.interval_ns.max(1);
        let first = req.range.start_ns.div_euclid(interval) * interval;
        let n = if req.range.end_ns <= req.range.start_ns {
            0
        } else {
            ((req.range.end_ns - 1 - first).div_euclid(interval) + 1) as usize
        };
        if n > 100_000 {
            return Err(BackendError::Index(format!(
                "{n} histogram buckets is too many"
            )));
        }
        let searcher = self.reader.searcher();
        let plan = self.plan(&searcher, &req.expr, Some(req.range), None, cancel)?;
        let collector = LevelHistogram {
            first,
            interval,
            n,
            post: plan.post.clone(),
        };
        let counts = searcher
            .search(&*plan.query, &collector)
            .map_err(index_err)?;
        Ok(counts
            .into_iter()
            .enumerate()
            .map(|(i, c)| Bucket {
                start_ns: first + i as i64 * interval,
                counts: c
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(l, n)| (level_name(l).to_string(), *n))
                    .collect(),
            })
            .collect())
    }

    fn values(
        &self,
        req: &ValuesRequest,
        cancel: &Cancel,
    ) -> Result<Vec<ValueCount>, BackendError> {
        let (column, strip) = match &req.field {
            Field::Namespace => ("namespace", String::new()),
            Field::Pod => ("pod", String::new()),
            Field::Container => ("container", String::new()),
            Field::Workload => ("workload", String::new()),
            Field::Node => ("node", String::new()),
            Field::Cluster => ("cluster", String::new()),
            Field::Stream => ("stream", String::new()),
            Field::Level => ("lvl", String::new()),
            Field::Label(k) => ("labels", format!("{k}=")),
            other => {
                return Err(BackendError::BadField {
                    field: other.qualifier(),
                });
            }
        };
        let searcher = self.reader.searcher();
        let plan = self.plan(&searcher, &req.expr, Some(req.range), None, cancel)?;
        let collector = ValueCounts {
            column,
            post: plan.post.clone(),
        };
        let counts = searcher
            .search(&*plan.query, &collector)
            .map_err(index_err)?;
        let prefix = format!("{strip}{}", req.prefix);
        let mut out: Vec<ValueCount> = counts
            .into_iter()
            .filter(|(v, _)| v.starts_with(&prefix))
            .map(|(v, count)| ValueCount {
                value: v[strip.len()..].to_string(),
                count,
            })
            .collect();
        // Most frequent first, then by value: the order of an Elasticsearch terms aggregation.
        out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        out.truncate(req.limit);
        Ok(out)
    }

    fn get(
        &self,
        event_id: &str,
        restrict: &Expr,
        cancel: &Cancel,
    ) -> Result<Option<Hit>, BackendError> {
        let f = self.index.fields();
        let searcher = self.reader.searcher();
        let plan = self.plan(&searcher, restrict, None, None, cancel)?;
        let by_id = TermQuery::new(
            tantivy::Term::from_field_text(f.id, event_id),
            IndexRecordOption::Basic,
        );
        let q = BooleanQuery::new(vec![
            (Occur::Must, plan.query),
            (Occur::Must, Box::new(by_id)),
        ]);
        let searcher = self.reader.searcher();
        let collector = TopKeys {
            limit: 1,
            order: Order::Desc,
            after: None,
            post: plan.post,
        };
        let top = searcher.search(&q, &collector).map_err(index_err)?;
        top.into_iter()
            .next()
            .map(|(key, addr)| self.hit(&searcher, key, addr))
            .transpose()
    }
}

/// The records an exact query matches: every record of a segment when the query is `All`
/// (the range held everything) and nothing was deleted, else tantivy's count of the segment.
fn count(searcher: &tantivy::Searcher, query: &dyn Query) -> tantivy::Result<u64> {
    let all = query.is::<AllQuery>();
    let weight = query.weight(tantivy::query::EnableScoring::disabled_from_searcher(
        searcher,
    ))?;
    let mut total = 0u64;
    for seg in searcher.segment_readers() {
        total += u64::from(if all && seg.alive_bitset().is_none() {
            seg.num_docs()
        } else {
            weight.count(seg)?
        });
    }
    Ok(total)
}

/// The page of an exact query, segment by segment from the newest (or, ascending, the oldest):
/// records are indexed roughly in time order, so segments seldom overlap in time, and once the
/// page is full a segment wholly past its worst timestamp cannot improve it.
fn top_by_segment(
    searcher: &tantivy::Searcher,
    query: &dyn Query,
    collector: &TopKeys,
) -> tantivy::Result<Vec<(KeyNum, DocAddress)>> {
    let weight = query.weight(tantivy::query::EnableScoring::disabled_from_searcher(
        searcher,
    ))?;
    let desc = collector.order == Order::Desc;
    let mut segs = Vec::with_capacity(searcher.segment_readers().len());
    for (ord, seg) in searcher.segment_readers().iter().enumerate() {
        if seg.num_docs() == 0 {
            continue;
        }
        let ts = seg.fast_fields().i64("ts")?;
        segs.push((ord as SegmentOrdinal, seg, ts.min_value(), ts.max_value()));
    }
    if desc {
        segs.sort_by_key(|s| std::cmp::Reverse(s.3));
    } else {
        segs.sort_by_key(|s| s.2);
    }
    let mut best: Vec<(KeyNum, DocAddress)> = Vec::new();
    for (ord, seg, min, max) in segs {
        if collector.limit > 0
            && best.len() >= collector.limit
            && let Some((worst, _)) = best.last()
            && (if desc { max < worst.ts } else { min > worst.ts })
        {
            break;
        }
        best.extend(collector.collect_segment(&*weight, ord, seg)?);
        best = collector.merge_fruits(vec![best])?;
    }
    Ok(best)
}

/// Whether the range holds every record the searcher sees: then it needs no range query (the
/// common "everything" view, where the range query would cost a walk of every record).
fn covers_everything(searcher: &tantivy::Searcher, r: TimeRange) -> bool {
    searcher.segment_readers().iter().all(|seg| {
        seg.num_docs() == 0
            || seg
                .fast_fields()
                .i64("ts")
                .is_ok_and(|c| c.min_value() >= r.start_ns && c.max_value() < r.end_ns)
    })
}

fn level_name(l: usize) -> &'static str {
    match l {
        0 => "none",
        n => nevermore_index::LEVELS
            .get(n - 1)
            .copied()
            .unwrap_or("none"),
    }
}

fn ts_range(f: &Fields, lo: Bound<i64>, hi: Bound<i64>) -> Box<dyn Query> {
    let t = |b: Bound<i64>| match b {
        Bound::Included(v) => Bound::Included(tantivy::Term::from_field_i64(f.ts, v)),
        Bound::Excluded(v) => Bound::Excluded(tantivy::Term::from_field_i64(f.ts, v)),
        Bound::Unbounded => Bound::Unbounded,
    };
    Box::new(RangeQuery::new(t(lo), t(hi)))
}

/// Lowers an expression; the flag says whether the query is exact (else a superset that the
/// evaluator must check).
fn lower(expr: &Expr, f: &Fields, g: &Grep) -> Result<(Box<dyn Query>, bool), BackendError> {
    Ok(match expr {
        Expr::All => (Box::new(AllQuery), true),
        // A conjunction or disjunction of supersets is a superset: exact only if every part is.
        Expr::And { args } | Expr::Or { args } => {
            let occur = if matches!(expr, Expr::And { .. }) {
                Occur::Must
            } else {
                Occur::Should
            };
            let mut exact = true;
            let mut clauses = Vec::with_capacity(args.len());
            for a in args {
                let (q, e) = lower(a, f, g)?;
                exact &= e;
                clauses.push((occur, q));
            }
            (Box::new(BooleanQuery::new(clauses)), exact)
        }
        Expr::Not { arg } => match lower(arg, f, g)? {
            (q, true) => (
                Box::new(BooleanQuery::new(vec![
                    (Occur::Must, Box::new(AllQuery)),
                    (Occur::MustNot, q),
                ])),
                true,
            ),
            // The complement of a superset is no superset of the complement.
            (_, false) => (Box::new(AllQuery), false),
        },
        Expr::Term(t) => lower_term(t, f, g)?,
    })
}

fn term_q(field: tantivy::schema::Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        tantivy::Term::from_field_text(field, text),
        IndexRecordOption::Basic,
    ))
}

fn regex_q(field: tantivy::schema::Field, pattern: &str) -> Result<Box<dyn Query>, BackendError> {
    Ok(Box::new(
        RegexQuery::from_pattern(pattern, field).map_err(index_err)?,
    ))
}

fn lower_term(t: &AstTerm, f: &Fields, g: &Grep) -> Result<(Box<dyn Query>, bool), BackendError> {
    let keyword = |field: &Field| -> Option<(tantivy::schema::Field, String)> {
        Some(match field {
            Field::Namespace => (f.namespace, String::new()),
            Field::Pod => (f.pod, String::new()),
            Field::Container => (f.container, String::new()),
            Field::Node => (f.node, String::new()),
            Field::Cluster => (f.cluster, String::new()),
            Field::Stream => (f.stream, String::new()),
            Field::Workload => (f.workload, String::new()),
            Field::Level => (f.level, String::new()),
            Field::Label(k) => (f.labels, format!("{k}=")),
            Field::Message | Field::Time => return None,
        })
    };
    match (&t.field, &t.pred) {
        (_, Pred::Exists) => Ok(match &t.field {
            Field::Message | Field::Time => (Box::new(AllQuery), true),
            other => (term_q(f.present, &other.qualifier()), true),
        }),
        (Field::Message, Pred::Word { value } | Pred::Phrase { value }) => {
            let terms: Vec<tantivy::Term> = nevermore_lang::message_terms(value)
                .iter()
                .map(|w| tantivy::Term::from_field_text(f.message, w))
                .collect();
            Ok(match terms.len() {
                // Nothing to look up (`--`): Elasticsearch's match query matches nothing too.
                0 => (Box::new(EmptyQuery), true),
                1 => (
                    Box::new(TermQuery::new(terms[0].clone(), IndexRecordOption::Basic)),
                    true,
                ),
                _ => (Box::new(PhraseQuery::new(terms)), true),
            })
        }
        // Grep-like matches need the line itself: the candidates are the records holding the
        // whole words the pattern cannot match without, each checked against its message.
        (Field::Message, Pred::Glob { pattern }) => {
            let pieces: Vec<String> = pattern
                .split(['*', '?'])
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            let regex = nevermore_lang::glob_to_regex(pattern);
            Ok((
                g.query(required_words(f, &pieces, true), &regex, true)?,
                true,
            ))
        }
        (
            Field::Message,
            Pred::Regex {
                pattern,
                case_insensitive,
            },
        ) => Ok((
            g.query(
                required_words(f, &regex_literals(pattern), *case_insensitive),
                pattern,
                *case_insensitive,
            )?,
            true,
        )),
        (Field::Message, _) => Ok((Box::new(AllQuery), false)),
        (Field::Time, Pred::Compare { op, value }) => {
            let v = time_value(value)?;
            let (lo, hi) = match op {
                CmpOp::Gt => (Bound::Excluded(v), Bound::Unbounded),
                CmpOp::Ge => (Bound::Included(v), Bound::Unbounded),
                CmpOp::Lt => (Bound::Unbounded, Bound::Excluded(v)),
                CmpOp::Le => (Bound::Unbounded, Bound::Included(v)),
            };
            Ok((ts_range(f, lo, hi), true))
        }
        (Field::Time, Pred::Range { from, to }) => {
            let lo = from.as_deref().map(time_value).transpose()?;
            let hi = to.as_deref().map(time_value).transpose()?;
            Ok((
                ts_range(
                    f,
                    lo.map_or(Bound::Unbounded, Bound::Included),
                    hi.map_or(Bound::Unbounded, Bound::Included),
                ),
                true,
            ))
        }
        (Field::Time, _) => Err(BackendError::Index(
            "time takes a comparison or a range".into(),
        )),
        (Field::Level, Pred::Compare { .. } | Pred::Range { .. }) => {
            let levels = level_set(&t.pred);
            let terms = levels
                .iter()
                .map(|l| tantivy::Term::from_field_text(f.level, l));
            Ok((Box::new(TermSetQuery::new(terms)), true))
        }
        (field, pred) => {
            let Some((tf, prefix)) = keyword(field) else {
                return Ok((Box::new(AllQuery), false));
            };
            Ok(match pred {
                Pred::Word { value } | Pred::Phrase { value } => {
                    (term_q(tf, &format!("{prefix}{value}")), true)
                }
                Pred::Glob { pattern } => {
                    let re = nevermore_lang::glob_to_regex(pattern);
                    (
                        regex_q(tf, &format!("{}{re}", regex_escape(&prefix)))?,
                        true,
                    )
                }
                Pred::Regex {
                    pattern,
                    case_insensitive,
                } => {
                    let flags = if *case_insensitive { "(?i)" } else { "" };
                    (
                        regex_q(
                            tf,
                            &format!("{}{flags}(?:{pattern})", regex_escape(&prefix)),
                        )?,
                        true,
                    )
                }
                Pred::Compare { op, value } => {
                    let term =
                        |v: &str| tantivy::Term::from_field_text(tf, &format!("{prefix}{v}"));
                    let (lo, hi) = match op {
                        CmpOp::Gt => (Bound::Excluded(term(value)), label_end(tf, &prefix)),
                        CmpOp::Ge => (Bound::Included(term(value)), label_end(tf, &prefix)),
                        CmpOp::Lt => (label_start(tf, &prefix), Bound::Excluded(term(value))),
                        CmpOp::Le => (label_start(tf, &prefix), Bound::Included(term(value))),
                    };
                    (Box::new(RangeQuery::new(lo, hi)) as Box<dyn Query>, true)
                }
                Pred::Range { from, to } => {
                    let term =
                        |v: &str| tantivy::Term::from_field_text(tf, &format!("{prefix}{v}"));
                    let lo = from
                        .as_deref()
                        .map_or_else(|| label_start(tf, &prefix), |v| Bound::Included(term(v)));
                    let hi = to
                        .as_deref()
                        .map_or_else(|| label_end(tf, &prefix), |v| Bound::Included(term(v)));
                    (Box::new(RangeQuery::new(lo, hi)) as Box<dyn Query>, true)
                }
                Pred::Exists => (Box::new(AllQuery) as Box<dyn Query>, true),
            })
        }
    }
}

/// A query for records whose message holds every whole word inside the given literal pieces:
/// a word counts only when the piece shows both of its ends (a non-alphanumeric character
/// before and after it), since a pattern matches anywhere and the piece's first and last words
/// may be parts of longer words in the line.
///
/// Matching without case folds letters by Unicode, where a few fold together but lowercase
/// apart (`ſ` and `s`, `ς` and `σ`): such a pattern requires only ASCII words without an `s`.
fn required_words(f: &Fields, pieces: &[String], case_insensitive: bool) -> Box<dyn Query> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for piece in pieces {
        for (start, end) in nevermore_lang::message_tokens(piece) {
            let bounded_before = piece[..start].chars().next_back().is_some();
            let bounded_after = piece[end..].chars().next().is_some();
            let raw = &piece[start..end];
            let folds_apart = case_insensitive
                && (!raw.is_ascii() || raw.bytes().any(|b| b.eq_ignore_ascii_case(&b's')));
            if bounded_before && bounded_after && !folds_apart {
                let word: String = raw.chars().flat_map(char::to_lowercase).collect();
                clauses.push((Occur::Must, term_q(f.message, &word)));
            }
        }
    }
    if clauses.is_empty() {
        Box::new(AllQuery)
    } else {
        Box::new(BooleanQuery::new(clauses))
    }
}

/// The literal runs a regex cannot match without: the literal parts of its top-level
/// concatenation (ignoring case: the index is lowercased anyway).
fn regex_literals(pattern: &str) -> Vec<String> {
    use regex_syntax::hir::{Hir, HirKind};
    let Ok(hir) = regex_syntax::ParserBuilder::new().build().parse(pattern) else {
        return Vec::new();
    };
    fn unwrap_captures(h: &Hir) -> &Hir {
        match h.kind() {
            HirKind::Capture(c) => unwrap_captures(&c.sub),
            _ => h,
        }
    }
    let top = unwrap_captures(&hir);
    let parts: Vec<&Hir> = match top.kind() {
        HirKind::Concat(parts) => parts.iter().collect(),
        _ => vec![top],
    };
    let mut out = Vec::new();
    let mut run = String::new();
    for p in parts {
        match unwrap_captures(p).kind() {
            HirKind::Literal(lit) => run.push_str(&String::from_utf8_lossy(&lit.0)),
            _ => {
                if !run.is_empty() {
                    out.push(std::mem::take(&mut run));
                }
            }
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// The lower end of a keyword range: for a label, its `key=` prefix (ranges never leave the key).
fn label_start(tf: tantivy::schema::Field, prefix: &str) -> Bound<tantivy::Term> {
    if prefix.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Included(tantivy::Term::from_field_text(tf, prefix))
    }
}

/// `key=` … `key>`: `>` is the character after `=`.
fn label_end(tf: tantivy::schema::Field, prefix: &str) -> Bound<tantivy::Term> {
    match prefix.strip_suffix('=') {
        None => Bound::Unbounded,
        Some(key) => Bound::Excluded(tantivy::Term::from_field_text(tf, &format!("{key}>"))),
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A `time:` value in nanoseconds, clamped to what the index holds (`time:<3000-01-01` means
/// "everything", as the evaluator has it).
fn time_value(v: &str) -> Result<i64, BackendError> {
    nevermore_lang::parse_timestamp(v)
        .map(|ns| ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
        .ok_or_else(|| BackendError::Index(format!("bad time {v}")))
}

/// The levels a comparison or range on `level` selects, in severity order.
fn level_set(pred: &Pred) -> Vec<&'static str> {
    let rank = |v: &str| nevermore_lang::LEVELS.iter().position(|l| *l == v);
    let all = nevermore_lang::LEVELS;
    let (lo, hi) = match pred {
        Pred::Compare { op, value } => {
            let Some(r) = rank(value) else {
                return Vec::new();
            };
            match op {
                CmpOp::Gt => (r + 1, all.len()),
                CmpOp::Ge => (r, all.len()),
                CmpOp::Lt => (0, r),
                CmpOp::Le => (0, r + 1),
            }
        }
        Pred::Range { from, to } => {
            let lo = match from.as_deref() {
                None => 0,
                Some(v) => match rank(v) {
                    Some(r) => r,
                    None => return Vec::new(),
                },
            };
            let hi = match to.as_deref() {
                None => all.len(),
                Some(v) => match rank(v) {
                    Some(r) => r + 1,
                    None => return Vec::new(),
                },
            };
            (lo, hi)
        }
        _ => return Vec::new(),
    };
    if lo >= hi {
        return Vec::new();
    }
    all[lo..hi].to_vec()
}

/// A sort key as numbers: the stream id's 16 hex digits as the u64 they spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct KeyNum {
    ts: i64,
    sid: u64,
    seq: u64,
}

impl TryFrom<SortKey> for KeyNum {
    type Error = BackendError;
    fn try_from(k: SortKey) -> Result<Self, BackendError> {
        Ok(KeyNum {
            ts: k.ts_ns,
            sid: u64::from_str_radix(&k.stream_id, 16).map_err(|_| BackendError::BadCursor)?,
            seq: k.seq,
        })
    }
}

impl From<KeyNum> for SortKey {
    fn from(k: KeyNum) -> SortKey {
        SortKey {
            ts_ns: k.ts,
            stream_id: format!("{:016x}", k.sid),
            seq: k.seq,
        }
    }
}

/// Checks candidates of an inexact plan against the stored record.
struct PostFilter {
    check: Arc<Check>,
    store: StoreReader,
    source: tantivy::schema::Field,
}

impl PostFilter {
    fn new(
        matcher: &Option<Arc<Check>>,
        seg: &SegmentReader,
    ) -> tantivy::Result<Option<PostFilter>> {
        let Some(m) = matcher else { return Ok(None) };
        let source = seg.schema().get_field("source")?;
        Ok(Some(PostFilter {
            check: m.clone(),
            store: seg.get_store_reader(64)?,
            source,
        }))
    }

    fn keep(&self, doc: DocId) -> bool {
        if self.check.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let Ok(d) = self.store.get::<TantivyDocument>(doc) else {
            return false;
        };
        let Some(bytes) = d.get_first(self.source).and_then(|v| v.as_bytes()) else {
            return false;
        };
        let Some(doc) = LiteDoc::parse(bytes) else {
            return false;
        };
        self.check.matcher.matches(&doc)
    }
}

fn keep(post: &Option<PostFilter>, doc: DocId) -> bool {
    post.as_ref().is_none_or(|p| p.keep(doc))
}

/// The first `limit` records after `after` in `order`, by (timestamp, stream, sequence).
struct TopKeys {
    limit: usize,
    order: Order,
    after: Option<KeyNum>,
    post: Option<Arc<Check>>,
}

/// A record kept by timestamp alone, ordered so that the heap's top is the one to evict (the
/// worst kept). The stream id and sequence are read only for the records kept at the end.
#[derive(PartialEq, Eq)]
struct ByTs {
    ts: i64,
    doc: DocId,
    desc: bool,
}

impl Ord for ByTs {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Desc keeps the largest timestamps: the worst is the smallest, so it compares greatest.
        if self.desc {
            other.ts.cmp(&self.ts)
        } else {
            self.ts.cmp(&other.ts)
        }
    }
}

impl PartialOrd for ByTs {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

struct TopKeysSegment {
    seg: SegmentOrdinal,
    ts: Column<i64>,
    sid: Column<u64>,
    seq: Column<u64>,
    limit: usize,
    desc: bool,
    after: Option<KeyNum>,
    /// The best `limit` records by timestamp.
    heap: BinaryHeap<ByTs>,
    /// Records whose timestamp equals the worst kept one but found no room: the stream id and
    /// sequence decide among them and the heap's worst at harvest. Cleared when the worst kept
    /// timestamp moves past theirs.
    ties: Vec<DocId>,
    ties_ts: i64,
    post: Option<PostFilter>,
    /// Every record has a timestamp value (blocks can be read at once).
    dense: bool,
    buf: Vec<i64>,
}

impl Collector for TopKeys {
    type Fruit = Vec<(KeyNum, DocAddress)>;
    type Child = TopKeysSegment;

    fn for_segment(
        &self,
        seg: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<TopKeysSegment> {
        let ff = reader.fast_fields();
        let ts = ff.i64("ts")?;
        Ok(TopKeysSegment {
            seg,
            dense: matches!(ts.index, ColumnIndex::Full),
            buf: Vec::new(),
            ts,
            sid: ff.u64("sid")?,
            seq: ff.u64("seq")?,
            limit: self.limit,
            desc: self.order == Order::Desc,
            after: self.after,
            heap: BinaryHeap::with_capacity(self.limit.min(10_000) + 1),
            ties: Vec::new(),
            ties_ts: 0,
            post: PostFilter::new(&self.post, reader)?,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        let mut all: Vec<(KeyNum, DocAddress)> = fruits.into_iter().flatten().collect();
        if self.order == Order::Desc {
            all.sort_by_key(|a| std::cmp::Reverse(a.0));
        } else {
            all.sort_by_key(|a| a.0);
        }
        all.truncate(self.limit);
        Ok(all)
    }
}

impl SegmentCollector for TopKeysSegment {
    type Fruit = Vec<(KeyNum, DocAddress)>;

    fn collect(&mut self, doc: DocId, _: Score) {
        let ts = self.ts.first(doc).unwrap_or(0);
        self.collect_at(doc, ts);
    }

    /// Timestamps of a whole block in one call (the column is dense: every record has one).
    fn collect_block(&mut self, docs: &[DocId]) {
        if !self.dense {
            for d in docs {
                self.collect(*d, 0.0);
            }
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(docs.len(), 0);
        self.ts.values.get_vals(docs, &mut buf);
        for (d, ts) in docs.iter().zip(&buf) {
            self.collect_at(*d, *ts);
        }
        self.buf = buf;
    }

    fn harvest(self) -> Self::Fruit {
        let docs = self
            .heap
            .iter()
            .map(|r| r.doc)
            .chain(self.ties.iter().copied());
        docs.map(|doc| (self.key(doc), DocAddress::new(self.seg, doc)))
            .collect()
    }
}

impl TopKeysSegment {
    fn key(&self, doc: DocId) -> KeyNum {
        KeyNum {
            ts: self.ts.first(doc).unwrap_or(0),
            sid: self.sid.first(doc).unwrap_or(0),
            seq: self.seq.first(doc).unwrap_or(0),
        }
    }

    /// Whether timestamp `a` ranks strictly after `b` in the requested order.
    fn worse(&self, a: i64, b: i64) -> bool {
        if self.desc { a < b } else { a > b }
    }

    fn collect_at(&mut self, doc: DocId, ts: i64) {
        if self.limit == 0 {
            return;
        }
        if let Some(a) = self.after {
            if self.worse(a.ts, ts) {
                return;
            }
            // Same timestamp as the cursor: the full key decides.
            if ts == a.ts {
                let k = self.key(doc);
                if (self.desc && k >= a) || (!self.desc && k <= a) {
                    return;
                }
            }
        }
        // The timestamp alone decides most records; a record that cannot enter the page is
        // never loaded for the post-filter.
        if self.heap.len() >= self.limit
            && let Some(worst) = self.heap.peek().map(|w| w.ts)
        {
            if self.worse(ts, worst) {
                return;
            }
            if ts == worst {
                if keep(&self.post, doc) {
                    if !self.ties.is_empty() && self.ties_ts != worst {
                        self.ties.clear();
                    }
                    self.ties_ts = worst;
                    self.ties.push(doc);
                }
                return;
            }
        }
        if !keep(&self.post, doc) {
            return;
        }
        self.heap.push(ByTs {
            ts,
            doc,
            desc: self.desc,
        });
        if self.heap.len() > self.limit
            && let Some(out) = self.heap.pop()
            && let Some(worst) = self.heap.peek().map(|w| w.ts)
        {
            if !self.ties.is_empty() && self.ties_ts != worst {
                self.ties.clear();
            }
            if out.ts == worst {
                self.ties_ts = worst;
                self.ties.push(out.doc);
            }
        }
    }
}

/// A page and the count of every record that matches: the post-filter, when there is one, runs
/// once per record for both.
struct Counted(TopKeys);

struct CountedSegment {
    top: TopKeysSegment,
    post: Option<PostFilter>,
    count: u64,
}

impl Collector for Counted {
    type Fruit = (Vec<(KeyNum, DocAddress)>, u64);
    type Child = CountedSegment;

    fn for_segment(
        &self,
        seg: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<CountedSegment> {
        let mut top = self.0.for_segment(seg, reader)?;
        // The page sees only records that passed the filter here.
        let post = top.post.take();
        Ok(CountedSegment {
            top,
            post,
            count: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        let total = fruits.iter().map(|(_, n)| n).sum();
        let tops = fruits.into_iter().map(|(t, _)| t).collect();
        Ok((self.0.merge_fruits(tops)?, total))
    }
}

impl SegmentCollector for CountedSegment {
    type Fruit = (Vec<(KeyNum, DocAddress)>, u64);

    fn collect(&mut self, doc: DocId, score: Score) {
        if keep(&self.post, doc) {
            self.count += 1;
            self.top.collect(doc, score);
        }
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        if self.post.is_some() {
            for d in docs {
                self.collect(*d, 0.0);
            }
        } else {
            self.count += docs.len() as u64;
            self.top.collect_block(docs);
        }
    }

    fn harvest(self) -> Self::Fruit {
        (self.top.harvest(), self.count)
    }
}

/// Record counts per time bucket and level (index 0 = no level).
struct LevelHistogram {
    first: i64,
    interval: i64,
    n: usize,
    post: Option<Arc<Check>>,
}

struct LevelHistogramSegment {
    first: i64,
    interval: i64,
    ts: Column<i64>,
    lvl: Column<u64>,
    counts: Vec<[u64; 7]>,
    post: Option<PostFilter>,
    /// Every record has a timestamp and a level ordinal (blocks can be read at once).
    dense: bool,
    ts_buf: Vec<i64>,
    lvl_buf: Vec<u64>,
}

impl Collector for LevelHistogram {
    type Fruit = Vec<[u64; 7]>;
    type Child = LevelHistogramSegment;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        let ff = reader.fast_fields();
        let (ts, lvl) = (ff.i64("ts")?, ff.u64("lvl")?);
        Ok(LevelHistogramSegment {
            first: self.first,
            interval: self.interval,
            dense: matches!(ts.index, ColumnIndex::Full) && matches!(lvl.index, ColumnIndex::Full),
            ts_buf: Vec::new(),
            lvl_buf: Vec::new(),
            ts,
            lvl,
            counts: vec![[0; 7]; self.n],
            post: PostFilter::new(&self.post, reader)?,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        let mut total = vec![[0u64; 7]; self.n];
        for f in fruits {
            for (t, c) in total.iter_mut().zip(f) {
                for (a, b) in t.iter_mut().zip(c) {
                    *a += b;
                }
            }
        }
        Ok(total)
    }
}

impl SegmentCollector for LevelHistogramSegment {
    type Fruit = Vec<[u64; 7]>;

    fn collect_block(&mut self, docs: &[DocId]) {
        if !self.dense || self.post.is_some() {
            for d in docs {
                self.collect(*d, 0.0);
            }
            return;
        }
        let (mut ts, mut lvl) = (
            std::mem::take(&mut self.ts_buf),
            std::mem::take(&mut self.lvl_buf),
        );
        ts.resize(docs.len(), 0);
        lvl.resize(docs.len(), 0);
        self.ts.values.get_vals(docs, &mut ts);
        self.lvl.values.get_vals(docs, &mut lvl);
        for (t, l) in ts.iter().zip(&lvl) {
            let b = (t - self.first).div_euclid(self.interval);
            if let Some(slot) = usize::try_from(b).ok().and_then(|b| self.counts.get_mut(b)) {
                slot[(*l).min(6) as usize] += 1;
            }
        }
        self.ts_buf = ts;
        self.lvl_buf = lvl;
    }

    fn collect(&mut self, doc: DocId, _: Score) {
        let Some(ts) = self.ts.first(doc) else { return };
        let b = (ts - self.first).div_euclid(self.interval);
        let Some(slot) = usize::try_from(b).ok().and_then(|b| self.counts.get_mut(b)) else {
            return;
        };
        if !keep(&self.post, doc) {
            return;
        }
        let l = self.lvl.first(doc).unwrap_or(0).min(6) as usize;
        slot[l] += 1;
    }

    fn harvest(self) -> Self::Fruit {
        self.counts
    }
}

/// Counts of each value of a keyword fast field among the matching records.
struct ValueCounts {
    column: &'static str,
    post: Option<Arc<Check>>,
}

enum ValueColumn {
    Str(StrColumn),
    Level(Column<u64>),
    Missing,
}

struct ValueCountsSegment {
    column: ValueColumn,
    counts: HashMap<u64, u64>,
    post: Option<PostFilter>,
}

impl Collector for ValueCounts {
    type Fruit = BTreeMap<String, u64>;
    type Child = ValueCountsSegment;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        let ff = reader.fast_fields();
        let column = if self.column == "lvl" {
            ValueColumn::Level(ff.u64("lvl")?)
        } else {
            ff.str(self.column)?
                .map_or(ValueColumn::Missing, ValueColumn::Str)
        };
        Ok(ValueCountsSegment {
            column,
            counts: HashMap::new(),
            post: PostFilter::new(&self.post, reader)?,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        let mut total = BTreeMap::new();
        for f in fruits {
            for (v, n) in f {
                *total.entry(v).or_insert(0) += n;
            }
        }
        Ok(total)
    }
}

impl SegmentCollector for ValueCountsSegment {
    type Fruit = BTreeMap<String, u64>;

    fn collect(&mut self, doc: DocId, _: Score) {
        if matches!(self.column, ValueColumn::Missing) || !keep(&self.post, doc) {
            return;
        }
        match &self.column {
            ValueColumn::Str(c) => {
                for ord in c.term_ords(doc) {
                    *self.counts.entry(ord).or_insert(0) += 1;
                }
            }
            ValueColumn::Level(c) => {
                if let Some(l) = c.first(doc).filter(|l| *l > 0) {
                    *self.counts.entry(l).or_insert(0) += 1;
                }
            }
            ValueColumn::Missing => {}
        }
    }

    fn harvest(self) -> Self::Fruit {
        let mut out = BTreeMap::new();
        let mut s = String::new();
        for (ord, n) in self.counts {
            match &self.column {
                ValueColumn::Str(c) => {
                    s.clear();
                    if c.ord_to_str(ord, &mut s).unwrap_or(false) {
                        out.insert(s.clone(), n);
                    }
                }
                ValueColumn::Level(_) => {
                    out.insert(level_name(ord as usize).to_string(), n);
                }
                ValueColumn::Missing => {}
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nevermore_index::{IndexDoc, Retention, Writer};

    /// A search whose caller gave up reads no more records: the post-filter rejects them.
    /// One segment of records at timestamps `0..messages.len()` with these messages.
    fn index_of(dir: &std::path::Path, messages: &[&str]) -> EmbeddedBackend {
        let index = LogIndex::open(dir).unwrap();
        let mut w = Writer::new(index.clone(), 20_000_000, Retention::default()).unwrap();
        for (i, message) in messages.iter().enumerate() {
            let id = format!("{i}");
            let source =
                serde_json::json!({"@timestamp": "1970-01-01T00:00:00Z", "message": message});
            let source = serde_json::to_vec(&source).unwrap();
            w.add(&IndexDoc {
                ts_ns: i as i64,
                stream_id: 1,
                seq: i as u64,
                event_id: &id,
                message,
                level: None,
                stream: None,
                namespace: None,
                pod: None,
                container: None,
                workload: None,
                node: "n",
                cluster: "c",
                dataset: "d",
                labels: Vec::new(),
                source: &source,
            })
            .unwrap();
        }
        w.commit().unwrap();
        EmbeddedBackend::new(index).unwrap()
    }

    /// A grep clause joins the time range's intersection: records outside the range are never
    /// read, even when the pattern matches nothing before the range.
    #[test]
    fn a_narrow_range_reads_only_its_own_messages() {
        let dir = tempfile::tempdir().unwrap();
        let mut messages = vec!["timeout after xs"; 900];
        messages.extend(["timeout after 5s"; 100]);
        let backend = index_of(dir.path(), &messages);
        for q in ["/after [0-9]s/", "namespace:x,y,z /after [0-9]s/ -stream:q"] {
            let expr = nevermore_lang::parse_strict(q, &nevermore_lang::Limits::default()).unwrap();
            let expr = if q.starts_with("namespace") {
                // Keep the records (they have no namespace): only the shape of the query counts.
                let Expr::And { args } = expr else {
                    panic!("{q}")
                };
                Expr::And {
                    args: args[1..].to_vec(),
                }
            } else {
                expr
            };
            let req = SearchRequest {
                expr,
                range: TimeRange {
                    start_ns: 950,
                    end_ns: 1000,
                },
                limit: 10,
                order: Order::Desc,
                after: None,
                stream: None,
            };
            let (page, n) = backend
                .inner
                .search_counted(&req, &Cancel::default())
                .unwrap();
            assert_eq!((page.hits.len(), n), (10, 50), "{q}");
            assert!(
                backend.inner.verdicts.checked() <= 51,
                "{q}: {}",
                backend.inner.verdicts.checked()
            );
        }
    }

    #[test]
    fn a_cancelled_search_stops_reading_records() {
        let dir = tempfile::tempdir().unwrap();
        let backend = index_of(dir.path(), &["timeout after 5s"; 100]);
        let expr =
            nevermore_lang::parse_strict("/after [0-9]s/", &nevermore_lang::Limits::default())
                .unwrap();
        let req = SearchRequest {
            expr,
            range: TimeRange {
                start_ns: 0,
                end_ns: 1000,
            },
            limit: 10,
            order: Order::Desc,
            after: None,
            stream: None,
        };
        let gone = Cancel::new(std::sync::atomic::AtomicBool::new(true));
        let (page, n) = backend.inner.search_counted(&req, &gone).unwrap();
        assert_eq!((page.hits.len(), n), (0, 0));
        // Nothing a cancelled search skipped was remembered as a non-match.
        let live = Cancel::default();
        let (page, n) = backend.inner.search_counted(&req, &live).unwrap();
        assert_eq!((page.hits.len(), n), (10, 100));
        // What is remembered costs nothing to read, cancelled or not.
        let (page, n) = backend.inner.search_counted(&req, &gone).unwrap();
        assert_eq!((page.hits.len(), n), (10, 100));
    }
}
