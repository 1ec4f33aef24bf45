//! Ours vs Prometheus on the same data, side by side in one run.
//!
//! Backfills the fixture cluster (`BENCH_SCALE` copies of every workload; the default gives
//! 3,010 `container_cpu_usage_seconds_total` series) into two real Prometheus replicas, then for
//! `sum by (pod) (rate(x[5m]))` and every panel of the three dashboards evaluates a range query
//! of 241 steps (1 h at 15 s), `BENCH_RUNS` times each, and prints medians:
//! - ours: select (remote read from both replicas), dedup, evaluation;
//! - Prometheus 2.42: its own `execTotalTime` from `stats=all` for the same query on one replica;
//! - ratio = (our dedup + evaluation) / Prometheus' total, and dedup's share of our select time.
//!
//! Run: `cargo bench -p nevermore-query --bench metrics_vs_prometheus` (under `cargo test` it is a
//! quick smoke run).

#[path = "../tests/common/metric_servers.rs"]
#[allow(dead_code)]
mod metric_servers;

use std::time::{Duration, Instant};

use metric_servers::Prometheus;
use nevermore_promql::engine::QueryTime;
use nevermore_query::config::{MetricsConfig, UpstreamConfig};
use nevermore_query::metrics::fixture::{FixtureSpec, write_openmetrics};
use nevermore_query::metrics::{Metrics, RequestOptions, Timings, dashboards};

// The binary's allocator (`src/main.rs`), so that the numbers are the service's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: a smoke run then (one copy of
    // the cluster, one run), which still proves the whole path against real servers.
    let measuring = std::env::args().any(|a| a == "--bench");
    let scale = env_usize("BENCH_SCALE", if measuring { 215 } else { 1 });
    let runs = env_usize("BENCH_RUNS", if measuring { 5 } else { 1 }).max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = FixtureSpec {
        start_ms: T0,
        duration_ms: 70 * MIN,
        interval_ms: 15_000,
        gaps: Vec::new(),
        scale,
        extra_labels: Vec::new(),
    };
    let file = dir.path().join("cluster.om");
    let t = Instant::now();
    {
        let f = std::fs::File::create(&file).expect("create fixture");
        let mut w = std::io::BufWriter::new(f);
        write_openmetrics(&spec, &mut w).expect("write fixture");
    }
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "fixture: scale {scale}, {:.0} MB of OpenMetrics in {:.1} s",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let prom_a = Prometheus::start(&file, &[("replica", "a")]);
    let prom_b = Prometheus::start(&file, &[("replica", "b")]);
    eprintln!(
        "two replicas backfilled and ready in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cfg = MetricsConfig {
        upstreams: [("a", prom_a.url()), ("b", prom_b.url())]
            .into_iter()
            .map(|(n, url)| UpstreamConfig::Prometheus {
                name: n.into(),
                url,
                timeout: Duration::from_secs(120),
                bearer_token: None,
                streamed: true,
            })
            .collect(),
        ..MetricsConfig::default()
    };
    let metrics = Metrics::from_config(&cfg).expect("metrics");
    let client = reqwest::Client::new();

    let start = T0 + 5 * MIN + 7_000;
    let time = QueryTime {
        start,
        end: start + 60 * MIN,
        step: 15_000,
    };
    let mut queries = vec![(
        "sum by (pod) (rate(x[5m]))".to_string(),
        "sum by (pod) (rate(container_cpu_usage_seconds_total[5m]))".to_string(),
    )];
    // Every panel of the three dashboards: namespace shop, its frontend Deployment, one pod.
    let vars = |name: &str| -> Option<String> {
        Some(
            match name {
                "namespace" => "shop",
                "workload" => "frontend",
                "type" => "deployment",
                _ => "redis-0",
            }
            .into(),
        )
    };
    for d in dashboards::all() {
        for p in d.render(vars).expect("render") {
            for (i, t) in p.targets.iter().enumerate() {
                queries.push((format!("{}/{}#{}", d.name, p.id, i + 1), t.expr.clone()));
            }
        }
    }

    println!(
        "{:<38} {:>7} {:>10} {:>9} {:>9} {:>10} {:>10} {:>7} {:>8}",
        "query (241 steps)",
        "series",
        "select ms",
        "dedup ms",
        "eval ms",
        "prom ms",
        "samples",
        "ratio",
        "dedup %"
    );
    let (mut total_ours, mut total_prom, mut total_dedup, mut total_select, mut total_samples) =
        (0.0, 0.0, 0.0, 0.0, 0usize);
    for (name, q) in &queries {
        let mut ours: Vec<Timings> = Vec::new();
        let mut series = 0;
        let mut prom = Vec::new();
        for run in 0..=runs {
            let opts = RequestOptions::new(Instant::now() + Duration::from_secs(300));
            let (answer, timings) = rt
                .block_on(metrics.query(q, time, &opts))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            if let nevermore_promql::engine::Value::Matrix(m) = &answer.data.value {
                series = m.len();
            }
            let body: serde_json::Value = rt.block_on(async {
                client
                    .get(format!("{}/api/v1/query_range", prom_a.url()))
                    .query(&[
                        ("query", q.clone()),
                        ("start", format!("{}", time.start as f64 / 1000.0)),
                        ("end", format!("{}", time.end as f64 / 1000.0)),
                        ("step", "15".into()),
                        ("stats", "all".into()),
                    ])
                    .send()
                    .await
                    .expect("prometheus")
                    .json()
                    .await
                    .expect("prometheus json")
            });
            let exec = body["data"]["stats"]["timings"]["execTotalTime"]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: no stats in {body}"));
            // The first run warms both sides' caches.
            if run > 0 {
                ours.push(timings);
                prom.push(exec * 1000.0);
            }
        }
        let select = median(ours.iter().map(|t| ms(t.select)).collect());
        let dedup = median(ours.iter().map(|t| ms(t.dedup)).collect());
        let eval = median(ours.iter().map(|t| ms(t.eval)).collect());
        let samples = ours[0].samples_fetched;
        let p = median(prom);
        total_ours += dedup + eval;
        total_prom += p;
        total_dedup += dedup;
        total_select += select;
        total_samples += samples;
        println!(
            "{:<38} {:>7} {:>10.1} {:>9.2} {:>9.2} {:>10.2} {:>10} {:>7.2} {:>7.1}%",
            name,
            series,
            select,
            dedup,
            eval,
            p,
            samples,
            (dedup + eval) / p,
            100.0 * dedup / select
        );
    }
    println!(
        "all {} queries: ours (dedup + eval) {:.1} ms, Prometheus {:.1} ms, ratio {:.2}; dedup {:.1} ms = {:.1}% of select ({:.1} ms), {:.1} M samples/s",
        queries.len(),
        total_ours,
        total_prom,
        total_ours / total_prom,
        total_dedup,
        100.0 * total_dedup / total_select,
        total_select,
        total_samples as f64 / (total_dedup / 1000.0) / 1e6
    );
}
