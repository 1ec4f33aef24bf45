//! Elasticsearch (8.x) and OpenSearch as a search backend, over plain HTTP.
//!
//! Written against the documented Elasticsearch 8 API; the OpenSearch dialect differs only in the
//! point-in-time endpoints (detected once from `GET /` `version.distribution`). The index is
//! expected to follow `schemas/elasticsearch/index-template.json`.
//!
//! Time ranges are exact to the nanosecond on every server: the range filter sent is widened to
//! whole milliseconds and the edges are settled here, because noida-db (an Elasticsearch 8.15
//! API server) rounds `date_nanos` range bounds to milliseconds. Search hits outside the range
//! are dropped; histogram and facet counts of the edge slivers are subtracted.

use super::{
    BackendError, Bucket, Cursor, HistogramRequest, Hit, Order, Page, SearchRequest, SortKey,
    TimeRange, ValueCount, ValuesRequest,
};
use nevermore_lang::{Expr, Field, es::to_dsl};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

const NS_PER_MS: i64 = 1_000_000;
/// How long a point in time lives between two pages.
const PIT_KEEP_ALIVE: &str = "1m";
/// At most this many histogram buckets in one answer.
const MAX_BUCKETS: i64 = 10_000;
/// Error bodies are cut to this many bytes in errors.
const MAX_ERROR_BODY: usize = 2000;

/// Credentials for every request.
#[derive(Clone)]
pub enum EsAuth {
    Basic {
        username: String,
        password: String,
    },
    Bearer {
        token: String,
    },
    /// An Elasticsearch API key (`Authorization: ApiKey <base64 id:key>`).
    ApiKey {
        key: String,
    },
}

impl std::fmt::Debug for EsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        match self {
            EsAuth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            EsAuth::Bearer { .. } => f.write_str("Bearer(<redacted>)"),
            EsAuth::ApiKey { .. } => f.write_str("ApiKey(<redacted>)"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EsTimeouts {
    pub connect: Duration,
    /// The whole request, answer included.
    pub request: Duration,
}

impl Default for EsTimeouts {
    fn default() -> Self {
        EsTimeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
        }
    }
}

/// Which dialect the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Elasticsearch,
    OpenSearch,
}

#[derive(Debug)]
pub struct EsBackend {
    client: reqwest::Client,
    /// Base URLs without a trailing slash; requests fail over from one to the next.
    endpoints: Vec<String>,
    index: String,
    auth: Option<EsAuth>,
    flavour: OnceCell<Flavour>,
    next_endpoint: AtomicUsize,
}

/// What a search page needs back from the server.
struct RawHit {
    source: Value,
    key: SortKey,
    /// The sort values past our three (the point in time's implicit tiebreaker).
    tail: Vec<Value>,
}

impl EsBackend {
    pub fn new(
        endpoints: Vec<String>,
        index_pattern: String,
        auth: Option<EsAuth>,
        timeouts: EsTimeouts,
    ) -> Result<Self, BackendError> {
        if endpoints.is_empty() {
            return Err(BackendError::Elasticsearch {
                endpoint: String::new(),
                message: "no endpoint configured".into(),
            });
        }
        let mut clean = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let trimmed = endpoint.trim_end_matches('/').to_string();
            if let Err(e) = reqwest::Url::parse(&trimmed) {
                return Err(BackendError::Elasticsearch {
                    endpoint,
                    message: format!("not a url: {e}"),
                });
            }
            clean.push(trimmed);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .build()
            .map_err(|e| BackendError::Elasticsearch {
                endpoint: clean[0].clone(),
                message: format!("http client: {e}"),
            })?;
        Ok(EsBackend {
            client,
            endpoints: clean,
            index: index_pattern,
            auth,
            flavour: OnceCell::new(),
            next_endpoint: AtomicUsize::new(0),
        })
    }

    pub async fn search(&self, req: SearchRequest) -> Result<Page, BackendError> {
        let (pit_id, mut search_after) = match &req.after {
            Some(cursor) => {
                let (pit, tail) = decode_pit(cursor.pit.as_deref())?;
                let mut after = vec![
                    json!(cursor.key.ts_ns),
                    json!(cursor.key.stream_id),
                    json!(cursor.key.seq),
                ];
                after.extend(tail);
                (pit, Some(after))
            }
            None => (Some(self.open_pit().await?), None),
        };
        let mut pit_id = pit_id;
        let mut filter = vec![to_dsl(&req.expr), range_filter(widen(req.range))];
        if let Some(stream) = &req.stream {
            filter.push(json!({"term": {"event.stream_id": stream}}));
        }
        let query = json!({"bool": {"filter": filter}});
        let dir = match req.order {
            Order::Desc => "desc",
            Order::Asc => "asc",
        };
        let mut hits: Vec<(Hit, Vec<Value>)> = Vec::with_capacity(req.limit);
        let mut exhausted = false;
        while hits.len() < req.limit {
            let size = req.limit - hits.len();
            let mut body = json!({
                "size": size,
                "query": query,
                "sort": sort_spec(dir),
                "track_total_hits": false,
            });
            if let Some(after) = &search_after {
                body["search_after"] = Value::Array(after.clone());
            }
            let path = match &pit_id {
                Some(id) => {
                    body["pit"] = json!({"id": id, "keep_alive": PIT_KEEP_ALIVE});
                    "/_search".to_string()
                }
                None => format!("/{}/_search", self.index),
            };
            let resp = self
                .send(reqwest::Method::POST, &path, Some(&body))
                .await
                .map_err(|e| {
                    if req.after.is_some() {
                        cursor_error(e)
                    } else {
                        e
                    }
                })?;
            // The server may hand out a new id for the same point in time.
            if let Some(id) = resp.get("pit_id").and_then(Value::as_str) {
                pit_id = Some(id.to_string());
            }
            let raw = parse_hits(&resp)?;
            let got = raw.len();
            let mut past_range = false;
            for hit in raw {
                search_after = Some(sort_values(&hit));
                let ts = hit.key.ts_ns;
                if ts >= req.range.start_ns && ts < req.range.end_ns {
                    hits.push((
                        Hit {
                            record: hit.source,
                            key: hit.key,
                        },
                        hit.tail,
                    ));
                    if hits.len() == req.limit {
                        break;
                    }
                } else if (req.order == Order::Desc && ts < req.range.start_ns)
                    || (req.order == Order::Asc && ts >= req.range.end_ns)
                {
                    // Sorted by time: everything after this is outside the range too.
                    past_range = true;
                    break;
                }
            }
            if past_range || got < size {
                exhausted = true;
                break;
            }
        }
        let full = hits.len() == req.limit && !exhausted;
        let next = if full {
            hits.last().map(|(hit, tail)| Cursor {
                key: hit.key.clone(),
                pit: pit_id.as_deref().map(|id| encode_pit(id, tail)),
            })
        } else {
            if let Some(id) = &pit_id {
                self.close_pit(id).await;
            }
            None
        };
        Ok(Page {
            hits: hits.into_iter().map(|(h, _)| h).collect(),
            next,
        })
    }

    pub async fn histogram(&self, req: HistogramRequest) -> Result<Vec<Bucket>, BackendError> {
        let interval = req.interval_ns;
        if interval <= 0 || interval % NS_PER_MS != 0 {
            return Err(BackendError::BadInterval {
                interval_ns: interval,
                reason: "not a positive multiple of 1 ms",
            });
        }
        let range = req.range;
        if range.end_ns <= range.start_ns {
            return Ok(Vec::new());
        }
        let first = range.start_ns.div_euclid(interval) * interval;
        let n = (range.end_ns - 1 - first).div_euclid(interval) + 1;
        if n > MAX_BUCKETS {
            return Err(BackendError::BadInterval {
                interval_ns: interval,
                reason: "too many buckets for the range",
            });
        }
        let wide = widen(range);
        let body = json!({
            "size": 0,
            "track_total_hits": false,
            "query": {"bool": {"filter": [to_dsl(&req.expr), range_filter(wide)]}},
            "aggs": {"t": {
                "date_histogram": {
                    "field": "@timestamp",
                    "fixed_interval": format!("{}ms", interval / NS_PER_MS),
                    "min_doc_count": 1,
                },
                "aggs": {"l": {"terms": {"field": "log.level", "missing": "none", "size": 16}}},
            }},
        });
        let resp = self
            .send(
                reqwest::Method::POST,
                &format!("/{}/_search", self.index),
                Some(&body),
            )
            .await?;
        let mut counts: Vec<BTreeMap<String, i64>> = vec![BTreeMap::new(); n as usize];
        let buckets = resp
            .pointer("/aggregations/t/buckets")
            .and_then(Value::as_array)
            .ok_or_else(|| self.bad_answer("no histogram buckets"))?;
        for bucket in buckets {
            let key_ms = bucket
                .get("key")
                .and_then(|k| k.as_i64().or_else(|| k.as_f64().map(|f| f as i64)))
                .ok_or_else(|| self.bad_answer("histogram bucket without a key"))?;
            let slot = (key_ms * NS_PER_MS - first).div_euclid(interval);
            let Some(c) = usize::try_from(slot).ok().and_then(|s| counts.get_mut(s)) else {
                // The widened range reaches at most one bucket past either end: nothing to keep.
                continue;
            };
            let total = bucket.get("doc_count").and_then(Value::as_i64).unwrap_or(0);
            let mut counted = 0;
            let levels = bucket.pointer("/l/buckets").and_then(Value::as_array);
            for level in levels.into_iter().flatten() {
                let (Some(name), Some(count)) = (
                    level.get("key").and_then(Value::as_str),
                    level.get("doc_count").and_then(Value::as_i64),
                ) else {
                    continue;
                };
                *c.entry(name.to_string()).or_default() += count;
                counted += count;
            }
            // A record has at most one level: the rest have none. noida-db ignores the terms
            // aggregation's `missing`, so the "none" bucket is not relied on.
            if total > counted {
                *c.entry("none".to_string()).or_default() += total - counted;
            }
        }
        for (ts, record) in self.edge_records(&req.expr, range, wide).await? {
            let slot = (ts - first).div_euclid(interval);
            if let Some(c) = usize::try_from(slot).ok().and_then(|s| counts.get_mut(s)) {
                let level = record
                    .pointer("/log/level")
                    .and_then(Value::as_str)
                    .unwrap_or("none");
                *c.entry(level.to_string()).or_default() -= 1;
            }
        }
        Ok(counts
            .into_iter()
            .enumerate()
            .map(|(i, c)| Bucket {
                start_ns: first + i as i64 * interval,
                counts: c
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(l, n)| (l, n as u64))
                    .collect(),
            })
            .collect())
    }

    pub async fn values(&self, req: ValuesRequest) -> Result<Vec<ValueCount>, BackendError> {
        if matches!(req.field, Field::Message | Field::Time) {
            return Err(BackendError::BadField {
                field: req.field.qualifier(),
            });
        }
        let path = req.field.path();
        let wide = widen(req.range);
        let edges = self.edge_records(&req.expr, req.range, wide).await?;
        let mut terms = json!({
            "field": path,
            // Edge records may push values out of the top `limit`: ask for as many more.
            "size": req.limit + edges.len(),
            "order": [{"_count": "desc"}, {"_key": "asc"}],
        });
        if !req.prefix.is_empty() {
            terms["include"] = json!(format!("{}.*", escape_regex(&req.prefix)));
        }
        let body = json!({
            "size": 0,
            "track_total_hits": false,
            "query": {"bool": {"filter": [to_dsl(&req.expr), range_filter(wide)]}},
            "aggs": {"v": {"terms": terms}},
        });
        let resp = self
            .send(
                reqwest::Method::POST,
                &format!("/{}/_search", self.index),
                Some(&body),
            )
            .await?;
        let buckets = resp
            .pointer("/aggregations/v/buckets")
            .and_then(Value::as_array)
            .ok_or_else(|| self.bad_answer("no terms buckets"))?;
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for b in buckets {
            let key = match b.get("key") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => continue,
            };
            let n = b.get("doc_count").and_then(Value::as_i64).unwrap_or(0);
            counts.insert(key, n);
        }
        for (_, record) in &edges {
            if let Some(c) = record_value(record, &req.field).and_then(|v| counts.get_mut(&v)) {
                *c -= 1;
            }
        }
        let mut out: Vec<ValueCount> = counts
            .into_iter()
            .filter(|(v, n)| *n > 0 && v.starts_with(&req.prefix))
            .map(|(value, n)| ValueCount {
                value,
                count: n as u64,
            })
            .collect();
        // Most frequent first, then by value (the embedded index's order too).
        out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        out.truncate(req.limit);
        Ok(out)
    }

    pub async fn get(&self, event_id: &str, restrict: &Expr) -> Result<Option<Hit>, BackendError> {
        let body = json!({
            "size": 1,
            "track_total_hits": false,
            "query": {"bool": {"filter": [
                {"term": {"event.id": event_id}},
                to_dsl(restrict),
            ]}},
            "sort": sort_spec("desc"),
        });
        let resp = self
            .send(
                reqwest::Method::POST,
                &format!("/{}/_search", self.index),
                Some(&body),
            )
            .await?;
        Ok(parse_hits(&resp)?.into_iter().next().map(|h| Hit {
            record: h.source,
            key: h.key,
        }))
    }

    /// The records of `expr` in the widened range but outside the exact one, with their times.
    async fn edge_records(
        &self,
        expr: &Expr,
        exact: TimeRange,
        wide: TimeRange,
    ) -> Result<Vec<(i64, Value)>, BackendError> {
        let mut out = Vec::new();
        let slivers = [
            TimeRange {
                start_ns: wide.start_ns,
                end_ns: exact.start_ns,
            },
            TimeRange {
                start_ns: exact.end_ns,
                end_ns: wide.end_ns,
            },
        ];
        for sliver in slivers {
            if sliver.end_ns <= sliver.start_ns {
                continue;
            }
            // A sliver is under a millisecond: rarely more than a handful of records.
            let mut after: Option<Vec<Value>> = None;
            loop {
                let mut body = json!({
                    "size": 1000,
                    "track_total_hits": false,
                    "query": {"bool": {"filter": [to_dsl(expr), range_filter(widen(sliver))]}},
                    "sort": sort_spec("asc"),
                });
                if let Some(a) = &after {
                    body["search_after"] = Value::Array(a.clone());
                }
                let resp = self
                    .send(
                        reqwest::Method::POST,
                        &format!("/{}/_search", self.index),
                        Some(&body),
                    )
                    .await?;
                let raw = parse_hits(&resp)?;
                let got = raw.len();
                for hit in raw {
                    after = Some(sort_values(&hit));
                    if hit.key.ts_ns >= sliver.start_ns && hit.key.ts_ns < sliver.end_ns {
                        out.push((hit.key.ts_ns, hit.source));
                    }
                }
                if got < 1000 {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn flavour(&self) -> Result<Flavour, BackendError> {
        self.flavour
            .get_or_try_init(|| async {
                let root = self.send(reqwest::Method::GET, "/", None).await?;
                let distribution = root
                    .pointer("/version/distribution")
                    .and_then(Value::as_str);
                Ok(if distribution == Some("opensearch") {
                    Flavour::OpenSearch
                } else {
                    Flavour::Elasticsearch
                })
            })
            .await
            .copied()
    }

    async fn open_pit(&self) -> Result<String, BackendError> {
        let path = match self.flavour().await? {
            Flavour::Elasticsearch => format!("/{}/_pit?keep_alive={PIT_KEEP_ALIVE}", self.index),
            Flavour::OpenSearch => {
                format!(
                    "/{}/_search/point_in_time?keep_alive={PIT_KEEP_ALIVE}",
                    self.index
                )
            }
        };
        let resp = self.send(reqwest::Method::POST, &path, None).await?;
        resp.get("id")
            .or_else(|| resp.get("pit_id"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| self.bad_answer("point in time without an id"))
    }

    /// Best effort: an unclosed point in time expires after its keep-alive anyway.
    async fn close_pit(&self, id: &str) {
        let result = match self.flavour().await {
            Ok(Flavour::Elasticsearch) => {
                self.send(reqwest::Method::DELETE, "/_pit", Some(&json!({"id": id})))
                    .await
            }
            Ok(Flavour::OpenSearch) => {
                let body = json!({"pit_id": [id]});
                self.send(
                    reqwest::Method::DELETE,
                    "/_search/point_in_time",
                    Some(&body),
                )
                .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "closing a point in time failed");
        }
    }

    /// One request, failing over to the next endpoint when one cannot be reached. An answer
    /// with an error status is final.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, BackendError> {
        let start = self.next_endpoint.load(Ordering::Relaxed);
        let mut last_err = None;
        for i in 0..self.endpoints.len() {
            let idx = (start + i) % self.endpoints.len();
            let endpoint = &self.endpoints[idx];
            let mut rb = self
                .client
                .request(method.clone(), format!("{endpoint}{path}"))
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(body) = body {
                rb = rb.json(body);
            }
            rb = match &self.auth {
                Some(EsAuth::Basic { username, password }) => {
                    rb.basic_auth(username, Some(password))
                }
                Some(EsAuth::Bearer { token }) => rb.bearer_auth(token),
                Some(EsAuth::ApiKey { key }) => {
                    rb.header(reqwest::header::AUTHORIZATION, format!("ApiKey {key}"))
                }
                None => rb,
            };
            let resp = match rb.send().await {
                Ok(resp) => resp,
                Err(e) => {
                    last_err = Some(BackendError::Elasticsearch {
                        endpoint: endpoint.clone(),
                        message: e.to_string(),
                    });
                    // Start with a healthier endpoint next time.
                    self.next_endpoint.store(idx + 1, Ordering::Relaxed);
                    continue;
                }
            };
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| BackendError::Elasticsearch {
                    endpoint: endpoint.clone(),
                    message: format!("reading the answer: {e}"),
                })?;
            if !status.is_success() {
                let mut text = String::from_utf8_lossy(&bytes).into_owned();
                if text.len() > MAX_ERROR_BODY {
                    let mut cut = MAX_ERROR_BODY;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                }
                return Err(BackendError::ElasticsearchStatus {
                    endpoint: endpoint.clone(),
                    status: status.as_u16(),
                    body: text,
                });
            }
            return serde_json::from_slice(&bytes).map_err(|e| BackendError::Elasticsearch {
                endpoint: endpoint.clone(),
                message: format!("answer is not json: {e}"),
            });
        }
        Err(last_err.unwrap_or_else(|| self.bad_answer("no endpoint")))
    }

    fn bad_answer(&self, message: &str) -> BackendError {
        BackendError::Elasticsearch {
            endpoint: self.endpoints.join(","),
            message: message.to_string(),
        }
    }
}

/// An expired or unknown point in time is the client's stale cursor, not a server fault.
fn cursor_error(e: BackendError) -> BackendError {
    match &e {
        // Elasticsearch: 404 search_context_missing; OpenSearch (osmem-server): 400 "invalid id",
        // or 500 unsupported_version_exception for an id that decodes to garbage.
        BackendError::ElasticsearchStatus { status, body, .. }
            if *status == 404 && body.contains("search_context_missing")
                || *status == 400 && body.contains("invalid id")
                || *status == 500 && body.contains("unsupported_version_exception") =>
        {
            BackendError::BadCursor
        }
        _ => e,
    }
}

/// `(@timestamp, event.stream_id, event.sequence)`: the one total order of records.
fn sort_spec(dir: &str) -> Value {
    json!([
        {"@timestamp": {"order": dir}},
        {"event.stream_id": {"order": dir}},
        {"event.sequence": {"order": dir}},
    ])
}

fn sort_values(hit: &RawHit) -> Vec<Value> {
    let mut v = vec![
        json!(hit.key.ts_ns),
        json!(hit.key.stream_id),
        json!(hit.key.seq),
    ];
    v.extend(hit.tail.iter().cloned());
    v
}

fn parse_hits(resp: &Value) -> Result<Vec<RawHit>, BackendError> {
    let bad = |message: &str| BackendError::Elasticsearch {
        endpoint: String::new(),
        message: message.to_string(),
    };
    let hits = resp
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("answer without hits"))?;
    hits.iter()
        .map(|h| {
            let sort = h
                .get("sort")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("hit without sort values"))?;
            let ts_ns = sort
                .first()
                .and_then(Value::as_i64)
                .ok_or_else(|| bad("hit without a timestamp sort value"))?;
            let stream_id = sort
                .get(1)
                .and_then(Value::as_str)
                .ok_or_else(|| bad("hit without event.stream_id"))?;
            let seq = sort
                .get(2)
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("hit without event.sequence"))?;
            let source = h
                .get("_source")
                .cloned()
                .ok_or_else(|| bad("hit without _source"))?;
            Ok(RawHit {
                source,
                key: SortKey {
                    ts_ns,
                    stream_id: stream_id.to_string(),
                    seq,
                },
                tail: sort.iter().skip(3).cloned().collect(),
            })
        })
        .collect()
}

/// The range to send: whole milliseconds around the exact one (see the module docs).
fn widen(range: TimeRange) -> TimeRange {
    let start_ns = range.start_ns.div_euclid(NS_PER_MS) * NS_PER_MS;
    // Saturating: "until the end of time" is `i64::MAX`.
    let end_ns = (range.end_ns.div_euclid(NS_PER_MS) * NS_PER_MS).saturating_add(
        if range.end_ns.rem_euclid(NS_PER_MS) == 0 {
            0
        } else {
            NS_PER_MS
        },
    );
    TimeRange { start_ns, end_ns }
}

/// `date_nanos` holds 1970 to 2262: a bound at or past either end is left open (some servers
/// reject a bound they cannot represent).
fn range_filter(range: TimeRange) -> Value {
    let mut bounds = serde_json::Map::new();
    if range.start_ns > 0 {
        bounds.insert(
            "gte".into(),
            nevermore_index::format_ts(range.start_ns).into(),
        );
    }
    if range.end_ns < i64::MAX - NS_PER_MS {
        bounds.insert("lt".into(), nevermore_index::format_ts(range.end_ns).into());
    }
    json!({"range": {"@timestamp": bounds}})
}

/// The cursor's `pit` is the point-in-time id, then `|` and the JSON of the tiebreaker sort
/// values when the server added any (ids are base64 and never hold `|`).
fn encode_pit(id: &str, tail: &[Value]) -> String {
    if tail.is_empty() {
        id.to_string()
    } else {
        format!("{id}|{}", Value::Array(tail.to_vec()))
    }
}

fn decode_pit(pit: Option<&str>) -> Result<(Option<String>, Vec<Value>), BackendError> {
    let Some(pit) = pit else {
        return Ok((None, Vec::new()));
    };
    match pit.split_once('|') {
        None => Ok((Some(pit.to_string()), Vec::new())),
        Some((id, tail)) => match serde_json::from_str::<Value>(tail) {
            Ok(Value::Array(values)) => Ok((Some(id.to_string()), values)),
            _ => Err(BackendError::BadCursor),
        },
    }
}

/// The value of a listable field in a stored record.
fn record_value(record: &Value, field: &Field) -> Option<String> {
    let v = match field {
        Field::Label(key) => record.pointer("/kubernetes/labels")?.get(key)?,
        other => {
            let pointer: String = other.path().split('.').map(|p| format!("/{p}")).collect();
            record.pointer(&pointer)?
        }
    };
    v.as_str().map(str::to_string)
}

/// A Lucene regular expression matching `text` literally.
fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if !c.is_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_widen_to_whole_milliseconds() {
        let r = widen(TimeRange {
            start_ns: 1_500_001,
            end_ns: 3_000_000,
        });
        assert_eq!(
            r,
            TimeRange {
                start_ns: 1_000_000,
                end_ns: 3_000_000
            }
        );
        let r = widen(TimeRange {
            start_ns: 2_000_000,
            end_ns: 3_000_001,
        });
        assert_eq!(
            r,
            TimeRange {
                start_ns: 2_000_000,
                end_ns: 4_000_000
            }
        );
    }

    #[test]
    fn pit_round_trips_through_the_cursor() {
        assert_eq!(decode_pit(None).ok(), Some((None, vec![])));
        let enc = encode_pit("abc=", &[json!(7)]);
        assert_eq!(
            decode_pit(Some(&enc)).ok(),
            Some((Some("abc=".into()), vec![json!(7)]))
        );
        assert_eq!(
            decode_pit(Some("abc")).ok(),
            Some((Some("abc".into()), vec![]))
        );
        assert!(matches!(
            decode_pit(Some("abc|{")),
            Err(BackendError::BadCursor)
        ));
    }

    #[test]
    fn regex_escape_is_literal() {
        assert_eq!(escape_regex("api-7d.x"), "api\\-7d\\.x");
        assert_eq!(escape_regex("zoë"), "zoë");
    }
}
