//! Generates `testdata/search/records.ndjson`, the shared fixture of the search backends' tests
//! (embedded index, Elasticsearch, OpenSearch), and checks the committed file is what this
//! generator writes. `UPDATE_GOLDEN=1 cargo test -p nevermore-query --test fixture_gen` rewrites
//! it.
//!
//! Deterministic (a seeded PRNG, no clock). What it covers: 4 namespaces, deployment-style and
//! statefulset pods, several containers, a restarted container, both streams, every level and
//! none, labels with dots and slashes (`app` beside `app.kubernetes.io/name`), a file source
//! without Kubernetes fields, punctuation, unicode, U+FFFD from invalid UTF-8, multiline and
//! 10 KiB lines, bursts of equal timestamps in one stream and equal timestamps across streams,
//! over two days with nanosecond fractions.

use nevermore_schemas::LogRecord;
use serde_json::{Value, json};
use std::path::PathBuf;

/// splitmix64: small, seeded, good enough for fixtures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// FNV-1a 64, as 16 hex digits: stable ids from names.
fn hex_id(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

struct Stream {
    namespace: Option<&'static str>,
    pod: &'static str,
    workload: Option<&'static str>,
    container: &'static str,
    restart: u32,
    node: &'static str,
    labels: &'static [(&'static str, &'static str)],
    /// Relative weight of how chatty the stream is.
    weight: u64,
    id: String,
    seq: u64,
    offset: u64,
}

const API_LABELS: &[(&str, &str)] = &[
    ("app", "api"),
    ("app.kubernetes.io/name", "api"),
    ("app.kubernetes.io/part-of", "shop"),
    ("pod-template-hash", "7d9f8c6b5"),
];
const DB_LABELS: &[(&str, &str)] = &[
    ("app.kubernetes.io/name", "postgres"),
    ("app.kubernetes.io/part-of", "shop"),
    ("statefulset.kubernetes.io/pod-name", "db-0"),
];
const DB1_LABELS: &[(&str, &str)] = &[
    ("app.kubernetes.io/name", "postgres"),
    ("app.kubernetes.io/part-of", "shop"),
    ("statefulset.kubernetes.io/pod-name", "db-1"),
];
const WEB_LABELS: &[(&str, &str)] = &[("app", "web"), ("tier", "frontend")];
const LEDGER_LABELS: &[(&str, &str)] = &[
    ("app", "ledger"),
    ("app.kubernetes.io/name", "ledger"),
    ("team", "payments"),
];
const WORKER_LABELS: &[(&str, &str)] = &[("job-name", "settle-28765432"), ("team", "payments")];
const PROXY_LABELS: &[(&str, &str)] = &[("k8s-app", "kube-proxy")];
const DNS_LABELS: &[(&str, &str)] = &[("k8s-app", "kube-dns")];
const PROM_LABELS: &[(&str, &str)] = &[
    ("app.kubernetes.io/name", "prometheus"),
    ("app", "prometheus"),
];
const GRAFANA_LABELS: &[(&str, &str)] =
    &[("app", "grafana"), ("app.kubernetes.io/name", "grafana")];
const NO_LABELS: &[(&str, &str)] = &[];

#[allow(clippy::too_many_arguments)]
fn stream(
    namespace: Option<&'static str>,
    pod: &'static str,
    workload: Option<&'static str>,
    container: &'static str,
    restart: u32,
    node: &'static str,
    labels: &'static [(&'static str, &'static str)],
    weight: u64,
) -> Stream {
    let id = hex_id(&format!(
        "stream/{}/{pod}/{container}/{restart}",
        namespace.unwrap_or("")
    ));
    Stream {
        namespace,
        pod,
        workload,
        container,
        restart,
        node,
        labels,
        weight,
        id,
        seq: 0,
        offset: 0,
    }
}

fn streams() -> Vec<Stream> {
    let shop = Some("shop");
    let pay = Some("payments");
    let kube = Some("kube-system");
    let mon = Some("monitoring");
    vec![
        stream(
            shop,
            "api-7d9f8c6b5-x2x9k",
            Some("api"),
            "api",
            0,
            "node-a",
            API_LABELS,
            12,
        ),
        stream(
            shop,
            "api-7d9f8c6b5-x2x9k",
            Some("api"),
            "istio-proxy",
            0,
            "node-a",
            API_LABELS,
            4,
        ),
        stream(
            shop,
            "api-7d9f8c6b5-q8w4z",
            Some("api"),
            "api",
            0,
            "node-b",
            API_LABELS,
            10,
        ),
        stream(
            shop,
            "api-7d9f8c6b5-q8w4z",
            Some("api"),
            "api",
            1,
            "node-b",
            API_LABELS,
            4,
        ),
        stream(
            shop,
            "api-7d9f8c6b5-q8w4z",
            Some("api"),
            "istio-proxy",
            0,
            "node-b",
            API_LABELS,
            3,
        ),
        stream(
            shop,
            "db-0",
            Some("db"),
            "postgres",
            0,
            "node-c",
            DB_LABELS,
            6,
        ),
        stream(
            shop,
            "db-1",
            Some("db"),
            "postgres",
            0,
            "node-a",
            DB1_LABELS,
            3,
        ),
        stream(
            shop,
            "web-5c8d7f9b4-h7k2m",
            Some("web"),
            "nginx",
            0,
            "node-c",
            WEB_LABELS,
            6,
        ),
        stream(
            pay,
            "ledger-6b7c9d8f5-mm2kp",
            Some("ledger"),
            "ledger",
            0,
            "node-b",
            LEDGER_LABELS,
            7,
        ),
        stream(
            pay,
            "ledger-6b7c9d8f5-zz9tt",
            Some("ledger"),
            "ledger",
            0,
            "node-c",
            LEDGER_LABELS,
            5,
        ),
        stream(
            pay,
            "settle-28765432-xk2lp",
            Some("settle"),
            "worker",
            0,
            "node-a",
            WORKER_LABELS,
            2,
        ),
        stream(
            kube,
            "kube-proxy-8xk2p",
            Some("kube-proxy"),
            "kube-proxy",
            0,
            "node-a",
            PROXY_LABELS,
            3,
        ),
        stream(
            kube,
            "coredns-5d78c9869d-7zk4q",
            Some("coredns"),
            "coredns",
            0,
            "node-b",
            DNS_LABELS,
            3,
        ),
        // A static pod: no owning workload.
        stream(kube, "etcd-node-a", None, "etcd", 0, "node-a", NO_LABELS, 2),
        stream(
            mon,
            "prometheus-k8s-0",
            Some("prometheus-k8s"),
            "prometheus",
            0,
            "node-c",
            PROM_LABELS,
            4,
        ),
        stream(
            mon,
            "prometheus-k8s-0",
            Some("prometheus-k8s"),
            "config-reloader",
            0,
            "node-c",
            PROM_LABELS,
            1,
        ),
        stream(
            mon,
            "grafana-7b9c8d6f5-h2j4k",
            Some("grafana"),
            "grafana",
            0,
            "node-b",
            GRAFANA_LABELS,
            3,
        ),
        // A file source: no Kubernetes fields, no stdout/stderr.
        stream(None, "audit", None, "audit", 0, "node-a", NO_LABELS, 3),
    ]
}

const LEVELS: [Option<&str>; 7] = [
    None,
    Some("trace"),
    Some("debug"),
    Some("info"),
    Some("warn"),
    Some("error"),
    Some("fatal"),
];

/// A message and its `log.flags`.
fn message(rng: &mut Rng, n: u64) -> (String, Vec<&'static str>) {
    let a = rng.below(250);
    let b = rng.below(250);
    let ms = rng.below(5000);
    let id = rng.below(20);
    match rng.below(24) {
        0 => (format!("GET /api/v1/users?id={id} 200"), vec![]),
        1 => (format!("POST /api/v1/orders 201 in {ms}ms"), vec![]),
        2 => (format!("connection refused: dial tcp 10.0.{a}.{b}:5432"), vec![]),
        3 => ("a.b-c config key reloaded".into(), vec![]),
        4 => ("calling http://svc:8080/healthz".into(), vec![]),
        5 => ("user Zoë logged in from Straße 5, café ünïcode".into(), vec![]),
        6 => ("Привет ЖУК: заказ принят 日本語のログ".into(), vec![]),
        7 => ("🚀 deployed version v2.3.1 (build #4821)".into(), vec![]),
        8 => ("invalid bytes: \u{FFFD}\u{FFFD} in payload".into(), vec!["invalid_utf8"]),
        9 => (format!("timeout after 30s waiting for lock {id}"), vec![]),
        10 => (format!("slow query took {ms}ms: SELECT * FROM orders WHERE id = {id}"), vec![]),
        11 => (
            "Exception in thread \"main\" java.lang.NullPointerException\n\tat com.example.Foo.bar(Foo.java:42)\n\tat com.example.Main.main(Main.java:7)".into(),
            vec!["multiline"],
        ),
        12 => (format!(r#"{{"level":"info","msg":"cache hit","key":"user:{id}"}}"#), vec![]),
        13 => ("100% done, *star* and question? and back\\slash".into(), vec![]),
        14 => ("tab\tseparated\tvalues here".into(), vec![]),
        15 => (format!("health check ok in {ms}ms"), vec![]),
        16 => (format!("GET /healthz 200 {ms}us"), vec![]),
        17 => ("Connection reset by peer".into(), vec![]),
        18 => (format!("retrying request {id} of 5 (backoff {ms}ms)"), vec![]),
        19 => ("WARN disk usage above 90% on /var/lib/data".into(), vec![]),
        20 if n.is_multiple_of(7) => (long_line(n), vec!["partial"]),
        21 => ("upstream_response_time=0.042 status=502 path=/checkout".into(), vec![]),
        22 => ("listening on [::]:8080".into(), vec![]),
        _ => (format!("processed batch {a} with {b} items"), vec![]),
    }
}

/// About 10 KiB, with the marker word `longline` and numbered chunks.
fn long_line(n: u64) -> String {
    let mut s = format!("longline record {n} begins:");
    let mut i = 0;
    while s.len() < 10 * 1024 {
        s.push_str(&format!(" chunk{i:04} lorem ipsum dolor sit amet"));
        i += 1;
    }
    s.push_str(" ends");
    s
}

/// 2026-11-24T00:00:00Z.
const START_NS: i64 = 1_795_478_400_000_000_000;
const RECORDS: usize = 2000;

fn record(s: &mut Stream, ts_ns: i64, rng: &mut Rng, n: u64) -> Value {
    let (msg, flags) = message(rng, n);
    let level = if s.namespace.is_none() {
        Some("info")
    } else {
        *rng.pick(&LEVELS)
    };
    let stderr = matches!(level, Some("warn" | "error" | "fatal")) || rng.below(10) == 0;
    let path = match s.namespace {
        Some(ns) => format!(
            "/var/log/pods/{ns}_{}_{}/{}/{}.log",
            s.pod,
            hex_id(&format!("uid/{ns}/{}", s.pod)),
            s.container,
            s.restart
        ),
        None => "/var/log/kubernetes/audit/audit.log".to_string(),
    };
    let mut log = json!({"file": {"path": path}, "offset": s.offset});
    if let Some(level) = level {
        log["level"] = json!(level);
    }
    if !flags.is_empty() {
        log["flags"] = json!(flags);
    }
    let mut rec = json!({
        "@timestamp": nevermore_index::format_ts(ts_ns),
        "message": msg,
        "log": log,
        "orchestrator": {"cluster": {"name": "prod-eu"}},
        "host": {"name": s.node},
        "event": {
            "id": hex_id(&format!("event/{}/{}", s.id, s.offset)),
            "stream_id": s.id,
            "sequence": s.seq,
            "dataset": if s.namespace.is_some() { "container" } else { "audit" },
        },
    });
    if let Some(ns) = s.namespace {
        rec["stream"] = json!(if stderr { "stderr" } else { "stdout" });
        let mut k = json!({
            "namespace": ns,
            "pod": {"name": s.pod, "uid": hex_id(&format!("uid/{ns}/{}", s.pod))},
            "container": {"name": s.container, "restart_count": s.restart},
            "node": {"name": s.node},
        });
        if let Some(w) = s.workload {
            k["workload"] = json!({"name": w});
        }
        if !s.labels.is_empty() {
            let labels: serde_json::Map<String, Value> = s
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            k["labels"] = Value::Object(labels);
        }
        rec["kubernetes"] = k;
    }
    s.seq += 1;
    s.offset += rec["message"].as_str().map_or(0, str::len) as u64 + 64;
    rec
}

fn generate() -> Vec<Value> {
    let mut rng = Rng(0x6e65_7665_726d_6f72);
    let mut streams = streams();
    let total_weight: u64 = streams.iter().map(|s| s.weight).sum();
    let mut out = Vec::with_capacity(RECORDS);
    let mut now = START_NS + 123_456_789;
    let mut n = 0u64;
    while out.len() < RECORDS {
        // About 2000 records over two days: gaps up to 200 s, in nanoseconds.
        now += rng.below(200_000_000_000) as i64 + 1;
        let mut pick = rng.below(total_weight);
        let mut idx = 0;
        while pick >= streams[idx].weight {
            pick -= streams[idx].weight;
            idx += 1;
        }
        match rng.below(40) {
            // A burst: several records of one stream at the same instant (sequence breaks the tie).
            0 => {
                for _ in 0..(2 + rng.below(4)) {
                    out.push(record(&mut streams[idx], now, &mut rng, n));
                    n += 1;
                }
            }
            // The same instant in several streams (stream id breaks the tie).
            1 => {
                for k in 0..3 {
                    let j = (idx + k * 5) % streams.len();
                    out.push(record(&mut streams[j], now, &mut rng, n));
                    n += 1;
                }
            }
            _ => {
                out.push(record(&mut streams[idx], now, &mut rng, n));
                n += 1;
            }
        }
    }
    out.truncate(RECORDS);
    out
}

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/search/records.ndjson")
}

#[test]
fn records_fixture_is_up_to_date() {
    let records = generate();
    let mut text = String::new();
    for r in &records {
        let parsed: LogRecord = serde_json::from_value(r.clone()).expect("a valid LogRecord");
        // The file is exactly how the record serialises: what the collector would write.
        text.push_str(&serde_json::to_string(&parsed).expect("serialises"));
        text.push('\n');
    }
    let path = fixture_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &text).expect("write fixture");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == text,
        "{} is out of date: run UPDATE_GOLDEN=1 cargo test -p nevermore-query --test fixture_gen",
        path.display()
    );
}
