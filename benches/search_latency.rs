//! End-to-end benchmark of the embedded index: indexing throughput, then the latency of what the
//! search API does for a first page (the page and the histogram that gives the total, at once)
//! for a set of queries over two time ranges.
//!
//! `BENCH_RECORDS=10000000 cargo bench --bench search_latency` (default 1 M). The index is built
//! once under `BENCH_DIR` (default `/tmp/nevermore-bench-index-<N>`) and reused by later runs;
//! delete it to measure indexing again. `BENCH_ITERATIONS` (default 30) and `BENCH_ONLY` (a text
//! the queries to run contain) narrow a run.

#![allow(clippy::unwrap_used)]

use nevermore_index::{IndexDoc, LogIndex, Retention, Writer};
use nevermore_lang::{Limits, parse_strict};
use nevermore_query::logs::embedded::EmbeddedBackend;
use nevermore_query::logs::{HistogramRequest, Order, SearchRequest, TimeRange};
use std::time::{Duration, Instant};

const DAY: i64 = 86_400_000_000_000;
const HOUR: i64 = 3_600_000_000_000;
/// The newest record's time: fixed, so runs are comparable.
const END: i64 = 1_795_687_200_000_000_000;
const SPAN_DAYS: i64 = 7;

const NAMESPACES: [&str; 8] = [
    "shop",
    "payments",
    "search",
    "auth",
    "kube-system",
    "monitoring",
    "batch",
    "edge",
];
const WORKLOADS: [&str; 6] = ["api", "web", "worker", "db", "cache", "gateway"];
const LEVELS: [Option<&str>; 7] = [
    Some("info"),
    Some("info"),
    Some("info"),
    Some("debug"),
    Some("warn"),
    Some("error"),
    None,
];
const MESSAGES: [&str; 8] = [
    "GET /api/v1/products/{} 200 {}ms",
    "POST /api/v1/checkout 201 {}ms user={}",
    "upstream payments: connection refused after {} attempts ({}ms)",
    "cache miss key=session:{} took {}ms",
    "timeout after {}s waiting for lock {}",
    "GC pause {}ms heap={}MiB",
    "user {} logged in from 10.0.{}.7",
    "retrying job {} in {}s",
];

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn build(dir: &std::path::Path, n: u64) {
    let index = LogIndex::open(dir).unwrap();
    let mut w = Writer::new(index, 512 << 20, Retention::default()).unwrap();
    let streams = 400u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let started = Instant::now();
    let cpu0 = cpu_seconds();
    let mut bytes = 0u64;
    let mut seqs = vec![0u64; streams as usize];
    let mut src = String::new();
    for i in 0..n {
        let r = next();
        let stream = r % streams;
        let ns = NAMESPACES[(stream % 8) as usize];
        let wl = WORKLOADS[((stream / 8) % 6) as usize];
        let pod = format!("{wl}-7d9f8c6b5-{:05}", stream);
        let level = LEVELS[((r >> 8) % 7) as usize];
        let a = (r >> 16) % 1000;
        let b = (r >> 32) % 500;
        let msg = MESSAGES[((r >> 12) % 8) as usize]
            .replacen("{}", &a.to_string(), 1)
            .replacen("{}", &b.to_string(), 1);
        // Evenly over the span, oldest first (as a collector delivers them).
        let ts = END - SPAN_DAYS * DAY + (i as i64) * (SPAN_DAYS * DAY / n as i64);
        let seq = seqs[stream as usize];
        seqs[stream as usize] += 1;
        let id = format!("{:016x}", r);
        let sid = format!("{:016x}", stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        src.clear();
        src.push_str(&format!(
            r#"{{"@timestamp":"{}","message":{},"stream":"stdout","log":{{{}"file":{{"path":"/var/log/pods/{ns}_{pod}_u/{wl}/0.log"}},"offset":{}}},"kubernetes":{{"namespace":"{ns}","pod":{{"name":"{pod}","uid":"u"}},"container":{{"name":"{wl}","restart_count":0}},"node":{{"name":"node-{}"}},"workload":{{"name":"{wl}"}},"labels":{{"app":"{wl}"}}}},"orchestrator":{{"cluster":{{"name":"bench"}}}},"host":{{"name":"node-{}"}},"event":{{"id":"{id}","stream_id":"{sid}","sequence":{seq},"dataset":"container"}}}}"#,
            nevermore_index::format_ts(ts),
            serde_json::to_string(&msg).unwrap(),
            level.map(|l| format!(r#""level":"{l}","#)).unwrap_or_default(),
            seq * 200,
            stream % 5,
            stream % 5,
        ));
        bytes += src.len() as u64;
        let node = format!("node-{}", stream % 5);
        let doc = IndexDoc {
            ts_ns: ts,
            stream_id: stream.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            seq,
            event_id: &id,
            message: &msg,
            level,
            stream: Some("stdout"),
            namespace: Some(ns),
            pod: Some(&pod),
            container: Some(wl),
            workload: Some(wl),
            node: &node,
            cluster: "bench",
            dataset: "container",
            labels: vec![("app", wl)],
            source: src.as_bytes(),
        };
        w.add(&doc).unwrap();
        if i > 0 && i % 1_000_000 == 0 {
            w.commit().unwrap();
        }
    }
    w.commit().unwrap();
    drop(w);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "indexing: {n} records, {:.0} MB of JSON in {secs:.1} s: {:.0} records/s, {:.1} MB/s, {:.1} CPU s, peak RSS {:.0} MiB",
        bytes as f64 / 1e6,
        n as f64 / secs,
        bytes as f64 / 1e6 / secs,
        cpu_seconds() - cpu0,
        peak_rss_mib()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    // `cargo test --all-targets` runs this without `--bench`: a small smoke run then, in a
    // fresh directory.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n: u64 = if smoke {
        20_000
    } else {
        std::env::var("BENCH_RECORDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    };
    let smoke_dir = smoke.then(|| tempfile::tempdir().unwrap());
    let dir = match (&smoke_dir, std::env::var("BENCH_DIR")) {
        (Some(d), _) => d.path().to_path_buf(),
        (None, Ok(d)) => std::path::PathBuf::from(d),
        (None, Err(_)) => std::env::temp_dir().join(format!("nevermore-bench-index-{n}")),
    };
    let marker = dir.join("bench-complete");
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        build(&dir, n);
        std::fs::write(&marker, n.to_string()).unwrap();
    } else {
        println!("indexing: reusing {} ({n} records)", dir.display());
    }
    let index = LogIndex::open(&dir).unwrap();
    let size = index.disk_bytes().unwrap();
    let backend = EmbeddedBackend::new(index).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let queries = [
        "",
        "level:>=warn",
        "namespace:shop -pod:api-*",
        "\"connection refused\"",
        "namespace:payments \"connection refused\" level:error",
        "/timeout after [0-9]+s/",
    ];
    let ranges = [
        (
            "last 1h",
            TimeRange {
                start_ns: END - HOUR,
                end_ns: END,
            },
        ),
        (
            "all 7d",
            TimeRange {
                start_ns: END - SPAN_DAYS * DAY,
                end_ns: END + 1,
            },
        ),
    ];
    let iterations: usize = if smoke {
        1
    } else {
        std::env::var("BENCH_ITERATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30)
    };
    println!(
        "index on disk: {:.0} MiB; {iterations} runs each",
        size as f64 / 1048576.0
    );
    println!(
        "/search = first page (100) + exact total; +hist = with /histogram (120 buckets) at once; ms"
    );
    println!(
        "cold = the first run of the query on a fresh reader (nothing remembered of earlier searches; the OS page cache stays warm)"
    );
    println!(
        "{:<55} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "query", "range", "cold", "cold+hist", "p50", "p99", "+hist50", "+hist99", "matches"
    );
    let cpu0 = cpu_seconds();
    for (label, range) in ranges {
        for q in queries {
            // `BENCH_ONLY=timeout` runs the queries holding that text.
            if std::env::var("BENCH_ONLY").is_ok_and(|only| !q.contains(&only)) {
                continue;
            }
            let expr = parse_strict(q, &Limits::default()).unwrap();
            let interval = ((range.end_ns - range.start_ns) / 120).max(1);
            let mut page_times = Vec::with_capacity(iterations);
            let mut times = Vec::with_capacity(iterations);
            let mut total = 0;
            let req = || SearchRequest {
                expr: expr.clone(),
                range,
                limit: 100,
                order: Order::Desc,
                after: None,
                stream: None,
            };
            // A UI's first screen: `/search` and `/histogram` at once; both totals agree.
            let screen = |b: &EmbeddedBackend| {
                let started = Instant::now();
                let (page, hist) = rt.block_on(async {
                    tokio::join!(
                        b.search_counted(req()),
                        b.histogram(HistogramRequest {
                            expr: expr.clone(),
                            range,
                            interval_ns: interval
                        })
                    )
                });
                let took = started.elapsed();
                let (_, n) = page.unwrap();
                let counted: u64 = hist.unwrap().iter().flat_map(|b| b.counts.values()).sum();
                assert_eq!(n, counted, "{q}");
                (took, n)
            };
            // `/search` alone: the page and the exact total, in one pass.
            let search = |b: &EmbeddedBackend| {
                let started = Instant::now();
                let (_, n) = rt.block_on(b.search_counted(req())).unwrap();
                (started.elapsed(), n)
            };
            // Cold: a fresh backend per measurement, so no earlier search helps.
            let fresh = || EmbeddedBackend::new(LogIndex::open(&dir).unwrap()).unwrap();
            let (cold, _) = search(&fresh());
            let (cold_hist, _) = screen(&fresh());
            for _ in 0..iterations {
                let (took, n) = search(&backend);
                page_times.push(took);
                let (took, counted) = screen(&backend);
                times.push(took);
                assert_eq!(n, counted, "{q}");
                total = counted;
            }
            page_times.sort();
            times.sort();
            println!(
                "{:<55} {:>8} {:>8.1} {:>10.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>10}",
                format!("{q:?}"),
                label,
                cold.as_secs_f64() * 1e3,
                cold_hist.as_secs_f64() * 1e3,
                percentile(&page_times, 0.5).as_secs_f64() * 1e3,
                percentile(&page_times, 0.99).as_secs_f64() * 1e3,
                percentile(&times, 0.5).as_secs_f64() * 1e3,
                percentile(&times, 0.99).as_secs_f64() * 1e3,
                total
            );
        }
    }
    println!(
        "queries: {:.1} CPU s, peak RSS {:.0} MiB",
        cpu_seconds() - cpu0,
        peak_rss_mib()
    );
}
