//! The `_bulk` client: requests, retries, splitting, endpoint failover, the dead letter.

use super::dead_letter::{self, Destination, Rejected};
use super::{BulkDoc, BulkReport, EsError, target};
use crate::config::{ElasticsearchSinkConfig, EsAuth, IndexTarget};
use reqwest::header::{self, HeaderMap, HeaderValue};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Which dialect the server speaks (from `GET /`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Elasticsearch,
    OpenSearch,
}

/// Only the parts of a `_bulk` answer we read.
const FILTER_PATH: &str = "filter_path=errors,items.*.status,items.*.error";

/// Bodies bigger than this are compressed on the blocking pool.
const GZIP_INLINE_MAX: usize = 256 * 1024;

/// A reason longer than this is cut (error answers can carry whole documents).
const REASON_MAX: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Log documents: `create`, so a replay is a 409.
    Create,
    /// Dead letter records: `index` (the same rejection written twice is one record).
    Index,
}

/// A `_bulk` client over one or more endpoints (tried in turn when one is unreachable).
#[derive(Debug)]
pub struct BulkClient {
    http: reqwest::Client,
    endpoints: Vec<String>,
    current: AtomicUsize,
    gzip: bool,
    max_records: usize,
    max_bytes: usize,
    initial_backoff: Duration,
    max_backoff: Duration,
    target: IndexTarget,
    install: bool,
    template_name: String,
    flavor: OnceLock<Flavor>,
    dead_letter: Destination,
}

/// The answer to one request, or why there was none.
enum Answer {
    Http {
        status: u16,
        body: Vec<u8>,
        retry_after: Option<Duration>,
    },
    Transport(reqwest::Error),
}

/// An answer to a whole `_bulk` request.
enum Outcome {
    /// Per-item results (in request order).
    Items(Vec<Item>),
    /// Try again later (429, 5xx, connection problems, unreadable answer).
    Retry {
        status: Option<u16>,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The server refuses the request as a whole: split it.
    Refused { status: u16, reason: String },
}

#[derive(Debug, serde::Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, Item>>,
}

#[derive(Debug, serde::Deserialize)]
struct Item {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// A whole-request status worth retrying: overload and server errors, and what only an
/// operator can fix (credentials, permissions, a wrong endpoint path, a proxy refusing the
/// media type or the gzip encoding), since none of them is the documents' fault.
fn request_retriable(status: u16) -> bool {
    matches!(status, 401 | 403 | 404 | 405 | 406 | 407 | 408 | 415 | 429) || status >= 500
}

/// A per-item status worth retrying: overload, server errors, blocks and permissions.
fn item_retriable(status: u16) -> bool {
    matches!(status, 401 | 403 | 408 | 429) || status >= 500
}

/// `type: reason (caused by type: reason)` of an Elasticsearch error object (or string).
fn error_text(error: &serde_json::Value) -> String {
    let one = |e: &serde_json::Value| -> String {
        match (
            e.get("type").and_then(|t| t.as_str()),
            e.get("reason").and_then(|r| r.as_str()),
        ) {
            (Some(t), Some(r)) => format!("{t}: {r}"),
            (Some(t), None) => t.to_owned(),
            (None, Some(r)) => r.to_owned(),
            (None, None) => e.to_string(),
        }
    };
    let mut text = match error {
        serde_json::Value::String(s) => s.clone(),
        e => one(e),
    };
    if let Some(cause) = error.get("caused_by") {
        text.push_str(" (caused by ");
        text.push_str(&one(cause));
        text.push(')');
    }
    cut(text)
}

fn cut(mut s: String) -> String {
    if s.len() > REASON_MAX {
        let mut end = REASON_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The reason of an error answer: its `error` object, or its text.
fn answer_reason(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => match v.get("error") {
            Some(e) => error_text(e),
            None => cut(v.to_string()),
        },
        Err(_) => cut(String::from_utf8_lossy(body).trim().to_owned()),
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

/// Appends one action line and its document.
fn push_doc(body: &mut Vec<u8>, action: Action, doc: &BulkDoc<'_>) {
    body.extend_from_slice(match action {
        Action::Create => b"{\"create\":{\"_index\":",
        Action::Index => b"{\"index\":{\"_index\":",
    });
    dead_letter::push_json_str(body, &doc.index);
    body.extend_from_slice(b",\"_id\":");
    dead_letter::push_json_str(body, doc.id);
    body.extend_from_slice(b"}}\n");
    dead_letter::push_one_line(body, doc.source);
    body.push(b'\n');
}

/// Bytes of a document in a request body (action line included).
fn doc_bytes(doc: &BulkDoc<'_>) -> usize {
    doc.source.len() + doc.index.len() + doc.id.len() + 40
}

impl BulkClient {
    pub fn new(cfg: &ElasticsearchSinkConfig) -> Result<Self, EsError> {
        if cfg.endpoints.is_empty() {
            return Err(EsError::NoEndpoint);
        }
        let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
        for e in &cfg.endpoints {
            let url = reqwest::Url::parse(e).map_err(|err| EsError::InvalidEndpoint {
                endpoint: e.clone(),
                reason: err.to_string(),
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(EsError::InvalidEndpoint {
                    endpoint: e.clone(),
                    reason: "the scheme must be http or https".into(),
                });
            }
            endpoints.push(e.trim_end_matches('/').to_owned());
        }
        let mut headers = HeaderMap::new();
        if let Some(auth) = &cfg.auth {
            let value = match auth {
                EsAuth::Basic { username, password } => {
                    use base64_lite::encode;
                    format!(
                        "Basic {}",
                        encode(format!("{username}:{password}").as_bytes())
                    )
                }
                EsAuth::Bearer { token } => format!("Bearer {token}"),
                EsAuth::ApiKey { key } => format!("ApiKey {key}"),
            };
            let mut value = HeaderValue::from_str(&value).map_err(|e| EsError::Auth {
                reason: e.to_string(),
            })?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout)
            .danger_accept_invalid_certs(cfg.tls.insecure_skip_verify);
        if let Some(path) = &cfg.tls.ca_file {
            let pem = std::fs::read(path).map_err(|source| EsError::CaFile {
                path: path.clone(),
                source,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| EsError::CaCert {
                    path: path.clone(),
                    source,
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|source| EsError::Client { source })?;
        let initial_backoff = cfg.retry_initial_backoff.max(Duration::from_millis(1));
        Ok(BulkClient {
            http,
            endpoints,
            current: AtomicUsize::new(0),
            gzip: cfg.gzip,
            max_records: cfg.batch_max_records.max(1),
            max_bytes: cfg.batch_max_bytes.max(1),
            initial_backoff,
            max_backoff: cfg.retry_max_backoff.max(initial_backoff),
            target: cfg.target.clone(),
            install: cfg.install_template,
            template_name: cfg.template_name.clone(),
            flavor: OnceLock::new(),
            dead_letter: Destination::open(&cfg.dead_letter)?,
        })
    }

    /// The endpoint requests go to now.
    pub fn endpoint(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        &self.endpoints[i]
    }

    /// After a connection problem with endpoint `failed`: the next one (unless another
    /// request moved on already).
    fn fail_over(&self, failed: usize) {
        if self.endpoints.len() > 1
            && self
                .current
                .compare_exchange(
                    failed,
                    (failed + 1) % self.endpoints.len(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            tracing::warn!(
                from = %self.endpoints[failed],
                to = %self.endpoints[(failed + 1) % self.endpoints.len()],
                "elasticsearch endpoint unreachable, failing over"
            );
        }
    }

    /// The wait before retry round `round` (0 first): exponential from the initial backoff,
    /// capped by the maximum, drawn uniformly between the initial backoff and that cap (full
    /// jitter), and at least what a `Retry-After` asked (up to the maximum).
    fn backoff(&self, round: u32, retry_after: Option<Duration>) -> Duration {
        let cap = self
            .initial_backoff
            .saturating_mul(1u32 << round.min(24))
            .min(self.max_backoff);
        let spread = u64::try_from((cap - self.initial_backoff).as_nanos()).unwrap_or(u64::MAX);
        let d = self.initial_backoff + Duration::from_nanos(fastrand::u64(0..=spread));
        match retry_after {
            Some(ra) => d.max(ra.min(self.max_backoff)),
            None => d,
        }
    }

    /// One request to the current endpoint.
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
        report: Option<&mut BulkReport>,
    ) -> (usize, Answer) {
        let ep = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        let url = format!("{}{}", self.endpoints[ep], path);
        let mut rb = self.http.request(method, url);
        let mut sent = 0;
        if let Some((body, content_type)) = body {
            rb = rb.header(header::CONTENT_TYPE, content_type);
            let body = if self.gzip {
                rb = rb.header(header::CONTENT_ENCODING, "gzip");
                if body.len() > GZIP_INLINE_MAX {
                    // A failed blocking task (only a panic) compresses here instead.
                    let shared = std::sync::Arc::new(body);
                    let b = shared.clone();
                    match tokio::task::spawn_blocking(move || gzip(&b)).await {
                        Ok(z) => z,
                        Err(_) => gzip(&shared),
                    }
                } else {
                    gzip(&body)
                }
            } else {
                body
            };
            sent = body.len();
            rb = rb.body(body);
        }
        let started = Instant::now();
        let answer = match rb.send().await {
            Err(e) => Answer::Transport(e),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                match resp.bytes().await {
                    Ok(b) => Answer::Http {
                        status,
                        body: b.to_vec(),
                        retry_after,
                    },
                    Err(e) => Answer::Transport(e),
                }
            }
        };
        if let Some(report) = report {
            report.requests += 1;
            report.bytes_sent += sent as u64;
            report.latencies.push(started.elapsed());
        }
        if matches!(answer, Answer::Transport(_)) {
            self.fail_over(ep);
        }
        (ep, answer)
    }

    /// A request of the sink's own (server detection, template), retried with backoff on 408,
    /// 429, 5xx and connection errors; returns the endpoint and the first other answer.
    async fn admin_request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&[u8]>,
        what: &'static str,
    ) -> (usize, u16, Vec<u8>) {
        let mut round = 0;
        loop {
            let (ep, answer) = self
                .request(
                    method.clone(),
                    path,
                    body.map(|b| (b.to_vec(), "application/json")),
                    None,
                )
                .await;
            let (status, reason, retry_after) = match answer {
                Answer::Http {
                    status,
                    body,
                    retry_after,
                } if status == 408 || status == 429 || status >= 500 => {
                    (Some(status), answer_reason(&body), retry_after)
                }
                Answer::Http { status, body, .. } => return (ep, status, body),
                Answer::Transport(e) => (None, error_chain(&e), None),
            };
            let wait = self.backoff(round, retry_after);
            tracing::warn!(endpoint = %self.endpoints[ep], path, status, reason = %reason, attempt = round + 1, backoff_ms = wait.as_millis() as u64, "{what} failed, retrying");
            tokio::time::sleep(wait).await;
            round = round.saturating_add(1);
        }
    }

    /// `GET /` (once): Elasticsearch or OpenSearch. Retries transient failures.
    pub async fn flavor(&self) -> Result<Flavor, EsError> {
        if let Some(f) = self.flavor.get() {
            return Ok(*f);
        }
        let (ep, status, body) = self
            .admin_request(
                reqwest::Method::GET,
                "/",
                None,
                "elasticsearch server detection",
            )
            .await;
        if !(200..300).contains(&status) {
            return Err(EsError::Detect {
                endpoint: self.endpoints[ep].clone(),
                status,
                reason: answer_reason(&body),
            });
        }
        let root: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| EsError::Detect {
                endpoint: self.endpoints[ep].clone(),
                status,
                reason: e.to_string(),
            })?;
        let flavor = if root
            .pointer("/version/distribution")
            .and_then(|d| d.as_str())
            == Some("opensearch")
        {
            Flavor::OpenSearch
        } else {
            Flavor::Elasticsearch
        };
        tracing::info!(endpoint = %self.endpoints[ep], flavor = ?flavor, version = root.pointer("/version/number").and_then(|n| n.as_str()).unwrap_or("?"), "elasticsearch server detected");
        Ok(*self.flavor.get_or_init(|| flavor))
    }

    /// Puts the index template of `nevermore-schemas` (the OpenSearch twin for OpenSearch)
    /// under the configured name, matching the target's indices. Does nothing when
    /// `install_template` is false. Retries transient failures.
    pub async fn install_template(&self) -> Result<(), EsError> {
        if !self.install {
            return Ok(());
        }
        let flavor = self.flavor().await?;
        let body = target::template_body(&self.target, flavor == Flavor::OpenSearch)?;
        let body = serde_json::to_vec(&body).map_err(|source| EsError::TemplateJson { source })?;
        let path = format!("/_index_template/{}", self.template_name);
        let (ep, status, answer) = self
            .admin_request(
                reqwest::Method::PUT,
                &path,
                Some(&body),
                "index template installation",
            )
            .await;
        if !(200..300).contains(&status) {
            return Err(EsError::Template {
                endpoint: self.endpoints[ep].clone(),
                name: self.template_name.clone(),
                status,
                reason: answer_reason(&answer),
            });
        }
        tracing::info!(endpoint = %self.endpoints[ep], template = %self.template_name, pattern = %target::template_index_pattern(&self.target), "index template installed");
        Ok(())
    }

    /// Sends `docs` with `create` actions; see the module documentation for what `Ok` means.
    /// Errs only when the dead letter file cannot be written (some documents may have been
    /// created: sending them all again is safe).
    pub async fn send(&mut self, docs: &[BulkDoc<'_>]) -> Result<BulkReport, EsError> {
        let mut report = BulkReport::default();
        if docs.is_empty() {
            return Ok(report);
        }
        let rejected = self.deliver(docs, Action::Create, &mut report).await;
        if !rejected.is_empty() {
            self.dead_letter(docs, &rejected, &mut report).await?;
        }
        Ok(report)
    }

    /// Writes rejected documents to the dead letter destination.
    async fn dead_letter(
        &mut self,
        docs: &[BulkDoc<'_>],
        rejected: &[Rejected],
        report: &mut BulkReport,
    ) -> Result<(), EsError> {
        let now = dead_letter::now_ns();
        if let Some(first) = rejected.first() {
            let doc = &docs[first.doc];
            tracing::warn!(count = rejected.len(), index = %doc.index, id = doc.id, status = first.status, reason = %first.reason, "documents rejected, writing them to the dead letter");
        }
        match &self.dead_letter {
            Destination::File { .. } => {
                let mut lines = Vec::new();
                for r in rejected {
                    let doc = &docs[r.doc];
                    dead_letter::record(&mut lines, now, r, &doc.index, doc.id, doc.source, true);
                    lines.push(b'\n');
                }
                self.dead_letter.append(lines).await?;
                report.dead_lettered += rejected.len() as u64;
            }
            Destination::Index(name) => {
                let name = name.clone();
                let sources: Vec<Vec<u8>> = rejected
                    .iter()
                    .map(|r| {
                        let doc = &docs[r.doc];
                        let mut out = Vec::new();
                        dead_letter::record(
                            &mut out, now, r, &doc.index, doc.id, doc.source, false,
                        );
                        out
                    })
                    .collect();
                let dl_docs: Vec<BulkDoc<'_>> = rejected
                    .iter()
                    .zip(&sources)
                    .map(|(r, s)| BulkDoc {
                        id: docs[r.doc].id,
                        index: Cow::Borrowed(name.as_str()),
                        source: s,
                    })
                    .collect();
                let failed = self.deliver(&dl_docs, Action::Index, report).await;
                for f in &failed {
                    let r = &rejected[f.doc];
                    let doc = &docs[r.doc];
                    tracing::error!(dead_letter_index = %name, index = %doc.index, id = doc.id, status = r.status, reason = %r.reason, dead_letter_status = f.status, dead_letter_reason = %f.reason, "the dead letter index refused a rejected document, it is dropped");
                }
                report.dead_letter_failed += failed.len() as u64;
                report.dead_lettered += (rejected.len() - failed.len()) as u64;
            }
        }
        Ok(())
    }

    /// Sends `docs` until each one is done or refused for good; returns the refused ones.
    async fn deliver(
        &self,
        docs: &[BulkDoc<'_>],
        action: Action,
        report: &mut BulkReport,
    ) -> Vec<Rejected> {
        let mut rejected = Vec::new();
        let mut todo: Vec<usize> = (0..docs.len()).collect();
        let mut round: u32 = 0;
        // Splits are logged once per call (a refused request of n documents splits n - 1 times).
        let mut split_logged = false;
        while !todo.is_empty() {
            let mut retry: Vec<usize> = Vec::new();
            let mut retry_after: Option<Duration> = None;
            // The first transient problem of the round, for the log.
            let mut problem: Option<(Option<u16>, String)> = None;
            // Groups to send, and how many endpoints each was tried on.
            let mut queue: VecDeque<(Vec<usize>, usize)> = self
                .chunks(docs, &todo)
                .into_iter()
                .map(|g| (g, 0))
                .collect();
            while let Some((group, tries)) = queue.pop_front() {
                let mut body = Vec::with_capacity(group.iter().map(|&i| doc_bytes(&docs[i])).sum());
                for &i in &group {
                    push_doc(&mut body, action, &docs[i]);
                }
                let (ep, answer) = self
                    .request(
                        reqwest::Method::POST,
                        &format!("/_bulk?{FILTER_PATH}"),
                        Some((body, "application/x-ndjson")),
                        Some(&mut *report),
                    )
                    .await;
                match self.outcome(answer, group.len()) {
                    Outcome::Items(items) => {
                        for (&i, item) in group.iter().zip(items) {
                            match item.status {
                                200..=299 => {
                                    if action == Action::Create {
                                        report.created += 1;
                                    }
                                }
                                409 if action == Action::Create => report.duplicates += 1,
                                s if item_retriable(s) => {
                                    if problem.is_none() {
                                        let reason =
                                            item.error.as_ref().map(error_text).unwrap_or_default();
                                        problem = Some((Some(s), reason));
                                    }
                                    retry.push(i);
                                }
                                s => rejected.push(Rejected {
                                    doc: i,
                                    status: s,
                                    reason: item
                                        .error
                                        .as_ref()
                                        .map(error_text)
                                        .unwrap_or_else(|| format!("status {s}")),
                                }),
                            }
                        }
                    }
                    Outcome::Retry {
                        status,
                        reason,
                        retry_after: ra,
                    } => {
                        if status.is_none() && tries + 1 < self.endpoints.len() {
                            // Unreachable: the next endpoint gets it now.
                            tracing::warn!(endpoint = %self.endpoints[ep], docs = group.len(), reason = %reason, "bulk request failed, trying the next endpoint");
                            queue.push_front((group, tries + 1));
                            continue;
                        }
                        if ra.is_some() {
                            retry_after = retry_after.max(ra);
                        }
                        if problem.is_none() {
                            problem = Some((status, reason));
                        }
                        retry.extend(group);
                        // The server is overloaded or out of reach: the rest of the round
                        // waits for the backoff too, instead of hammering it.
                        for (g, _) in queue.drain(..) {
                            retry.extend(g);
                        }
                    }
                    Outcome::Refused { status, reason } => {
                        if group.len() == 1 {
                            rejected.push(Rejected {
                                doc: group[0],
                                status,
                                reason,
                            });
                        } else {
                            if !split_logged {
                                split_logged = true;
                                tracing::warn!(endpoint = %self.endpoints[ep], status, docs = group.len(), reason = %reason, "bulk request refused, splitting it");
                            }
                            let mid = group.len() / 2;
                            let (a, b) = group.split_at(mid);
                            queue.push_front((b.to_vec(), 0));
                            queue.push_front((a.to_vec(), 0));
                        }
                    }
                }
            }
            if !retry.is_empty() {
                retry.sort_unstable();
                report.retried += retry.len() as u64;
                let wait = self.backoff(round, retry_after);
                let (status, reason) = problem.unwrap_or_default();
                tracing::warn!(endpoint = %self.endpoint(), status, reason = %reason, docs = retry.len(), attempt = round + 1, backoff_ms = wait.as_millis() as u64, "bulk documents not accepted yet, retrying");
                tokio::time::sleep(wait).await;
                round = round.saturating_add(1);
            }
            todo = retry;
        }
        rejected.sort_unstable_by_key(|r| r.doc);
        rejected
    }

    /// Classifies the answer to a `_bulk` request of `n` documents.
    fn outcome(&self, answer: Answer, n: usize) -> Outcome {
        match answer {
            Answer::Transport(e) => Outcome::Retry {
                status: None,
                reason: error_chain(&e),
                retry_after: None,
            },
            Answer::Http {
                status,
                body,
                retry_after,
            } => {
                if (200..300).contains(&status) {
                    match serde_json::from_slice::<BulkResponse>(&body) {
                        Ok(r) if r.items.len() == n => Outcome::Items(
                            r.items
                                .into_iter()
                                .map(|m| {
                                    m.into_values().next().unwrap_or(Item {
                                        status: 500,
                                        error: Some(serde_json::Value::String(
                                            "empty bulk item".into(),
                                        )),
                                    })
                                })
                                .collect(),
                        ),
                        // The server read the body differently from us: narrow it down.
                        Ok(r) => Outcome::Refused {
                            status,
                            reason: format!(
                                "bulk answer has {} items for {n} documents",
                                r.items.len()
                            ),
                        },
                        Err(e) => Outcome::Retry {
                            status: Some(status),
                            reason: format!("unreadable bulk answer: {e}"),
                            retry_after: None,
                        },
                    }
                } else if request_retriable(status) {
                    Outcome::Retry {
                        status: Some(status),
                        reason: answer_reason(&body),
                        retry_after,
                    }
                } else {
                    Outcome::Refused {
                        status,
                        reason: answer_reason(&body),
                    }
                }
            }
        }
    }

    /// Groups of at most `batch_max_records` documents and `batch_max_bytes` bytes (a bigger
    /// document goes alone).
    fn chunks(&self, docs: &[BulkDoc<'_>], todo: &[usize]) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        let mut cur = Vec::new();
        let mut bytes = 0;
        for &i in todo {
            let b = doc_bytes(&docs[i]);
            if !cur.is_empty() && (cur.len() >= self.max_records || bytes + b > self.max_bytes) {
                out.push(std::mem::take(&mut cur));
                bytes = 0;
            }
            cur.push(i);
            bytes += b;
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }
}

/// An error with its sources (reqwest's own message says little: "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// Base64 for the basic auth header (the one place it is needed).
mod base64_lite {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::encode;

        #[test]
        fn rfc4648_vectors() {
            for (i, o) in [
                ("", ""),
                ("f", "Zg=="),
                ("fo", "Zm8="),
                ("foo", "Zm9v"),
                ("foob", "Zm9vYg=="),
                ("fooba", "Zm9vYmE="),
                ("foobar", "Zm9vYmFy"),
            ] {
                assert_eq!(encode(i.as_bytes()), o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts() {
        let e = serde_json::json!({"type": "document_parsing_exception", "reason": "failed to parse field [n]", "caused_by": {"type": "illegal_argument_exception", "reason": "For input string: \"abc\""}});
        assert_eq!(
            error_text(&e),
            "document_parsing_exception: failed to parse field [n] (caused by illegal_argument_exception: For input string: \"abc\")"
        );
        assert_eq!(
            answer_reason(br#"{"error":"no handler found"}"#),
            "no handler found"
        );
        assert_eq!(answer_reason(b"<html>413</html>"), "<html>413</html>");
    }

    fn config(endpoints: &[&str]) -> ElasticsearchSinkConfig {
        ElasticsearchSinkConfig {
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            target: IndexTarget::Index("logs-nevermore".into()),
            auth: None,
            tls: crate::config::EsTls::default(),
            batch_max_records: 1000,
            batch_max_bytes: 5 << 20,
            flush_interval: Duration::from_secs(1),
            gzip: true,
            request_timeout: Duration::from_secs(60),
            retry_initial_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(10),
            dead_letter: crate::config::DeadLetter::Index("dlq".into()),
            install_template: true,
            template_name: "nevermore-logs".into(),
        }
    }

    #[test]
    fn construction_errors() {
        assert!(matches!(
            BulkClient::new(&config(&[])),
            Err(EsError::NoEndpoint)
        ));
        assert!(matches!(
            BulkClient::new(&config(&["ftp://es:21"])),
            Err(EsError::InvalidEndpoint { .. })
        ));
        assert!(matches!(
            BulkClient::new(&config(&["not a url"])),
            Err(EsError::InvalidEndpoint { .. })
        ));
        let mut cfg = config(&["https://es:9200/"]);
        cfg.tls.ca_file = Some("/nonexistent/ca.pem".into());
        let e = BulkClient::new(&cfg).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "cannot read tls ca file /nonexistent/ca.pem: No such file or directory (os error 2)"
            )
        );
        let mut cfg = config(&["https://es:9200/"]);
        cfg.auth = Some(EsAuth::Bearer {
            token: "bad\ntoken".into(),
        });
        assert!(matches!(BulkClient::new(&cfg), Err(EsError::Auth { .. })));
        let c = BulkClient::new(&config(&["https://es:9200/", "https://es2:9200"])).ok();
        assert_eq!(
            c.as_ref().map(BulkClient::endpoint),
            Some("https://es:9200")
        );
    }

    #[test]
    fn backoff_grows_with_jitter_within_bounds() {
        let mut cfg = config(&["http://es:9200"]);
        cfg.retry_initial_backoff = Duration::from_millis(100);
        cfg.retry_max_backoff = Duration::from_millis(1000);
        let Ok(c) = BulkClient::new(&cfg) else {
            panic!("client")
        };
        assert_eq!(c.backoff(0, None), Duration::from_millis(100));
        for round in 1..40 {
            let cap =
                Duration::from_millis(100 * (1u64 << round.min(10))).min(Duration::from_secs(1));
            let d = c.backoff(round, None);
            assert!(
                d >= Duration::from_millis(100) && d <= cap,
                "{round}: {d:?}"
            );
        }
        // Retry-After is honoured up to the maximum backoff.
        assert!(c.backoff(0, Some(Duration::from_millis(700))) >= Duration::from_millis(700));
        assert!(c.backoff(0, Some(Duration::from_secs(60))) <= Duration::from_secs(1));
    }

    #[test]
    fn statuses() {
        for s in [429, 500, 502, 503, 401, 403] {
            assert!(item_retriable(s) && request_retriable(s), "{s}");
        }
        for s in [400, 404, 409, 413] {
            assert!(!item_retriable(s), "{s}");
        }
        assert!(!request_retriable(400) && !request_retriable(413));
        assert!(request_retriable(415) && request_retriable(404));
    }
}
