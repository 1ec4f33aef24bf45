//! Range evaluation over 3,000 counters (15 s scrape, 1 h at 15 s step = 241 steps), the shape
//! of a typical dashboard panel.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use nevermore_promql::engine::{self, EvalOptions, QueryTime};
use nevermore_promql::model::{Labels, MemStorage, Sample, Series};

const SERIES: usize = 3_000;
const SCRAPE_MS: i64 = 15_000;
const HOUR_MS: i64 = 3_600_000;
const START_MS: i64 = 1_700_000_000_000;

fn storage() -> MemStorage {
    // 1 h of query range plus the 5 m the first window looks back.
    let points = ((HOUR_MS + 5 * 60_000) / SCRAPE_MS + 1) as usize;
    let first = START_MS - 5 * 60_000;
    let series = (0..SERIES)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", "container_cpu_usage_seconds_total".to_string()),
                ("namespace", format!("ns-{}", i % 50)),
                ("pod", format!("pod-{i}")),
                ("container", "c".to_string()),
            ]);
            let mut v = 0.0;
            let samples = (0..points)
                .map(|k| {
                    v += 1.0 + (i % 7) as f64 * 0.25;
                    Sample {
                        t: first + k as i64 * SCRAPE_MS,
                        v,
                    }
                })
                .collect();
            Series { labels, samples }
        })
        .collect();
    MemStorage::new(series)
}

fn bench(c: &mut Criterion) {
    let store = storage();
    let opts = EvalOptions::default();
    let time = QueryTime {
        start: START_MS,
        end: START_MS + HOUR_MS,
        step: 15_000,
    };
    for (name, q) in [
        (
            "sum_by_pod_rate_3000x241",
            "sum by (pod) (rate(container_cpu_usage_seconds_total[5m]))",
        ),
        (
            "rate_3000x241",
            "rate(container_cpu_usage_seconds_total[5m])",
        ),
    ] {
        let expr = engine::parse(q).expect("query parses");
        c.bench_function(name, |b| {
            b.iter(|| {
                let out = engine::eval_range(&expr, &store, time, &opts).expect("query evaluates");
                black_box(out)
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
