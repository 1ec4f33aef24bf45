//! The search API (axum). The only module that sees HTTP.
//!
//! Every endpoint ANDs the caller's namespace restriction (tenancy) into the query on the server
//! side before a backend sees it; errors share one JSON shape with a stable `code`; each request
//! has a deadline and the number in flight is bounded (over it: 429).

mod dashboards;
mod prom;

pub use prom::format_value;

use crate::config::ServeConfig;
use crate::logs::{
    Backend, BackendError, Cursor, HistogramRequest, Order, SearchRequest, SortKey, TimeRange,
    ValuesRequest,
};
use crate::metrics::Metrics;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use nevermore_lang::{Expr, Field, Limits, Pred, Span, Term};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Shared by every request.
#[derive(Debug)]
pub struct AppState {
    pub backend: Backend,
    pub metrics: Metrics,
    pub cfg: ServeConfig,
    pub limits: Limits,
    inflight: Arc<Semaphore>,
    /// Live tails are long: they have their own limit (as many as requests in flight).
    tails: Arc<Semaphore>,
}

impl AppState {
    pub fn new(backend: Backend, metrics: Metrics, cfg: ServeConfig) -> Arc<AppState> {
        Arc::new(AppState {
            metrics,
            inflight: Arc::new(Semaphore::new(cfg.max_in_flight)),
            tails: Arc::new(Semaphore::new(cfg.max_in_flight)),
            backend,
            cfg,
            limits: Limits::default(),
        })
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/", get(ui))
        .route("/api/v1/logs/search", get(search))
        .route("/api/v1/logs/histogram", get(histogram))
        .route("/api/v1/logs/fields/{field}/values", get(values))
        .route("/api/v1/logs/context", get(context))
        .route("/api/v1/logs/tail", get(tail))
        .route("/api/v1/logs/parse", get(parse))
        .merge(prom::routes())
        .merge(dashboards::routes())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .with_state(state)
}

/// The web UI: one page (log search and the dashboards) over the APIs above, compiled in.
async fn ui() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("ui/index.html"))
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The one error shape: `{"error": {"code": "...", "message": "...", "start": n, "end": n}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    span: Option<Span>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            span: None,
        }
    }

    fn bad_param(name: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_parameter",
            format!("{name}: {message}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(s) = self.span {
            body["start"] = json!(s.start);
            body["end"] = json!(s.end);
        }
        let mut resp = (self.status, Json(json!({ "error": body }))).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> ApiError {
        match e {
            BackendError::BadCursor => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_cursor", e.to_string())
            }
            BackendError::BadField { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_field", e.to_string())
            }
            other => {
                tracing::warn!(error = %other, "backend error");
                ApiError::new(StatusCode::BAD_GATEWAY, "backend", other.to_string())
            }
        }
    }
}

type Params = Query<HashMap<String, String>>;

/// Runs a handler body under the in-flight limit and the request deadline.
async fn guarded<T>(
    st: &AppState,
    f: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let Ok(_permit) = st.inflight.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many requests in flight, retry shortly",
        ));
    };
    match tokio::time::timeout(st.cfg.request_timeout, f).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the request took longer than {} ms",
                st.cfg.request_timeout.as_millis()
            ),
        )),
    }
}

/// The namespaces the caller may see: `None` = all (no tenants configured).
fn tenant_namespaces(
    st: &AppState,
    headers: &HeaderMap,
) -> Result<Option<std::collections::BTreeSet<String>>, ApiError> {
    if st.cfg.tenants.is_empty() {
        return Ok(None);
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a bearer token is required",
            )
        })?;
    let tenant = st
        .cfg
        .tenants
        .iter()
        .find(|t| constant_time_eq(t.token.as_bytes(), token.as_bytes()))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token"))?;
    Ok(Some(tenant.namespaces.clone()))
}

/// The caller's namespace restriction as a search expression (`All` without tenants).
fn restriction(st: &AppState, headers: &HeaderMap) -> Result<Expr, ApiError> {
    let Some(namespaces) = tenant_namespaces(st, headers)? else {
        return Ok(Expr::All);
    };
    let terms: Vec<Expr> = namespaces
        .iter()
        .map(|ns| {
            Expr::Term(Term {
                field: Field::Namespace,
                pred: Pred::Word { value: ns.clone() },
                span: Span { start: 0, end: 0 },
            })
        })
        .collect();
    Ok(or(terms))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn or(mut args: Vec<Expr>) -> Expr {
    match args.len() {
        0 => Expr::All,
        1 => args.pop().unwrap_or(Expr::All),
        _ => Expr::Or { args },
    }
}

/// `restrict AND user`, keeping the AST's normal form.
fn and(restrict: Expr, user: Expr) -> Expr {
    match (restrict, user) {
        (Expr::All, u) => u,
        (r, Expr::All) => r,
        (r, Expr::And { mut args }) => {
            args.insert(0, r);
            Expr::And { args }
        }
        (r, u) => Expr::And { args: vec![r, u] },
    }
}

fn user_query(st: &AppState, params: &HashMap<String, String>) -> Result<Expr, ApiError> {
    let q = params.get("q").map(String::as_str).unwrap_or("");
    let expr = nevermore_lang::parse_strict(q, &st.limits).map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "bad_query",
        message: e.to_string(),
        span: Some(e.span),
    })?;
    // A regex within the parser's limits can still compile past the size the engines accept
    // (nested repetitions): that is the query's fault, not the backend's.
    if let Err(e) = nevermore_lang::Matcher::new(&expr) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            e.to_string(),
        ));
    }
    Ok(expr)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The latest time a request may name: the end of `i64` nanoseconds (year 2262), less a day of
/// headroom for bucket arithmetic.
const MAX_TIME_NS: i64 = i64::MAX - 86_400_000_000_000;

/// `RFC 3339`, unix seconds (`1764151200`, `1764151200.5`), `now`, or `now-15m` (s, m, h, d),
/// between 1970 and 2262.
fn parse_time(name: &str, v: &str, now: i64) -> Result<i64, ApiError> {
    let t = parse_time_unchecked(name, v, now)?;
    if !(0..=MAX_TIME_NS).contains(&t) {
        return Err(ApiError::bad_param(
            name,
            format!("`{v}` is outside 1970-01-01..2262-04-10"),
        ));
    }
    Ok(t)
}

fn parse_time_unchecked(name: &str, v: &str, now: i64) -> Result<i64, ApiError> {
    let v = v.trim();
    if v == "now" {
        return Ok(now);
    }
    if let Some(rel) = v.strip_prefix("now-") {
        let (num, unit) =
            rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let n: i64 = num
            .parse()
            .map_err(|_| ApiError::bad_param(name, format!("`{v}` is not a time")))?;
        let unit_ns: i64 = match unit {
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => {
                return Err(ApiError::bad_param(
                    name,
                    format!("`{v}`: the unit must be s, m, h or d"),
                ));
            }
        };
        return Ok(now.saturating_sub(n.saturating_mul(unit_ns)));
    }
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs.abs() < 1e11
    {
        return Ok((secs * 1e9) as i64);
    }
    nevermore_index::parse_ts(v).ok_or_else(|| {
        ApiError::bad_param(
            name,
            format!("`{v}` is not RFC 3339, unix seconds, `now` or `now-<n><s|m|h|d>`"),
        )
    })
}

/// The range when both ends are given as absolute times (not `now`-relative), else `None`.
fn absolute_range(params: &HashMap<String, String>) -> Result<Option<TimeRange>, ApiError> {
    let (Some(s), Some(e)) = (params.get("start"), params.get("end")) else {
        return Ok(None);
    };
    if s.trim().starts_with("now") || e.trim().starts_with("now") {
        return Ok(None);
    }
    time_range(params).map(Some)
}

fn time_range(params: &HashMap<String, String>) -> Result<TimeRange, ApiError> {
    let now = now_ns();
    let end = match params.get("end") {
        Some(v) => parse_time("end", v, now)?,
        None => now,
    };
    let start = match params.get("start") {
        Some(v) => parse_time("start", v, now)?,
        None => end.saturating_sub(3_600_000_000_000).max(0),
    };
    if start >= end {
        return Err(ApiError::bad_param("start", "must be before end"));
    }
    Ok(TimeRange {
        start_ns: start,
        end_ns: end,
    })
}

fn param_usize(
    params: &HashMap<String, String>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => {
            let n: usize = v
                .parse()
                .map_err(|_| ApiError::bad_param(name, "must be a non-negative integer"))?;
            if n > max {
                return Err(ApiError::bad_param(name, format!("must be at most {max}")));
            }
            Ok(n)
        }
    }
}

/// Bucket widths a person reads easily.
const NICE_INTERVALS_S: [i64; 22] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400,
    172_800, 604_800, 2_592_000, 31_536_000,
];

/// The smallest nice interval that gives at most `max_buckets` buckets over the range.
pub fn auto_interval(range: TimeRange, max_buckets: i64) -> i64 {
    let span = (range.end_ns - range.start_ns).max(1);
    for s in NICE_INTERVALS_S {
        let ns = s * 1_000_000_000;
        if span / ns <= max_buckets {
            return ns;
        }
    }
    span
}

/// What a cursor token carries between pages.
#[derive(Serialize, Deserialize)]
struct CursorToken {
    #[serde(rename = "k")]
    key: SortKey,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pit: Option<String>,
    #[serde(rename = "t")]
    total: u64,
    #[serde(rename = "o")]
    order: Order,
    /// The range the total was counted for: a cursor is only valid for its own range.
    #[serde(rename = "r")]
    range: (i64, i64),
}

fn encode_cursor(c: &CursorToken) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode_cursor(s: &str) -> Result<CursorToken, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_cursor",
            "the cursor is invalid",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

fn parse_order(params: &HashMap<String, String>) -> Result<Order, ApiError> {
    match params.get("order").map(String::as_str) {
        None | Some("desc") => Ok(Order::Desc),
        Some("asc") => Ok(Order::Asc),
        Some(_) => Err(ApiError::bad_param("order", "must be asc or desc")),
    }
}

fn highlights(expr: &Expr, hits: &[crate::logs::Hit]) -> Vec<Vec<(usize, usize)>> {
    hits.iter()
        .map(|h| {
            let msg = h
                .record
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("");
            nevermore_lang::eval::highlight(expr, msg)
        })
        .collect()
}

async fn search(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    guarded(&st, async {
        let restrict = restriction(&st, &headers)?;
        let user = user_query(&st, &p)?;
        let limit = param_usize(&p, "limit", 100, st.cfg.max_page_size)?;
        let mut order = parse_order(&p)?;
        let cursor = p.get("cursor").map(|c| decode_cursor(c)).transpose()?;
        // A cursor pages through the range its first page had: relative times (`now-1h`, the
        // default) would otherwise move under it. An explicit absolute range must be that one.
        let range = match &cursor {
            None => time_range(&p)?,
            Some(c) => {
                let range = TimeRange {
                    start_ns: c.range.0,
                    end_ns: c.range.1,
                };
                if let Some(asked) = absolute_range(&p)?
                    && asked != range
                {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_cursor",
                        "the cursor belongs to another time range",
                    ));
                }
                order = c.order;
                range
            }
        };
        let expr = and(restrict, user.clone());
        let req = SearchRequest {
            expr: expr.clone(),
            range,
            limit,
            order,
            after: cursor.as_ref().map(|c| Cursor {
                key: c.key.clone(),
                pit: c.pit.clone(),
            }),
            stream: None,
        };
        let (page, total) = match &cursor {
            Some(c) => (st.backend.search(req).await?, c.total),
            None => st.backend.search_counted(req).await?,
        };
        let next = page.next.map(|c| {
            encode_cursor(&CursorToken {
                key: c.key,
                pit: c.pit,
                total,
                order,
                range: (range.start_ns, range.end_ns),
            })
        });
        let hl = highlights(&user, &page.hits);
        let hits: Vec<Value> = page.hits.into_iter().map(|h| h.record).collect();
        Ok(Json(
            json!({"hits": hits, "highlights": hl, "next": next, "total": total}),
        ))
    })
    .await
}

async fn histogram(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    guarded(&st, async {
        let restrict = restriction(&st, &headers)?;
        let user = user_query(&st, &p)?;
        let range = time_range(&p)?;
        let interval_ns = match p.get("interval") {
            Some(v) => {
                let ms: i64 = v.parse().ok().filter(|ms| *ms > 0).ok_or_else(|| {
                    ApiError::bad_param("interval", "must be a positive number of milliseconds")
                })?;
                let ns = ms.saturating_mul(1_000_000);
                if (range.end_ns - range.start_ns) / ns > 10_000 {
                    return Err(ApiError::bad_param(
                        "interval",
                        "gives more than 10000 buckets",
                    ));
                }
                ns
            }
            None => auto_interval(range, 120),
        };
        let buckets = st
            .backend
            .histogram(HistogramRequest {
                expr: and(restrict, user),
                range,
                interval_ns,
            })
            .await?;
        let total: u64 = buckets.iter().flat_map(|b| b.counts.values()).sum();
        let buckets: Vec<Value> = buckets
            .into_iter()
            .map(|b| {
                let ts = nevermore_index::format_ts(b.start_ns);
                json!({"start": ts, "counts": b.counts, "total": b.counts.values().sum::<u64>()})
            })
            .collect();
        Ok(Json(
            json!({"interval_ms": interval_ns / 1_000_000, "buckets": buckets, "total": total}),
        ))
    })
    .await
}

async fn values(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(field): Path<String>,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    guarded(&st, async {
        let restrict = restriction(&st, &headers)?;
        let user = user_query(&st, &p)?;
        let range = time_range(&p)?;
        let field = nevermore_lang::Field::from_qualifier(&field).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_field",
                format!("unknown field {field}"),
            )
        })?;
        let limit = param_usize(&p, "limit", 20, 1000)?;
        let values = st
            .backend
            .values(ValuesRequest {
                field,
                prefix: p.get("prefix").cloned().unwrap_or_default(),
                expr: and(restrict, user),
                range,
                limit,
            })
            .await?;
        Ok(Json(json!({ "values": values })))
    })
    .await
}

async fn context(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    guarded(&st, async {
        let restrict = restriction(&st, &headers)?;
        let id = p
            .get("id")
            .ok_or_else(|| ApiError::bad_param("id", "is required"))?;
        let before = param_usize(&p, "before", 10, st.cfg.max_page_size)?;
        let after = param_usize(&p, "after", 10, st.cfg.max_page_size)?;
        let hit = st.backend.get(id, &restrict).await?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no record with that id")
        })?;
        let all_time = TimeRange {
            start_ns: 0,
            end_ns: i64::MAX,
        };
        let slice = |order: Order, limit: usize| SearchRequest {
            expr: restrict.clone(),
            range: all_time,
            limit,
            order,
            after: Some(Cursor {
                key: hit.key.clone(),
                pit: None,
            }),
            stream: Some(hit.key.stream_id.clone()),
        };
        let (b, a) = tokio::join!(
            st.backend.search(slice(Order::Desc, before)),
            st.backend.search(slice(Order::Asc, after))
        );
        let mut b: Vec<Value> = b?.hits.into_iter().map(|h| h.record).collect();
        b.reverse();
        let a: Vec<Value> = a?.hits.into_iter().map(|h| h.record).collect();
        Ok(Json(json!({"before": b, "hit": hit.record, "after": a})))
    })
    .await
}

async fn parse(State(st): State<Arc<AppState>>, Query(p): Params) -> Json<Value> {
    let q = p.get("q").map(String::as_str).unwrap_or("");
    let parsed = nevermore_lang::parse_lenient(q, &st.limits);
    Json(json!({
        "query": nevermore_lang::print(&parsed.expr),
        "ast": parsed.expr,
        "diagnostics": parsed.diagnostics,
    }))
}

/// How far back each poll of a live tail looks for records that arrived late (a collector
/// catching up); ids already sent in that window are not sent again.
const TAIL_LOOKBACK_NS: i64 = 30_000_000_000;
const TAIL_POLL: Duration = Duration::from_secs(1);
/// Records one poll reads at most (in pages of `TAIL_PAGE`): a faster stream is followed over
/// several polls, from where the last one stopped.
const TAIL_PAGE: usize = 1000;
const TAIL_PAGES_PER_POLL: usize = 10;

struct TailState {
    st: Arc<AppState>,
    expr: Expr,
    /// Records before this time were history when the tail started (the backlog shows them).
    floor: i64,
    /// The newest record sent, in the order of records: the next poll reads past it.
    last: Option<SortKey>,
    /// Ids sent within the lookback window, oldest first.
    sent: VecDeque<(i64, String)>,
    sent_ids: HashSet<String>,
    queue: VecDeque<Value>,
    first: bool,
    backlog: usize,
    /// Held while the stream is open.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl TailState {
    fn search(
        &self,
        start_ns: i64,
        after: Option<SortKey>,
        order: Order,
        limit: usize,
    ) -> SearchRequest {
        SearchRequest {
            expr: self.expr.clone(),
            range: TimeRange {
                start_ns,
                end_ns: i64::MAX,
            },
            limit,
            order,
            after: after.map(|key| Cursor { key, pit: None }),
            stream: None,
        }
    }

    async fn poll(&mut self) -> Result<(), ApiError> {
        if self.first {
            self.first = false;
            let now = now_ns();
            let page = self
                .st
                .backend
                .search(self.search(now - 3_600_000_000_000, None, Order::Desc, self.backlog))
                .await?;
            self.floor = page.hits.first().map_or(now, |h| h.key.ts_ns);
            for h in page.hits.into_iter().rev() {
                self.push(h);
            }
            return Ok(());
        }
        // New records, in order, past the newest sent.
        for _ in 0..TAIL_PAGES_PER_POLL {
            let page = self
                .st
                .backend
                .search(self.search(self.floor, self.last.clone(), Order::Asc, TAIL_PAGE))
                .await?;
            let full = page.hits.len() == TAIL_PAGE;
            for h in page.hits {
                self.push(h);
            }
            if !full {
                break;
            }
        }
        // Late arrivals: records of the lookback window that sorted before the newest sent.
        if let Some(last) = &self.last {
            let start = self.floor.max(last.ts_ns - TAIL_LOOKBACK_NS);
            let page = self
                .st
                .backend
                .search(self.search(start, None, Order::Asc, TAIL_PAGE))
                .await?;
            let last = last.clone();
            for h in page.hits.into_iter().filter(|h| h.key <= last) {
                self.push(h);
            }
        }
        let horizon = self
            .last
            .as_ref()
            .map_or(i64::MIN, |k| k.ts_ns - TAIL_LOOKBACK_NS);
        while let Some((ts, _)) = self.sent.front() {
            if *ts >= horizon {
                break;
            }
            if let Some((_, id)) = self.sent.pop_front() {
                self.sent_ids.remove(&id);
            }
        }
        Ok(())
    }

    fn push(&mut self, h: crate::logs::Hit) {
        let id = h
            .record
            .pointer("/event/id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !self.sent_ids.insert(id.clone()) {
            return;
        }
        if self.last.as_ref().is_none_or(|l| h.key > *l) {
            self.last = Some(h.key.clone());
        }
        self.sent.push_back((h.key.ts_ns, id));
        self.queue.push_back(h.record);
    }
}

async fn tail(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let restrict = restriction(&st, &headers)?;
    let user = user_query(&st, &p)?;
    let backlog = param_usize(&p, "backlog", 20, st.cfg.max_page_size)?;
    let Ok(permit) = st.tails.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many live tails open",
        ));
    };
    let state = TailState {
        st: st.clone(),
        expr: and(restrict, user),
        floor: 0,
        last: None,
        sent: VecDeque::new(),
        sent_ids: HashSet::new(),
        queue: VecDeque::new(),
        first: true,
        backlog,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(rec) = s.queue.pop_front() {
                let ev = SseEvent::default().event("record").data(rec.to_string());
                return Some((Ok::<_, std::convert::Infallible>(ev), s));
            }
            if !s.first {
                tokio::time::sleep(TAIL_POLL).await;
            }
            if let Err(e) = s.poll().await {
                let ev = SseEvent::default()
                    .event("error")
                    .data(json!({"code": e.code, "message": e.message}).to_string());
                return Some((Ok(ev), s));
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn over_the_in_flight_limit_is_429() {
        let dir = tempfile::tempdir().unwrap();
        let index = nevermore_index::LogIndex::open(dir.path()).unwrap();
        let backend =
            Backend::Embedded(crate::logs::embedded::EmbeddedBackend::new(index).unwrap());
        let mut cfg = crate::config::load_str("", "t").unwrap();
        cfg.max_in_flight = 1;
        let state = AppState::new(backend, Metrics::empty(&cfg.metrics), cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, state.clone(), std::future::pending()));
        let url = format!("http://{addr}/api/v1/logs/search?q=x");
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
        // Hold the only permit, as a slow request would.
        let _held = state.inflight.clone().try_acquire_owned().unwrap();
        let resp = reqwest::get(&url).await.unwrap();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "1");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "too_many_requests");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_its_deadline_is_504() {
        let dir = tempfile::tempdir().unwrap();
        let index = nevermore_index::LogIndex::open(dir.path()).unwrap();
        let backend =
            Backend::Embedded(crate::logs::embedded::EmbeddedBackend::new(index).unwrap());
        let mut cfg = crate::config::load_str("", "t").unwrap();
        cfg.request_timeout = Duration::from_millis(250);
        let state = AppState::new(backend, Metrics::empty(&cfg.metrics), cfg);
        let e = guarded(&state, std::future::pending::<Result<(), ApiError>>())
            .await
            .unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::GATEWAY_TIMEOUT, "timeout"));
        // The permit came back.
        assert_eq!(state.inflight.available_permits(), state.cfg.max_in_flight);
    }

    #[test]
    fn intervals_are_nice_and_bounded() {
        let h = 3_600_000_000_000;
        let r = |span| TimeRange {
            start_ns: 0,
            end_ns: span,
        };
        assert_eq!(auto_interval(r(h), 120), 30_000_000_000);
        assert_eq!(auto_interval(r(24 * h), 120), 900_000_000_000);
        assert!(r(h).end_ns / auto_interval(r(h), 100) <= 100);
    }

    #[test]
    fn times() {
        let now = 1_000 * 1_000_000_000;
        assert_eq!(
            parse_time("t", "now-15m", now).unwrap(),
            now - 900 * 1_000_000_000
        );
        assert_eq!(parse_time("t", "1.5", now).unwrap(), 1_500_000_000);
        assert_eq!(
            parse_time("t", "1970-01-01T00:00:01Z", now).unwrap(),
            1_000_000_000
        );
        assert!(parse_time("t", "now-15x", now).is_err());
        assert!(parse_time("t", "NaN", now).is_err());
    }
}
