//! The Prometheus HTTP API and the dashboards over a static upstream (the fixture cluster as an
//! OpenMetrics file), in process: envelopes, parameters and errors as Prometheus gives them,
//! Grafana's data source checks, tenancy, and the dashboards with their log links.

mod common;

use nevermore_query::config::{MetricsConfig, Tenant, UpstreamConfig};
use nevermore_query::metrics::fixture::{FixtureSpec, openmetrics};
use serde_json::Value;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;
const TOKEN: &str = "shop-only-token-0123456789";

struct Server {
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start(tenants: Vec<Tenant>) -> Server {
    start_with(tenants, Vec::new()).await
}

async fn start_with(tenants: Vec<Tenant>, extra: Vec<UpstreamConfig>) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cluster.om");
    let spec = FixtureSpec {
        start_ms: T0,
        duration_ms: 60 * MIN,
        interval_ms: 15_000,
        gaps: Vec::new(),
        scale: 1,
        extra_labels: Vec::new(),
    };
    std::fs::write(&file, openmetrics(&spec)).expect("fixture");
    let mut cfg = nevermore_query::config::load_str("", "api").expect("defaults");
    cfg.tenants = tenants;
    cfg.metrics = MetricsConfig {
        upstreams: std::iter::once(UpstreamConfig::Static {
            name: "fixture".into(),
            paths: vec![file],
        })
        .chain(extra)
        .collect(),
        ..MetricsConfig::default()
    };
    let base = common::metric_servers::serve_query(cfg, &dir.path().join("index")).await;
    Server {
        base,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Server {
    async fn get(&self, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .query(params)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")),
        )
    }

    async fn post_form(&self, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .form(params)
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.json().await.expect("json"))
    }
}

fn at(min: i64) -> String {
    format!("{}", (T0 + min * MIN) / 1000)
}

#[tokio::test]
async fn grafana_data_source_checks_pass() {
    let s = start(Vec::new()).await;
    // Grafana's "Save & test": `1+1` as an instant query, GET and form POST.
    let (status, v) = s
        .get("/api/v1/query", &[("query", "1+1"), ("time", "1767226000")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [1767226000, "2"]}})
    );
    let (status, v) = s
        .post_form(
            "/api/v1/query",
            &[("query", "1+1"), ("time", "1767226000.5")],
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["result"], serde_json::json!([1767226000.5, "2"]));
    let (_, v) = s.get("/api/v1/status/buildinfo", &[]).await;
    assert_eq!(v["status"], "success");
    assert!(v["data"]["version"].is_string());
    assert!(v["data"].get("features").is_none(), "{v}");
    let (_, v) = s.get("/api/v1/query_exemplars", &[("query", "x")]).await;
    assert_eq!(v["data"], serde_json::json!([]));
    let (_, v) = s.get("/api/v1/metadata", &[]).await;
    assert_eq!(v, serde_json::json!({"status": "success", "data": {}}));
    let (_, v) = s
        .get(
            "/api/v1/label/__name__/values",
            &[("start", &at(0)), ("end", &at(60))],
        )
        .await;
    let names = v["data"].as_array().expect("names");
    assert!(names.iter().any(|n| n == "kube_pod_info"), "{v}");
}

#[tokio::test]
async fn queries_answer_in_prometheus_shapes() {
    let s = start(Vec::new()).await;
    let (status, v) = s
        .get(
            "/api/v1/query_range",
            &[
                ("query", "sum by (namespace) (kube_pod_info)"),
                ("start", &at(10)),
                ("end", &at(20)),
                ("step", "60"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix");
    let result = v["data"]["result"].as_array().expect("result");
    let namespaces: Vec<&str> = result
        .iter()
        .map(|r| r["metric"]["namespace"].as_str().expect("ns"))
        .collect();
    assert_eq!(namespaces, ["kube-system", "payments", "shop"]);
    let shop = &result[2]["values"];
    assert_eq!(shop.as_array().expect("values").len(), 11);
    assert_eq!(shop[0], serde_json::json!([(T0 + 10 * MIN) / 1000, "7"]));
    // Step as a duration, POST form, instant vector.
    let (status, v) = s
        .post_form(
            "/api/v1/query_range",
            &[
                ("query", "count(kube_pod_info)"),
                ("start", &at(10)),
                ("end", &at(20)),
                ("step", "5m"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"]["result"][0]["values"]
            .as_array()
            .expect("values")
            .len(),
        3
    );
    let (_, v) = s
        .get(
            "/api/v1/query",
            &[
                ("query", "kube_pod_info{pod=\"redis-0\"}"),
                ("time", &at(30)),
            ],
        )
        .await;
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(
        v["data"]["result"][0]["metric"]["__name__"],
        "kube_pod_info"
    );
    let (_, v) = s
        .get(
            "/api/v1/series",
            &[
                ("match[]", "kube_pod_info{namespace=\"payments\"}"),
                ("start", &at(0)),
                ("end", &at(60)),
            ],
        )
        .await;
    assert_eq!(v["data"].as_array().expect("series").len(), 4, "{v}");
}

#[tokio::test]
async fn errors_are_prometheus_errors() {
    let s = start(Vec::new()).await;
    // (path, parameters, status, errorType, text in the message)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16, &'a str, &'a str);
    let cases: &[Case] = &[
        (
            "/api/v1/query",
            vec![("query", "sum(".into())],
            400,
            "bad_data",
            "invalid parameter \"query\"",
        ),
        (
            "/api/v1/query",
            vec![],
            400,
            "bad_data",
            "invalid parameter \"query\"",
        ),
        (
            "/api/v1/query",
            vec![("query", "1".into()), ("time", "yesterday".into())],
            400,
            "bad_data",
            "invalid parameter \"time\"",
        ),
        (
            "/api/v1/query_range",
            vec![("query", "1".into()), ("start", at(0)), ("end", at(10))],
            400,
            "bad_data",
            "invalid parameter \"step\"",
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "1".into()),
                ("start", at(0)),
                ("end", at(10)),
                ("step", "0".into()),
            ],
            400,
            "bad_data",
            "zero or negative",
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "1".into()),
                ("start", at(10)),
                ("end", at(0)),
                ("step", "15".into()),
            ],
            400,
            "bad_data",
            "end timestamp must not be before start time",
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "1".into()),
                ("start", at(0)),
                ("end", at(6000)),
                ("step", "1".into()),
            ],
            400,
            "bad_data",
            "exceeded maximum resolution of 11,000 points",
        ),
        (
            "/api/v1/series",
            vec![],
            400,
            "bad_data",
            "no match[] parameter provided",
        ),
        (
            "/api/v1/label/1bad/values",
            vec![],
            400,
            "bad_data",
            "invalid label name",
        ),
        (
            "/api/v1/query",
            vec![
                (
                    "query",
                    "kube_pod_info + on (namespace) kube_pod_info".into(),
                ),
                ("time", at(30)),
            ],
            422,
            "execution",
            "many-to-many matching not allowed",
        ),
        (
            "/api/v1/query",
            vec![
                ("query", "limitk(1, kube_pod_info)".into()),
                ("time", at(30)),
            ],
            422,
            "execution",
            "unsupported",
        ),
    ];
    for (path, params, status, kind, text) in cases {
        let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (got, v) = s.get(path, &p).await;
        assert_eq!(got, *status, "{path} {params:?}: {v}");
        assert_eq!(v["status"], "error", "{v}");
        assert_eq!(v["errorType"], *kind, "{path} {params:?}: {v}");
        assert!(
            v["error"].as_str().expect("error").contains(text),
            "{path} {params:?}: {v}"
        );
    }
}

#[tokio::test]
async fn a_token_sees_only_its_namespaces() {
    let s = start(vec![Tenant {
        token: TOKEN.into(),
        namespaces: ["shop".to_string()].into_iter().collect(),
    }])
    .await;
    let (status, _) = s.get("/api/v1/query", &[("query", "1")]).await;
    assert_eq!(status, 401);
    let r = s
        .client
        .get(format!("{}/api/v1/query", s.base))
        .bearer_auth(TOKEN)
        .query(&[
            ("query", "count by (namespace) (kube_pod_info)"),
            ("time", &at(30)),
        ])
        .send()
        .await
        .expect("request");
    let v: Value = r.json().await.expect("json");
    let result = v["data"]["result"].as_array().expect("result");
    assert_eq!(result.len(), 1, "{v}");
    assert_eq!(result[0]["metric"]["namespace"], "shop");
    let r = s
        .client
        .get(format!("{}/api/v1/dashboards/namespace", s.base))
        .bearer_auth(TOKEN)
        .query(&[
            ("namespace", "payments"),
            ("start", &at(10)),
            ("end", &at(20)),
        ])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test]
async fn dashboards_evaluate_and_export() {
    let s = start(Vec::new()).await;
    let (_, list) = s.get("/api/v1/dashboards", &[]).await;
    let names: Vec<&str> = list["dashboards"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| d["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["namespace", "workload", "pod"]);

    let (status, d) = s
        .get(
            "/api/v1/dashboards/namespace",
            &[
                ("namespace", "shop"),
                ("start", &at(10)),
                ("end", &at(40)),
                ("step", "60s"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{d}");
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    for p in panels {
        for t in p["targets"].as_array().expect("targets") {
            let series = t["series"].as_array().expect("series");
            assert!(
                !series.is_empty(),
                "panel {} target {} is empty",
                p["id"],
                t["expr"]
            );
            assert_eq!(
                series[0]["values"].as_array().expect("values").len(),
                31,
                "{}",
                p["id"]
            );
        }
    }
    let cpu = panels
        .iter()
        .find(|p| p["id"] == "cpu-usage")
        .expect("cpu panel");
    let first = &cpu["targets"][0]["series"][0];
    let logs = first["logs"].as_str().expect("logs link");
    assert!(
        logs.starts_with("/api/v1/logs/search?q=namespace%3Ashop+pod%3A"),
        "{logs}"
    );
    let by_workload = panels
        .iter()
        .find(|p| p["id"] == "cpu-by-workload")
        .expect("by workload");
    let mut workloads: Vec<String> = by_workload["targets"][0]["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["metric"]["workload_type"].as_str().unwrap_or(""),
                s["metric"]["workload"].as_str().unwrap_or("")
            )
        })
        .collect();
    workloads.sort();
    assert_eq!(
        workloads,
        [
            "deployment/cart",
            "deployment/frontend",
            "statefulset/redis"
        ]
    );

    let (status, w) = s
        .get(
            "/api/v1/dashboards/workload",
            &[
                ("namespace", "shop"),
                ("workload", "frontend"),
                ("kind", "Deployment"),
                ("start", &at(10)),
                ("end", &at(40)),
            ],
        )
        .await;
    assert_eq!(status, 200, "{w}");
    let pods = w["panels"][0]["targets"][0]["series"]
        .as_array()
        .expect("series");
    assert_eq!(pods.len(), 3, "{w}");
    let (status, p) = s
        .get(
            "/api/v1/dashboards/pod",
            &[
                ("namespace", "shop"),
                ("pod", "redis-0"),
                ("start", &at(10)),
                ("end", &at(40)),
            ],
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        p["panels"][0]["targets"][0]["series"][0]["metric"]["container"],
        "redis"
    );

    let (status, e) = s
        .get("/api/v1/dashboards/workload", &[("namespace", "shop")])
        .await;
    assert_eq!(status, 400, "{e}");
    let (status, _) = s.get("/api/v1/dashboards/nope", &[]).await;
    assert_eq!(status, 404);
    let (status, g) = s.get("/api/v1/dashboards/namespace/grafana", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(g["uid"], "nevermore-namespace");
    assert!(
        g["panels"][0]["targets"][0]["expr"]
            .as_str()
            .expect("expr")
            .contains("$namespace")
    );
}

/// An upstream that accepts connections and never answers: with partial responses the query
/// answers from the others before its deadline, with a warning; without, a timeout.
#[tokio::test]
async fn a_hung_upstream_gives_a_partial_answer_in_time() {
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", hung.local_addr().expect("addr"));
    // Keep accepted connections open, unanswered.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hung.incoming() {
            held.push(c);
        }
    });
    let s = start_with(
        Vec::new(),
        vec![UpstreamConfig::Prometheus {
            name: "hung".into(),
            url,
            timeout: std::time::Duration::from_secs(60),
            bearer_token: None,
            streamed: true,
        }],
    )
    .await;
    let t = at(30);
    let started = std::time::Instant::now();
    let (status, v) = s
        .get(
            "/api/v1/query",
            &[
                ("query", "count(kube_pod_info)"),
                ("time", &t),
                ("timeout", "2s"),
            ],
        )
        .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "13", "{v}");
    let w = v["warnings"][0].as_str().expect("a warning");
    assert!(w.contains("hung"), "{w}");
    let (status, v) = s
        .get(
            "/api/v1/query",
            &[
                ("query", "count(kube_pod_info)"),
                ("time", &t),
                ("timeout", "1s"),
                ("partial_response", "false"),
            ],
        )
        .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["errorType"], "timeout", "{v}");
}

#[tokio::test]
async fn metadata_limits_truncate_with_a_warning() {
    let s = start(Vec::new()).await;
    let (status, v) = s
        .get(
            "/api/v1/label/__name__/values",
            &[("start", &at(0)), ("end", &at(60)), ("limit", "2")],
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"].as_array().expect("values").len(), 2);
    assert_eq!(v["warnings"][0], "results truncated due to limit");
    let (status, v) = s
        .get("/api/v1/series", &[("match[]", "kube_pod_info{")])
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .expect("error")
            .starts_with("invalid parameter \"match[]\""),
        "{v}"
    );
}
