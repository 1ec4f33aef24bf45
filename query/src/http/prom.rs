//! Prometheus' HTTP API over the deduplicated upstreams, so Grafana and other Prometheus clients
//! use the query service as a Prometheus data source.
//!
//! Parameters, defaults, error types and the JSON shape are Prometheus' (v3): GET query strings
//! and form POST bodies alike, `{"status": "success", "data": …, "warnings": […]}` or
//! `{"status": "error", "errorType": …, "error": …}`, timestamps as unix seconds, sample values
//! as strings. Thanos' `dedup`, `replicaLabels[]` and `partial_response` are honoured.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nevermore_promql::engine::{EngineError, QueryTime, Value};
use nevermore_promql::model::{Labels, Millis, Series, is_stale_nan};

use super::AppState;
use crate::metrics::{MetricsError, RequestOptions};

/// Prometheus' limit on points per series of a range query.
const MAX_POINTS: i64 = 11_000;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/query_exemplars", get(exemplars).post(exemplars))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
}

/// A Prometheus API error: `errorType` and HTTP status as Prometheus pairs them.
#[derive(Debug)]
pub struct PromError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl PromError {
    fn bad_data(message: impl Into<String>) -> PromError {
        PromError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            message: message.into(),
        }
    }

    fn param(name: &str, message: impl std::fmt::Display) -> PromError {
        PromError::bad_data(format!("invalid parameter \"{name}\": {message}"))
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let mut body = String::from("{\"status\":\"error\",\"errorType\":");
        push_json_str(&mut body, self.kind);
        body.push_str(",\"error\":");
        push_json_str(&mut body, &self.message);
        body.push('}');
        let mut resp = (self.status, json_headers(), body).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<MetricsError> for PromError {
    fn from(e: MetricsError) -> PromError {
        let (status, kind) = match &e {
            MetricsError::Engine(EngineError::Parse { .. }) | MetricsError::BadData { .. } => {
                (StatusCode::BAD_REQUEST, "bad_data")
            }
            MetricsError::Engine(EngineError::Cancelled) | MetricsError::Timeout { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "timeout")
            }
            MetricsError::Engine(EngineError::Storage(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            MetricsError::Engine(_) => (StatusCode::UNPROCESSABLE_ENTITY, "execution"),
            MetricsError::Upstream { .. } | MetricsError::Load { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            MetricsError::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let message = match &e {
            MetricsError::Engine(EngineError::Parse { message }) => {
                format!("invalid parameter \"query\": {message}")
            }
            other => other.to_string(),
        };
        PromError {
            status,
            kind,
            message,
        }
    }
}

fn json_headers() -> [(header::HeaderName, HeaderValue); 1] {
    [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )]
}

fn success(data: &str, warnings: &[String]) -> Response {
    let mut body = String::with_capacity(data.len() + 64);
    body.push_str("{\"status\":\"success\",\"data\":");
    body.push_str(data);
    if !warnings.is_empty() {
        body.push_str(",\"warnings\":[");
        push_list(&mut body, warnings, |b, w| push_json_str(b, w));
        body.push(']');
    }
    body.push('}');
    (StatusCode::OK, json_headers(), body).into_response()
}

/// The request's parameters: query string then form body, repeated keys kept.
struct Params(Vec<(String, String)>);

impl Params {
    fn from_request(
        raw: Option<String>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Params, PromError> {
        let mut out: Vec<(String, String)> = match raw {
            Some(q) => serde_urlencoded::from_str(&q)
                .map_err(|e| PromError::bad_data(format!("error parsing query string: {e}")))?,
            None => Vec::new(),
        };
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form && !body.is_empty() {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| PromError::bad_data(format!("error parsing form values: {e}")))?;
            // Form values come first in Go's `r.Form`, so they win for single-valued keys.
            let mut merged = form;
            merged.append(&mut out);
            out = merged;
        }
        Ok(Params(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The widest time a request may name: ±10¹¹ s (the years −1200 to 5100), so that no window
/// arithmetic can overflow (Prometheus saturates instead).
const MAX_ABS_TIME_MS: i64 = 100_000_000_000_000;

/// Prometheus' `parseTime`: unix seconds (with a fraction) or RFC 3339, within
/// [`MAX_ABS_TIME_MS`]; Prometheus' own spellings of its minimum and maximum time map to those
/// bounds.
pub fn parse_time(s: &str) -> Option<Millis> {
    match s {
        "-292273086-05-16T16:47:06Z" => return Some(-MAX_ABS_TIME_MS),
        "292277025-08-18T07:12:54.999999999Z" => return Some(MAX_ABS_TIME_MS),
        _ => {}
    }
    parse_time_unbounded(s).filter(|t| t.abs() <= MAX_ABS_TIME_MS)
}

fn parse_time_unbounded(s: &str) -> Option<Millis> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return None;
        }
        let secs = f.trunc();
        let frac = ((f - secs) * 1000.0).round();
        let ms = secs * 1000.0 + frac;
        if ms.abs() > 9.2e18 {
            return None;
        }
        return Some(ms as i64);
    }
    let ns = nevermore_schemas::time::parse_rfc3339(s.as_bytes())?;
    Some(ns.div_euclid(1_000_000))
}

/// Prometheus' `parseDuration`: seconds (with a fraction) or a duration like `1h30m`, `15s`.
pub fn parse_duration(s: &str) -> Option<Millis> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = (f * 1000.0).round();
        if !ms.is_finite() || ms.abs() > 9.2e18 {
            return None;
        }
        return Some(ms as i64);
    }
    parse_prom_duration(s)
}

/// `1y2w3d4h5m6s7ms`, each unit at most once and in that order.
fn parse_prom_duration(s: &str) -> Option<Millis> {
    const UNITS: [(&str, i64); 8] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
        ("", 0),
    ];
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total: i64 = 0;
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let idx = UNITS[..7].iter().position(|(u, _)| *u == unit)?;
        // Each unit at most once, largest first.
        if last_unit.is_some_and(|l| idx <= l) {
            return None;
        }
        last_unit = Some(idx);
        total = total.checked_add(n.checked_mul(UNITS[idx].1)?)?;
    }
    Some(total)
}

fn time_param(p: &Params, name: &str, default: Millis) -> Result<Millis, PromError> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => parse_time(v).ok_or_else(|| {
            PromError::param(name, format!("cannot parse {v:?} to a valid timestamp"))
        }),
    }
}

fn bool_param(p: &Params, name: &str) -> Result<Option<bool>, PromError> {
    match p.get(name) {
        None => Ok(None),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(Some(true)),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(Some(false)),
        Some(v) => Err(PromError::param(
            name,
            format!("cannot parse {v:?} to a boolean"),
        )),
    }
}

/// The request's options: deadline (config, lowered by `timeout`), Thanos' parameters, tenancy.
fn request_options(
    st: &AppState,
    headers: &HeaderMap,
    p: &Params,
) -> Result<RequestOptions, PromError> {
    let mut timeout = st.cfg.request_timeout;
    if let Some(t) = p.get("timeout") {
        let ms = parse_duration(t).filter(|ms| *ms > 0).ok_or_else(|| {
            PromError::param("timeout", format!("cannot parse {t:?} to a valid duration"))
        })?;
        timeout = timeout.min(Duration::from_millis(ms as u64));
    }
    let mut o = RequestOptions::new(Instant::now() + timeout);
    if let Some(d) = bool_param(p, "dedup")? {
        o.dedup = d;
    }
    o.partial_response = bool_param(p, "partial_response")?;
    o.replica_labels = p.all("replicaLabels[]");
    o.namespaces = tenancy(st, headers)?;
    Ok(o)
}

/// The namespaces the bearer token may see; `None` when no tenants are configured.
fn tenancy(st: &AppState, headers: &HeaderMap) -> Result<Option<BTreeSet<String>>, PromError> {
    match super::tenant_namespaces(st, headers) {
        Ok(ns) => Ok(ns),
        Err(e) => Err(PromError {
            status: StatusCode::UNAUTHORIZED,
            kind: "unauthorized",
            message: e.message,
        }),
    }
}

/// The in-flight limit, as the search API applies it.
fn permit(st: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, PromError> {
    st.inflight
        .clone()
        .try_acquire_owned()
        .map_err(|_| PromError {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "unavailable",
            message: "too many requests in flight, retry shortly".into(),
        })
}

async fn query(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let _permit = permit(&st)?;
    let p = Params::from_request(raw, &headers, &body)?;
    let q = p.get("query").ok_or_else(|| {
        PromError::param(
            "query",
            "unknown position: parse error: no expression found in input",
        )
    })?;
    let t = time_param(&p, "time", now_ms())?;
    let opts = request_options(&st, &headers, &p)?;
    let (answer, _) = st.metrics.query(q, QueryTime::instant(t), &opts).await?;
    Ok(success(&format_value(&answer.data.value), &answer.warnings))
}

async fn query_range(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let _permit = permit(&st)?;
    let p = Params::from_request(raw, &headers, &body)?;
    let (q, time) = range_params(&p)?;
    let opts = request_options(&st, &headers, &p)?;
    let (answer, _) = st.metrics.query(q, time, &opts).await?;
    Ok(success(&format_value(&answer.data.value), &answer.warnings))
}

/// `query`, `start`, `end`, `step` of a range query, checked as Prometheus checks them.
fn range_params(p: &Params) -> Result<(&str, QueryTime), PromError> {
    let need = |name: &str| {
        p.get(name).ok_or_else(|| {
            PromError::param(
                name,
                format!(
                    "cannot parse \"\" to a valid {}",
                    if name == "step" {
                        "duration"
                    } else {
                        "timestamp"
                    }
                ),
            )
        })
    };
    let start_s = need("start")?;
    let start = parse_time(start_s).ok_or_else(|| {
        PromError::param(
            "start",
            format!("cannot parse {start_s:?} to a valid timestamp"),
        )
    })?;
    let end_s = need("end")?;
    let end = parse_time(end_s).ok_or_else(|| {
        PromError::param(
            "end",
            format!("cannot parse {end_s:?} to a valid timestamp"),
        )
    })?;
    if end < start {
        return Err(PromError::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step_s = need("step")?;
    let step = parse_duration(step_s).ok_or_else(|| {
        PromError::param(
            "step",
            format!("cannot parse {step_s:?} to a valid duration"),
        )
    })?;
    if step <= 0 {
        return Err(PromError::param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(PromError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let q = p.get("query").ok_or_else(|| {
        PromError::param(
            "query",
            "unknown position: parse error: no expression found in input",
        )
    })?;
    Ok((q, QueryTime { start, end, step }))
}

/// `limit` of the metadata endpoints (0 or absent: no limit).
fn limit_param(p: &Params) -> Result<usize, PromError> {
    match p.get("limit") {
        None => Ok(0),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| PromError::param("limit", format!("cannot parse {v:?} to a valid limit"))),
    }
}

/// Cuts `items` to `limit` (0: no limit) with Prometheus' warning.
fn truncate<T>(items: &mut Vec<T>, limit: usize, warnings: &mut Vec<String>) {
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        warnings.push("results truncated due to limit".to_string());
    }
}

/// `start`/`end` of the metadata endpoints: Prometheus' defaults are all of time.
fn meta_range(p: &Params) -> Result<(Millis, Millis), PromError> {
    let start = time_param(p, "start", 0)?;
    let end = time_param(p, "end", now_ms())?;
    if end < start {
        return Err(PromError::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    Ok((start, end))
}

async fn series(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let _permit = permit(&st)?;
    let p = Params::from_request(raw, &headers, &body)?;
    let selectors = p.all("match[]");
    if selectors.is_empty() {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = meta_range(&p)?;
    let limit = limit_param(&p)?;
    let opts = request_options(&st, &headers, &p)?;
    let mut answer = st.metrics.series(&selectors, start, end, &opts).await?;
    truncate(&mut answer.data, limit, &mut answer.warnings);
    let mut out = String::from("[");
    push_list(&mut out, &answer.data, push_labels);
    out.push(']');
    Ok(success(&out, &answer.warnings))
}

async fn labels(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let _permit = permit(&st)?;
    let p = Params::from_request(raw, &headers, &body)?;
    let (start, end) = meta_range(&p)?;
    let limit = limit_param(&p)?;
    let opts = request_options(&st, &headers, &p)?;
    let mut answer = st
        .metrics
        .label_names(&p.all("match[]"), start, end, &opts)
        .await?;
    truncate(&mut answer.data, limit, &mut answer.warnings);
    Ok(success(&string_array(&answer.data), &answer.warnings))
}

async fn label_values(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, PromError> {
    let _permit = permit(&st)?;
    let p = Params::from_request(raw, &headers, &Bytes::new())?;
    if !nevermore_promql::model::is_label_name(&name) {
        return Err(PromError::bad_data(format!("invalid label name: {name:?}")));
    }
    let (start, end) = meta_range(&p)?;
    let limit = limit_param(&p)?;
    let opts = request_options(&st, &headers, &p)?;
    let mut answer = st
        .metrics
        .label_values(&name, &p.all("match[]"), start, end, &opts)
        .await?;
    truncate(&mut answer.data, limit, &mut answer.warnings);
    Ok(success(&string_array(&answer.data), &answer.warnings))
}

/// Remote read carries no metadata; an empty map is what Prometheus answers without any.
async fn metadata() -> Response {
    success("{}", &[])
}

async fn buildinfo() -> Response {
    // No `features`: Grafana would read feature flags from it.
    let data = format!(
        "{{\"version\":\"3.0.0\",\"revision\":\"nevermore-{}\",\"branch\":\"main\",\"buildUser\":\"nevermore\",\"buildDate\":\"\",\"goVersion\":\"\"}}",
        env!("CARGO_PKG_VERSION")
    );
    success(&data, &[])
}

async fn exemplars(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, PromError> {
    tenancy(&st, &headers)?;
    Ok(success("[]", &[]))
}

async fn rules() -> Response {
    success("{\"groups\":[]}", &[])
}

async fn alerts() -> Response {
    success("{\"alerts\":[]}", &[])
}

/// Prometheus' result JSON for a value.
pub fn format_value(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Scalar { t, v } => {
            out.push_str("{\"resultType\":\"scalar\",\"result\":");
            push_point(&mut out, *t, *v);
            out.push('}');
        }
        Value::String { t, v } => {
            out.push_str("{\"resultType\":\"string\",\"result\":[");
            push_time(&mut out, *t);
            out.push(',');
            push_json_str(&mut out, v);
            out.push_str("]}");
        }
        Value::Vector(elems) => {
            out.push_str("{\"resultType\":\"vector\",\"result\":[");
            push_list(&mut out, elems, |out, e| {
                out.push_str("{\"metric\":");
                push_labels(out, &e.labels);
                out.push_str(",\"value\":");
                push_point(out, e.t, e.v);
                out.push('}');
            });
            out.push_str("]}");
        }
        Value::Matrix(series) => {
            out.push_str("{\"resultType\":\"matrix\",\"result\":[");
            push_list(&mut out, series, push_series);
            out.push_str("]}");
        }
    }
    out
}

fn push_series(out: &mut String, s: &Series) {
    out.push_str("{\"metric\":");
    push_labels(out, &s.labels);
    out.push_str(",\"values\":[");
    let live = s.samples.iter().filter(|p| !is_stale_nan(p.v));
    push_list(out, live, |out, p| push_point(out, p.t, p.v));
    out.push_str("]}");
}

fn push_labels(out: &mut String, l: &Labels) {
    out.push('{');
    push_list(out, l.iter(), |out, l| {
        push_json_str(out, &l.name);
        out.push(':');
        push_json_str(out, &l.value);
    });
    out.push('}');
}

fn push_point(out: &mut String, t: Millis, v: f64) {
    out.push('[');
    push_time(out, t);
    out.push_str(",\"");
    push_float(out, v);
    out.push_str("\"]");
}

/// Unix seconds with up to three decimals, as Prometheus writes them (`1435781451.781`).
fn push_time(out: &mut String, t: Millis) {
    if t < 0 {
        out.push('-');
    }
    let a = t.unsigned_abs();
    let _ = write!(out, "{}", a / 1000);
    let frac = a % 1000;
    if frac != 0 {
        let s = format!("{frac:03}");
        out.push('.');
        out.push_str(s.trim_end_matches('0'));
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`, with Prometheus' `+Inf`, `-Inf`, `NaN`.
pub fn push_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

fn string_array(items: &[String]) -> String {
    let mut out = String::from("[");
    push_list(&mut out, items, |out, s| push_json_str(out, s));
    out.push(']');
    out
}

/// Writes `items` separated by commas.
fn push_list<T>(
    out: &mut String,
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut String, T),
) {
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        each(out, x);
    }
}

fn push_json_str(out: &mut String, s: &str) {
    // serde_json's escaping of a string never fails.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_parse_as_prometheus_does() {
        assert_eq!(parse_time("1435781451.781"), Some(1_435_781_451_781));
        assert_eq!(parse_time("1435781451"), Some(1_435_781_451_000));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Some(1_435_781_451_781)
        );
        assert_eq!(parse_time("x"), None);
        assert_eq!(parse_duration("15s"), Some(15_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("0.5"), Some(500));
        assert_eq!(parse_duration("100ms"), Some(100));
        assert_eq!(parse_duration("1m1h"), None);
        assert_eq!(parse_duration("0s0s"), None);
        assert_eq!(parse_duration("0y1y"), None);
        assert_eq!(parse_time("9e15"), None);
        assert_eq!(
            parse_time("-292273086-05-16T16:47:06Z"),
            Some(-MAX_ABS_TIME_MS)
        );
        assert_eq!(parse_duration("5x"), None);
    }

    #[test]
    fn numbers_and_times_format_as_prometheus_does() {
        let mut s = String::new();
        push_time(&mut s, 1_435_781_451_781);
        s.push(' ');
        push_time(&mut s, 1_435_781_451_000);
        s.push(' ');
        push_time(&mut s, 1_435_781_451_500);
        assert_eq!(s, "1435781451.781 1435781451 1435781451.5");
        let mut f = String::new();
        for v in [
            1.0,
            0.1,
            1e21,
            1e-7,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -0.0,
            123.456,
        ] {
            push_float(&mut f, v);
            f.push(' ');
        }
        assert_eq!(
            f,
            "1 0.1 1000000000000000000000 0.0000001 +Inf -Inf NaN -0 123.456 "
        );
    }
}
