//! VictoriaMetrics' export API (`/api/v1/export`): one JSON line per series,
//! `{"metric":{...},"values":[...],"timestamps":[...]}`, read as it streams in. Series, label
//! names and values come from its Prometheus-compatible index endpoints (see `index_api`).
//!
//! Works for single-node (`http://vm:8428`) and cluster vmselect
//! (`http://vmselect:8481/select/0/prometheus`): the base URL is taken as given.
//!
//! What VictoriaMetrics 1.79 does, checked against the real server:
//! - `start`/`end` are seconds with an optional fraction (milliseconds as an integer are read
//!   as seconds, far in the future); both ends are inclusive.
//! - The selector needs at least one matcher (`{}` is refused); `{a=""}` alone is accepted.
//! - Values are written as bare JSON numbers (large ones as long digit strings), except
//!   infinities, written as the bare tokens `+Inf` and `-Inf` (not JSON): lines are therefore
//!   parsed here rather than by a JSON library.
//! - Ordinary NaN samples are dropped at ingestion (text import and remote write alike).
//!   Staleness markers are kept and exported as `null`; `null` (and a bare `NaN`, should a
//!   version write one) is read back as Prometheus' staleness marker bit pattern.
//! - Values are stored as decimals of about 12 significant digits sharing one exponent per
//!   block: next to a huge value, small ones in the same block read back as 0. Answers are
//!   therefore not bit-exact, unlike Prometheus'.
//! - The index endpoints read `start=0` as "not given" (then five minutes before `end`), round
//!   the window to whole days, and with `match[]` name `__name__` in `/api/v1/labels` even when
//!   no series matches.

use super::index_api::{self, Query, ValuesBy};
use super::merge_duplicates;
use super::{EVERY_SERIES, Endpoint, UpstreamError, seconds, selector, sorted_unique, trim};
use nevermore_promql::model::{
    Labels, METRIC_NAME, Matcher, Millis, Sample, SelectRequest, Series, stale_nan,
};
use std::time::Duration;

/// A VictoriaMetrics single node or vmselect.
#[derive(Debug)]
pub struct VmExport {
    ep: Endpoint,
    /// The base URL, for the index endpoints.
    base: String,
}

impl VmExport {
    /// `url` is the base, e.g. `http://127.0.0.1:8428` or
    /// `http://vmselect:8481/select/0/prometheus`.
    pub fn new(
        name: impl Into<String>,
        url: impl AsRef<str>,
        timeout: Duration,
        client: reqwest::Client,
        bearer_token: Option<String>,
    ) -> Self {
        VmExport {
            ep: Endpoint::new(
                name.into(),
                url.as_ref(),
                "/api/v1/export",
                timeout,
                client,
                bearer_token,
            ),
            base: url.as_ref().trim_end_matches('/').to_string(),
        }
    }

    /// Fails answers larger than `bytes` (as received, and once decoded).
    pub fn with_max_response_bytes(mut self, bytes: u64) -> Self {
        self.ep.max_bytes = bytes;
        self
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
        // VictoriaMetrics holds nothing before 1970; it refuses negative times.
        let start = req.start.max(0);
        if req.end < start {
            return Ok(Vec::new());
        }
        let selector = selector(&req.matchers).map_err(|message| UpstreamError::BadSelection {
            upstream: self.ep.name.clone(),
            message,
        })?;
        let form = [
            ("match[]", selector),
            ("start", seconds(start)),
            ("end", seconds(req.end)),
        ];
        // A form body: selectors can be longer than a URL may be.
        let mut resp = self
            .ep
            .send(self.ep.client.post(&self.ep.url).form(&form))
            .await?;
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut scanned = 0;
        let mut received: u64 = 0;
        let mut decoded: u64 = 0;
        let mut line_no = 0usize;
        loop {
            let chunk = resp
                .chunk()
                .await
                .map_err(|e| self.ep.transport_error(&e))?;
            let done = chunk.is_none();
            if let Some(c) = chunk {
                received += c.len() as u64;
                if received > self.ep.max_bytes {
                    return Err(self.ep.too_large());
                }
                buf.extend_from_slice(&c);
            }
            let mut pos = 0;
            loop {
                let line_end = match buf[scanned..].iter().position(|&b| b == b'\n') {
                    Some(i) => scanned + i,
                    None if done && pos < buf.len() => buf.len(),
                    None => break,
                };
                line_no += 1;
                let line = &buf[pos..line_end];
                if !line.iter().all(u8::is_ascii_whitespace) {
                    let mut s = parse_line(line)
                        .map_err(|m| self.ep.bad_response(format!("line {line_no}: {m}")))?;
                    decoded += s.samples.len() as u64 * 16
                        + s.labels
                            .iter()
                            .map(|l| (l.name.len() + l.value.len()) as u64)
                            .sum::<u64>();
                    if decoded > self.ep.max_bytes {
                        return Err(self.ep.too_large());
                    }
                    trim(&mut s.samples, req.start, req.end);
                    if !s.samples.is_empty() {
                        out.push(s);
                    }
                }
                pos = (line_end + 1).min(buf.len());
                scanned = pos;
            }
            buf.drain(..pos);
            scanned = buf.len();
            if done {
                break;
            }
        }
        Ok(merge_duplicates(out))
    }

    /// Label sets of the series matching any selector (every series when there is none) in
    /// `[start, end]`, from the index (`/api/v1/series`; by whole days).
    pub async fn series(
        &self,
        selectors: &[Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> Result<Vec<Labels>, UpstreamError> {
        self.ep
            .timed(async {
                let Some(mut q) = self.index_query(selectors, start, end)? else {
                    return Ok(Vec::new());
                };
                if q.selectors.is_empty() {
                    q.selectors.push(EVERY_SERIES.to_string());
                }
                Ok(sorted_unique(
                    index_api::series(&self.ep, &self.base, &q).await?,
                ))
            })
            .await
    }

    /// Label names over those series (`/api/v1/labels`).
    pub async fn label_names(
        &self,
        selectors: &[Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> Result<Vec<String>, UpstreamError> {
        self.ep
            .timed(async {
                let Some(q) = self.index_query(selectors, start, end)? else {
                    return Ok(Vec::new());
                };
                let names = index_api::label_names(&self.ep, &self.base, &q).await?;
                // With `match[]`, VictoriaMetrics names `__name__` even when no series matches:
                // the metric names say whether any did.
                if !q.selectors.is_empty()
                    && names.iter().all(|n| n == METRIC_NAME)
                    && index_api::label_values(
                        &self.ep,
                        &self.base,
                        METRIC_NAME,
                        &q,
                        ValuesBy::Post,
                    )
                    .await?
                    .is_empty()
                {
                    return Ok(Vec::new());
                }
                Ok(sorted_unique(names))
            })
            .await
    }

    /// Values of `name` over those series (`/api/v1/label/<name>/values`).
    pub async fn label_values(
        &self,
        name: &str,
        selectors: &[Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> Result<Vec<String>, UpstreamError> {
        self.ep
            .timed(async {
                let Some(q) = self.index_query(selectors, start, end)? else {
                    return Ok(Vec::new());
                };
                Ok(sorted_unique(
                    index_api::label_values(&self.ep, &self.base, name, &q, ValuesBy::Post).await?,
                ))
            })
            .await
    }

    /// The index request for the selectors; `None` when the window is empty.
    fn index_query(
        &self,
        selectors: &[Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> Result<Option<Query>, UpstreamError> {
        // `start=0` reads as "not given" (then the last five minutes before `end`), and nothing
        // is stored before 1970: start at 1 ms at the earliest.
        let start = start.max(1);
        if end < start {
            return Ok(None);
        }
        let selectors = selectors
            .iter()
            .map(|m| selector(m))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| UpstreamError::BadSelection {
                upstream: self.ep.name.clone(),
                message,
            })?;
        Ok(Some(Query {
            selectors,
            start: seconds(start),
            end: seconds(end),
        }))
    }
}

/// One export line.
fn parse_line(line: &[u8]) -> Result<Series, String> {
    let mut p = Cursor { s: line, i: 0 };
    let mut labels: Option<Vec<(String, String)>> = None;
    let mut values: Option<Vec<f64>> = None;
    let mut timestamps: Option<Vec<i64>> = None;
    p.expect(b'{')?;
    if !p.eat(b'}') {
        loop {
            let key = p.string()?;
            p.expect(b':')?;
            match key.as_str() {
                "metric" => {
                    let mut l = Vec::new();
                    p.expect(b'{')?;
                    if !p.eat(b'}') {
                        loop {
                            let name = p.string()?;
                            p.expect(b':')?;
                            l.push((name, p.string()?));
                            if p.eat(b'}') {
                                break;
                            }
                            p.expect(b',')?;
                        }
                    }
                    labels = Some(l);
                }
                "values" => values = Some(p.array(value_of)?),
                "timestamps" => {
                    timestamps = Some(p.array(|t| {
                        std::str::from_utf8(t)
                            .ok()
                            .and_then(|s| s.parse::<i64>().ok())
                            .ok_or_else(|| {
                                format!("bad timestamp {:?}", String::from_utf8_lossy(t))
                            })
                    })?)
                }
                _ => p.skip_value()?,
            }
            if p.eat(b'}') {
                break;
            }
            p.expect(b',')?;
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err("text after the object".into());
    }
    let labels = labels.ok_or("no \"metric\"")?;
    let values = values.ok_or("no \"values\"")?;
    let timestamps = timestamps.ok_or("no \"timestamps\"")?;
    if values.len() != timestamps.len() {
        return Err(format!(
            "{} values for {} timestamps",
            values.len(),
            timestamps.len()
        ));
    }
    Ok(Series {
        labels: Labels::from_pairs(labels),
        samples: timestamps
            .into_iter()
            .zip(values)
            .map(|(t, v)| Sample { t, v })
            .collect(),
    })
}

/// A value token: a JSON number, or VictoriaMetrics' bare `+Inf`, `-Inf`, `NaN`, or `null`.
fn value_of(t: &[u8]) -> Result<f64, String> {
    match t {
        b"+Inf" | b"Inf" => Ok(f64::INFINITY),
        b"-Inf" => Ok(f64::NEG_INFINITY),
        // Only staleness markers reach the export as NaN or null (see the module comment).
        b"NaN" | b"null" => Ok(stale_nan()),
        _ => std::str::from_utf8(t)
            .ok()
            .filter(|s| {
                s.bytes()
                    .all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c))
            })
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| format!("bad value {:?}", String::from_utf8_lossy(t))),
    }
}

/// Just enough JSON for export lines.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {:?} at byte {}", char::from(c), self.i))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.ws();
        let start = self.i;
        self.expect(b'"')?;
        loop {
            match self.s.get(self.i) {
                None => return Err("unterminated string".into()),
                Some(b'\\') => self.i += 2,
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(_) => self.i += 1,
            }
        }
        let raw = self.s.get(start..self.i).ok_or("unterminated string")?;
        match serde_json::from_slice::<String>(raw) {
            Ok(s) => Ok(s),
            // Label values are bytes to VictoriaMetrics; keep what is not UTF-8 readable.
            Err(_) => serde_json::from_str::<String>(&String::from_utf8_lossy(raw))
                .map_err(|e| format!("bad string at byte {start}: {e}")),
        }
    }

    /// A bare token (number or literal), up to the next delimiter.
    fn token(&mut self) -> Result<&[u8], String> {
        self.ws();
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| !b",]}".contains(c) && !c.is_ascii_whitespace())
        {
            self.i += 1;
        }
        if start == self.i {
            return Err(format!("expected a value at byte {start}"));
        }
        Ok(&self.s[start..self.i])
    }

    fn array<T>(
        &mut self,
        mut f: impl FnMut(&[u8]) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        let mut out = Vec::new();
        self.expect(b'[')?;
        if self.eat(b']') {
            return Ok(out);
        }
        loop {
            let t = self.token()?;
            out.push(f(t)?);
            if self.eat(b']') {
                return Ok(out);
            }
            self.expect(b',')?;
        }
    }

    /// Skips any value (keys nevermore does not read).
    fn skip_value(&mut self) -> Result<(), String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'"') => self.string().map(drop),
            Some(&open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                if self.eat(close) {
                    return Ok(());
                }
                loop {
                    if open == b'{' {
                        self.string()?;
                        self.expect(b':')?;
                    }
                    self.skip_value()?;
                    if self.eat(close) {
                        return Ok(());
                    }
                    self.expect(b',')?;
                }
            }
            _ => self.token().map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nevermore_promql::model::is_stale_nan;
    use proptest::prelude::*;

    #[test]
    fn export_lines() {
        let s = parse_line(
            br#"{"metric":{"__name__":"g","a":"x\"y\\z\nw","e":""},"values":[1,-2.5e3,+Inf,-Inf,NaN,null],"timestamps":[1,2,3,4,5,6]}"#,
        )
        .unwrap();
        assert_eq!(s.labels.get("a"), Some("x\"y\\z\nw"));
        assert_eq!(s.labels.get("e"), None);
        let v: Vec<f64> = s.samples.iter().map(|s| s.v).collect();
        assert_eq!(&v[..4], &[1.0, -2500.0, f64::INFINITY, f64::NEG_INFINITY]);
        assert!(is_stale_nan(v[4]) && is_stale_nan(v[5]));
        assert_eq!(s.samples[5].t, 6);
        // Unknown keys are skipped; key order does not matter.
        let s = parse_line(
            br#" { "timestamps" : [ 7 ] , "x": {"y":[1,{"z":"]"}]}, "values":[ 0.5 ], "metric":{} } "#,
        )
        .unwrap();
        assert_eq!(s.samples, vec![Sample { t: 7, v: 0.5 }]);
        for bad in [
            &br#"{"metric":{},"values":[1],"timestamps":[]}"#[..],
            br#"{"metric":{},"values":[x],"timestamps":[1]}"#,
            br#"{"metric":{},"values":[1],"timestamps":[1.5]}"#,
            br#"{"metric":{"a":1},"values":[],"timestamps":[]}"#,
            br#"{"metric":{},"values":[],"timestamps":[]} x"#,
            br#"{"metric":{"#,
            br#"{"values":[],"timestamps":[]}"#,
        ] {
            assert!(parse_line(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    proptest! {
        #[test]
        fn lines_never_panic(line in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_line(&line);
        }

        #[test]
        fn mangled_lines_never_panic(cut in 0usize..120, flip in 0usize..120, byte in any::<u8>()) {
            let mut line = br#"{"metric":{"__name__":"g","a":"x\"y"},"values":[1,+Inf,NaN],"timestamps":[1,2,3]}"#.to_vec();
            let f = flip % line.len();
            line[f] = byte;
            line.truncate(cut.min(line.len()));
            let _ = parse_line(&line);
        }
    }
}
