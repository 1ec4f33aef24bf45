//! Log storage backends behind one interface: the embedded tantivy index and Elasticsearch.
//!
//! The HTTP layer never sees a backend's query language: it hands over an [`Expr`] (already ANDed
//! with the caller's tenancy restriction) and a time range, and gets records back in the one
//! total order of records: `(@timestamp, event.stream_id, event.sequence)`.

pub mod elasticsearch;
pub mod embedded;
mod grep;
pub mod record_doc;

use nevermore_lang::{Expr, Field};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[start_ns, end_ns)` in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start_ns: i64,
    pub end_ns: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Newest first (the default of a search).
    #[default]
    Desc,
    Asc,
}

/// The position of a record in the total order of records.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SortKey {
    pub ts_ns: i64,
    pub stream_id: String,
    pub seq: u64,
}

/// Where the next page starts: strictly after `key` in the request's order. `pit` is an
/// Elasticsearch point-in-time id (the embedded index needs none: a page is read from one
/// searcher generation and later commits only add records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub key: SortKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pit: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub expr: Expr,
    pub range: TimeRange,
    pub limit: usize,
    pub order: Order,
    pub after: Option<Cursor>,
    /// Only records of this stream (`event.stream_id`): the context view.
    pub stream: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Hit {
    /// The record exactly as stored (the LogRecord JSON).
    pub record: serde_json::Value,
    pub key: SortKey,
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub hits: Vec<Hit>,
    /// Present when the page is full (there may be more).
    pub next: Option<Cursor>,
}

#[derive(Debug, Clone)]
pub struct HistogramRequest {
    pub expr: Expr,
    pub range: TimeRange,
    /// Bucket width; buckets start at multiples of it since the epoch.
    pub interval_ns: i64,
}

/// One histogram bucket: record counts by `log.level` (`none` for records without a level).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub start_ns: i64,
    pub counts: BTreeMap<String, u64>,
}

#[derive(Debug, Clone)]
pub struct ValuesRequest {
    pub field: Field,
    pub prefix: String,
    /// Restricts the records whose values are counted (tenancy, and the user's other filters).
    pub expr: Expr,
    pub range: TimeRange,
    pub limit: usize,
}

/// A value of a field and how many records in the range carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValueCount {
    pub value: String,
    pub count: u64,
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("index: {0}")]
    Index(String),
    #[error("elasticsearch {endpoint}: {message}")]
    Elasticsearch { endpoint: String, message: String },
    #[error("elasticsearch {endpoint} answered {status}: {body}")]
    ElasticsearchStatus {
        endpoint: String,
        status: u16,
        body: String,
    },
    #[error("the cursor is invalid or expired")]
    BadCursor,
    #[error("field {field} cannot be listed")]
    BadField { field: String },
    #[error("histogram interval {interval_ns} ns: {reason}")]
    BadInterval {
        interval_ns: i64,
        reason: &'static str,
    },
}

/// The configured backend. An enum, not a trait object: there are two, and both are async.
#[derive(Debug)]
pub enum Backend {
    Embedded(embedded::EmbeddedBackend),
    Elasticsearch(elasticsearch::EsBackend),
}

impl Backend {
    pub async fn search(&self, req: SearchRequest) -> Result<Page, BackendError> {
        match self {
            Backend::Embedded(b) => b.search(req).await,
            Backend::Elasticsearch(b) => b.search(req).await,
        }
    }

    /// A page and the exact number of records the query matches in the range (the first page
    /// of a search). The embedded index counts in the same pass over the records; Elasticsearch
    /// counts with a histogram beside the search (exact, unlike `track_total_hits` past its
    /// limit).
    pub async fn search_counted(&self, req: SearchRequest) -> Result<(Page, u64), BackendError> {
        match self {
            Backend::Embedded(b) => b.search_counted(req).await,
            Backend::Elasticsearch(b) => {
                let count = HistogramRequest {
                    expr: req.expr.clone(),
                    range: req.range,
                    interval_ns: coarse_interval(req.range),
                };
                let (page, buckets) = tokio::join!(b.search(req), b.histogram(count));
                let total = buckets?.iter().flat_map(|b| b.counts.values()).sum();
                Ok((page?, total))
            }
        }
    }

    pub async fn histogram(&self, req: HistogramRequest) -> Result<Vec<Bucket>, BackendError> {
        match self {
            Backend::Embedded(b) => b.histogram(req).await,
            Backend::Elasticsearch(b) => b.histogram(req).await,
        }
    }

    pub async fn values(&self, req: ValuesRequest) -> Result<Vec<ValueCount>, BackendError> {
        match self {
            Backend::Embedded(b) => b.values(req).await,
            Backend::Elasticsearch(b) => b.values(req).await,
        }
    }

    /// The record with this `event.id`, if `restrict` matches it (tenancy).
    pub async fn get(&self, event_id: &str, restrict: &Expr) -> Result<Option<Hit>, BackendError> {
        match self {
            Backend::Embedded(b) => b.get(event_id, restrict).await,
            Backend::Elasticsearch(b) => b.get(event_id, restrict).await,
        }
    }
}

/// A whole number of milliseconds giving at most about 100 buckets over the range: a histogram
/// only for counting.
fn coarse_interval(range: TimeRange) -> i64 {
    const MS: i64 = 1_000_000;
    let span = range.end_ns.saturating_sub(range.start_ns).max(1);
    (span / 100 / MS + 1).saturating_mul(MS)
}
