//! The oracle test of the metrics side, against real servers: the same deterministic cluster
//! history is backfilled into a "truth" Prometheus and into two replicas (`replica="a"`/`"b"`,
//! each missing stretches the other has). Our `/api/v1/query_range` and `/api/v1/query` over the
//! two replicas (Prometheus remote read, then VictoriaMetrics export) must equal the truth's own
//! answers within float tolerance, for every dashboard panel and a table of other queries, at
//! several ranges and steps. Then one replica goes down: partial responses.

mod common;

use common::metric_servers::{Prometheus, VictoriaMetrics};
use nevermore_query::config::{MetricsConfig, UpstreamConfig};
use nevermore_query::metrics::dashboards;
use nevermore_query::metrics::fixture::{FixtureSpec, openmetrics};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;
const HOURS: i64 = 3;

fn spec(gaps: Vec<(i64, i64)>, extra: &[(&str, &str)]) -> FixtureSpec {
    FixtureSpec {
        start_ms: T0,
        duration_ms: HOURS * 60 * MIN,
        interval_ms: 15_000,
        gaps,
        scale: 1,
        extra_labels: extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn gaps_a() -> Vec<(i64, i64)> {
    vec![
        (T0 + 50 * MIN, T0 + 65 * MIN),
        (T0 + 140 * MIN, T0 + 150 * MIN),
    ]
}

fn gaps_b() -> Vec<(i64, i64)> {
    vec![
        (T0 + 90 * MIN, T0 + 110 * MIN),
        (T0 + 12 * MIN, T0 + 14 * MIN),
    ]
}

/// Our query service over `upstreams`, on a free loopback port; its base URL.
async fn our_service(
    upstreams: Vec<UpstreamConfig>,
    dedup: nevermore_promql::dedup::Algorithm,
    index_dir: &std::path::Path,
) -> String {
    let mut cfg = nevermore_query::config::load_str("", "oracle").expect("defaults");
    cfg.metrics = MetricsConfig {
        upstreams,
        dedup,
        ..MetricsConfig::default()
    };
    common::metric_servers::serve_query(cfg, index_dir).await
}

fn prom_upstream(name: &str, url: &str, streamed: bool) -> UpstreamConfig {
    UpstreamConfig::Prometheus {
        name: name.into(),
        url: url.into(),
        timeout: Duration::from_secs(20),
        bearer_token: None,
        streamed,
    }
}

async fn get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    params: &[(&str, String)],
) -> (u16, Value) {
    let resp = client
        .get(format!("{base}{path}"))
        .query(params)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {base}{path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let v =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
    (status, v)
}

/// `metric labels → [(t, v)]` of a matrix or vector result.
fn points(data: &Value) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out = BTreeMap::new();
    let parse = |p: &Value| -> (f64, f64) {
        let t = p[0].as_f64().expect("time");
        let s = p[1].as_str().expect("value string");
        let v = match s {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            s => s.parse().expect("float"),
        };
        (t, v)
    };
    match data["resultType"].as_str() {
        Some("matrix") => {
            for s in data["result"].as_array().expect("result") {
                let pts = s["values"]
                    .as_array()
                    .expect("values")
                    .iter()
                    .map(parse)
                    .collect();
                out.insert(s["metric"].to_string(), pts);
            }
        }
        Some("vector") => {
            for s in data["result"].as_array().expect("result") {
                out.insert(s["metric"].to_string(), vec![parse(&s["value"])]);
            }
        }
        Some("scalar") => {
            out.insert("scalar".into(), vec![parse(&data["result"])]);
        }
        other => panic!("unexpected result type {other:?}"),
    }
    out
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12)
}

/// Compares ours with the truth; returns a description of the first difference.
fn diff(ours: &Value, truth: &Value, rel: f64) -> Option<String> {
    if truth["status"] != "success" {
        return Some(format!("truth failed: {truth}"));
    }
    if ours["status"] != "success" {
        return Some(format!("ours failed: {ours}"));
    }
    if ours["data"]["resultType"] != truth["data"]["resultType"] {
        return Some(format!(
            "result type {} vs truth {}",
            ours["data"]["resultType"], truth["data"]["resultType"]
        ));
    }
    let (o, t) = (points(&ours["data"]), points(&truth["data"]));
    let ok: Vec<&String> = o.keys().collect();
    let tk: Vec<&String> = t.keys().collect();
    if ok != tk {
        return Some(format!("series differ:\n ours  {ok:?}\n truth {tk:?}"));
    }
    for (k, tp) in &t {
        let op = &o[k];
        if op.len() != tp.len() {
            let ot: Vec<f64> = op.iter().map(|p| p.0).collect();
            let tt: Vec<f64> = tp.iter().map(|p| p.0).collect();
            return Some(format!(
                "{k}: {} points vs truth {}\n ours  {ot:?}\n truth {tt:?}",
                op.len(),
                tp.len()
            ));
        }
        for (a, b) in op.iter().zip(tp) {
            if a.0 != b.0 || !close(a.1, b.1, rel) {
                return Some(format!(
                    "{k}: at {} ours {} vs truth at {} {}",
                    a.0, a.1, b.0, b.1
                ));
            }
        }
    }
    None
}

/// Every dashboard panel's queries, rendered for a few namespaces, workloads and pods.
fn dashboard_queries() -> Vec<String> {
    let mut out = Vec::new();
    let vars = [
        vec![("namespace", "shop")],
        vec![("namespace", "payments")],
        vec![
            ("namespace", "shop"),
            ("workload", "frontend"),
            ("type", "deployment"),
        ],
        vec![
            ("namespace", "shop"),
            ("workload", "redis"),
            ("type", "statefulset"),
        ],
        vec![
            ("namespace", "kube-system"),
            ("workload", "node-agent"),
            ("type", "daemonset"),
        ],
        vec![
            ("namespace", "payments"),
            ("workload", "settle-28913"),
            ("type", "job"),
        ],
        vec![("namespace", "shop"), ("pod", "redis-0")],
    ];
    for d in dashboards::all() {
        for v in &vars {
            if d.variables.len() != v.len()
                || !d.variables.iter().all(|n| v.iter().any(|(k, _)| k == n))
            {
                continue;
            }
            let panels = d
                .render(|n| v.iter().find(|(k, _)| *k == n).map(|(_, x)| x.to_string()))
                .expect("render");
            for p in panels {
                for t in p.targets {
                    out.push(t.expr);
                }
            }
        }
    }
    out
}

fn other_queries() -> Vec<String> {
    [
        "sum by (pod) (rate(container_cpu_usage_seconds_total[5m]))",
        "rate(container_cpu_usage_seconds_total{namespace=\"shop\"}[5m])",
        "irate(container_network_transmit_bytes_total[5m])",
        "increase(container_network_receive_bytes_total[10m])",
        "resets(container_cpu_usage_seconds_total[30m])",
        "changes(kube_pod_status_phase[30m])",
        "delta(container_memory_working_set_bytes[10m])",
        "deriv(container_memory_working_set_bytes[10m])",
        "avg_over_time(container_memory_working_set_bytes[10m])",
        "max_over_time(container_memory_working_set_bytes{namespace=\"payments\"}[7m])",
        "quantile_over_time(0.9, container_memory_working_set_bytes[10m])",
        "histogram_quantile(0.9, sum by (le, namespace) (rate(http_request_duration_seconds_bucket[5m])))",
        "histogram_quantile(0.5, rate(http_request_duration_seconds_bucket{namespace=\"shop\"}[10m]))",
        "topk(3, sum by (pod) (container_memory_working_set_bytes))",
        "bottomk(2, sum by (namespace) (rate(container_cpu_usage_seconds_total[5m])))",
        "count by (namespace) (kube_pod_info)",
        "count_values(\"phase_value\", kube_pod_status_phase{namespace=\"payments\"})",
        "quantile by (namespace) (0.5, container_memory_working_set_bytes)",
        "stddev by (namespace) (container_memory_working_set_bytes)",
        "avg without (container, id, image) (container_memory_working_set_bytes)",
        "group by (node) (kube_pod_info)",
        "container_memory_working_set_bytes{namespace=\"shop\"} / on (namespace, pod, container) group_left () kube_pod_container_resource_limits{resource=\"memory\"}",
        "sum by (namespace) (kube_pod_container_resource_requests{resource=\"cpu\"}) > bool 1",
        "kube_pod_status_phase == 1 unless on (pod) kube_pod_status_phase{phase=\"Succeeded\"} == 1",
        "max_over_time(rate(container_cpu_usage_seconds_total{namespace=\"shop\"}[5m])[30m:1m])",
        "rate(container_cpu_usage_seconds_total{namespace=\"payments\"}[5m] offset 10m)",
        "label_replace(kube_pod_info, \"host\", \"$1\", \"node\", \"node-(.*)\")",
        "label_join(kube_pod_owner, \"owner\", \"/\", \"owner_kind\", \"owner_name\")",
        "clamp_max(container_memory_working_set_bytes / 1e8, 3)",
        "round(rate(container_cpu_usage_seconds_total[5m]) * 1000)",
        "timestamp(kube_pod_info{namespace=\"shop\"})",
        "absent(nonexistent_metric{job=\"x\"})",
        "vector(1) + scalar(count(kube_pod_info))",
        "time()",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Ranges (start, end, step), starts off whole minutes so subquery points and window boundaries
/// never coincide (where Prometheus 2 and 3 differ).
fn ranges() -> Vec<(i64, i64, i64)> {
    vec![
        (T0 + 20 * MIN + 7_000, T0 + 170 * MIN + 7_000, 60_000),
        (T0 + 44 * MIN + 3_000, T0 + 72 * MIN + 3_000, 15_000),
        (
            T0 + 11 * MIN + 1_000,
            T0 + HOURS * 60 * MIN - 1_000,
            300_000,
        ),
    ]
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

async fn check_table(client: &reqwest::Client, ours: &str, truth: &str, rel: f64, label: &str) {
    let mut failures = Vec::new();
    let mut compared = 0;
    let queries: Vec<String> = dashboard_queries()
        .into_iter()
        .chain(other_queries())
        .collect();
    for q in &queries {
        for &(start, end, step) in &ranges() {
            let params = [
                ("query", q.clone()),
                ("start", secs(start)),
                ("end", secs(end)),
                ("step", format!("{}", step / 1000)),
            ];
            let (_, o) = get(client, ours, "/api/v1/query_range", &params).await;
            let (_, t) = get(client, truth, "/api/v1/query_range", &params).await;
            compared += 1;
            if let Some(d) = diff(&o, &t, rel) {
                failures.push(format!(
                    "[{label}] query_range {q} [{start}..{end} step {step}]: {d}"
                ));
            }
        }
        for at in [
            T0 + 57 * MIN + 500,
            T0 + 100 * MIN + 1_500,
            T0 + 145 * MIN + 4_250,
        ] {
            let params = [("query", q.clone()), ("time", secs(at))];
            let (_, o) = get(client, ours, "/api/v1/query", &params).await;
            let (_, t) = get(client, truth, "/api/v1/query", &params).await;
            compared += 1;
            if let Some(d) = diff(&o, &t, rel) {
                failures.push(format!("[{label}] query {q} @ {at}: {d}"));
            }
        }
    }
    println!(
        "[{label}] {compared} answers compared over {} queries, {} differ",
        queries.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {compared} answers differ from the truth:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// For queries whose values need no floating-point arithmetic, our JSON is the truth's byte for
/// byte (once result arrays are put in one order, as Prometheus leaves vector order open):
/// timestamps, value strings, label objects, envelope.
async fn check_identical_json(client: &reqwest::Client, ours: &str, truth: &str) {
    let normal = |mut v: Value| -> String {
        if let Some(items) = v["data"]["result"].as_array_mut() {
            items.sort_by_key(|x| x["metric"].to_string());
        }
        v.to_string()
    };
    let range = |q: &str, step: &str| {
        vec![
            ("query", q.to_string()),
            ("start", secs(T0 + 44 * MIN + 3_000)),
            ("end", secs(T0 + 72 * MIN + 3_000)),
            ("step", step.to_string()),
        ]
    };
    let instant = |q: &str| {
        vec![
            ("query", q.to_string()),
            ("time", secs(T0 + 100 * MIN + 1_500)),
        ]
    };
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "/api/v1/query",
            instant("kube_pod_info{namespace=\"shop\"}"),
        ),
        (
            "/api/v1/query",
            instant("container_memory_working_set_bytes{pod=\"redis-0\"}"),
        ),
        (
            "/api/v1/query",
            instant("count by (namespace) (kube_pod_info)"),
        ),
        ("/api/v1/query", instant("1+1")),
        ("/api/v1/query", instant("\"a string\"")),
        (
            "/api/v1/query",
            instant(
                "kube_pod_container_resource_requests{resource=\"cpu\", namespace=\"payments\"}",
            ),
        ),
        (
            "/api/v1/query_range",
            range(
                "kube_pod_status_phase{namespace=\"payments\", phase=\"Running\"}",
                "60",
            ),
        ),
        (
            "/api/v1/query_range",
            range("sum by (phase) (kube_pod_status_phase)", "15s"),
        ),
        (
            "/api/v1/query_range",
            range(
                "container_network_receive_bytes_total{pod=\"redis-1\"}",
                "30",
            ),
        ),
        ("/api/v1/query_range", range("vector(2) > 1", "300")),
    ];
    for (path, params) in cases {
        let (so, o) = get(client, ours, path, &params).await;
        let (st, t) = get(client, truth, path, &params).await;
        assert_eq!(so, st, "{path} {params:?}");
        assert_eq!(normal(o), normal(t), "{path} {params:?}");
    }
}

/// The metadata endpoints answer as the truth does (sorted JSON arrays).
async fn check_metadata(client: &reqwest::Client, ours: &str, truth: &str) {
    let range = [("start", secs(T0)), ("end", secs(T0 + HOURS * 60 * MIN))];
    let with = |extra: (&'static str, &'static str)| {
        let mut v: Vec<(&'static str, String)> = range.to_vec();
        v.push((extra.0, extra.1.to_string()));
        v
    };
    for (path, params) in [
        ("/api/v1/labels", range.to_vec()),
        ("/api/v1/label/namespace/values", range.to_vec()),
        ("/api/v1/label/__name__/values", range.to_vec()),
        (
            "/api/v1/series",
            with(("match[]", "kube_pod_info{namespace=\"shop\"}")),
        ),
        ("/api/v1/labels", with(("match[]", "kube_pod_owner"))),
        (
            "/api/v1/label/pod/values",
            with(("match[]", "kube_pod_info{namespace=\"payments\"}")),
        ),
    ] {
        let (so, o) = get(client, ours, path, &params).await;
        let (st, t) = get(client, truth, path, &params).await;
        assert_eq!((so, st), (200, 200), "{path}: {o} / {t}");
        let sort = |v: &Value| {
            let mut items: Vec<String> = v["data"]
                .as_array()
                .expect("array")
                .iter()
                .map(|x| x.to_string())
                .collect();
            items.sort();
            items
        };
        assert_eq!(sort(&o), sort(&t), "{path} {params:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deduplicated_replicas_answer_as_the_truth_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write fixture");
        p
    };
    let truth_file = write("truth.om", openmetrics(&spec(Vec::new(), &[])));
    let a_file = write("a.om", openmetrics(&spec(gaps_a(), &[])));
    let b_file = write("b.om", openmetrics(&spec(gaps_b(), &[])));
    let truth = Prometheus::start(&truth_file, &[]);
    let prom_a = Prometheus::start(&a_file, &[("replica", "a")]);
    let prom_b = Prometheus::start(&b_file, &[("replica", "b")]);
    let vm = VictoriaMetrics::start();
    vm.import_openmetrics(&openmetrics(&spec(gaps_a(), &[("replica", "a")])));
    vm.import_openmetrics(&openmetrics(&spec(gaps_b(), &[("replica", "b")])));

    let client = reqwest::Client::new();
    let penalty = nevermore_promql::dedup::Algorithm::Penalty;

    let ours = our_service(
        vec![
            prom_upstream("prom-a", &prom_a.url(), true),
            prom_upstream("prom-b", &prom_b.url(), false),
        ],
        penalty,
        &dir.path().join("index-prom"),
    )
    .await;
    check_metadata(&client, &ours, &truth.url()).await;
    check_identical_json(&client, &ours, &truth.url()).await;
    check_table(
        &client,
        &ours,
        &truth.url(),
        1e-9,
        "prometheus remote read, penalty",
    )
    .await;

    let ours_vm = our_service(
        vec![UpstreamConfig::VictoriaMetrics {
            name: "vm".into(),
            url: vm.url(),
            timeout: Duration::from_secs(20),
            bearer_token: None,
        }],
        penalty,
        &dir.path().join("index-vm"),
    )
    .await;
    // VictoriaMetrics stores values as decimals of 12 significant digits or so.
    check_table(
        &client,
        &ours_vm,
        &truth.url(),
        1e-6,
        "victoriametrics export, penalty",
    )
    .await;

    // dedup=false: every replica's series, with its replica label.
    let at = secs(T0 + 100 * MIN + 1_500);
    let (_, raw) = get(
        &client,
        &ours,
        "/api/v1/query",
        &[
            ("query", "count(kube_pod_info)".into()),
            ("time", at.clone()),
            ("dedup", "false".into()),
        ],
    )
    .await;
    let (_, dedup) = get(
        &client,
        &ours,
        "/api/v1/query",
        &[
            ("query", "count(kube_pod_info)".into()),
            ("time", at.clone()),
        ],
    )
    .await;
    let n = |v: &Value| {
        v["data"]["result"][0]["value"][1]
            .as_str()
            .expect("value")
            .parse::<f64>()
            .expect("num")
    };
    // At that time replica b is down (its gap), so only a's series are there; earlier, both.
    assert_eq!(n(&raw), n(&dedup), "{raw} {dedup}");
    let at_both = secs(T0 + 30 * MIN + 1_500);
    let (_, raw) = get(
        &client,
        &ours,
        "/api/v1/query",
        &[
            ("query", "count(kube_pod_info)".into()),
            ("time", at_both.clone()),
            ("dedup", "false".into()),
        ],
    )
    .await;
    let (_, dedup) = get(
        &client,
        &ours,
        "/api/v1/query",
        &[("query", "count(kube_pod_info)".into()), ("time", at_both)],
    )
    .await;
    assert_eq!(n(&raw), 2.0 * n(&dedup), "{raw} {dedup}");

    // One replica down: a partial answer from the other, with a warning; an error when partial
    // answers are refused.
    drop(prom_b);
    let q = [
        ("query", "sum(kube_pod_info)".to_string()),
        ("time", secs(T0 + 30 * MIN + 1_500)),
    ];
    let (status, v) = get(&client, &ours, "/api/v1/query", &q).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "success");
    let warnings = v["warnings"].as_array().expect("warnings");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap_or("").contains("prom-b")),
        "{v}"
    );
    let (_, t) = get(&client, &truth.url(), "/api/v1/query", &q).await;
    assert!(diff(&v, &t, 1e-9).is_none(), "{v} vs {t}");
    let mut strict = q.to_vec();
    strict.push(("partial_response", "false".into()));
    let (status, v) = get(&client, &ours, "/api/v1/query", &strict).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "unavailable");
}
