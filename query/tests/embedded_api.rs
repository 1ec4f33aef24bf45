//! The search API over the embedded index, through real HTTP: every answer is checked against
//! the language's in-memory evaluator over the fixture set (testdata/search/records.ndjson).

#![allow(clippy::unwrap_used)]

use nevermore_index::{IndexDoc, LogIndex, Retention, Writer};
use nevermore_lang::{Limits, Matcher, parse_strict};
use nevermore_query::config::{ServeConfig, Tenant};
use nevermore_query::http::AppState;
use nevermore_query::logs::Backend;
use nevermore_query::logs::embedded::EmbeddedBackend;
use nevermore_query::logs::record_doc::ValueDoc;
use nevermore_schemas::record::LogRecord;
use serde_json::Value;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::OnceLock;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/search/records.ndjson"
);
const TOKEN_PAYMENTS: &str = "payments-token-0123456789";
// The fixture spans 2026-11-24 to 2026-11-26.
const START: &str = "2026-11-23T00:00:00Z";
const END: &str = "2026-11-27T00:00:00Z";

fn records() -> &'static Vec<Value> {
    static R: OnceLock<Vec<Value>> = OnceLock::new();
    R.get_or_init(|| {
        std::fs::read_to_string(FIXTURE)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    })
}

fn key(r: &Value) -> (i64, String, u64) {
    (
        nevermore_index::parse_ts(r["@timestamp"].as_str().unwrap()).unwrap(),
        r["event"]["stream_id"].as_str().unwrap().to_string(),
        r["event"]["sequence"].as_u64().unwrap(),
    )
}

fn id(r: &Value) -> String {
    r["event"]["id"].as_str().unwrap().to_string()
}

/// The ids the query must return, newest first.
fn oracle(q: &str, namespaces: Option<&[&str]>) -> Vec<String> {
    let expr = parse_strict(q, &Limits::default()).unwrap();
    let m = Matcher::new(&expr).unwrap();
    let mut hits: Vec<&Value> = records()
        .iter()
        .filter(|r| m.matches(&ValueDoc::new(r)))
        .filter(|r| {
            namespaces.is_none_or(|ns| {
                r.pointer("/kubernetes/namespace")
                    .and_then(Value::as_str)
                    .is_some_and(|n| ns.contains(&n))
            })
        })
        .collect();
    hits.sort_by_key(|r| std::cmp::Reverse(key(r)));
    hits.into_iter().map(id).collect()
}

fn build_index(dir: &std::path::Path) -> LogIndex {
    let index = LogIndex::open(dir).unwrap();
    let mut w = Writer::new(index.clone(), 30_000_000, Retention::default()).unwrap();
    for line in std::fs::read_to_string(FIXTURE).unwrap().lines() {
        let rec: LogRecord = serde_json::from_str(line).unwrap();
        let doc = IndexDoc::from_record(&rec, line.as_bytes()).unwrap();
        assert!(w.add(&doc).unwrap());
    }
    w.commit().unwrap();
    index
}

struct Server {
    addr: SocketAddr,
    index: LogIndex,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
}

async fn start(tenants: Vec<Tenant>, max_in_flight: usize) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let index = build_index(dir.path());
    let backend = EmbeddedBackend::new(index.clone()).unwrap();
    let mut cfg: ServeConfig = nevermore_query::config::load_str("", "test").unwrap();
    cfg.tenants = tenants;
    cfg.max_in_flight = max_in_flight;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(
        Backend::Embedded(backend),
        nevermore_query::metrics::Metrics::empty(&cfg.metrics),
        cfg,
    );
    tokio::spawn(nevermore_query::http::serve(
        listener,
        state,
        std::future::pending(),
    ));
    Server {
        addr,
        index,
        _dir: dir,
        client: reqwest::Client::new(),
    }
}

impl Server {
    async fn get(&self, path: &str, params: &[(&str, &str)], token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .client
            .get(format!("http://{}{path}", self.addr))
            .query(params);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// Every page of a search, following cursors.
    async fn all_pages(
        &self,
        q: &str,
        limit: &str,
        order: &str,
        token: Option<&str>,
    ) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params = vec![
                ("q", q),
                ("start", START),
                ("end", END),
                ("limit", limit),
                ("order", order),
            ];
            if let Some(c) = &cursor {
                params.push(("cursor", c));
            }
            let (status, body) = self.get("/api/v1/logs/search", &params, token).await;
            assert_eq!(status, 200, "{q}: {body}");
            let hits = body["hits"].as_array().unwrap().clone();
            out.extend(hits);
            match body["next"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }
}

/// Queries over every feature of the language; the expected hits come from the evaluator.
const QUERIES: &[&str] = &[
    "",
    "namespace:shop",
    "namespace:shop,payments -pod:web-*",
    "level:>=warn",
    "level:<info",
    "level:debug..warn",
    "-level:info",
    "no:level",
    "has:label.app.kubernetes.io/name",
    "label.app.kubernetes.io/name:prometheus",
    "label.tier:frontend",
    "\"connection refused\"",
    "connection refused",
    "/api/v1",
    "message:/time[o]ut after \\d+s/",
    "/TIMEOUT/i",
    "lock*",
    "*users?id=1*",
    "http://svc:8080",
    "pod:/ledger-[0-9]+/",
    "stream:stderr (level:error OR level:fatal)",
    "namespace:shop AND NOT container:nginx",
    "workload:api level:>=warn",
    "node:node-a OR node:node-c",
    "time:2026-11-25..2026-11-25T12:00:00Z",
    "time:>=2026-11-26",
    "time:<3000-01-01 level:error",
    "-time:>=1600-01-01",
    "cluster:prod-eu -namespace:kube-system",
    "values",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_matches_the_evaluator_in_order_across_pages() {
    let s = start(Vec::new(), 64).await;
    for q in QUERIES {
        let want = oracle(q, None);
        let got: Vec<String> = s
            .all_pages(q, "37", "desc", None)
            .await
            .iter()
            .map(id)
            .collect();
        assert_eq!(got, want, "query {q:?}");
        let mut asc: Vec<String> = s
            .all_pages(q, "1000", "asc", None)
            .await
            .iter()
            .map(id)
            .collect();
        asc.reverse();
        assert_eq!(asc, want, "query {q:?} ascending");
        let (_, body) = s
            .get(
                "/api/v1/logs/search",
                &[("q", q), ("start", START), ("end", END), ("limit", "1")],
                None,
            )
            .await;
        assert_eq!(
            body["total"].as_u64().unwrap() as usize,
            want.len(),
            "total of {q:?}"
        );
    }
    assert!(
        oracle("\"connection refused\"", None).len() > 5,
        "fixture too thin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram_counts_every_record_once() {
    let s = start(Vec::new(), 64).await;
    for q in ["", "level:>=warn", "/TIMEOUT/i"] {
        let (status, body) = s
            .get(
                "/api/v1/logs/histogram",
                &[
                    ("q", q),
                    ("start", START),
                    ("end", END),
                    ("interval", "3600000"),
                ],
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let buckets = body["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), 96);
        let want = oracle(q, None);
        assert_eq!(body["total"].as_u64().unwrap() as usize, want.len());
        // Per bucket and level against the evaluator.
        let ids: HashSet<String> = want.into_iter().collect();
        for b in buckets {
            let start = nevermore_index::parse_ts(b["start"].as_str().unwrap()).unwrap();
            let mut by_level = std::collections::BTreeMap::<String, u64>::new();
            for r in records().iter().filter(|r| ids.contains(&id(r))) {
                let ts = key(r).0;
                if ts >= start && ts < start + 3_600_000_000_000 {
                    let l = r
                        .pointer("/log/level")
                        .and_then(Value::as_str)
                        .unwrap_or("none");
                    *by_level.entry(l.to_string()).or_default() += 1;
                }
            }
            let got: std::collections::BTreeMap<String, u64> =
                serde_json::from_value(b["counts"].clone()).unwrap();
            assert_eq!(got, by_level, "bucket {b}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_values_count_the_matching_records() {
    let s = start(Vec::new(), 64).await;
    let (status, body) = s
        .get(
            "/api/v1/logs/fields/pod/values",
            &[
                ("prefix", "api"),
                ("start", START),
                ("end", END),
                ("limit", "100"),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut want = std::collections::BTreeMap::<String, u64>::new();
    for r in records() {
        if let Some(p) = r.pointer("/kubernetes/pod/name").and_then(Value::as_str)
            && p.starts_with("api")
        {
            *want.entry(p.to_string()).or_default() += 1;
        }
    }
    let got: std::collections::BTreeMap<String, u64> = body["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap().to_string(),
                v["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(!want.is_empty());
    // Labels with dots and slashes in the key, restricted by a query.
    let (_, body) = s
        .get(
            "/api/v1/logs/fields/label.app.kubernetes.io%2Fname/values",
            &[
                ("q", "namespace:monitoring"),
                ("start", START),
                ("end", END),
            ],
            None,
        )
        .await;
    assert!(
        body["values"].as_array().is_some_and(|v| !v.is_empty()),
        "{body}"
    );
    let (status, body) = s
        .get(
            "/api/v1/logs/fields/message/values",
            &[("start", START), ("end", END)],
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_field"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_is_the_stream_around_a_hit_in_order() {
    let s = start(Vec::new(), 64).await;
    // The stream with the most records, and a record in its middle.
    let mut by_stream = std::collections::BTreeMap::<String, Vec<&Value>>::new();
    for r in records() {
        by_stream.entry(key(r).1).or_default().push(r);
    }
    let (_, mut stream) = by_stream.into_iter().max_by_key(|(_, v)| v.len()).unwrap();
    stream.sort_by_key(|r| key(r));
    let mid = stream.len() / 2;
    let hit = id(stream[mid]);
    let (status, body) = s
        .get(
            "/api/v1/logs/context",
            &[("id", &hit), ("before", "3"), ("after", "4")],
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ids = |v: &Value| -> Vec<String> { v.as_array().unwrap().iter().map(id).collect() };
    assert_eq!(
        ids(&body["before"]),
        stream[mid - 3..mid]
            .iter()
            .map(|r| id(r))
            .collect::<Vec<_>>()
    );
    assert_eq!(id(&body["hit"]), hit);
    assert_eq!(
        ids(&body["after"]),
        stream[mid + 1..mid + 5]
            .iter()
            .map(|r| id(r))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_never_sees_another_namespace() {
    let tenants = vec![Tenant {
        token: TOKEN_PAYMENTS.into(),
        namespaces: ["payments".to_string()].into_iter().collect(),
    }];
    let s = start(tenants, 64).await;
    let tok = Some(TOKEN_PAYMENTS);
    for q in [
        "",
        "namespace:shop",
        "-namespace:payments",
        "namespace:shop OR namespace:payments",
        "NOT (namespace:payments)",
        "has:namespace OR no:namespace",
        "level:>=warn",
    ] {
        let got = s.all_pages(q, "500", "desc", tok).await;
        let want = oracle(q, Some(&["payments"]));
        assert_eq!(got.iter().map(id).collect::<Vec<_>>(), want, "{q:?}");
        assert!(
            got.iter()
                .all(|r| r["kubernetes"]["namespace"] == "payments"),
            "{q:?}"
        );
    }
    let (_, body) = s
        .get(
            "/api/v1/logs/fields/namespace/values",
            &[("start", START), ("end", END)],
            tok,
        )
        .await;
    let values: Vec<&str> = body["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["payments"]);
    let (_, body) = s
        .get(
            "/api/v1/logs/histogram",
            &[("start", START), ("end", END)],
            tok,
        )
        .await;
    assert_eq!(
        body["total"].as_u64().unwrap() as usize,
        oracle("", Some(&["payments"])).len()
    );
    // The context of another namespace's record does not exist for this tenant.
    let shop = records()
        .iter()
        .find(|r| r["kubernetes"]["namespace"] == "shop")
        .unwrap();
    let (status, _) = s
        .get("/api/v1/logs/context", &[("id", &id(shop))], tok)
        .await;
    assert_eq!(status, 404);
    // No token, or a wrong one.
    let (status, body) = s.get("/api/v1/logs/search", &[("q", "")], None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = s
        .get(
            "/api/v1/logs/search",
            &[("q", "")],
            Some("payments-token-0123456780"),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_one_shape_and_a_position() {
    let s = start(Vec::new(), 64).await;
    let (status, body) = s
        .get(
            "/api/v1/logs/search",
            &[("q", "namespace:shop \"unterminated")],
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_query");
    assert_eq!(body["error"]["start"], 15, "{body}");
    let long = "a ".repeat(5000);
    let (status, body) = s.get("/api/v1/logs/search", &[("q", &long)], None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_query")),
        "{body}"
    );
    let (status, body) = s
        .get("/api/v1/logs/search", &[("cursor", "garbage")], None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_cursor"))
    );
    let (status, body) = s
        .get("/api/v1/logs/search", &[("start", "yesterday")], None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_parameter"))
    );
    let (status, body) = s
        .get("/api/v1/logs/search", &[("limit", "100000")], None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_parameter"))
    );
    let (status, body) = s.get("/api/v1/nothing", &[], None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    // A cursor is bound to its range: moving the range restarts paging.
    let (_, body) = s
        .get(
            "/api/v1/logs/search",
            &[("start", START), ("end", END), ("limit", "1")],
            None,
        )
        .await;
    let cursor = body["next"].as_str().unwrap().to_string();
    let (status, body) = s
        .get(
            "/api/v1/logs/search",
            &[
                ("start", START),
                ("end", "2026-11-26T00:00:00Z"),
                ("cursor", &cursor),
            ],
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_cursor"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn highlights_mark_the_free_text_matches() {
    let s = start(Vec::new(), 64).await;
    let (_, body) = s
        .get(
            "/api/v1/logs/search",
            &[
                ("q", "\"connection refused\""),
                ("start", START),
                ("end", END),
                ("limit", "3"),
            ],
            None,
        )
        .await;
    for (hit, spans) in body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .zip(body["highlights"].as_array().unwrap())
    {
        let msg = hit["message"].as_str().unwrap();
        let span = &spans[0];
        let (a, b) = (
            span[0].as_u64().unwrap() as usize,
            span[1].as_u64().unwrap() as usize,
        );
        assert_eq!(msg[a..b].to_lowercase(), "connection refused", "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tail_sends_new_records_once() {
    let s = start(Vec::new(), 64).await;
    let resp = s
        .client
        .get(format!("http://{}/api/v1/logs/tail", s.addr))
        .query(&[("q", "namespace:live"), ("backlog", "0")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Records written now, after the tail started.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let mut w = Writer::new(s.index.clone(), 20_000_000, Retention::default()).unwrap();
    let mut sources = Vec::new();
    // More than one page of a poll: a fast stream must not stall the tail.
    const N: u64 = 2500;
    for i in 0..N {
        let mut rec: Value = records()[0].clone();
        rec["@timestamp"] = nevermore_index::format_ts(now + i as i64).into();
        rec["kubernetes"]["namespace"] = "live".into();
        rec["event"]["id"] = format!("live{i:012}").into();
        rec["event"]["sequence"] = (1_000_000 + i).into();
        sources.push(rec.to_string());
    }
    for src in &sources {
        let rec: LogRecord = serde_json::from_str(src).unwrap();
        w.add(&IndexDoc::from_record(&rec, src.as_bytes()).unwrap())
            .unwrap();
    }
    w.commit().unwrap();
    let mut resp = resp;
    let mut seen = Vec::new();
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while seen.len() < N as usize {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("tail too slow")
            .unwrap()
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                let v: Value = serde_json::from_str(data).unwrap();
                seen.push(id(&v));
            }
        }
    }
    let want: Vec<String> = (0..N).map(|i| format!("live{i:012}")).collect();
    assert_eq!(seen, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_page_through_a_relative_range() {
    let s = start(Vec::new(), 64).await;
    let q = "level:>=warn";
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        // The same request every time, as a client sends it: a relative start, no end.
        let mut params = vec![("q", q), ("start", "now-3650d"), ("limit", "50")];
        if let Some(c) = &cursor {
            params.push(("cursor", c));
        }
        let (status, body) = s.get("/api/v1/logs/search", &params, None).await;
        assert_eq!(status, 200, "{body}");
        got.extend(body["hits"].as_array().unwrap().iter().map(id));
        match body["next"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(got, oracle(q, None));
}
