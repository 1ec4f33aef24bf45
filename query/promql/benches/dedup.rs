//! Replica dedup over 2 replicas × 3,000 series × 250 samples (15 s scrape, the second replica
//! 1.3 s later, every tenth series with a 10-sample gap in the first replica).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use nevermore_promql::dedup::{Algorithm, dedup};
use nevermore_promql::model::{Labels, Sample, SelectHints, Series};

const SERIES: usize = 3_000;
const SAMPLES: i64 = 250;

fn input() -> Vec<Series> {
    let mut out = Vec::with_capacity(2 * SERIES);
    for i in 0..SERIES {
        for r in 0..2i64 {
            let gap = r == 0 && i % 10 == 0;
            let samples = (0..SAMPLES)
                .filter(|k| !(gap && (100..110).contains(k)))
                .map(|k| Sample {
                    t: 1_700_000_000_000 + k * 15_000 + r * 1_300,
                    v: (k * 3 + r) as f64,
                })
                .collect();
            out.push(Series {
                labels: Labels::from_pairs([
                    ("__name__", "http_requests_total".to_string()),
                    ("pod", format!("pod-{i}")),
                    ("replica", format!("prom-{r}")),
                ]),
                samples,
            });
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let series = input();
    let total: usize = series.iter().map(|s| s.samples.len()).sum();
    let replicas = vec!["replica".to_string()];
    let mut g = c.benchmark_group("dedup");
    g.throughput(Throughput::Elements(total as u64));
    for (name, algo, func) in [
        ("penalty", Algorithm::Penalty, None),
        ("penalty_rate", Algorithm::Penalty, Some("rate")),
        ("chain", Algorithm::Chain, None),
        (
            "interval_15s",
            Algorithm::Interval {
                interval_ms: 15_000,
            },
            None,
        ),
    ] {
        let hints = SelectHints {
            func: func.map(str::to_string),
            ..SelectHints::default()
        };
        // The input is consumed, so each iteration gets a fresh copy (not measured).
        g.bench_function(name, |b| {
            b.iter_batched(
                || series.clone(),
                |s| black_box(dedup(s, &replicas, algo, &hints)),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
