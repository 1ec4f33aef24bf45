//! Property test of the embedded index's lowering: random boolean combinations of atoms (every
//! feature of the language) must return exactly the records the evaluator selects, in order.

#![allow(clippy::unwrap_used)]

use nevermore_index::{IndexDoc, LogIndex, Retention, Writer};
use nevermore_lang::{Limits, Matcher, parse_strict};
use nevermore_query::logs::embedded::EmbeddedBackend;
use nevermore_query::logs::record_doc::ValueDoc;
use nevermore_query::logs::{Cursor, Order, SearchRequest, TimeRange};
use nevermore_schemas::record::LogRecord;
use proptest::prelude::*;
use serde_json::Value;
use std::sync::OnceLock;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/search/records.ndjson"
);

/// One condition each; the property combines them.
const ATOMS: &[&str] = &[
    "namespace:shop",
    "namespace:payments,kube-system",
    "pod:api-*",
    "pod:/db-[0-9]+/",
    "container:nginx",
    "stream:stderr",
    "level:>=warn",
    "level:debug..info",
    "level:error",
    "has:level",
    "has:label.app.kubernetes.io/name",
    "label.tier:frontend",
    "node:node-a",
    "workload:api",
    "\"connection refused\"",
    "timeout",
    "/api/v1",
    "lock*",
    "*users?id=1*",
    "/TIME[O]UT/i",
    "message:/after [0-9]+s/",
    "time:>=2026-11-25",
    "time:*..2026-11-24T12:00:00Z",
    "cluster:prod-eu -stream:stdout",
    "pod:a..m",
];

struct Fixture {
    backend: EmbeddedBackend,
    records: Vec<Value>,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let index = LogIndex::open(dir.path()).unwrap();
        let mut w = Writer::new(index.clone(), 30_000_000, Retention::default()).unwrap();
        let text = std::fs::read_to_string(FIXTURE).unwrap();
        let mut records = Vec::new();
        // Several segments, in time order but for every 7th record, held back into a last
        // segment that overlaps them all: the page is assembled across segments.
        let mut held = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if i % 7 == 3 {
                held.push(line);
                continue;
            }
            let rec: LogRecord = serde_json::from_str(line).unwrap();
            w.add(&IndexDoc::from_record(&rec, line.as_bytes()).unwrap())
                .unwrap();
            if i % 300 == 299 {
                w.commit().unwrap();
            }
        }
        w.commit().unwrap();
        for line in held {
            let rec: LogRecord = serde_json::from_str(line).unwrap();
            w.add(&IndexDoc::from_record(&rec, line.as_bytes()).unwrap())
                .unwrap();
        }
        w.commit().unwrap();
        for line in text.lines() {
            records.push(serde_json::from_str(line).unwrap());
        }
        Fixture {
            backend: EmbeddedBackend::new(index).unwrap(),
            records,
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
            _dir: dir,
        }
    })
}

/// A query text: atoms joined by AND / OR / NOT with parentheses.
fn query() -> impl Strategy<Value = String> {
    let atom = proptest::sample::select(ATOMS).prop_map(str::to_string);
    atom.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(|v| v.join(" ")),
            proptest::collection::vec(inner.clone(), 2..4)
                .prop_map(|v| format!("({})", v.join(" OR "))),
            inner.prop_map(|q| format!("-({q})")),
        ]
    })
}

fn ids_in_order(q: &str) -> (Vec<String>, Vec<String>) {
    let f = fixture();
    let expr = parse_strict(q, &Limits::default()).unwrap();
    let m = Matcher::new(&expr).unwrap();
    let key = |r: &Value| {
        (
            nevermore_index::parse_ts(r["@timestamp"].as_str().unwrap()).unwrap(),
            r["event"]["stream_id"].as_str().unwrap().to_string(),
            r["event"]["sequence"].as_u64().unwrap(),
        )
    };
    let mut want: Vec<&Value> = f
        .records
        .iter()
        .filter(|r| m.matches(&ValueDoc::new(r)))
        .collect();
    want.sort_by_key(|r| std::cmp::Reverse(key(r)));
    let want = want
        .iter()
        .map(|r| r["event"]["id"].as_str().unwrap().to_string())
        .collect();
    let page =
        f.rt.block_on(f.backend.search(SearchRequest {
            expr,
            range: TimeRange {
                start_ns: 0,
                end_ns: i64::MAX,
            },
            limit: 5000,
            order: Order::Desc,
            after: None,
            stream: None,
        }))
        .unwrap();
    let got: Vec<String> = page
        .hits
        .iter()
        .map(|h| h.record["event"]["id"].as_str().unwrap().to_string())
        .collect();
    // The first page with its total, as `/search` asks for it.
    let (first, total) =
        f.rt.block_on(f.backend.search_counted(SearchRequest {
            expr: parse_strict(q, &Limits::default()).unwrap(),
            range: TimeRange {
                start_ns: 0,
                end_ns: i64::MAX,
            },
            limit: 10,
            order: Order::Desc,
            after: None,
            stream: None,
        }))
        .unwrap();
    assert_eq!(total as usize, got.len(), "total of {q}");
    let first: Vec<String> = first
        .hits
        .iter()
        .map(|h| h.record["event"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(first[..], got[..got.len().min(10)], "first page of {q}");
    (got, want)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(150),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_index_selects_what_the_evaluator_selects(q in query()) {
        let (got, want) = ids_in_order(&q);
        prop_assert_eq!(got, want, "query {}", q);
    }
}

/// The same query paged through with a small page, in both orders.
fn paged(q: &str, order: Order, limit: usize) -> Vec<String> {
    let f = fixture();
    let expr = parse_strict(q, &Limits::default()).unwrap();
    let mut out = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page =
            f.rt.block_on(f.backend.search(SearchRequest {
                expr: expr.clone(),
                range: TimeRange {
                    start_ns: 0,
                    end_ns: i64::MAX,
                },
                limit,
                order,
                after: after.clone(),
                stream: None,
            }))
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

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
        ..ProptestConfig::default()
    })]

    #[test]
    fn pages_concatenate_to_the_whole_answer(q in query(), limit in 7usize..80) {
        let (_, want) = ids_in_order(&q);
        prop_assert_eq!(paged(&q, Order::Desc, limit), want.clone(), "desc {} by {}", q, limit);
        let mut asc = paged(&q, Order::Asc, limit);
        asc.reverse();
        prop_assert_eq!(asc, want, "asc {} by {}", q, limit);
    }
}

#[test]
fn every_atom_selects_something_and_not_everything() {
    let total = fixture().records.len();
    for a in ATOMS {
        let (got, want) = ids_in_order(a);
        assert_eq!(got, want, "{a}");
        assert!(
            !got.is_empty() && got.len() < total,
            "{a}: {} of {total}",
            got.len()
        );
    }
}
