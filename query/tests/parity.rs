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
