//! Where raw samples come from: Prometheus replicas (remote read), VictoriaMetrics (export API)
//! and static OpenMetrics files. Each returns every series matching a selection with its samples
//! in the window, labels as the upstream has them (external labels included: dedup strips
//! them), values bit-exact (stale markers survive).

mod index_api;
pub mod openmetrics;
pub mod prompb;
pub mod remote_read;
pub mod victoriametrics;
pub mod xor;

pub use openmetrics::StaticFiles;
pub use remote_read::{RemoteRead, ResponseType};
pub use victoriametrics::VmExport;

use nevermore_promql::model::{
    Labels, MatchOp, Matcher, Millis, SelectRequest, Series, StorageError, is_label_name,
    quote_into,
};
use std::path::PathBuf;
use std::time::Duration;

/// Responses larger than this (compressed or decoded) fail rather than exhaust memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 512 << 20;

/// Error bodies are cut to this many bytes in messages.
const MAX_ERROR_BODY: usize = 4096;

/// One configured upstream.
#[derive(Debug)]
pub enum Upstream {
    Prometheus(RemoteRead),
    VictoriaMetrics(VmExport),
    Static(StaticFiles),
}

impl Upstream {
    /// The name from the configuration (e.g. `prom-a`), used in errors and logs.
    pub fn name(&self) -> &str {
        match self {
            Upstream::Prometheus(u) => u.name(),
            Upstream::VictoriaMetrics(u) => u.name(),
            Upstream::Static(u) => u.name(),
        }
    }

    /// Series matching every matcher with their samples in `[start, end]`; series without a
    /// sample there are left out. Each series' samples are in increasing time order.
    pub async fn select(&self, req: &SelectRequest) -> Result<Vec<Series>, UpstreamError> {
        match self {
            Upstream::Prometheus(u) => u.select(req).await,
            Upstream::VictoriaMetrics(u) => u.select(req).await,
            Upstream::Static(u) => Ok(u.select(req)),
        }
    }

    /// Label sets of the series matching any of `selectors` (each a list of matchers, ANDed;
    /// every series when there is none) with samples in `[start, end]` (ms), sorted, each once.
    /// Index-only on the server, which answers at its index's granularity: Prometheus by chunk
    /// (up to 120 samples, within one block), VictoriaMetrics by whole days, so series with
    /// samples only near the window may be included; none with a sample in it is missed. Prometheus' answers carry its external labels, as in `select`.
    pub async fn series(
        &self,
        selectors: &[Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> Result<Vec<Labels>, UpstreamError> {
        match self {
            Upstream::Prometheus(u) => u.series(selectors, start, end).await,
            Upstream::VictoriaMetrics(u) => u.series(selectors, start, end).await,
            Upstream::Static(u) => Ok(u.series_matching(selectors, start, end)),
        }
    }

    /// Label names over those series (every series when `selectors` is empty), sorted, each
    /// once. Prometheus answers by block (two hours or more) here.
    pub async fn label_names(
        &self,
        selectors: &[Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> Result<Vec<String>, UpstreamError> {
        match self {
            Upstream::Prometheus(u) => u.label_names(selectors, start, end).await,
            Upstream::VictoriaMetrics(u) => u.label_names(selectors, start, end).await,
            Upstream::Static(u) => Ok(u.label_names(selectors, start, end)),
        }
    }

    /// Values of label `name` over those series (every series when `selectors` is empty),
    /// sorted, each once.
    pub async fn label_values(
        &self,
        name: &str,
        selectors: &[Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> Result<Vec<String>, UpstreamError> {
        match self {
            Upstream::Prometheus(u) => u.label_values(name, selectors, start, end).await,
            Upstream::VictoriaMetrics(u) => u.label_values(name, selectors, start, end).await,
            Upstream::Static(u) => Ok(u.label_values(name, selectors, start, end)),
        }
    }
}

/// Why an upstream could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {upstream}: cannot reach {url}: {message}")]
    Unreachable {
        upstream: String,
        url: String,
        message: String,
    },
    #[error("upstream {upstream}: no answer from {url} within {timeout:?}")]
    Timeout {
        upstream: String,
        url: String,
        timeout: Duration,
    },
    #[error("upstream {upstream}: {url} answered http {status}: {message}")]
    Status {
        upstream: String,
        url: String,
        status: u16,
        /// The start of the response body (the upstream's own explanation).
        message: String,
    },
    #[error("upstream {upstream}: bad response from {url}: {message}")]
    BadResponse {
        upstream: String,
        url: String,
        message: String,
    },
    #[error("upstream {upstream}: response from {url} exceeds {limit_bytes} bytes")]
    TooLarge {
        upstream: String,
        url: String,
        limit_bytes: u64,
    },
    #[error("upstream {upstream}: cannot send the selection: {message}")]
    BadSelection { upstream: String, message: String },
    #[error("upstream {upstream}: cannot read {path}: {message}")]
    Io {
        upstream: String,
        path: PathBuf,
        message: String,
    },
    #[error("upstream {upstream}: {path}:{line}: {message}")]
    Parse {
        upstream: String,
        path: PathBuf,
        /// 1-based.
        line: usize,
        message: String,
    },
}

impl UpstreamError {
    /// The configured name of the upstream that failed.
    pub fn upstream(&self) -> &str {
        match self {
            UpstreamError::Unreachable { upstream, .. }
            | UpstreamError::Timeout { upstream, .. }
            | UpstreamError::Status { upstream, .. }
            | UpstreamError::BadResponse { upstream, .. }
            | UpstreamError::TooLarge { upstream, .. }
            | UpstreamError::BadSelection { upstream, .. }
            | UpstreamError::Io { upstream, .. }
            | UpstreamError::Parse { upstream, .. } => upstream,
        }
    }

    /// The URL asked, for the network upstreams.
    pub fn url(&self) -> Option<&str> {
        match self {
            UpstreamError::Unreachable { url, .. }
            | UpstreamError::Timeout { url, .. }
            | UpstreamError::Status { url, .. }
            | UpstreamError::BadResponse { url, .. }
            | UpstreamError::TooLarge { url, .. } => Some(url),
            _ => None,
        }
    }
}

impl From<UpstreamError> for StorageError {
    fn from(e: UpstreamError) -> Self {
        StorageError::Upstream {
            upstream: e.upstream().to_string(),
            message: e.to_string(),
        }
    }
}

/// What the HTTP upstreams share: where, how long, and the client.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub name: String,
    /// The full URL asked (base plus API path).
    pub url: String,
    pub timeout: Duration,
    pub client: reqwest::Client,
    pub bearer_token: Option<String>,
    pub max_bytes: u64,
}

impl Endpoint {
    pub fn new(
        name: String,
        base: &str,
        path: &str,
        timeout: Duration,
        client: reqwest::Client,
        bearer_token: Option<String>,
    ) -> Self {
        Endpoint {
            name,
            url: format!("{}{path}", base.trim_end_matches('/')),
            timeout,
            client,
            bearer_token,
            max_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    pub fn authorized(&self, b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.bearer_token {
            Some(t) => b.bearer_auth(t),
            None => b,
        }
    }

    /// Runs `f` under the endpoint's timeout (connecting, sending, reading and decoding).
    pub async fn timed<T>(
        &self,
        f: impl Future<Output = Result<T, UpstreamError>>,
    ) -> Result<T, UpstreamError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(self.timeout_error()),
        }
    }

    pub fn timeout_error(&self) -> UpstreamError {
        UpstreamError::Timeout {
            upstream: self.name.clone(),
            url: self.url.clone(),
            timeout: self.timeout,
        }
    }

    /// Sends, and turns transport failures and non-2xx answers into errors.
    pub async fn send(
        &self,
        b: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, UpstreamError> {
        let resp = self
            .authorized(b)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = self.read_limited(resp, MAX_ERROR_BODY as u64, true).await;
        let mut message = String::from_utf8_lossy(&body.unwrap_or_default())
            .trim()
            .to_string();
        if message.is_empty() {
            message = status
                .canonical_reason()
                .unwrap_or("no body")
                .to_lowercase();
        }
        Err(UpstreamError::Status {
            upstream: self.name.clone(),
            url: self.url.clone(),
            status: status.as_u16(),
            message,
        })
    }

    pub fn transport_error(&self, e: &reqwest::Error) -> UpstreamError {
        if e.is_timeout() {
            return self.timeout_error();
        }
        let mut message = e.to_string();
        // reqwest's top-level message is generic; the cause says what happened.
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        if e.is_connect() || e.is_request() {
            UpstreamError::Unreachable {
                upstream: self.name.clone(),
                url: self.url.clone(),
                message,
            }
        } else {
            self.bad_response(message)
        }
    }

    pub fn bad_response(&self, message: impl Into<String>) -> UpstreamError {
        UpstreamError::BadResponse {
            upstream: self.name.clone(),
            url: self.url.clone(),
            message: message.into(),
        }
    }

    pub fn too_large(&self) -> UpstreamError {
        UpstreamError::TooLarge {
            upstream: self.name.clone(),
            url: self.url.clone(),
            limit_bytes: self.max_bytes,
        }
    }

    /// The whole body, at most `limit` bytes: past it, an error, or the first `limit` bytes
    /// when `truncate`.
    pub async fn read_limited(
        &self,
        mut resp: reqwest::Response,
        limit: u64,
        truncate: bool,
    ) -> Result<Vec<u8>, UpstreamError> {
        let mut out = Vec::new();
        while let Some(c) = resp.chunk().await.map_err(|e| self.transport_error(&e))? {
            if (out.len() + c.len()) as u64 > limit {
                if truncate {
                    let room = (limit as usize).saturating_sub(out.len());
                    out.extend_from_slice(&c[..room.min(c.len())]);
                    return Ok(out);
                }
                return Err(self.too_large());
            }
            out.extend_from_slice(&c);
        }
        Ok(out)
    }
}

/// Milliseconds as the seconds the HTTP APIs take, e.g. `1700000000.123`.
pub(crate) fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

/// A selector for every series (both HTTP APIs refuse `{}`).
pub(crate) const EVERY_SERIES: &str = r#"{__name__!=""}"#;

/// The series selector for the matchers, e.g. `{__name__="up",job=~"api|web"}`, as
/// Prometheus' and VictoriaMetrics' HTTP APIs take it.
pub fn selector(matchers: &[Matcher]) -> Result<String, String> {
    if matchers.is_empty() {
        return Ok(EVERY_SERIES.to_string());
    }
    let mut out = String::from("{");
    for (i, m) in matchers.iter().enumerate() {
        if !is_label_name(&m.name) {
            return Err(format!("label name {:?} cannot be sent", m.name));
        }
        if i > 0 {
            out.push(',');
        }
        out.push_str(&m.name);
        out.push_str(match m.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Re(_) => "=~",
            MatchOp::NotRe(_) => "!~",
        });
        quote_into(&m.value, &mut out);
    }
    // Prometheus refuses a selector whose every matcher accepts the empty value; every series
    // has a name, so this one changes nothing else.
    if matchers.iter().all(|m| m.is_match("")) {
        out.push_str(r#",__name__!="""#);
    }
    out.push('}');
    Ok(out)
}

/// Sorted, each once.
pub(crate) fn sorted_unique<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort_unstable();
    v.dedup();
    v
}

/// Drops samples outside `[start, end]` (samples sorted by time).
pub(crate) fn trim(samples: &mut Vec<nevermore_promql::model::Sample>, start: i64, end: i64) {
    let lo = samples.partition_point(|s| s.t < start);
    let hi = samples.partition_point(|s| s.t <= end);
    if lo >= hi {
        samples.clear();
        return;
    }
    samples.truncate(hi);
    samples.drain(..lo);
}

/// Series in label order with samples in time order, those with equal labels merged and equal
/// timestamps once. Prometheus sends each series once and in order, and VictoriaMetrics may
/// split one over several lines: either way the answer leaves here well-formed.
pub(super) fn merge_duplicates(mut series: Vec<Series>) -> Vec<Series> {
    for s in &mut series {
        if !s.samples.is_sorted_by_key(|x| x.t) {
            s.samples.sort_by_key(|x| x.t);
        }
        s.samples.dedup_by_key(|x| x.t);
    }
    if series.windows(2).all(|w| w[0].labels < w[1].labels) {
        return series;
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    for s in series {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => {
                last.samples.extend(s.samples);
                last.samples.sort_by_key(|x| x.t);
                last.samples.dedup_by_key(|x| x.t);
            }
            _ => out.push(s),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(name: &str, v: &str) -> Matcher {
        Matcher::new(
            MatchOp::Re(regex::Regex::new(&format!("^(?:{v})$")).unwrap()),
            name,
            v,
        )
    }

    #[test]
    fn selectors_escape_values() {
        let ms = vec![
            Matcher::new(MatchOp::Equal, "__name__", "up"),
            Matcher::new(MatchOp::NotEqual, "a", "x\"y\\z\nw\t\u{1}"),
            re("b", r"a\.b|c"),
        ];
        assert_eq!(
            selector(&ms).unwrap(),
            r#"{__name__="up",a!="x\"y\\z\nw\t\u0001",b=~"a\\.b|c"}"#
        );
        assert_eq!(selector(&[]).unwrap(), r#"{__name__!=""}"#);
        assert!(selector(&[Matcher::new(MatchOp::Equal, "a-b", "x")]).is_err());
        // Matchers that all accept the empty value get a name matcher (Prometheus wants one).
        assert_eq!(
            selector(&[re("job", ".*"), Matcher::new(MatchOp::NotEqual, "a", "x")]).unwrap(),
            r#"{job=~".*",a!="x",__name__!=""}"#
        );
    }

    #[test]
    fn seconds_keep_milliseconds() {
        assert_eq!(seconds(1_700_000_000_123), "1700000000.123");
        assert_eq!(seconds(5), "0.005");
        assert_eq!(seconds(-1500), "-1.500");
    }
}
