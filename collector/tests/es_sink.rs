//! The Elasticsearch bulk layer and sink against the real test servers: noida-db
//! (Elasticsearch 8 API) and osmem-server (OpenSearch 3 API), both from `NEVERMORE_ES_URLS`
//! (`.ci/services start`, then `source /tmp/nevermore-services/env`). Every test runs against
//! every server, and fails (never skips) when the variable is unset or a server is down.
//!
//! Faults are injected by a small HTTP proxy in front of the real server.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use nevermore_collector::config::{DeadLetter, ElasticsearchSinkConfig, EsTls, IndexTarget};
use nevermore_collector::es::{BulkClient, BulkDoc, Flavor};
use nevermore_collector::event::{Batch, Event, SegmentPath, StreamInfo, kubernetes_fields};
use nevermore_collector::sinks::Sink;
use nevermore_collector::sinks::elasticsearch::ElasticsearchSink;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- servers and helpers

#[derive(Debug, Clone)]
struct Server {
    url: String,
    flavor: Flavor,
}

async fn servers() -> Vec<Server> {
    let urls = std::env::var("NEVERMORE_ES_URLS").unwrap_or_default();
    assert!(
        !urls.trim().is_empty(),
        "NEVERMORE_ES_URLS is not set: run `.ci/services start` and `source /tmp/nevermore-services/env`"
    );
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let root: Value = match http.get(format!("{url}/")).send().await {
            Ok(r) => r.json().await.unwrap_or_else(|e| {
                panic!("elasticsearch test server {url} answered GET / with no json: {e}")
            }),
            Err(e) => panic!("elasticsearch test server {url} is unreachable: {e}"),
        };
        let flavor = if root.pointer("/version/distribution") == Some(&json!("opensearch")) {
            Flavor::OpenSearch
        } else {
            Flavor::Elasticsearch
        };
        out.push(Server {
            url: url.to_owned(),
            flavor,
        });
    }
    out
}

/// A name no other test (in this or another process, or an earlier run) uses.
fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 1_000_000_000;
    format!(
        "nvm-es-{tag}-{}-{}-{t}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn config(url: &str, index: &str, dead_letter: DeadLetter) -> ElasticsearchSinkConfig {
    ElasticsearchSinkConfig {
        endpoints: vec![url.to_owned()],
        target: IndexTarget::Index(index.to_owned()),
        auth: None,
        tls: EsTls::default(),
        batch_max_records: 1000,
        batch_max_bytes: 5 << 20,
        flush_interval: Duration::ZERO,
        gzip: true,
        request_timeout: Duration::from_secs(30),
        retry_initial_backoff: Duration::from_millis(20),
        retry_max_backoff: Duration::from_millis(300),
        dead_letter,
        install_template: false,
        template_name: "unused".into(),
    }
}

fn dlq_file(dir: &tempfile::TempDir) -> DeadLetter {
    DeadLetter::File(dir.path().join("dead-letter.ndjson"))
}

async fn put_json(url: &str, body: &Value) -> Value {
    let r = reqwest::Client::new()
        .put(url)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "PUT {url}: {status} {v}");
    v
}

async fn get_json(url: &str) -> Value {
    let r = reqwest::Client::new().get(url).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "GET {url}: {status} {v}");
    v
}

async fn count(url: &str, index: &str) -> u64 {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/{index}/_refresh"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "refresh {index}: {}", r.status());
    get_json(&format!("{url}/{index}/_count")).await["count"]
        .as_u64()
        .unwrap()
}

/// Every document of an index: `_id` → `_source`.
async fn documents(url: &str, index: &str) -> BTreeMap<String, Value> {
    count(url, index).await;
    let r = reqwest::Client::new()
        .post(format!("{url}/{index}/_search"))
        .json(&json!({"size": 10000, "query": {"match_all": {}}}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let hits = v["hits"]["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    let mut out = BTreeMap::new();
    for h in hits {
        let id = h["_id"].as_str().unwrap().to_owned();
        assert!(
            out.insert(id.clone(), h["_source"].clone()).is_none(),
            "{id} twice"
        );
    }
    out
}

async fn delete(url: &str, path: &str) {
    let _ = reqwest::Client::new()
        .delete(format!("{url}/{path}"))
        .send()
        .await;
}

/// The stream of a test's events.
fn stream() -> Arc<StreamInfo> {
    let pc = nevermore_collector::discover::PodContainer {
        namespace: "shop".into(),
        pod: "api-7d9f8c6b5-x2x9k".into(),
        uid: "5c1e".into(),
        container: "api".into(),
        restart: 0,
    };
    Arc::new(StreamInfo::new(
        0,
        "k8s:shop_api-7d9f8c6b5-x2x9k_5c1e/api/0".into(),
        Some(kubernetes_fields(&pc, "node-a", BTreeMap::new())),
        "test".into(),
        "node-a".into(),
        "container".into(),
    ))
}

/// A batch of events at the given timestamps, from byte offset `first_offset` on.
fn batch(id: u64, info: &Arc<StreamInfo>, first_offset: u64, timestamps: &[i64]) -> Batch {
    let path = Arc::new(SegmentPath::new(
        "/var/log/pods/shop_api_5c1e/api/0.log".into(),
    ));
    let events: Vec<Event> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &ts)| {
            let offset = first_offset + 100 * i as u64;
            Event {
                stream: info.clone(),
                path: path.clone(),
                timestamp_ns: ts,
                std: Some(nevermore_schemas::record::StdStream::Stdout),
                message: format!("GET /item/{offset} 200"),
                level: None,
                flags: Default::default(),
                offset,
                sequence: offset / 100,
                id: info.event_id(7, offset),
            }
        })
        .collect();
    let bytes = events.iter().map(|e| e.message.len()).sum();
    Batch {
        id,
        events,
        marks: Vec::new(),
        bytes,
    }
}

fn ids_of(b: &Batch) -> BTreeSet<String> {
    b.events.iter().map(|e| format!("{:016x}", e.id)).collect()
}

fn ns(rfc3339: &str) -> i64 {
    nevermore_schemas::time::parse_rfc3339(rfc3339.as_bytes()).unwrap()
}

fn dead_letters(dir: &tempfile::TempDir) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.path().join("dead-letter.ndjson")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// An index whose field `n` is a `long`: a document with `"n": "abc"` is a mapping error on
/// both servers (noida-db: `document_parsing_exception`, osmem: `mapper_parsing_exception`).
async fn create_long_index(url: &str, index: &str) {
    put_json(
        &format!("{url}/{index}"),
        &json!({"mappings": {"properties": {"n": {"type": "long"}, "m": {"type": "keyword"}}}}),
    )
    .await;
}

// ---------------------------------------------------------------- the fault-injecting proxy

/// What the proxy does to `_bulk` requests.
#[derive(Debug, Default)]
struct Faults {
    /// Answer 429 to every `_bulk` until this long after the proxy started.
    reject_for: Duration,
    /// Then answer 503 to this many `_bulk` requests.
    unavailable: usize,
    /// Then, in this many forwarded answers, turn every other successful item into a 429
    /// (those documents were created: their retry gets a 409).
    rewrite_items: usize,
    /// Answer 413 to any `_bulk` with more documents than this.
    max_docs: Option<usize>,
    /// Answer 413 to any `_bulk` containing this text.
    too_large_marker: Option<String>,
}

#[derive(Debug, Default)]
struct ProxyLog {
    answered_429: AtomicUsize,
    answered_503: AtomicUsize,
    answered_413: AtomicUsize,
    items_rewritten: AtomicUsize,
    forwarded: AtomicUsize,
    /// `Content-Encoding` of each `_bulk` request.
    encodings: Mutex<Vec<Option<String>>>,
    /// `Authorization` of each request.
    authorizations: Mutex<Vec<Option<String>>>,
}

struct Proxy {
    upstream: String,
    faults: Faults,
    started: Instant,
    http: reqwest::Client,
    log: ProxyLog,
    rewrites_left: AtomicUsize,
    unavailable_left: AtomicUsize,
}

fn answer(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn proxy_handle(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let body: Bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    p.log.authorizations.lock().unwrap().push(
        headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    let encoding = headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_owned());
    let is_bulk = path.split('?').next().unwrap_or("").ends_with("/_bulk");
    if is_bulk {
        p.log.encodings.lock().unwrap().push(encoding.clone());
        let mut plain = Vec::new();
        if encoding.as_deref() == Some("gzip") {
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut plain)
                .unwrap();
        } else {
            plain = body.to_vec();
        }
        let docs = plain
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
            / 2;
        let rejected = json!({"error": {"type": "es_rejected_execution_exception", "reason": "rejected by the test proxy"}, "status": 429});
        if p.started.elapsed() < p.faults.reject_for {
            p.log.answered_429.fetch_add(1, Ordering::Relaxed);
            return answer(429, rejected);
        }
        if p.unavailable_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            p.log.answered_503.fetch_add(1, Ordering::Relaxed);
            return answer(
                503,
                json!({"error": {"type": "unavailable_shards_exception", "reason": "test proxy"}, "status": 503}),
            );
        }
        let marker = p
            .faults
            .too_large_marker
            .as_ref()
            .is_some_and(|m| String::from_utf8_lossy(&plain).contains(m.as_str()));
        if marker || p.faults.max_docs.is_some_and(|max| docs > max) {
            p.log.answered_413.fetch_add(1, Ordering::Relaxed);
            return answer(
                413,
                json!({"error": {"type": "content_too_long_exception", "reason": "request too large (test proxy)"}, "status": 413}),
            );
        }
    }
    let mut rb = p
        .http
        .request(method, format!("{}{path}", p.upstream))
        .body(body);
    for h in ["content-type", "content-encoding"] {
        if let Some(v) = headers.get(h) {
            rb = rb.header(h, v.to_str().unwrap());
        }
    }
    let up = rb.send().await.unwrap();
    p.log.forwarded.fetch_add(1, Ordering::Relaxed);
    let status = up.status().as_u16();
    let mut bytes = up.bytes().await.unwrap().to_vec();
    if is_bulk
        && status == 200
        && p.rewrites_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    {
        let mut v: Value = serde_json::from_slice(&bytes).unwrap();
        let mut flip = false;
        for item in v["items"].as_array_mut().unwrap() {
            let item = item.as_object_mut().unwrap().values_mut().next().unwrap();
            if item["status"] == 201 {
                flip = !flip;
                if flip {
                    item["status"] = json!(429);
                    item["error"] = json!({"type": "es_rejected_execution_exception", "reason": "item rejected by the test proxy"});
                    p.log.items_rewritten.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        v["errors"] = json!(true);
        bytes = serde_json::to_vec(&v).unwrap();
    }
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(bytes))
        .unwrap()
}

/// Starts a proxy to `upstream` on 127.0.0.1; returns its URL.
async fn proxy(upstream: &str, faults: Faults) -> (String, Arc<Proxy>) {
    let p = Arc::new(Proxy {
        upstream: upstream.to_owned(),
        rewrites_left: AtomicUsize::new(faults.rewrite_items),
        unavailable_left: AtomicUsize::new(faults.unavailable),
        faults,
        started: Instant::now(),
        http: reqwest::Client::new(),
        log: ProxyLog::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(proxy_handle)
        .with_state(p.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), p)
}

/// Good documents `{"n": i}` and, every `bad_every`-th, a mapping error `{"n": "bad-i"}`.
fn numbered_docs(n: usize, bad_every: usize) -> Vec<(String, Vec<u8>, bool)> {
    (0..n)
        .map(|i| {
            let bad = i % bad_every == bad_every - 1;
            let source = if bad {
                json!({"n": format!("bad-{i}"), "m": "x"})
            } else {
                json!({"n": i, "m": "x"})
            };
            (
                format!("doc-{i:04}"),
                serde_json::to_vec(&source).unwrap(),
                bad,
            )
        })
        .collect()
}

fn bulk_docs<'a>(index: &'a str, docs: &'a [(String, Vec<u8>, bool)]) -> Vec<BulkDoc<'a>> {
    docs.iter()
        .map(|(id, source, _)| BulkDoc {
            id,
            index: Cow::Borrowed(index),
            source,
        })
        .collect()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn sink_delivers_every_record_once_and_replays_create_no_duplicates() {
    for s in servers().await {
        let dir = tempfile::tempdir().unwrap();
        let index = unique("once");
        let mut cfg = config(&s.url, &index, dlq_file(&dir));
        // Several requests per batch, sent from inside `write`.
        cfg.batch_max_records = 50;
        let mut sink = ElasticsearchSink::new("es".into(), &cfg).unwrap();
        let info = stream();
        let t0 = ns("2026-03-01T10:00:00Z");
        let stamps: Vec<i64> = (0..230).map(|i| t0 + i * 1_000_000).collect();
        let b1 = batch(1, &info, 0, &stamps);
        assert_eq!(sink.write(&b1, &[true]).await.unwrap(), 230);
        assert!(sink.buffered() < 50, "full requests are sent by write");
        sink.flush().await.unwrap();
        assert_eq!(sink.buffered(), 0);
        assert_eq!(count(&s.url, &index).await, 230, "{s:?}");
        let docs = documents(&s.url, &index).await;
        assert_eq!(docs.keys().cloned().collect::<BTreeSet<_>>(), ids_of(&b1));
        let first = &docs[&format!("{:016x}", b1.events[0].id)];
        assert_eq!(first["message"], "GET /item/0 200");
        assert_eq!(first["@timestamp"], "2026-03-01T10:00:00.000000000Z");
        assert_eq!(first["kubernetes"]["namespace"], "shop");
        assert_eq!(sink.stats().created.get(), 230);

        // A replay after a crash: the same batch again creates nothing.
        let mut replay = ElasticsearchSink::new("es".into(), &cfg).unwrap();
        replay.write(&b1, &[true]).await.unwrap();
        replay.flush().await.unwrap();
        assert_eq!(count(&s.url, &index).await, 230);
        assert_eq!(replay.stats().duplicates.get(), 230);
        assert_eq!(replay.stats().created.get(), 0);
        let st = replay.take_stats();
        assert_eq!(st.duplicates, 230);
        assert!(st.bytes_sent > 0 && !st.request_seconds.is_empty());

        // A failed flush: the runner discards and writes everything again.
        let b2 = batch(2, &info, 100_000, &stamps[..30]);
        sink.write(&b2, &[true]).await.unwrap();
        sink.discard_unflushed().await.unwrap();
        assert_eq!(sink.buffered(), 0);
        // A failed write: rolled back, then written again.
        sink.write(&b2, &[true]).await.unwrap();
        sink.rollback().await.unwrap();
        assert_eq!(sink.buffered(), 0);
        sink.write(&b2, &[true]).await.unwrap();
        // Events of sources the sink does not take are skipped.
        assert_eq!(sink.write(&b2, &[false]).await.unwrap(), 0);
        sink.flush().await.unwrap();
        assert_eq!(count(&s.url, &index).await, 260);
        assert_eq!(sink.stats().dead_lettered.get(), 0);
        assert!(dead_letters(&dir).is_empty());
        delete(&s.url, &index).await;
    }
}

#[tokio::test]
async fn date_templated_index_names() {
    for s in servers().await {
        let dir = tempfile::tempdir().unwrap();
        let prefix = unique("daily");
        let cfg = config(&s.url, &format!("{prefix}-%Y.%m.%d"), dlq_file(&dir));
        let mut sink = ElasticsearchSink::new("es".into(), &cfg).unwrap();
        let info = stream();
        let stamps = [
            ns("2026-01-01T23:59:59.999999999Z"),
            ns("2026-01-02T00:00:00Z"),
            ns("2026-01-01T12:00:00Z"),
            ns("2026-01-02T01:00:00+02:00"), // 2026-01-01T23:00Z
            ns("2026-01-02T13:00:00Z"),
        ];
        let b = batch(1, &info, 0, &stamps);
        sink.write(&b, &[true]).await.unwrap();
        sink.flush().await.unwrap();
        assert_eq!(count(&s.url, &format!("{prefix}-2026.01.01")).await, 3);
        assert_eq!(count(&s.url, &format!("{prefix}-2026.01.02")).await, 2);
        let day2 = documents(&s.url, &format!("{prefix}-2026.01.02")).await;
        for (ev, _) in b
            .events
            .iter()
            .zip(stamps)
            .filter(|(_, t)| *t >= ns("2026-01-02T00:00:00Z"))
        {
            assert!(day2.contains_key(&format!("{:016x}", ev.id)));
        }
        delete(&s.url, &format!("{prefix}-2026.01.01,{prefix}-2026.01.02")).await;
    }
}

#[tokio::test]
async fn template_is_installed_and_gives_the_mapping() {
    for s in servers().await {
        let dir = tempfile::tempdir().unwrap();
        let prefix = unique("tpl");
        let mut cfg = config(&s.url, &format!("{prefix}-%Y.%m.%d"), dlq_file(&dir));
        cfg.install_template = true;
        cfg.template_name = prefix.clone();
        let mut sink = ElasticsearchSink::new("es".into(), &cfg).unwrap();
        let b = batch(1, &stream(), 0, &[ns("2026-05-05T05:05:05.123456789Z")]);
        sink.write(&b, &[true]).await.unwrap();
        sink.flush().await.unwrap();
        assert_eq!(sink.client().flavor().await.unwrap(), s.flavor);

        let tpl = get_json(&format!("{}/_index_template/{prefix}", s.url)).await;
        let tpl = &tpl["index_templates"][0]["index_template"];
        assert_eq!(
            tpl["index_patterns"],
            json!([format!("{prefix}-*")]),
            "{tpl}"
        );

        let index = format!("{prefix}-2026.05.05");
        let mapping = get_json(&format!("{}/{index}/_mapping", s.url)).await;
        let props = &mapping[&index]["mappings"]["properties"];
        assert_eq!(props["@timestamp"]["type"], "date_nanos", "{mapping}");
        assert_eq!(
            props["kubernetes"]["properties"]["namespace"]["type"],
            "keyword"
        );
        assert_eq!(props["message"]["type"], "text");
        // date_nanos keeps the nanoseconds.
        let docs = documents(&s.url, &index).await;
        assert_eq!(
            docs.values().next().unwrap()["@timestamp"],
            "2026-05-05T05:05:05.123456789Z"
        );
        delete(&s.url, &index).await;
        delete(&s.url, &format!("_index_template/{prefix}")).await;
    }
}

#[tokio::test]
async fn overload_and_mapping_errors_lose_nothing_and_duplicate_nothing() {
    for s in servers().await {
        let dir = tempfile::tempdir().unwrap();
        let index = unique("faults");
        create_long_index(&s.url, &index).await;
        let (url, p) = proxy(
            &s.url,
            Faults {
                reject_for: Duration::from_secs(2),
                unavailable: 2,
                rewrite_items: 3,
                ..Faults::default()
            },
        )
        .await;
        let mut cfg = config(&url, &index, dlq_file(&dir));
        cfg.batch_max_records = 8;
        cfg.retry_max_backoff = Duration::from_millis(400);
        let mut client = BulkClient::new(&cfg).unwrap();
        let docs = numbered_docs(100, 7);
        let started = Instant::now();
        let report = client.send(&bulk_docs(&index, &docs)).await.unwrap();
        let good: BTreeSet<String> = docs.iter().filter(|d| !d.2).map(|d| d.0.clone()).collect();
        let bad: BTreeSet<String> = docs.iter().filter(|d| d.2).map(|d| d.0.clone()).collect();
        println!(
            "{s:?}: created {} duplicates {} retried {} dead-lettered {} in {} requests, {:?}; proxy: {} × 429, {} × 503, {} items rewritten to 429",
            report.created,
            report.duplicates,
            report.retried,
            report.dead_lettered,
            report.requests,
            started.elapsed(),
            p.log.answered_429.load(Ordering::Relaxed),
            p.log.answered_503.load(Ordering::Relaxed),
            p.log.items_rewritten.load(Ordering::Relaxed),
        );

        assert!(started.elapsed() >= Duration::from_secs(2));
        assert!(p.log.answered_429.load(Ordering::Relaxed) >= 2);
        assert_eq!(p.log.answered_503.load(Ordering::Relaxed), 2);
        assert!(p.log.items_rewritten.load(Ordering::Relaxed) >= 3);
        assert!(report.retried > 0);
        // Rewritten items were created, so their retry found them there.
        assert_eq!(
            report.duplicates as usize,
            p.log.items_rewritten.load(Ordering::Relaxed)
        );
        assert_eq!(report.created + report.duplicates, good.len() as u64);
        assert_eq!(report.dead_lettered, bad.len() as u64);
        assert_eq!(report.dead_letter_failed, 0);
        assert_eq!(report.latencies.len() as u64, report.requests);

        let stored = documents(&s.url, &index).await;
        assert_eq!(stored.keys().cloned().collect::<BTreeSet<_>>(), good);
        assert_eq!(count(&s.url, &index).await, good.len() as u64);

        let dl = dead_letters(&dir);
        assert_eq!(dl.len(), bad.len(), "{dl:?}");
        let dl_ids: BTreeSet<String> = dl
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(dl_ids, bad);
        for r in &dl {
            assert_eq!(r["status"], 400, "{r}");
            assert_eq!(r["index"], json!(index));
            let reason = r["reason"].as_str().unwrap();
            assert!(
                reason.contains("parsing_exception") && reason.contains("[n]"),
                "{reason}"
            );
            assert!(r["document"]["n"].as_str().unwrap().starts_with("bad-"));
            assert!(r["@timestamp"].as_str().unwrap().ends_with('Z'));
        }

        // Sending everything again: all already there or dead-lettered again.
        let again = client.send(&bulk_docs(&index, &docs)).await.unwrap();
        assert_eq!(again.duplicates, good.len() as u64);
        assert_eq!(again.created, 0);
        assert_eq!(count(&s.url, &index).await, good.len() as u64);
        delete(&s.url, &index).await;
    }
}

#[tokio::test]
async fn refused_requests_are_split_down_to_single_documents() {
    for s in servers().await {
        let dir = tempfile::tempdir().unwrap();
        let index = unique("split");
        let (url, p) = proxy(
            &s.url,
            Faults {
                max_docs: Some(3),
                too_large_marker: Some("HUGE".into()),
                ..Faults::default()
            },
        )
        .await;
        let mut cfg = config(&url, &index, dlq_file(&dir));
        cfg.batch_max_records = 20;
        let mut client = BulkClient::new(&cfg).unwrap();
        let mut docs = numbered_docs(40, 1000);
        docs[17].1 = serde_json::to_vec(&json!({"n": 17, "m": "HUGE"})).unwrap();
        let report = client.send(&bulk_docs(&index, &docs)).await.unwrap();
        assert_eq!(report.created, 39, "{report:?}");
        assert_eq!(report.dead_lettered, 1);
        assert_eq!(report.retried, 0);
        assert!(p.log.answered_413.load(Ordering::Relaxed) >= 2);
        assert_eq!(count(&s.url, &index).await, 39);
        let dl = dead_letters(&dir);
        assert_eq!(dl.len(), 1);
        assert_eq!(dl[0]["id"], "doc-0017");
        assert_eq!(dl[0]["status"], 413);
        assert!(
            dl[0]["reason"]
                .as_str()
                .unwrap()
                .contains("content_too_long_exception")
        );
        assert_eq!(dl[0]["document"]["m"], "HUGE");
        delete(&s.url, &index).await;
    }
}

#[tokio::test]
async fn dead_letter_to_an_index() {
    for s in servers().await {
        let index = unique("dlsrc");
        let dlq = unique("dlq");
        create_long_index(&s.url, &index).await;
        let cfg = config(&s.url, &index, DeadLetter::Index(dlq.clone()));
        let mut client = BulkClient::new(&cfg).unwrap();
        let docs = numbered_docs(20, 5);
        let report = client.send(&bulk_docs(&index, &docs)).await.unwrap();
        assert_eq!(report.created, 16, "{report:?}");
        assert_eq!(report.dead_lettered, 4);
        assert_eq!(report.dead_letter_failed, 0);
        assert_eq!(count(&s.url, &index).await, 16);
        let dl = documents(&s.url, &dlq).await;
        let want: BTreeSet<String> = docs.iter().filter(|d| d.2).map(|d| d.0.clone()).collect();
        assert_eq!(dl.keys().cloned().collect::<BTreeSet<_>>(), want);
        for (id, r) in &dl {
            assert_eq!(r["id"], json!(id));
            assert_eq!(r["status"], 400);
            assert_eq!(r["index"], json!(index));
            assert!(r["reason"].as_str().unwrap().contains("[n]"), "{r}");
            // The document is kept as its JSON text.
            let doc: Value = serde_json::from_str(r["document"].as_str().unwrap()).unwrap();
            assert!(doc["n"].as_str().unwrap().starts_with("bad-"));
        }
        // Rejected again on a replay: the dead letter index still holds one record each.
        let again = client.send(&bulk_docs(&index, &docs)).await.unwrap();
        assert_eq!(again.dead_lettered, 4);
        assert_eq!(count(&s.url, &dlq).await, 4);
        delete(&s.url, &format!("{index},{dlq}")).await;
    }
}

#[tokio::test]
async fn gzip_request_bodies() {
    for s in servers().await {
        for gzip in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let index = unique("gzip");
            let (url, p) = proxy(&s.url, Faults::default()).await;
            let mut cfg = config(&url, &index, dlq_file(&dir));
            cfg.gzip = gzip;
            cfg.batch_max_records = 64;
            let mut sink = ElasticsearchSink::new("es".into(), &cfg).unwrap();
            let t0 = ns("2026-02-02T02:02:02Z");
            let b = batch(
                1,
                &stream(),
                0,
                &(0..300).map(|i| t0 + i).collect::<Vec<_>>(),
            );
            sink.write(&b, &[true]).await.unwrap();
            sink.flush().await.unwrap();
            assert_eq!(count(&s.url, &index).await, 300, "{s:?} gzip {gzip}");
            let encodings = p.log.encodings.lock().unwrap().clone();
            assert_eq!(encodings.len(), 5);
            let want = gzip.then(|| "gzip".to_owned());
            assert!(encodings.iter().all(|e| *e == want), "{encodings:?}");
            let stats = sink.stats();
            println!(
                "{s:?} gzip {gzip}: {} bytes in {} requests",
                stats.bytes_sent.get(),
                stats.requests.get()
            );
            delete(&s.url, &index).await;
        }
    }
}

#[tokio::test]
async fn unreachable_endpoint_fails_over_to_the_next() {
    for s in servers().await {
        let dir = tempfile::tempdir().unwrap();
        let index = unique("failover");
        // A port nothing listens on.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let mut cfg = config(&dead, &index, dlq_file(&dir));
        cfg.endpoints.push(s.url.clone());
        let mut client = BulkClient::new(&cfg).unwrap();
        let docs = numbered_docs(10, 1000);
        let report = client.send(&bulk_docs(&index, &docs)).await.unwrap();
        assert_eq!(report.created, 10);
        assert_eq!(report.requests, 2);
        assert_eq!(client.endpoint(), s.url);
        assert_eq!(count(&s.url, &index).await, 10);
        delete(&s.url, &index).await;
    }
}

#[tokio::test]
async fn credentials_go_in_the_authorization_header() {
    use nevermore_collector::config::EsAuth;
    for s in servers().await {
        for (auth, want) in [
            (
                EsAuth::Basic {
                    username: "elastic".into(),
                    password: "pa:ss".into(),
                },
                "Basic ZWxhc3RpYzpwYTpzcw==",
            ),
            (
                EsAuth::Bearer {
                    token: "tok".into(),
                },
                "Bearer tok",
            ),
            (
                EsAuth::ApiKey {
                    key: "aWQ6a2V5".into(),
                },
                "ApiKey aWQ6a2V5",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let index = unique("auth");
            let (url, p) = proxy(&s.url, Faults::default()).await;
            let mut cfg = config(&url, &index, dlq_file(&dir));
            cfg.auth = Some(auth);
            cfg.install_template = true;
            cfg.template_name = index.clone();
            let mut client = BulkClient::new(&cfg).unwrap();
            client.install_template().await.unwrap();
            let docs = numbered_docs(3, 1000);
            let report = client.send(&bulk_docs(&index, &docs)).await.unwrap();
            assert_eq!(report.created, 3);
            let seen = p.log.authorizations.lock().unwrap().clone();
            // GET /, PUT _index_template, POST _bulk.
            assert_eq!(seen.len(), 3);
            assert!(seen.iter().all(|a| a.as_deref() == Some(want)), "{seen:?}");
            delete(&s.url, &index).await;
            delete(&s.url, &format!("_index_template/{index}")).await;
        }
    }
}
