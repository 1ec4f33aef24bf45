//! Hot paths of `nevermore-lang`: parsing, printing and lowering a query to Elasticsearch DSL
//! (each search request does all three), and evaluating a compiled query (live tail).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use nevermore_lang::eval::{Doc, Matcher};
use nevermore_lang::{Field, Limits, es, parse_lenient, parse_strict, print};
use std::hint::black_box;

/// Five representative queries, from the one a user types first to a pasted-in monster.
const QUERIES: [(&str, &str); 5] = [
    ("word", "timeout"),
    (
        "issue",
        r#"namespace:shop -pod:canary-* level:>=warn "connection refused""#,
    ),
    (
        "regex",
        r"pod:/api-[a-z0-9]{5}/ /connection (refused|reset) after \d+ms/i",
    ),
    (
        "lists",
        "namespace:prod,staging,qa label.app.kubernetes.io/name:api,web,worker \
         time:2026-11-26T10:00:00Z..2026-11-26T12:00:00Z has:label.team no:node",
    ),
    (
        "nested",
        "(namespace:shop OR namespace:payments) (level:error OR (level:warn \
         (timeout OR refused OR \"connection reset\"))) -(container:istio-proxy OR \
         container:linkerd-proxy) /GET \\/api\\/v[0-9]+/ http://svc:8080 conn*",
    ),
];

fn bench_parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("query");
    for (name, text) in QUERIES {
        g.bench_function(BenchmarkId::new("parse_strict", name), |b| {
            b.iter(|| parse_strict(black_box(text), &limits))
        });
        g.bench_function(BenchmarkId::new("parse_lenient", name), |b| {
            b.iter(|| parse_lenient(black_box(text), &limits))
        });
        let Ok(expr) = parse_strict(text, &limits) else {
            panic!("benchmark query {name} does not parse");
        };
        g.bench_function(BenchmarkId::new("print", name), |b| {
            b.iter(|| print(black_box(&expr)))
        });
        g.bench_function(BenchmarkId::new("to_dsl", name), |b| {
            b.iter(|| es::to_dsl(black_box(&expr)))
        });
        g.bench_function(BenchmarkId::new("all_three", name), |b| {
            b.iter(|| {
                let e = parse_strict(black_box(text), &limits).ok()?;
                Some((print(&e), es::to_dsl(&e)))
            })
        });
    }
    g.finish();
}

struct Rec(&'static str);

impl Doc for Rec {
    fn timestamp_ns(&self) -> i64 {
        1_795_687_200_000_000_000
    }
    fn message(&self) -> &str {
        self.0
    }
    fn field(&self, f: &Field) -> Option<&str> {
        match f {
            Field::Namespace => Some("shop"),
            Field::Pod => Some("api-7d9f5"),
            Field::Container => Some("api"),
            Field::Level => Some("warn"),
            _ => None,
        }
    }
}

fn bench_eval(c: &mut Criterion) {
    let limits = Limits::default();
    let rec = Rec(
        "2026-11-26T10:00:00Z WARN request failed: connection refused after 1200ms \
         method=GET path=/api/v1/orders/42 trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
    );
    let mut g = c.benchmark_group("query_eval");
    for (name, text) in QUERIES {
        let Ok(expr) = parse_strict(text, &limits) else {
            panic!("benchmark query {name} does not parse");
        };
        let Ok(m) = Matcher::new(&expr) else {
            panic!("benchmark query {name} does not compile");
        };
        g.bench_function(BenchmarkId::new("matches", name), |b| {
            b.iter(|| m.matches(black_box(&rec)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_parse, bench_eval);
criterion_main!(benches);
