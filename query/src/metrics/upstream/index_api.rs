//! The index endpoints of Prometheus' HTTP API (`/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/<name>/values`), which Prometheus and VictoriaMetrics both answer from their
//! index without reading samples.
//!
//! Checked against Prometheus 2.42 and VictoriaMetrics 1.79:
//! - Both take `match[]` (repeated), `start` and `end` (seconds with a fraction) as a form body,
//!   except Prometheus' `/api/v1/label/<name>/values`, which is GET only (405 to a POST).
//! - Both answer `{"status":"success","data":[...]}`, and errors with a non-2xx status and
//!   `{"status":"error","errorType":"...","error":"..."}` (Prometheus 400, VictoriaMetrics 422
//!   for a bad selector).
//! - Neither answers by sample: Prometheus' series go by chunk and its label names and values
//!   by block; VictoriaMetrics rounds the window to whole days (and searches all time when it
//!   starts near 1970). Answers can thus hold series without a sample in the window.

use super::{Endpoint, UpstreamError};
use nevermore_promql::model::Labels;
use std::collections::HashMap;

/// A query string longer than this is not sent in a URL (proxies commonly cut request lines
/// at 4 to 8 KiB); Prometheus' label values are then read from series instead.
const MAX_QUERY_STRING: usize = 4096;

/// One index request.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    /// Selector texts for `match[]`; none asks about every series (not for `/series`).
    pub selectors: Vec<String>,
    /// Seconds, as [`super::seconds`] writes them.
    pub start: String,
    pub end: String,
}

impl Query {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut p: Vec<(&'static str, &str)> = self
            .selectors
            .iter()
            .map(|s| ("match[]", s.as_str()))
            .collect();
        p.push(("start", &self.start));
        p.push(("end", &self.end));
        p
    }
}

/// How the server takes `/api/v1/label/<name>/values`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValuesBy {
    /// A form POST (VictoriaMetrics).
    Post,
    /// GET only (Prometheus); selectors too long for a URL go to `/api/v1/series` instead.
    Get,
}

/// `POST {base}/api/v1/series`.
pub(crate) async fn series(
    ep: &Endpoint,
    base: &str,
    q: &Query,
) -> Result<Vec<Labels>, UpstreamError> {
    let data: Vec<HashMap<String, String>> = call(ep, base, "/api/v1/series", q, false).await?;
    Ok(data.into_iter().map(Labels::from_pairs).collect())
}

/// `POST {base}/api/v1/labels`.
pub(crate) async fn label_names(
    ep: &Endpoint,
    base: &str,
    q: &Query,
) -> Result<Vec<String>, UpstreamError> {
    call(ep, base, "/api/v1/labels", q, false).await
}

/// `{base}/api/v1/label/<name>/values`.
pub(crate) async fn label_values(
    ep: &Endpoint,
    base: &str,
    name: &str,
    q: &Query,
    by: ValuesBy,
) -> Result<Vec<String>, UpstreamError> {
    let path = format!("/api/v1/label/{}/values", path_segment(name));
    match by {
        ValuesBy::Post => call(ep, base, &path, q, false).await,
        ValuesBy::Get if query_string(q).len() <= MAX_QUERY_STRING => {
            call(ep, base, &path, q, true).await
        }
        ValuesBy::Get => {
            // Series are the only index answer Prometheus takes by POST.
            let mut q = q.clone();
            if q.selectors.is_empty() {
                q.selectors.push(super::EVERY_SERIES.to_string());
            }
            let found = series(ep, base, &q).await?;
            Ok(found
                .iter()
                .filter_map(|l| l.get(name).map(str::to_string))
                .collect())
        }
    }
}

fn query_string(q: &Query) -> String {
    serde_urlencoded::to_string(q.pairs()).unwrap_or_default()
}

/// Sends one request and reads `data` from the answer, within the endpoint's response cap.
async fn call<T: serde::de::DeserializeOwned>(
    ep: &Endpoint,
    base: &str,
    path: &str,
    q: &Query,
    get: bool,
) -> Result<T, UpstreamError> {
    let url = format!("{base}{path}");
    // Errors name the endpoint asked (without a query string, which may be long).
    let ep = Endpoint {
        url: url.clone(),
        ..ep.clone()
    };
    let request = if get {
        ep.client.get(format!("{url}?{}", query_string(q)))
    } else {
        ep.client.post(&url).form(&q.pairs())
    };
    let resp = ep.send(request).await.map_err(server_error_text)?;
    let body = ep.read_limited(resp, ep.max_bytes, false).await?;
    parse_answer(&body).map_err(|e| match e {
        AnswerError::Bad(m) => ep.bad_response(m),
        AnswerError::Refused(message) => UpstreamError::Status {
            upstream: ep.name.clone(),
            url: ep.url.clone(),
            status: 200,
            message,
        },
    })
}

/// The API's envelope.
#[derive(serde::Deserialize)]
struct Answer<T> {
    status: String,
    data: Option<T>,
    error: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum AnswerError {
    /// Not the API's answer.
    Bad(String),
    /// `"status":"error"` with the server's explanation.
    Refused(String),
}

fn parse_answer<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AnswerError> {
    // Label values are bytes to VictoriaMetrics; keep what is not UTF-8 readable.
    let text = String::from_utf8_lossy(body);
    let a: Answer<T> =
        serde_json::from_str(&text).map_err(|e| AnswerError::Bad(format!("answer: {e}")))?;
    if a.status != "success" {
        return Err(AnswerError::Refused(a.error.unwrap_or_else(|| {
            format!("status {:?} without an error", a.status)
        })));
    }
    a.data
        .ok_or_else(|| AnswerError::Bad("answer without \"data\"".into()))
}

/// A refusal's message as the server's own error text rather than its JSON envelope (when the
/// body, cut to its start, still parses).
fn server_error_text(e: UpstreamError) -> UpstreamError {
    match e {
        UpstreamError::Status {
            upstream,
            url,
            status,
            message,
        } => {
            let message = match serde_json::from_str::<Answer<serde_json::Value>>(&message) {
                Ok(Answer { error: Some(m), .. }) if !m.is_empty() => m,
                _ => message,
            };
            UpstreamError::Status {
                upstream,
                url,
                status,
                message,
            }
        }
        e => e,
    }
}

/// `name` percent-encoded for a URL path segment.
fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_refusals() {
        let v: Vec<String> =
            parse_answer(br#"{"status":"success","data":["a","b"],"warnings":["x"]}"#).unwrap();
        assert_eq!(v, ["a", "b"]);
        let s: Vec<HashMap<String, String>> =
            parse_answer(br#"{"status":"success","data":[{"__name__":"up","a":"\u00e9"}]}"#)
                .unwrap();
        assert_eq!(s[0]["a"], "é");
        assert_eq!(
            parse_answer::<Vec<String>>(br#"{"status":"error","error":"bad \"x\""}"#),
            Err(AnswerError::Refused("bad \"x\"".into()))
        );
        for bad in [
            &br#"{"status":"success"}"#[..],
            b"<html>",
            br#"{"data":[]}"#,
        ] {
            assert!(matches!(
                parse_answer::<Vec<String>>(bad),
                Err(AnswerError::Bad(_))
            ));
        }
        // Bytes that are not UTF-8 read as replacement characters rather than failing.
        let v: Vec<String> =
            parse_answer(b"{\"status\":\"success\",\"data\":[\"a\xff\"]}").unwrap();
        assert_eq!(v, ["a\u{fffd}"]);
    }

    #[test]
    fn refusals_keep_the_server_text() {
        let e = server_error_text(UpstreamError::Status {
            upstream: "u".into(),
            url: "http://x/api/v1/series".into(),
            status: 400,
            message: r#"{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}"#.into(),
        });
        assert!(
            matches!(&e, UpstreamError::Status { status: 400, message, .. } if message == "no match[] parameter provided"),
            "{e:?}"
        );
        let e = server_error_text(UpstreamError::Status {
            upstream: "u".into(),
            url: "http://x".into(),
            status: 405,
            message: "Method Not Allowed".into(),
        });
        assert!(
            matches!(&e, UpstreamError::Status { message, .. } if message == "Method Not Allowed")
        );
    }

    #[test]
    fn names_in_paths_and_queries() {
        assert_eq!(path_segment("__name__"), "__name__");
        assert_eq!(path_segment("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
        let q = Query {
            selectors: vec![r#"{a=~"x|y"}"#.into(), "up".into()],
            start: "1.000".into(),
            end: "2.500".into(),
        };
        assert_eq!(
            query_string(&q),
            "match%5B%5D=%7Ba%3D%7E%22x%7Cy%22%7D&match%5B%5D=up&start=1.000&end=2.500"
        );
    }
}
