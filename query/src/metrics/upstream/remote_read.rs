//! Prometheus remote read (`POST /api/v1/read`), both answer types: streamed XOR chunks
//! (preferred: Prometheus sends its TSDB chunks as they are) and whole samples.
//!
//! Prometheus only understands external labels in `name="value"` matchers: it evaluates any
//! other matcher on an external label against the stored series, which lack it (so
//! `replica=~"a"` and `replica=""` find nothing and `replica!="a"` finds everything). This
//! client therefore learns the external labels from `/api/v1/status/config` (once), decides
//! such matchers itself, and filters the answer on them. Its HTTP API (series, label names and
//! values) knows nothing of external labels at all: there every matcher on one is decided here,
//! and the labels are added to the answers.

use super::index_api::{self, Query, ValuesBy};
use super::merge_duplicates;
use super::prompb;
use super::{EVERY_SERIES, Endpoint, UpstreamError, seconds, selector, sorted_unique, trim, xor};
use nevermore_promql::model::{Labels, MatchOp, Matcher, Millis, Sample, SelectRequest, Series};
use prost::Message;
use std::collections::BTreeMap;
use std::time::Duration;

/// Which answer to ask Prometheus for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseType {
    /// Streamed XOR chunks, falling back to samples if the server cannot stream.
    #[default]
    StreamedXorChunks,
    /// Samples only (one snappy-compressed message holding the whole answer).
    Samples,
}

/// A Prometheus server (or anything speaking its remote read protocol).
#[derive(Debug)]
pub struct RemoteRead {
    ep: Endpoint,
    base: String,
    response_type: ResponseType,
    /// `None` until known; `Some(empty)` when the server does not say.
    external_labels: tokio::sync::RwLock<Option<Labels>>,
}

/// One frame of a streamed answer is never larger than this (Prometheus sends about 1 MiB).
const MAX_FRAME_BYTES: u64 = 64 << 20;

impl RemoteRead {
    /// `url` is the server's base URL, e.g. `http://127.0.0.1:9090`.
    pub fn new(
        name: impl Into<String>,
        url: impl AsRef<str>,
        timeout: Duration,
        client: reqwest::Client,
        bearer_token: Option<String>,
    ) -> Self {
        RemoteRead {
            ep: Endpoint::new(
                name.into(),
                url.as_ref(),
                "/api/v1/read",
                timeout,
                client,
                bearer_token,
            ),
            base: url.as_ref().trim_end_matches('/').to_string(),
            response_type: ResponseType::default(),
            external_labels: tokio::sync::RwLock::new(None),
        }
    }

    pub fn with_response_type(mut self, t: ResponseType) -> Self {
        self.response_type = t;
        self
    }

    /// `true`: streamed XOR chunks (the default); `false`: samples only.
    pub fn with_streamed(self, streamed: bool) -> Self {
        self.with_response_type(if streamed {
            ResponseType::StreamedXorChunks
        } else {
            ResponseType::Samples
        })
    }

    /// Fails answers larger than `bytes` (as received, and once decoded).
    pub fn with_max_response_bytes(mut self, bytes: u64) -> Self {
        self.ep.max_bytes = bytes;
        self
    }

    /// The server's external labels, when known from the configuration (skips asking it).
    pub fn with_external_labels(self, labels: Labels) -> Self {
        RemoteRead {
            external_labels: tokio::sync::RwLock::new(Some(labels)),
            ..self
        }
    }

    pub fn name(&self) -> &str {
        &self.ep.name
    }

    pub fn url(&self) -> &str {
        &self.ep.url
    }

    pub async fn select(&self, req: &SelectRequest) -> Result<Vec<Series>, UpstreamError> {
        self.ep.timed(self.select_inner(req)).await
    }

    async fn select_inner(&self, req: &SelectRequest) -> Result<Vec<Series>, UpstreamError> {
        if req.end < req.start {
            return Ok(Vec::new());
        }
        let external = if req.matchers.iter().any(decided_here) {
            self.external_labels().await?
        } else {
            Labels::default()
        };
        // Other than `name="value"` matchers on external labels: decided here, not sent.
        let mut send: Vec<&Matcher> = Vec::new();
        let mut local: Vec<Matcher> = Vec::new();
        for m in &req.matchers {
            match external.get(&m.name) {
                Some(v) if decided_here(m) => {
                    if !m.is_match(v) {
                        return Ok(Vec::new());
                    }
                    local.push(m.clone());
                }
                _ => send.push(m),
            }
        }
        let all_names;
        if send.is_empty() {
            // A selection without matchers is refused; this one matches every series.
            all_names = Matcher::new(MatchOp::NotEqual, "__name__", "");
            send.push(&all_names);
        }
        let body = self.request_body(req, &send)?;
        let http = self
            .ep
            .client
            .post(&self.ep.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(body);
        let resp = self.ep.send(http).await?;
        let streamed = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-streamed-protobuf"));
        let mut series = if streamed {
            self.read_streamed(resp, req).await?
        } else {
            self.read_samples(resp, req).await?
        };
        if !local.is_empty() {
            // A stored series may carry its own value for an external label name.
            series.retain(|s| s.labels.matches(&local));
        }
        Ok(series)
    }

    /// Label sets of the series matching any selector (every series when there is none) in
    /// `[start, end]`, from Prometheus' index (`/api/v1/series`), external labels added.
    pub async fn series(
        &self,
        selectors: &[Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> Result<Vec<Labels>, UpstreamError> {
        self.ep
            .timed(async {
                let Some(plan) = self.index_plan(selectors, start, end).await? else {
                    return Ok(Vec::new());
                };
                let mut q = plan.query.clone();
                if q.selectors.is_empty() {
                    q.selectors.push(EVERY_SERIES.to_string());
                }
                let mut found = index_api::series(&self.ep, &self.base, &q).await?;
                for l in &mut found {
                    plan.add_external(l);
                }
                if plan.decided {
                    // A stored series may carry its own value for an external label name.
                    found.retain(|l| selectors.iter().any(|s| l.matches(s)));
                }
                Ok(sorted_unique(found))
            })
            .await
    }

    /// Label names over those series (`/api/v1/labels`), external label names included when
    /// any series matched.
    pub async fn label_names(
        &self,
        selectors: &[Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> Result<Vec<String>, UpstreamError> {
        self.ep
            .timed(async {
                let Some(plan) = self.index_plan(selectors, start, end).await? else {
                    return Ok(Vec::new());
                };
                let mut names = index_api::label_names(&self.ep, &self.base, &plan.query).await?;
                if !names.is_empty() {
                    names.extend(plan.external.iter().map(|l| l.name.clone()));
                }
                Ok(sorted_unique(names))
            })
            .await
    }

    /// Values of `name` over those series (`/api/v1/label/<name>/values`); an external label's
    /// value when any series matched.
    pub async fn label_values(
        &self,
        name: &str,
        selectors: &[Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> Result<Vec<String>, UpstreamError> {
        self.ep
            .timed(async {
                let Some(plan) = self.index_plan(selectors, start, end).await? else {
                    return Ok(Vec::new());
                };
                let values =
                    |q| index_api::label_values(&self.ep, &self.base, name, q, ValuesBy::Get);
                let Some(external) = plan.external.get(name) else {
                    return Ok(sorted_unique(values(&plan.query).await?));
                };
                // The API knows nothing of external labels: whether any series matched comes
                // from the label names, which also say whether a stored series has its own.
                let names = index_api::label_names(&self.ep, &self.base, &plan.query).await?;
                if names.is_empty() {
                    return Ok(Vec::new());
                }
                let mut out = vec![external.to_string()];
                if names.iter().any(|n| n == name) {
                    out.extend(values(&plan.query).await?);
                }
                Ok(sorted_unique(out))
            })
            .await
    }

    /// The index request for the selectors, with matchers on external labels decided here
    /// (Prometheus' HTTP API neither matches on them nor returns them); `None` when nothing
    /// can match.
    async fn index_plan(
        &self,
        selectors: &[Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> Result<Option<IndexPlan>, UpstreamError> {
        if end < start {
            return Ok(None);
        }
        let external = self.external_labels().await?;
        let mut texts = Vec::with_capacity(selectors.len());
        let mut decided = false;
        for matchers in selectors {
            let mut send: Vec<Matcher> = Vec::with_capacity(matchers.len());
            let mut possible = true;
            for m in matchers {
                match external.get(&m.name) {
                    Some(v) if m.is_match(v) => decided = true,
                    Some(_) => possible = false,
                    None => send.push(m.clone()),
                }
            }
            if !possible {
                decided = true;
                continue;
            }
            texts.push(
                selector(&send).map_err(|message| UpstreamError::BadSelection {
                    upstream: self.ep.name.clone(),
                    message,
                })?,
            );
        }
        if texts.is_empty() && !selectors.is_empty() {
            return Ok(None);
        }
        Ok(Some(IndexPlan {
            query: Query {
                selectors: texts,
                start: seconds(start),
                end: seconds(end),
            },
            external,
            decided,
        }))
    }

    fn request_body(
        &self,
        req: &SelectRequest,
        send: &[&Matcher],
    ) -> Result<Vec<u8>, UpstreamError> {
        let matchers = send
            .iter()
            .map(|m| prompb::LabelMatcher {
                r#type: match m.op {
                    MatchOp::Equal => prompb::MatcherType::Eq,
                    MatchOp::NotEqual => prompb::MatcherType::Neq,
                    MatchOp::Re(_) => prompb::MatcherType::Re,
                    MatchOp::NotRe(_) => prompb::MatcherType::Nre,
                } as i32,
                name: m.name.clone(),
                value: m.value.clone(),
            })
            .collect();
        let accepted = match self.response_type {
            ResponseType::StreamedXorChunks => vec![
                prompb::ResponseType::StreamedXorChunks as i32,
                prompb::ResponseType::Samples as i32,
            ],
            ResponseType::Samples => vec![prompb::ResponseType::Samples as i32],
        };
        let read = prompb::ReadRequest {
            queries: vec![prompb::Query {
                start_timestamp_ms: req.start,
                end_timestamp_ms: req.end,
                matchers,
                // Prometheus' TSDB takes the window from the hints when there are any.
                hints: Some(prompb::ReadHints {
                    step_ms: req.hints.step_ms,
                    func: req.hints.func.clone().unwrap_or_default(),
                    start_ms: req.start,
                    end_ms: req.end,
                    grouping: Vec::new(),
                    by: false,
                    range_ms: req.hints.range_ms,
                }),
            }],
            accepted_response_types: accepted,
        };
        snap::raw::Encoder::new()
            .compress_vec(&read.encode_to_vec())
            .map_err(|e| UpstreamError::BadSelection {
                upstream: self.ep.name.clone(),
                message: format!("cannot compress the read request: {e}"),
            })
    }

    /// The external labels, asked once from the configuration endpoint. A server without that
    /// endpoint (or with a configuration that does not parse) is taken to have none; a
    /// failure to reach it is an error, and asked again next time.
    async fn external_labels(&self) -> Result<Labels, UpstreamError> {
        if let Some(l) = self.external_labels.read().await.as_ref() {
            return Ok(l.clone());
        }
        let url = format!("{}/api/v1/status/config", self.base);
        let ep = Endpoint {
            url: url.clone(),
            ..self.ep.clone()
        };
        let labels = match ep.send(ep.client.get(&url)).await {
            Ok(resp) => {
                let body = ep.read_limited(resp, 16 << 20, false).await?;
                parse_config_external_labels(&body).unwrap_or_else(|e| {
                    tracing::warn!(upstream = %self.ep.name, %url, error = %e,
                        "cannot read external labels from the configuration; assuming none");
                    Labels::default()
                })
            }
            Err(UpstreamError::Status {
                status, message, ..
            }) => {
                tracing::warn!(upstream = %self.ep.name, %url, status, %message,
                    "no configuration endpoint; assuming no external labels");
                Labels::default()
            }
            Err(e) => return Err(e),
        };
        *self.external_labels.write().await = Some(labels.clone());
        Ok(labels)
    }

    async fn read_samples(
        &self,
        resp: reqwest::Response,
        req: &SelectRequest,
    ) -> Result<Vec<Series>, UpstreamError> {
        let body = self.ep.read_limited(resp, self.ep.max_bytes, false).await?;
        let len = snap::raw::decompress_len(&body)
            .map_err(|e| self.ep.bad_response(format!("snappy: {e}")))?;
        if len as u64 > self.ep.max_bytes {
            return Err(self.ep.too_large());
        }
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .map_err(|e| self.ep.bad_response(format!("snappy: {e}")))?;
        let msg = prompb::ReadResponse::decode(raw.as_slice())
            .map_err(|e| self.ep.bad_response(format!("read response: {e}")))?;
        let mut out = Vec::new();
        for result in msg.results {
            for ts in result.timeseries {
                let mut samples: Vec<Sample> = ts
                    .samples
                    .iter()
                    .map(|s| Sample {
                        t: s.timestamp,
                        v: s.value,
                    })
                    .collect();
                finish_samples(&mut samples, req);
                if !samples.is_empty() {
                    out.push(Series {
                        labels: labels_of(ts.labels),
                        samples,
                    });
                }
            }
        }
        Ok(merge_duplicates(out))
    }

    async fn read_streamed(
        &self,
        mut resp: reqwest::Response,
        req: &SelectRequest,
    ) -> Result<Vec<Series>, UpstreamError> {
        let mut state = Streamed {
            req,
            ep: &self.ep,
            out: Vec::new(),
            current: None,
            decoded_bytes: 0,
            skipped_chunks: 0,
        };
        let mut buf: Vec<u8> = Vec::new();
        let mut received: u64 = 0;
        loop {
            let mut pos = 0;
            while let Some((data, used)) =
                next_frame(&buf[pos..], self.ep.max_bytes.min(MAX_FRAME_BYTES)).map_err(
                    |e| match e {
                        FrameError::TooLarge => self.ep.too_large(),
                        FrameError::Bad(m) => self.ep.bad_response(m),
                    },
                )?
            {
                state.frame(data)?;
                pos += used;
            }
            buf.drain(..pos);
            match resp
                .chunk()
                .await
                .map_err(|e| self.ep.transport_error(&e))?
            {
                Some(c) => {
                    received += c.len() as u64;
                    if received > self.ep.max_bytes {
                        return Err(self.ep.too_large());
                    }
                    buf.extend_from_slice(&c);
                }
                None => break,
            }
        }
        if !buf.is_empty() {
            return Err(self.ep.bad_response(format!(
                "stream ends inside a frame ({} bytes left over)",
                buf.len()
            )));
        }
        if state.skipped_chunks > 0 {
            tracing::warn!(upstream = %self.ep.name, chunks = state.skipped_chunks,
                "skipped native histogram chunks: only float samples are read");
        }
        state.flush();
        Ok(merge_duplicates(state.out))
    }
}

/// Whether a matcher on an external label is decided here for remote read: Prometheus drops
/// `name="value"` when it is the external label's value and else applies the matcher to the
/// stored series, which lack the label: `name=""` would find every series (and hand them out
/// with the label set).
fn decided_here(m: &Matcher) -> bool {
    m.op != MatchOp::Equal || m.value.is_empty()
}

/// An index request with the external labels it was decided on.
struct IndexPlan {
    query: Query,
    external: Labels,
    /// Whether a matcher on an external label was decided here rather than sent.
    decided: bool,
}

impl IndexPlan {
    /// The external labels a series lacks, as Prometheus adds them to what it sends away.
    fn add_external(&self, labels: &mut Labels) {
        for l in self.external.iter() {
            if labels.get(&l.name).is_none() {
                labels.set(&l.name, &l.value);
            }
        }
    }
}

/// The decoding state of a streamed answer: a series may span frames.
struct Streamed<'a> {
    req: &'a SelectRequest,
    ep: &'a Endpoint,
    out: Vec<Series>,
    current: Option<(Vec<prompb::Label>, Vec<Sample>)>,
    decoded_bytes: u64,
    skipped_chunks: usize,
}

impl Streamed<'_> {
    fn frame(&mut self, data: &[u8]) -> Result<(), UpstreamError> {
        let msg = prompb::ChunkedReadResponse::decode(data)
            .map_err(|e| self.ep.bad_response(format!("chunked read response: {e}")))?;
        if msg.query_index != 0 {
            return Err(self
                .ep
                .bad_response(format!("answer to query {} of 1", msg.query_index)));
        }
        for cs in msg.chunked_series {
            if self.current.as_ref().is_none_or(|(l, _)| *l != cs.labels) {
                self.flush();
                self.decoded_bytes += cs
                    .labels
                    .iter()
                    .map(|l| (l.name.len() + l.value.len()) as u64)
                    .sum::<u64>();
                self.current = Some((cs.labels, Vec::new()));
            }
            let Some((labels, samples)) = self.current.as_mut() else {
                continue;
            };
            for (i, chunk) in cs.chunks.iter().enumerate() {
                if chunk.max_time_ms < self.req.start || chunk.min_time_ms > self.req.end {
                    continue;
                }
                if chunk.r#type != prompb::ChunkEncoding::Xor as i32 {
                    self.skipped_chunks += 1;
                    continue;
                }
                let n = xor::sample_count(&chunk.data)
                    .map_err(|e| self.ep.bad_response(format!("chunk {i}: {e}")))?;
                self.decoded_bytes += n as u64 * 16;
                if self.decoded_bytes > self.ep.max_bytes {
                    return Err(self.ep.too_large());
                }
                xor::decode(&chunk.data, samples).map_err(|e| {
                    self.ep.bad_response(format!(
                        "series {}: chunk {i}: {e}",
                        labels_of(labels.clone())
                    ))
                })?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) {
        if let Some((labels, mut samples)) = self.current.take() {
            finish_samples(&mut samples, self.req);
            if !samples.is_empty() {
                self.out.push(Series {
                    labels: labels_of(labels),
                    samples,
                });
            }
        }
    }
}

enum FrameError {
    TooLarge,
    Bad(String),
}

/// The data of the first whole frame in `buf` and the bytes it takes, `None` if `buf` holds no
/// whole frame yet. Frame: uvarint data length, big-endian CRC32-C of the data, the data.
fn next_frame(buf: &[u8], max: u64) -> Result<Option<(&[u8], usize)>, FrameError> {
    let mut len: u64 = 0;
    let mut header = None;
    for (i, b) in buf.iter().enumerate().take(10) {
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            header = Some(i + 1);
            break;
        }
    }
    let Some(header) = header else {
        if buf.len() >= 10 {
            return Err(FrameError::Bad("frame length overflows 64 bits".into()));
        }
        return Ok(None);
    };
    if len > max {
        return Err(FrameError::TooLarge);
    }
    let end = header + 4 + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    let want = u32::from_be_bytes([
        buf[header],
        buf[header + 1],
        buf[header + 2],
        buf[header + 3],
    ]);
    let data = &buf[header + 4..end];
    let got = crc32c::crc32c(data);
    if got != want {
        return Err(FrameError::Bad(format!(
            "frame checksum mismatch: crc32c {got:08x}, frame says {want:08x}"
        )));
    }
    Ok(Some((data, end)))
}

/// In time order, one sample per timestamp (chunks may overlap), inside the window.
fn finish_samples(samples: &mut Vec<Sample>, req: &SelectRequest) {
    if !samples.is_sorted_by_key(|s| s.t) {
        samples.sort_by_key(|s| s.t);
    }
    samples.dedup_by_key(|s| s.t);
    trim(samples, req.start, req.end);
}

fn labels_of(labels: Vec<prompb::Label>) -> Labels {
    Labels::from_pairs(labels.into_iter().map(|l| (l.name, l.value)))
}

/// `global.external_labels` from `/api/v1/status/config`'s answer
/// (`{"status":"success","data":{"yaml":"..."}}`).
fn parse_config_external_labels(body: &[u8]) -> Result<Labels, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        data: Data,
    }
    #[derive(serde::Deserialize)]
    struct Data {
        yaml: String,
    }
    #[derive(serde::Deserialize, Default)]
    struct Config {
        #[serde(default)]
        global: Global,
    }
    #[derive(serde::Deserialize, Default)]
    struct Global {
        #[serde(default)]
        external_labels: BTreeMap<String, String>,
    }
    let a: Answer = serde_json::from_slice(body).map_err(|e| format!("answer: {e}"))?;
    let c: Config = serde_saphyr::from_str(&a.data.yaml).map_err(|e| format!("yaml: {e}"))?;
    Ok(Labels::from_pairs(c.global.external_labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = data.len() as u64;
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend(crc32c::crc32c(data).to_be_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn frames_split_anywhere() {
        let a = vec![7u8; 300];
        let b = b"hello".to_vec();
        let mut stream = frame(&a);
        stream.extend(frame(&b));
        for cut in 0..stream.len() {
            // Only whole frames come out of a prefix.
            let mut pos = 0;
            let mut got = Vec::new();
            while let Ok(Some((d, used))) = next_frame(&stream[pos..cut], 1 << 20) {
                got.push(d.to_vec());
                pos += used;
            }
            let whole = [a.len() + 2 + 4, a.len() + 2 + 4 + b.len() + 1 + 4];
            assert_eq!(got.len(), whole.iter().filter(|&&w| w <= cut).count());
        }
    }

    #[test]
    fn bad_checksum_and_oversized_frames_fail() {
        let mut f = frame(b"abc");
        let last = f.len() - 1;
        f[last] ^= 1;
        assert!(matches!(next_frame(&f, 100), Err(FrameError::Bad(m)) if m.contains("checksum")));
        assert!(matches!(
            next_frame(&frame(&[0; 50]), 10),
            Err(FrameError::TooLarge)
        ));
        assert!(matches!(
            next_frame(&[0xff; 11], 10),
            Err(FrameError::Bad(_))
        ));
    }

    #[test]
    fn external_labels_from_config_answer() {
        let body = br#"{"status":"success","data":{"yaml":"global:\n  scrape_interval: 1m\n  external_labels:\n    replica: a\n    region: eu\nscrape_configs: []\n"}}"#;
        let l = parse_config_external_labels(body).unwrap();
        assert_eq!(l, Labels::from_pairs([("replica", "a"), ("region", "eu")]));
        let none = br#"{"status":"success","data":{"yaml":"global:\n  scrape_interval: 1m\n"}}"#;
        assert!(parse_config_external_labels(none).unwrap().is_empty());
    }

    #[test]
    fn overlapping_chunks_merge() {
        let req = SelectRequest {
            matchers: vec![],
            start: 10,
            end: 40,
            hints: Default::default(),
        };
        let s = |t: i64| Sample { t, v: t as f64 };
        let mut v = vec![s(0), s(10), s(20), s(30), s(20), s(30), s(40), s(50)];
        finish_samples(&mut v, &req);
        assert_eq!(v, vec![s(10), s(20), s(30), s(40)]);
    }
}
