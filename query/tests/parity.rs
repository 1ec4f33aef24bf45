//! Parity: the same fixture set in the embedded index and in every Elasticsearch-API server of
//! `NEVERMORE_ES_URLS`; every query of testdata/search/queries.txt must return the same hits in
//! the same order from all of them, page after page, with the same totals and histograms.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Flavour, Loaded, fixture, load, osmem_label_collision, servers};
use nevermore_index::{IndexDoc, LogIndex, Retention, Writer};
use nevermore_lang::{Expr, Limits, parse_strict};
use nevermore_query::logs::embedded::EmbeddedBackend;
use nevermore_query::logs::{Backend, Cursor, HistogramRequest, Order, SearchRequest, TimeRange};
use nevermore_schemas::record::LogRecord;
use serde_json::Value;

const QUERIES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/search/queries.txt"
);
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/search/records.ndjson"
);

fn queries() -> Vec<String> {
    std::fs::read_to_string(QUERIES)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn embedded(dir: &std::path::Path) -> Backend {
    let index = LogIndex::open(dir).unwrap();
    let mut w = Writer::new(index.clone(), 30_000_000, Retention::default()).unwrap();
    for line in std::fs::read_to_string(FIXTURE).unwrap().lines() {
        let rec: LogRecord = serde_json::from_str(line).unwrap();
        w.add(&IndexDoc::from_record(&rec, line.as_bytes()).unwrap())
            .unwrap();
    }
    w.commit().unwrap();
    Backend::Embedded(EmbeddedBackend::new(index).unwrap())
}

/// Every hit's id, following cursors page by page.
async fn all_ids(
    b: &Backend,
    expr: &Expr,
    range: TimeRange,
    order: Order,
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = b
            .search(SearchRequest {
                expr: expr.clone(),
                range,
                limit,
                order,
                after: after.clone(),
                stream: None,
            })
            .await
            .unwrap();
        out.extend(
            page.hits
                .iter()
                .map(|h| h.record["event"]["id"].as_str().unwrap().to_string()),
        );
        match page.next {
            Some(c) => after = Some(c),
            None => return out,
        }
    }
}

async fn histogram(b: &Backend, expr: &Expr, range: TimeRange) -> Vec<(i64, Vec<(String, u64)>)> {
    b.histogram(HistogramRequest {
        expr: expr.clone(),
        range,
        interval_ns: 3_600_000_000_000,
    })
    .await
    .unwrap()
    .into_iter()
    .map(|b| (b.start_ns, b.counts.into_iter().collect()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_returns_the_same_hits_in_the_same_order() {
    let servers = servers().await;
    assert!(!servers.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let reference = embedded(dir.path());
    let mut loaded: Vec<Loaded> = Vec::new();
    for s in &servers {
        loaded.push(load(s).await);
    }
    let records = fixture();
    let range = TimeRange {
        start_ns: records[0].0.ts_ns,
        end_ns: records[records.len() - 1].0.ts_ns + 1,
    };
    // Records whose labels osmem-server cannot hold both of (see common::osmem_label_collision).
    let collisions: std::collections::HashSet<String> = records
        .iter()
        .filter(|(_, r)| osmem_label_collision(r))
        .map(|(_, r)| r["event"]["id"].as_str().unwrap().to_string())
        .collect();
    let mut checked = 0;
    for q in queries() {
        let expr = parse_strict(&q, &Limits::default()).unwrap_or_else(|e| panic!("{q}: {e}"));
        let want = all_ids(&reference, &expr, range, Order::Desc, 1000).await;
        let want_hist = histogram(&reference, &expr, range).await;
        for l in &loaded {
            let es = Backend::Elasticsearch(
                nevermore_query::logs::elasticsearch::EsBackend::new(
                    vec![l.server.url.clone()],
                    l.index.clone(),
                    None,
                    Default::default(),
                )
                .unwrap(),
            );
            let skip_collisions = l.server.flavour == Flavour::OpenSearch && q.contains("label.");
            let keep = |ids: Vec<String>| -> Vec<String> {
                ids.into_iter()
                    .filter(|id| !(skip_collisions && collisions.contains(id)))
                    .collect()
            };
            // Small pages: the cursor and the tiebreak do the work.
            let got = keep(all_ids(&es, &expr, range, Order::Desc, 97).await);
            assert_eq!(got, keep(want.clone()), "{q:?} on {}", l.server.url);
            let mut asc = keep(all_ids(&es, &expr, range, Order::Asc, 500).await);
            asc.reverse();
            assert_eq!(
                asc,
                keep(want.clone()),
                "{q:?} ascending on {}",
                l.server.url
            );
            if !skip_collisions {
                assert_eq!(
                    histogram(&es, &expr, range).await,
                    want_hist,
                    "{q:?} histogram on {}",
                    l.server.url
                );
            }
            checked += 1;
        }
    }
    for l in &loaded {
        common::drop_index(l).await;
    }
    assert!(checked >= 40 * servers.len(), "only {checked} checks ran");
    eprintln!("parity: {checked} query × server checks against the embedded index");
}

/// The records' JSON comes back byte-for-byte the same from every backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_returns_the_stored_record_unchanged() {
    let servers = servers().await;
    let dir = tempfile::tempdir().unwrap();
    let reference = embedded(dir.path());
    let records = fixture();
    let range = TimeRange {
        start_ns: records[0].0.ts_ns,
        end_ns: records[records.len() - 1].0.ts_ns + 1,
    };
    let expr = parse_strict("", &Limits::default()).unwrap();
    let page = reference
        .search(SearchRequest {
            expr: expr.clone(),
            range,
            limit: 50,
            order: Order::Asc,
            after: None,
            stream: None,
        })
        .await
        .unwrap();
    let want: Vec<Value> = page.hits.into_iter().map(|h| h.record).collect();
    assert_eq!(
        want,
        records[..50]
            .iter()
            .map(|(_, r)| r.clone())
            .collect::<Vec<_>>()
    );
    for s in &servers {
        let l = load(s).await;
        let got: Vec<Value> = l
            .backend
            .search(SearchRequest {
                expr: expr.clone(),
                range,
                limit: 50,
                order: Order::Asc,
                after: None,
                stream: None,
            })
            .await
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.record)
            .collect();
        assert_eq!(got, want, "{}", s.url);
        common::drop_index(&l).await;
    }
}

/// The search API itself over each backend: the same answers (cursors aside) to the same HTTP
/// requests, tenancy included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_api_answers_the_same_over_every_backend() {
    use nevermore_query::config::Tenant;
    use nevermore_query::http::AppState;
    let servers = servers().await;
    let dir = tempfile::tempdir().unwrap();
    let mut backends = vec![("embedded".to_string(), embedded(dir.path()))];
    let mut loaded = Vec::new();
    for s in &servers {
        let l = load(s).await;
        backends.push((
            s.url.clone(),
            Backend::Elasticsearch(
                nevermore_query::logs::elasticsearch::EsBackend::new(
                    vec![s.url.clone()],
                    l.index.clone(),
                    None,
                    Default::default(),
                )
                .unwrap(),
            ),
        ));
        loaded.push(l);
    }
    let records = fixture();
    // A record in the middle of a long stream, for context.
    let mut per_stream = std::collections::BTreeMap::<String, Vec<&Value>>::new();
    for (k, r) in &records {
        per_stream.entry(k.stream_id.clone()).or_default().push(r);
    }
    let (_, stream) = per_stream.iter().max_by_key(|(_, v)| v.len()).unwrap();
    let mid_id = stream[stream.len() / 2]["event"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = "tenant-token-0123456789";
    let mut answers: Vec<(String, Vec<Value>)> = Vec::new();
    for (name, backend) in backends {
        let mut cfg = nevermore_query::config::load_str("", "test").unwrap();
        cfg.tenants = vec![Tenant {
            token: token.into(),
            namespaces: ["shop".to_string(), "payments".to_string()]
                .into_iter()
                .collect(),
        }];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(nevermore_query::http::serve(
            listener,
            AppState::new(
                backend,
                nevermore_query::metrics::Metrics::empty(&cfg.metrics),
                cfg,
            ),
            std::future::pending(),
        ));
        let client = reqwest::Client::new();
        let get = |path: String, params: Vec<(&'static str, String)>| {
            let client = client.clone();
            async move {
                let resp = client
                    .get(format!("http://{addr}{path}"))
                    .query(&params)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let mut body: Value = resp.json().await.unwrap();
                // Cursors are opaque and backend-specific; whether there is one is not.
                if let Some(n) = body.get_mut("next") {
                    *n = Value::Bool(!n.is_null());
                }
                serde_json::json!({"status": status, "body": body})
            }
        };
        let (start, end) = (
            "2026-11-23T00:00:00Z".to_string(),
            "2026-11-27T00:00:00Z".to_string(),
        );
        let range = || vec![("start", start.clone()), ("end", end.clone())];
        let mut got = Vec::new();
        for q in [
            "",
            "namespace:kube-system",
            "level:>=warn \"connection refused\"",
            "pod:api-* -stream:stdout",
            "/time[o]ut/",
        ] {
            let mut p = range();
            p.push(("q", q.to_string()));
            p.push(("limit", "25".to_string()));
            got.push(get("/api/v1/logs/search".into(), p.clone()).await);
            let mut h = range();
            h.push(("q", q.to_string()));
            h.push(("interval", "21600000".to_string()));
            got.push(get("/api/v1/logs/histogram".into(), h).await);
        }
        for (field, prefix) in [
            ("pod", "api"),
            ("namespace", ""),
            ("level", ""),
            ("workload", "l"),
        ] {
            let mut p = range();
            p.push(("prefix", prefix.to_string()));
            got.push(get(format!("/api/v1/logs/fields/{field}/values"), p).await);
        }
        got.push(
            get(
                "/api/v1/logs/context".into(),
                vec![
                    ("id", mid_id.clone()),
                    ("before", "5".into()),
                    ("after", "5".into()),
                ],
            )
            .await,
        );
        answers.push((name, got));
    }
    let (ref_name, reference) = &answers[0];
    for (name, got) in &answers[1..] {
        for (i, (a, b)) in reference.iter().zip(got).enumerate() {
            assert_eq!(a, b, "answer {i}: {ref_name} vs {name}");
        }
    }
    for l in &loaded {
        common::drop_index(l).await;
    }
}
