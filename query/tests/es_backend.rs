//! The Elasticsearch backend against real servers: every URL in `NEVERMORE_ES_URLS`
//! (comma-separated; `.ci/services start` writes it), e.g. noida-db (Elasticsearch 8 API) and
//! osmem-server (OpenSearch API). Fails, never skips, when the variable is unset or a server is
//! unreachable.
//!
//! Each test creates fresh indices from the index template, bulk-loads
//! `testdata/search/records.ndjson` and compares the backend's answers with an in-memory oracle
//! over the same records.

use nevermore_lang::{CmpOp, Expr, Field, Pred, Span, Term};
use nevermore_query::logs::elasticsearch::{EsBackend, EsTimeouts};
use nevermore_query::logs::{
    BackendError, Bucket, Cursor, HistogramRequest, Order, SearchRequest, SortKey, TimeRange,
    ValueCount, ValuesRequest,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const NS_PER_HOUR: i64 = 3_600_000_000_000;

mod common;

use common::*;

// ---------------------------------------------------------------------------------------------
// Query building and the oracle

fn term(field: Field, pred: Pred) -> Expr {
    Expr::Term(Term {
        field,
        pred,
        span: Span { start: 0, end: 0 },
    })
}
fn word(field: Field, v: &str) -> Expr {
    term(field, Pred::Word { value: v.into() })
}
fn phrase(v: &str) -> Expr {
    term(Field::Message, Pred::Phrase { value: v.into() })
}
fn glob(field: Field, p: &str) -> Expr {
    term(field, Pred::Glob { pattern: p.into() })
}
fn regex(field: Field, p: &str, ci: bool) -> Expr {
    term(
        field,
        Pred::Regex {
            pattern: p.into(),
            case_insensitive: ci,
        },
    )
}
fn not(e: Expr) -> Expr {
    Expr::Not { arg: Box::new(e) }
}
fn and(args: Vec<Expr>) -> Expr {
    Expr::And { args }
}
fn or(args: Vec<Expr>) -> Expr {
    Expr::Or { args }
}
fn exists(field: Field) -> Expr {
    term(field, Pred::Exists)
}

fn s<'a>(r: &'a Value, pointer: &str) -> Option<&'a str> {
    r.pointer(pointer).and_then(Value::as_str)
}
fn msg(r: &Value) -> &str {
    s(r, "/message").unwrap_or("")
}
fn label<'a>(r: &'a Value, key: &str) -> Option<&'a str> {
    r.pointer("/kubernetes/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}
fn has_tokens(text: &str, query: &str) -> bool {
    let t = nevermore_lang::message_terms(text);
    let q = nevermore_lang::message_terms(query);
    !q.is_empty() && t.windows(q.len()).any(|w| w == q.as_slice())
}
fn level_rank(r: &Value) -> Option<usize> {
    let l = s(r, "/log/level")?;
    nevermore_lang::LEVELS.iter().position(|x| *x == l)
}
/// A glob (`*`, `?`) matched against the whole of `text`.
fn glob_match(p: &[char], t: &[char]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some(('*', rest)) => (0..=t.len()).any(|i| glob_match(rest, &t[i..])),
        Some(('?', rest)) => !t.is_empty() && glob_match(rest, &t[1..]),
        Some((c, rest)) => t.first() == Some(c) && glob_match(rest, &t[1..]),
    }
}
fn glob_anywhere_ci(text: &str, pattern: &str) -> bool {
    let p: Vec<char> = format!("*{}*", pattern.to_lowercase()).chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    glob_match(&p, &t)
}

type Oracle = Box<dyn Fn(&Value) -> bool>;

/// Queries and what they must match, written out by hand from the language's spec.
fn query_table(records: &[(SortKey, Value)]) -> Vec<(&'static str, Expr, Oracle)> {
    let mid = records[records.len() / 2].0.ts_ns;
    let late = records[records.len() * 3 / 4].0.ts_ns;
    vec![
        ("everything", Expr::All, Box::new(|_| true)),
        (
            "namespace:shop",
            word(Field::Namespace, "shop"),
            Box::new(|r| s(r, "/kubernetes/namespace") == Some("shop")),
        ),
        (
            "-namespace:kube-system",
            not(word(Field::Namespace, "kube-system")),
            Box::new(|r| s(r, "/kubernetes/namespace") != Some("kube-system")),
        ),
        (
            "namespace:shop,payments",
            or(vec![
                word(Field::Namespace, "shop"),
                word(Field::Namespace, "payments"),
            ]),
            Box::new(|r| matches!(s(r, "/kubernetes/namespace"), Some("shop" | "payments"))),
        ),
        (
            "pod:api-*",
            glob(Field::Pod, "api-*"),
            Box::new(|r| s(r, "/kubernetes/pod/name").is_some_and(|p| p.starts_with("api-"))),
        ),
        (
            "pod:db-?",
            glob(Field::Pod, "db-?"),
            Box::new(|r| matches!(s(r, "/kubernetes/pod/name"), Some("db-0" | "db-1"))),
        ),
        (
            "pod:/db-[0-9]+/",
            regex(Field::Pod, "db-[0-9]+", false),
            Box::new(|r| matches!(s(r, "/kubernetes/pod/name"), Some("db-0" | "db-1"))),
        ),
        (
            "pod:/API-.*/i",
            regex(Field::Pod, "API-.*", true),
            Box::new(|r| s(r, "/kubernetes/pod/name").is_some_and(|p| p.starts_with("api-"))),
        ),
        (
            "container:api stream:stderr",
            and(vec![
                word(Field::Container, "api"),
                word(Field::Stream, "stderr"),
            ]),
            Box::new(|r| {
                s(r, "/kubernetes/container/name") == Some("api")
                    && s(r, "/stream") == Some("stderr")
            }),
        ),
        (
            "level:>=warn",
            term(
                Field::Level,
                Pred::Compare {
                    op: CmpOp::Ge,
                    value: "warn".into(),
                },
            ),
            Box::new(|r| level_rank(r).is_some_and(|l| l >= 3)),
        ),
        (
            "level:<info",
            term(
                Field::Level,
                Pred::Compare {
                    op: CmpOp::Lt,
                    value: "info".into(),
                },
            ),
            Box::new(|r| level_rank(r).is_some_and(|l| l < 2)),
        ),
        (
            "level:debug..warn",
            term(
                Field::Level,
                Pred::Range {
                    from: Some("debug".into()),
                    to: Some("warn".into()),
                },
            ),
            Box::new(|r| level_rank(r).is_some_and(|l| (1..=3).contains(&l))),
        ),
        (
            "level:error",
            word(Field::Level, "error"),
            Box::new(|r| s(r, "/log/level") == Some("error")),
        ),
        (
            "no:level",
            not(exists(Field::Level)),
            Box::new(|r| s(r, "/log/level").is_none()),
        ),
        (
            "has:workload",
            exists(Field::Workload),
            Box::new(|r| s(r, "/kubernetes/workload/name").is_some()),
        ),
        (
            "no:workload",
            not(exists(Field::Workload)),
            Box::new(|r| s(r, "/kubernetes/workload/name").is_none()),
        ),
        (
            "no:stream",
            not(exists(Field::Stream)),
            Box::new(|r| s(r, "/stream").is_none()),
        ),
        (
            "workload:prometheus-k8s",
            word(Field::Workload, "prometheus-k8s"),
            Box::new(|r| s(r, "/kubernetes/workload/name") == Some("prometheus-k8s")),
        ),
        (
            "label.app:api",
            word(Field::Label("app".into()), "api"),
            Box::new(|r| label(r, "app") == Some("api")),
        ),
        (
            "label.app:web",
            word(Field::Label("app".into()), "web"),
            Box::new(|r| label(r, "app") == Some("web")),
        ),
        (
            "label.app.kubernetes.io/name:postgres",
            word(Field::Label("app.kubernetes.io/name".into()), "postgres"),
            Box::new(|r| label(r, "app.kubernetes.io/name") == Some("postgres")),
        ),
        (
            "has:label.team",
            exists(Field::Label("team".into())),
            Box::new(|r| label(r, "team").is_some()),
        ),
        (
            "node:node-a -stream:stdout",
            and(vec![
                word(Field::Node, "node-a"),
                not(word(Field::Stream, "stdout")),
            ]),
            Box::new(|r| s(r, "/host/name") == Some("node-a") && s(r, "/stream") != Some("stdout")),
        ),
        (
            "cluster:prod-eu",
            word(Field::Cluster, "prod-eu"),
            Box::new(|_| true),
        ),
        (
            "refused",
            word(Field::Message, "refused"),
            Box::new(|r| has_tokens(msg(r), "refused")),
        ),
        (
            "REFUSED",
            word(Field::Message, "REFUSED"),
            Box::new(|r| has_tokens(msg(r), "refused")),
        ),
        (
            "/api/v1",
            word(Field::Message, "/api/v1"),
            Box::new(|r| has_tokens(msg(r), "api v1")),
        ),
        (
            "\"connection refused\"",
            phrase("connection refused"),
            Box::new(|r| has_tokens(msg(r), "connection refused")),
        ),
        (
            "\"Connection reset by\"",
            phrase("Connection reset by"),
            Box::new(|r| has_tokens(msg(r), "connection reset by")),
        ),
        (
            "жук",
            word(Field::Message, "жук"),
            Box::new(|r| has_tokens(msg(r), "жук")),
        ),
        (
            "日本語のログ",
            word(Field::Message, "日本語のログ"),
            Box::new(|r| has_tokens(msg(r), "日本語のログ")),
        ),
        (
            "a.b-c",
            word(Field::Message, "a.b-c"),
            Box::new(|r| has_tokens(msg(r), "a b c")),
        ),
        (
            "longline",
            word(Field::Message, "longline"),
            Box::new(|r| has_tokens(msg(r), "longline")),
        ),
        (
            "message:users?id=1*",
            glob(Field::Message, "users?id=1*"),
            Box::new(|r| glob_anywhere_ci(msg(r), "users?id=1*")),
        ),
        (
            "message:*HTTP://SVC:8080*",
            glob(Field::Message, "*HTTP://SVC:8080*"),
            Box::new(|r| glob_anywhere_ci(msg(r), "http://svc:8080")),
        ),
        (
            "message:100%",
            glob(Field::Message, "100%"),
            Box::new(|r| glob_anywhere_ci(msg(r), "100%")),
        ),
        (
            "message:back\\slash",
            glob(Field::Message, "back\\slash"),
            Box::new(|r| msg(r).contains("back\\slash")),
        ),
        (
            "message:\u{fffd}",
            glob(Field::Message, "\u{fffd}"),
            Box::new(|r| msg(r).contains('\u{fffd}')),
        ),
        (
            "/dial tcp 10\\.0\\.[0-9]+\\.1[0-9]*:/",
            regex(Field::Message, "dial tcp 10\\.0\\.[0-9]+\\.1[0-9]*:", false),
            Box::new(|r| {
                let re = regex::Regex::new("dial tcp 10\\.0\\.[0-9]+\\.1[0-9]*:").expect("regex");
                re.is_match(msg(r))
            }),
        ),
        (
            "/TIMEOUT after/i",
            regex(Field::Message, "TIMEOUT after", true),
            Box::new(|r| msg(r).to_lowercase().contains("timeout after")),
        ),
        (
            "/Foo\\.java:4[0-9]/",
            regex(Field::Message, "Foo\\.java:4[0-9]", false),
            Box::new(|r| msg(r).contains("Foo.java:42")),
        ),
        (
            "/GET \\/healthz/",
            regex(Field::Message, "GET /healthz", false),
            Box::new(|r| msg(r).contains("GET /healthz")),
        ),
        (
            "time:>=mid",
            term(
                Field::Time,
                Pred::Compare {
                    op: CmpOp::Ge,
                    value: rfc3339(mid),
                },
            ),
            Box::new(move |r| key_of(r).ts_ns >= mid),
        ),
        (
            "time:mid..late",
            term(
                Field::Time,
                Pred::Range {
                    from: Some(rfc3339(mid)),
                    to: Some(rfc3339(late)),
                },
            ),
            Box::new(move |r| (mid..=late).contains(&key_of(r).ts_ns)),
        ),
        (
            "(namespace:monitoring OR namespace:payments) -level:info",
            and(vec![
                or(vec![
                    word(Field::Namespace, "monitoring"),
                    word(Field::Namespace, "payments"),
                ]),
                not(word(Field::Level, "info")),
            ]),
            Box::new(|r| {
                matches!(
                    s(r, "/kubernetes/namespace"),
                    Some("monitoring" | "payments")
                ) && s(r, "/log/level") != Some("info")
            }),
        ),
        (
            "stream:stderr OR level:error",
            or(vec![
                word(Field::Stream, "stderr"),
                word(Field::Level, "error"),
            ]),
            Box::new(|r| s(r, "/stream") == Some("stderr") || s(r, "/log/level") == Some("error")),
        ),
        ("->", word(Field::Message, "->"), Box::new(|_| false)),
        // `message.grep` is a keyword with `ignore_above: 8191`: longer lines are found by words
        // only, never by glob or regex (a documented limit of the Elasticsearch mapping).
        (
            "message:chunk0100",
            glob(Field::Message, "chunk0100"),
            Box::new(|r| msg(r).chars().count() <= 8191 && msg(r).contains("chunk0100")),
        ),
    ]
}

async fn search_all(
    b: &EsBackend,
    expr: &Expr,
    range: TimeRange,
    order: Order,
    limit: usize,
    stream: Option<String>,
) -> Vec<(SortKey, Value)> {
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
                stream: stream.clone(),
            })
            .await
            .expect("search");
        assert!(page.hits.len() <= limit, "page over the limit");
        if page.next.is_some() {
            assert_eq!(page.hits.len(), limit, "a page with a cursor must be full");
        }
        out.extend(page.hits.into_iter().map(|h| (h.key, h.record)));
        match page.next {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}

fn expected(
    records: &[(SortKey, Value)],
    range: TimeRange,
    order: Order,
    f: impl Fn(&Value) -> bool,
) -> Vec<SortKey> {
    let mut keys: Vec<SortKey> = records
        .iter()
        .filter(|(k, r)| k.ts_ns >= range.start_ns && k.ts_ns < range.end_ns && f(r))
        .map(|(k, _)| k.clone())
        .collect();
    if order == Order::Desc {
        keys.reverse();
    }
    keys
}

fn keys(hits: &[(SortKey, Value)]) -> Vec<SortKey> {
    hits.iter().map(|(k, _)| k.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn template_installs_and_keeps_the_source() {
    for server in servers().await {
        let client = reqwest::Client::new();
        let prefix = unique_name("nvtest-tmpl");
        let name = unique_name("nevermore-test");
        let mut t = template(server.flavour);
        t["index_patterns"] = json!([format!("{prefix}*")]);
        let resp = client
            .put(format!("{}/_index_template/{name}", server.url))
            .json(&t)
            .send()
            .await
            .expect("put template");
        let status = resp.status();
        assert!(
            status.is_success(),
            "{}: template: {status} {}",
            server.url,
            resp.text().await.unwrap_or_default()
        );
        let index = format!("{prefix}-1");
        let record = fixture()
            .into_iter()
            .map(|(_, r)| r)
            .find(|r| label(r, "app").is_some() && label(r, "app.kubernetes.io/name").is_some())
            .expect("a record with both app labels");
        let id = record["event"]["id"].as_str().expect("id").to_string();
        let resp = client
            .put(format!(
                "{}/{index}/_create/{id}?refresh=wait_for",
                server.url
            ))
            .json(&record)
            .send()
            .await
            .expect("index a record");
        assert!(
            resp.status().is_success(),
            "{}: {}",
            server.url,
            resp.text().await.unwrap_or_default()
        );
        let got: Value = client
            .get(format!("{}/{index}/_doc/{id}", server.url))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(
            got["_source"], record,
            "{}: _source is the record as written",
            server.url
        );
        let mapping: Value = client
            .get(format!("{}/{index}/_mapping", server.url))
            .send()
            .await
            .expect("mapping")
            .json()
            .await
            .expect("json");
        let props = &mapping[&index]["mappings"]["properties"];
        assert_eq!(props["@timestamp"]["type"], "date_nanos", "{}", server.url);
        assert_eq!(
            props["message"]["analyzer"], "nevermore_message",
            "{}",
            server.url
        );
        let _ = client
            .delete(format!("{}/{index}", server.url))
            .send()
            .await;
        let _ = client
            .delete(format!("{}/_index_template/{name}", server.url))
            .send()
            .await;
    }
}

#[tokio::test]
async fn search_pages_cover_the_range_in_order() {
    for server in servers().await {
        let l = load(&server).await;
        let range = l.full_range();
        for order in [Order::Desc, Order::Asc] {
            for limit in [37, 500, 5000] {
                let got = search_all(&l.backend, &Expr::All, range, order, limit, None).await;
                let want = expected(&l.records, range, order, |_| true);
                assert_eq!(want.len(), l.records.len());
                assert_eq!(keys(&got), want, "{}: {order:?} limit {limit}", server.url);
                // The record comes back exactly as stored.
                assert_eq!(
                    got[0].1,
                    l.records
                        .iter()
                        .find(|(k, _)| *k == got[0].0)
                        .expect("known")
                        .1
                );
            }
        }
        drop_index(&l).await;
    }
}

#[tokio::test]
async fn time_range_edges_are_exact_to_the_nanosecond() {
    for server in servers().await {
        let l = load(&server).await;
        // A burst: several records at one instant; start there, end at another record's instant.
        let ts: Vec<i64> = l.records.iter().map(|(k, _)| k.ts_ns).collect();
        let burst = ts
            .windows(2)
            .position(|w| w[0] == w[1])
            .expect("a burst in the fixture");
        let start = ts[burst];
        let end = ts[burst + 40];
        for (range, what) in [
            (
                TimeRange {
                    start_ns: start,
                    end_ns: end,
                },
                "[burst, later)",
            ),
            (
                TimeRange {
                    start_ns: start + 1,
                    end_ns: end + 1,
                },
                "(burst, later]",
            ),
            (
                TimeRange {
                    start_ns: start - 1,
                    end_ns: end - 1,
                },
                "just before both",
            ),
            (
                TimeRange {
                    start_ns: start,
                    end_ns: start,
                },
                "empty",
            ),
            (
                TimeRange {
                    start_ns: start,
                    end_ns: start + 1,
                },
                "one instant",
            ),
        ] {
            for order in [Order::Desc, Order::Asc] {
                for limit in [1, 3, 100] {
                    let got = search_all(&l.backend, &Expr::All, range, order, limit, None).await;
                    let want = expected(&l.records, range, order, |_| true);
                    assert_eq!(
                        keys(&got),
                        want,
                        "{}: {what} {order:?} limit {limit}",
                        server.url
                    );
                }
            }
        }
        drop_index(&l).await;
    }
}

#[tokio::test]
async fn stream_filter_reads_one_stream_in_order() {
    for server in servers().await {
        let l = load(&server).await;
        let stream = l.records[l.records.len() / 3].0.stream_id.clone();
        let got = search_all(
            &l.backend,
            &Expr::All,
            l.full_range(),
            Order::Asc,
            25,
            Some(stream.clone()),
        )
        .await;
        let want = expected(&l.records, l.full_range(), Order::Asc, |r| {
            r["event"]["stream_id"] == json!(stream)
        });
        assert!(want.len() > 25, "the stream spans pages");
        assert_eq!(keys(&got), want, "{}", server.url);
        let seqs: Vec<u64> = got.iter().map(|(k, _)| k.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{}: sequences without gaps",
            server.url
        );
        drop_index(&l).await;
    }
}

#[tokio::test]
async fn queries_match_the_oracle() {
    for server in servers().await {
        let l = load(&server).await;
        let range = l.full_range();
        let mut failures = Vec::new();
        for (name, expr, oracle) in query_table(&l.records) {
            let quirk = l.server.flavour == Flavour::OpenSearch && name.contains("label.");
            let keep = |r: &Value| !(quirk && osmem_label_collision(r));
            let want = expected(&l.records, range, Order::Desc, |r| oracle(r) && keep(r));
            let mut got = search_all(&l.backend, &expr, range, Order::Desc, 1000, None).await;
            got.retain(|(_, r)| keep(r));
            if keys(&got) != want {
                failures.push(format!(
                    "{name}: got {} hits, want {}",
                    got.len(),
                    want.len()
                ));
            }
        }
        assert!(failures.is_empty(), "{}: {failures:#?}", server.url);
        drop_index(&l).await;
    }
}

fn oracle_histogram(
    l: &Loaded,
    range: TimeRange,
    interval: i64,
    f: impl Fn(&Value) -> bool,
) -> Vec<Bucket> {
    let first = range.start_ns.div_euclid(interval) * interval;
    let n = (range.end_ns - 1 - first).div_euclid(interval) + 1;
    let mut out: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            start_ns: first + i * interval,
            counts: BTreeMap::new(),
        })
        .collect();
    for (k, r) in &l.records {
        if k.ts_ns >= range.start_ns && k.ts_ns < range.end_ns && f(r) {
            let slot = ((k.ts_ns - first) / interval) as usize;
            let level = s(r, "/log/level").unwrap_or("none").to_string();
            *out[slot].counts.entry(level).or_default() += 1;
        }
    }
    out
}

#[tokio::test]
async fn histogram_counts_are_exact() {
    for server in servers().await {
        let l = load(&server).await;
        let full = l.full_range();
        // Nanosecond edges inside the data, and a fine interval over a short range.
        let inner = TimeRange {
            start_ns: l.records[10].0.ts_ns + 1,
            end_ns: l.records[1900].0.ts_ns,
        };
        let short = TimeRange {
            start_ns: l.records[500].0.ts_ns,
            end_ns: l.records[520].0.ts_ns + 1,
        };
        for (range, interval, what) in [
            (full, NS_PER_HOUR, "full, hourly"),
            (inner, NS_PER_HOUR / 4, "inner, 15 min"),
            (short, 60_000_000_000, "short, 1 min"),
            (short, 1_000_000, "short, 1 ms"),
        ] {
            if (range.end_ns - range.start_ns) / interval > 9_000 {
                continue;
            }
            for (qname, expr, f) in [
                ("all", Expr::All, Box::new(|_: &Value| true) as Oracle),
                (
                    "namespace:shop",
                    word(Field::Namespace, "shop"),
                    Box::new(|r: &Value| s(r, "/kubernetes/namespace") == Some("shop")),
                ),
            ] {
                let got = l
                    .backend
                    .histogram(HistogramRequest {
                        expr: expr.clone(),
                        range,
                        interval_ns: interval,
                    })
                    .await
                    .expect("histogram");
                let want = oracle_histogram(&l, range, interval, f);
                let total: u64 = got.iter().flat_map(|b| b.counts.values()).sum();
                let want_total: u64 = want.iter().flat_map(|b| b.counts.values()).sum();
                assert_eq!(total, want_total, "{}: {what} {qname}: total", server.url);
                assert_eq!(got, want, "{}: {what} {qname}", server.url);
            }
        }
        let bad = l
            .backend
            .histogram(HistogramRequest {
                expr: Expr::All,
                range: full,
                interval_ns: 1500,
            })
            .await;
        assert!(
            matches!(bad, Err(BackendError::BadInterval { .. })),
            "{bad:?}"
        );
        drop_index(&l).await;
    }
}

fn oracle_values(
    l: &Loaded,
    field: &Field,
    prefix: &str,
    range: TimeRange,
    limit: usize,
) -> Vec<ValueCount> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (k, r) in &l.records {
        if k.ts_ns < range.start_ns || k.ts_ns >= range.end_ns {
            continue;
        }
        let v = match field {
            Field::Label(key) => label(r, key),
            Field::Namespace => s(r, "/kubernetes/namespace"),
            Field::Pod => s(r, "/kubernetes/pod/name"),
            Field::Level => s(r, "/log/level"),
            Field::Stream => s(r, "/stream"),
            Field::Node => s(r, "/host/name"),
            Field::Workload => s(r, "/kubernetes/workload/name"),
            _ => None,
        };
        if let Some(v) = v.filter(|v| v.starts_with(prefix)) {
            *counts.entry(v.to_string()).or_default() += 1;
        }
    }
    let mut out: Vec<ValueCount> = counts
        .into_iter()
        .map(|(value, count)| ValueCount { value, count })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    out.truncate(limit);
    out
}

#[tokio::test]
async fn values_count_by_prefix() {
    for server in servers().await {
        let l = load(&server).await;
        let full = l.full_range();
        let inner = TimeRange {
            start_ns: l.records[100].0.ts_ns + 1,
            end_ns: l.records[1500].0.ts_ns + 1,
        };
        for (field, prefix, limit) in [
            (Field::Namespace, "", 10),
            (Field::Pod, "api-", 10),
            (Field::Pod, "", 3),
            (Field::Level, "", 10),
            (Field::Stream, "std", 10),
            (Field::Node, "node-", 10),
            (Field::Workload, "p", 10),
            (Field::Label("app.kubernetes.io/name".into()), "", 10),
            (Field::Label("app.kubernetes.io/name".into()), "p", 10),
            (Field::Label("tier".into()), "", 10),
            (Field::Label("team".into()), "pay", 10),
        ] {
            if l.server.flavour == Flavour::OpenSearch
                && field == Field::Label("app.kubernetes.io/name".into())
            {
                // See osmem_label_collision: the counts of colliding records are arbitrary.
                continue;
            }
            for range in [full, inner] {
                let got = l
                    .backend
                    .values(ValuesRequest {
                        field: field.clone(),
                        prefix: prefix.into(),
                        expr: Expr::All,
                        range,
                        limit,
                    })
                    .await
                    .expect("values");
                let want = oracle_values(&l, &field, prefix, range, limit);
                assert!(
                    !want.is_empty(),
                    "{field:?} {prefix}: the fixture has values"
                );
                assert_eq!(got, want, "{}: {field:?} prefix {prefix:?}", server.url);
            }
        }
        // Restricted by the query.
        let got = l
            .backend
            .values(ValuesRequest {
                field: Field::Pod,
                prefix: String::new(),
                expr: word(Field::Namespace, "payments"),
                range: full,
                limit: 10,
            })
            .await
            .expect("values");
        assert!(
            got.iter()
                .all(|v| v.value.starts_with("ledger-") || v.value.starts_with("settle-")),
            "{got:?}"
        );
        let bad = l
            .backend
            .values(ValuesRequest {
                field: Field::Message,
                prefix: String::new(),
                expr: Expr::All,
                range: full,
                limit: 5,
            })
            .await;
        assert!(matches!(bad, Err(BackendError::BadField { .. })), "{bad:?}");
        drop_index(&l).await;
    }
}

#[tokio::test]
async fn get_finds_a_record_within_the_restriction() {
    for server in servers().await {
        let l = load(&server).await;
        let (key, record) = l
            .records
            .iter()
            .find(|(_, r)| s(r, "/kubernetes/namespace") == Some("payments"))
            .expect("a payments record");
        let id = record["event"]["id"].as_str().expect("id");
        let hit = l
            .backend
            .get(id, &Expr::All)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(&hit.record, record, "{}", server.url);
        assert_eq!(&hit.key, key);
        let allowed = l
            .backend
            .get(id, &word(Field::Namespace, "payments"))
            .await
            .expect("get");
        assert!(allowed.is_some(), "{}", server.url);
        let denied = l
            .backend
            .get(id, &word(Field::Namespace, "shop"))
            .await
            .expect("get");
        assert!(denied.is_none(), "{}: tenancy restriction", server.url);
        let missing = l
            .backend
            .get("ffffffffffffffff", &Expr::All)
            .await
            .expect("get");
        assert!(missing.is_none(), "{}", server.url);
        drop_index(&l).await;
    }
}

#[tokio::test]
async fn bad_cursors_are_rejected() {
    for server in servers().await {
        let l = load(&server).await;
        let key = SortKey {
            ts_ns: l.records[5].0.ts_ns,
            stream_id: "x".into(),
            seq: 0,
        };
        for pit in ["not-a-pit|{", "bm90LWEtcGl0"] {
            let res = l
                .backend
                .search(SearchRequest {
                    expr: Expr::All,
                    range: l.full_range(),
                    limit: 5,
                    order: Order::Desc,
                    after: Some(Cursor {
                        key: key.clone(),
                        pit: Some(pit.into()),
                    }),
                    stream: None,
                })
                .await;
            assert!(
                matches!(res, Err(BackendError::BadCursor)),
                "{}: pit {pit}: {res:?}",
                server.url
            );
        }
        drop_index(&l).await;
    }
}

#[tokio::test]
async fn unreachable_endpoints_fail_over() {
    for server in servers().await {
        let l = load(&server).await;
        // A closed port first: the backend moves on to the live server.
        let b = EsBackend::new(
            vec!["http://127.0.0.1:9".into(), server.url.clone()],
            l.index.clone(),
            None,
            EsTimeouts::default(),
        )
        .expect("backend");
        let page = b
            .search(SearchRequest {
                expr: Expr::All,
                range: l.full_range(),
                limit: 10,
                order: Order::Desc,
                after: None,
                stream: None,
            })
            .await
            .expect("search fails over");
        assert_eq!(page.hits.len(), 10);
        let dead = EsBackend::new(
            vec!["http://127.0.0.1:9".into()],
            l.index.clone(),
            None,
            EsTimeouts::default(),
        )
        .expect("backend");
        let err = dead.get("x", &Expr::All).await;
        assert!(
            matches!(err, Err(BackendError::Elasticsearch { .. })),
            "{err:?}"
        );
        drop_index(&l).await;
    }
}

/// Every query of `testdata/search/queries.txt`, parsed by the language, against the language's
/// own evaluator on the same records.
#[tokio::test]
async fn query_table_file_matches_the_evaluator() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/search/queries.txt"
    );
    let text = std::fs::read_to_string(path).expect("read testdata/search/queries.txt");
    let queries: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        queries.len() >= 40,
        "the table has {} queries",
        queries.len()
    );
    let limits = nevermore_lang::Limits::default();
    for server in servers().await {
        let l = load(&server).await;
        let range = l.full_range();
        let mut failures = Vec::new();
        for q in &queries {
            let expr = match nevermore_lang::parse_strict(q, &limits) {
                Ok(e) => e,
                Err(e) => {
                    failures.push(format!("{q}: does not parse: {e}"));
                    continue;
                }
            };
            let quirk = l.server.flavour == Flavour::OpenSearch && q.contains("label.");
            let keep = |r: &Value| !(quirk && osmem_label_collision(r));
            let want = expected(&l.records, range, Order::Desc, |r| {
                keep(r)
                    && nevermore_lang::eval::matches(
                        &expr,
                        &nevermore_query::logs::record_doc::ValueDoc::new(r),
                    )
            });
            let mut got = search_all(&l.backend, &expr, range, Order::Desc, 1000, None).await;
            got.retain(|(_, r)| keep(r));
            if keys(&got) != want {
                failures.push(format!("{q}: got {} hits, want {}", got.len(), want.len()));
            }
        }
        assert!(failures.is_empty(), "{}: {failures:#?}", server.url);
        drop_index(&l).await;
    }
}
