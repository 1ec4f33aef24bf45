//! Deterministic cluster metrics, cAdvisor- and kube-state-metrics-shaped, as OpenMetrics text:
//! the demo data of `nevermore up`, and the history the oracle tests and benchmarks load into
//! real Prometheus and VictoriaMetrics servers. Pure: the caller names the time span.
//!
//! Every series is scraped at a fixed interval with its own offset that is never a whole second,
//! so that samples never fall on the boundary of a range window that starts on a whole second
//! (where Prometheus 2 and 3 differ). Counters reset where a pod restarts.

use std::fmt::Write as _;

/// What to generate.
#[derive(Debug, Clone)]
pub struct FixtureSpec {
    /// First scrape round, milliseconds since the epoch.
    pub start_ms: i64,
    /// Span covered, milliseconds.
    pub duration_ms: i64,
    pub interval_ms: i64,
    /// Spans `[from, to)` (milliseconds) in which this copy has no samples (a replica down).
    pub gaps: Vec<(i64, i64)>,
    /// Extra copies of every workload in every namespace (scale for benchmarks; 1 = the demo).
    pub scale: usize,
    /// Labels added to every series (e.g. `replica="a"` for a server without external labels).
    pub extra_labels: Vec<(String, String)>,
}

struct Workload {
    namespace: &'static str,
    kind: &'static str,
    name: &'static str,
    pods: usize,
    containers: &'static [&'static str],
}

const WORKLOADS: &[Workload] = &[
    Workload {
        namespace: "shop",
        kind: "Deployment",
        name: "frontend",
        pods: 3,
        containers: &["web", "envoy"],
    },
    Workload {
        namespace: "shop",
        kind: "Deployment",
        name: "cart",
        pods: 2,
        containers: &["cart"],
    },
    Workload {
        namespace: "shop",
        kind: "StatefulSet",
        name: "redis",
        pods: 2,
        containers: &["redis"],
    },
    Workload {
        namespace: "payments",
        kind: "Deployment",
        name: "api",
        pods: 2,
        containers: &["api"],
    },
    Workload {
        namespace: "payments",
        kind: "StatefulSet",
        name: "ledger",
        pods: 1,
        containers: &["ledger"],
    },
    Workload {
        namespace: "payments",
        kind: "Job",
        name: "settle-28913",
        pods: 1,
        containers: &["settle"],
    },
    Workload {
        namespace: "kube-system",
        kind: "DaemonSet",
        name: "node-agent",
        pods: 2,
        containers: &["agent"],
    },
];

const NODES: [&str; 2] = ["node-a", "node-b"];

/// A small deterministic hash (splitmix64) for per-series shapes.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// A pod as the generator sees it.
struct Pod {
    namespace: String,
    workload_kind: &'static str,
    workload: String,
    /// The direct owner (a ReplicaSet for Deployments).
    owner_kind: &'static str,
    owner_name: String,
    name: String,
    node: &'static str,
    containers: Vec<&'static str>,
    seed: u64,
}

fn pods(scale: usize) -> Vec<Pod> {
    let mut out = Vec::new();
    for copy in 0..scale.max(1) {
        for w in WORKLOADS {
            let workload = if copy == 0 {
                w.name.to_string()
            } else {
                format!("{}-{copy}", w.name)
            };
            let (owner_kind, owner_name) = match w.kind {
                "Deployment" => (
                    "ReplicaSet",
                    format!("{workload}-{:x}", mix(hash_str(&workload)) % 0xfffff),
                ),
                k => (k, workload.clone()),
            };
            for i in 0..w.pods {
                let name = match w.kind {
                    "StatefulSet" => format!("{workload}-{i}"),
                    _ => format!("{owner_name}-{}", pod_suffix(&workload, i)),
                };
                let seed = mix(hash_str(&name));
                out.push(Pod {
                    namespace: w.namespace.to_string(),
                    workload_kind: w.kind,
                    workload: workload.clone(),
                    owner_kind,
                    owner_name: owner_name.clone(),
                    name,
                    node: NODES[(seed % 2) as usize],
                    containers: w.containers.to_vec(),
                    seed,
                });
            }
        }
    }
    out
}

fn pod_suffix(workload: &str, i: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = mix(hash_str(workload) ^ (i as u64 + 1));
    (0..5)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
            h /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Writes series text into a buffer that is drained into `sink` as it grows, so that large
/// fixtures (benchmarks) never sit in memory whole.
struct Gen<'a> {
    out: String,
    spec: &'a FixtureSpec,
    sink: &'a mut dyn std::io::Write,
    error: Option<std::io::Error>,
}

impl Gen<'_> {
    fn drain(&mut self) {
        if self.error.is_none()
            && let Err(e) = self.sink.write_all(self.out.as_bytes())
        {
            self.error = Some(e);
        }
        self.out.clear();
    }

    /// Writes `name{labels} value ts` for every scrape of this series outside the gaps.
    fn series(
        &mut self,
        name: &str,
        labels: &str,
        seed: u64,
        mut value: impl FnMut(i64, i64) -> f64,
    ) {
        // Offset within the interval: whole milliseconds, never a whole second.
        let offset = {
            let o = (seed % (self.spec.interval_ms as u64).max(1)) as i64;
            if o % 1000 == 0 { o + 137 } else { o }
        };
        let rounds = self.spec.duration_ms / self.spec.interval_ms;
        for k in 0..rounds {
            let t = self.spec.start_ms + k * self.spec.interval_ms + offset;
            let v = value(k, t);
            if self.spec.gaps.iter().any(|&(from, to)| t >= from && t < to) {
                continue;
            }
            let _ = write!(self.out, "{name}{{");
            for (k, v) in &self.spec.extra_labels {
                let _ = write!(self.out, "{k}=\"{v}\",");
            }
            let _ = writeln!(
                self.out,
                "{labels}}} {} {}.{:03}",
                fmt_value(v),
                t.div_euclid(1000),
                t.rem_euclid(1000)
            );
            if self.out.len() > 1 << 20 {
                self.drain();
            }
        }
    }
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The whole fixture as OpenMetrics text (with `# TYPE` lines and the final `# EOF`).
pub fn openmetrics(spec: &FixtureSpec) -> String {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write_openmetrics(spec, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// [`openmetrics`] written to `sink` as it is generated.
pub fn write_openmetrics(spec: &FixtureSpec, sink: &mut dyn std::io::Write) -> std::io::Result<()> {
    let pods = pods(spec.scale);
    let mut g = Gen {
        out: String::new(),
        spec,
        sink,
        error: None,
    };
    let restart_round = spec.duration_ms / spec.interval_ms * 2 / 5;

    g.out
        .push_str("# TYPE container_cpu_usage_seconds_total counter\n");
    for p in &pods {
        for (ci, c) in p.containers.iter().enumerate() {
            let seed = mix(p.seed ^ ci as u64);
            let rate = 0.02 + (seed % 800) as f64 / 1000.0;
            let restarts = p.seed % 5 == 0;
            let labels = format!(
                "container=\"{c}\",id=\"/kubepods/{}/{c}\",image=\"registry.local/{}:1.{}\",job=\"kubelet\",metrics_path=\"/metrics/cadvisor\",namespace=\"{}\",node=\"{}\",pod=\"{}\"",
                p.name,
                p.workload,
                seed % 9,
                p.namespace,
                p.node,
                p.name
            );
            g.series(
                "container_cpu_usage_seconds_total",
                &labels,
                seed,
                |k, _| {
                    let k = if restarts && k >= restart_round {
                        k - restart_round
                    } else {
                        k
                    };
                    // Uneven increments: the rate wobbles with a period of about 20 scrapes.
                    let wobble = ((k as f64) / 3.0).sin() * 0.3 + 1.0;
                    // A counter: the wobble's slope stays below the steady increase.
                    ((k as f64 * rate * 15.0 + wobble * rate * 4.0) * 100.0).round() / 100.0
                },
            );
        }
    }
    g.out
        .push_str("# TYPE container_memory_working_set_bytes gauge\n");
    for p in &pods {
        for (ci, c) in p.containers.iter().enumerate() {
            let seed = mix(p.seed ^ (ci as u64 + 100));
            let base = 50_000_000.0 + (seed % 400) as f64 * 1_000_000.0;
            let labels = format!(
                "container=\"{c}\",id=\"/kubepods/{}/{c}\",image=\"registry.local/{}:1.{}\",job=\"kubelet\",metrics_path=\"/metrics/cadvisor\",namespace=\"{}\",node=\"{}\",pod=\"{}\"",
                p.name,
                p.workload,
                seed % 9,
                p.namespace,
                p.node,
                p.name
            );
            g.series(
                "container_memory_working_set_bytes",
                &labels,
                seed,
                |k, _| {
                    (base + ((k as f64) / 7.0).sin() * base * 0.1 + (k % 11) as f64 * 4096.0)
                        .round()
                },
            );
        }
    }
    for (metric, salt) in [
        ("container_network_receive_bytes_total", 200u64),
        ("container_network_transmit_bytes_total", 300),
    ] {
        let _ = writeln!(g.out, "# TYPE {metric} counter");
        for p in &pods {
            let seed = mix(p.seed ^ salt);
            let rate = 1_000.0 + (seed % 50_000) as f64;
            let labels = format!(
                "id=\"/kubepods/{}\",interface=\"eth0\",job=\"kubelet\",metrics_path=\"/metrics/cadvisor\",namespace=\"{}\",node=\"{}\",pod=\"{}\"",
                p.name, p.namespace, p.node, p.name
            );
            g.series(metric, &labels, seed, |k, _| {
                (k as f64 * rate * 15.0 + ((k % 13) as f64) * rate).round()
            });
        }
    }
    for (metric, salt) in [
        ("kube_pod_container_resource_requests", 400u64),
        ("kube_pod_container_resource_limits", 500),
    ] {
        let _ = writeln!(g.out, "# TYPE {metric} gauge");
        for p in &pods {
            for (ci, c) in p.containers.iter().enumerate() {
                let seed = mix(p.seed ^ salt ^ ci as u64);
                let scale = if salt == 500 { 2.0 } else { 1.0 };
                let cpu = (1 + seed % 8) as f64 * 0.125 * scale;
                let mem = (64 + (seed % 16) * 32) as f64 * 1_048_576.0 * scale;
                for (resource, unit, v) in [("cpu", "core", cpu), ("memory", "byte", mem)] {
                    let labels = format!(
                        "container=\"{c}\",job=\"kube-state-metrics\",namespace=\"{}\",node=\"{}\",pod=\"{}\",resource=\"{resource}\",uid=\"{:016x}\",unit=\"{unit}\"",
                        p.namespace, p.node, p.name, p.seed
                    );
                    g.series(metric, &labels, mix(seed ^ 7), |_, _| v);
                }
            }
        }
    }
    g.out
        .push_str("# TYPE kube_pod_container_status_restarts_total counter\n");
    for p in &pods {
        for c in &p.containers {
            let restarts = p.seed % 5 == 0;
            let labels = format!(
                "container=\"{c}\",job=\"kube-state-metrics\",namespace=\"{}\",pod=\"{}\",uid=\"{:016x}\"",
                p.namespace, p.name, p.seed
            );
            g.series(
                "kube_pod_container_status_restarts_total",
                &labels,
                mix(p.seed ^ 600),
                |k, _| {
                    if restarts && k >= restart_round {
                        1.0
                    } else {
                        0.0
                    }
                },
            );
        }
    }
    g.out.push_str("# TYPE kube_pod_status_phase gauge\n");
    for p in &pods {
        let final_phase = if p.workload_kind == "Job" {
            "Succeeded"
        } else {
            "Running"
        };
        for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
            let labels = format!(
                "job=\"kube-state-metrics\",namespace=\"{}\",phase=\"{phase}\",pod=\"{}\",uid=\"{:016x}\"",
                p.namespace, p.name, p.seed
            );
            let done_round = spec.duration_ms / spec.interval_ms * 3 / 4;
            g.series(
                "kube_pod_status_phase",
                &labels,
                mix(p.seed ^ 700),
                |k, _| {
                    let current = if p.workload_kind == "Job" && k < done_round {
                        "Running"
                    } else {
                        final_phase
                    };
                    if current == phase { 1.0 } else { 0.0 }
                },
            );
        }
    }
    g.out.push_str("# TYPE kube_pod_owner gauge\n");
    for p in &pods {
        let labels = format!(
            "job=\"kube-state-metrics\",namespace=\"{}\",owner_is_controller=\"true\",owner_kind=\"{}\",owner_name=\"{}\",pod=\"{}\",uid=\"{:016x}\"",
            p.namespace, p.owner_kind, p.owner_name, p.name, p.seed
        );
        g.series("kube_pod_owner", &labels, mix(p.seed ^ 800), |_, _| 1.0);
    }
    g.out.push_str("# TYPE kube_pod_info gauge\n");
    for p in &pods {
        let labels = format!(
            "created_by_kind=\"{}\",created_by_name=\"{}\",host_network=\"false\",job=\"kube-state-metrics\",namespace=\"{}\",node=\"{}\",pod=\"{}\",uid=\"{:016x}\"",
            p.owner_kind, p.owner_name, p.namespace, p.node, p.name, p.seed
        );
        g.series("kube_pod_info", &labels, mix(p.seed ^ 900), |_, _| 1.0);
    }
    g.out.push_str("# TYPE kube_replicaset_owner gauge\n");
    let mut seen = std::collections::BTreeSet::new();
    for p in pods.iter().filter(|p| p.owner_kind == "ReplicaSet") {
        if !seen.insert((p.namespace.clone(), p.owner_name.clone())) {
            continue;
        }
        let labels = format!(
            "job=\"kube-state-metrics\",namespace=\"{}\",owner_is_controller=\"true\",owner_kind=\"Deployment\",owner_name=\"{}\",replicaset=\"{}\"",
            p.namespace, p.workload, p.owner_name
        );
        g.series(
            "kube_replicaset_owner",
            &labels,
            mix(hash_str(&p.owner_name)),
            |_, _| 1.0,
        );
    }
    g.out
        .push_str("# TYPE http_request_duration_seconds histogram\n");
    for p in pods.iter().filter(|p| p.workload_kind == "Deployment") {
        let seed = mix(p.seed ^ 1000);
        let mut cumulative = [0.0f64; 6];
        let les = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];
        // Counters per bucket grow by shares that drift over time.
        let series_rows: Vec<Vec<f64>> = {
            let rounds = spec.duration_ms / spec.interval_ms;
            let mut rows = Vec::with_capacity(rounds as usize);
            for k in 0..rounds {
                let drift = ((k as f64) / 17.0).sin().abs();
                let adds = [
                    5.0 + drift * 3.0,
                    8.0,
                    4.0 + drift * 6.0,
                    2.0,
                    1.0 + drift,
                    0.5,
                ];
                let mut acc = 0.0;
                for (i, a) in adds.iter().enumerate() {
                    acc += a * (1 + seed % 4) as f64;
                    cumulative[i] += acc;
                }
                rows.push(cumulative.iter().map(|v| v.round()).collect());
            }
            rows
        };
        for (i, le) in les.iter().enumerate() {
            let labels = format!(
                "handler=\"/checkout\",job=\"{}\",le=\"{le}\",namespace=\"{}\",pod=\"{}\"",
                p.workload, p.namespace, p.name
            );
            g.series(
                "http_request_duration_seconds_bucket",
                &labels,
                seed,
                |k, _| series_rows.get(k as usize).map_or(0.0, |r| r[i]),
            );
        }
    }
    g.out.push_str("# EOF\n");
    g.drain();
    match g.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_offgrid_and_gapped() {
        let spec = FixtureSpec {
            start_ms: 1_767_225_600_000,
            duration_ms: 3_600_000,
            interval_ms: 15_000,
            gaps: vec![(1_767_226_800_000, 1_767_227_400_000)],
            scale: 1,
            extra_labels: Vec::new(),
        };
        let a = openmetrics(&spec);
        assert_eq!(a, openmetrics(&spec));
        assert!(a.ends_with("# EOF\n"));
        for line in a.lines().filter(|l| !l.starts_with('#')) {
            let ts = line.rsplit(' ').next().unwrap_or("");
            let (s, ms) = ts.split_once('.').expect("fractional timestamp");
            assert_ne!(ms, "000", "{line}");
            let t: i64 = s.parse::<i64>().unwrap() * 1000 + ms.parse::<i64>().unwrap();
            assert!(
                !(1_767_226_800_000..1_767_227_400_000).contains(&t),
                "{line}"
            );
        }
    }
}
