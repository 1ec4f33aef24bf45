//! The namespace, workload and pod dashboards: the panels of kubernetes-mixin's "Compute
//! Resources / Namespace (Pods)", "Namespace (Workloads)", "Workload" and "Pod" dashboards,
//! written over raw cAdvisor and kube-state-metrics series (no recording rules needed upstream).
//!
//! A dashboard is data: panels of PromQL templates with `$namespace`, `$workload`, `$type` and
//! `$pod`. [`Dashboard::render`] substitutes escaped values for evaluation; [`Dashboard::grafana`]
//! exports the same templates as Grafana dashboard JSON. Pure: no IO.

use serde_json::{Value, json};

/// The workload of every pod, resolved through the owner chain as kubernetes-mixin's
/// `namespace_workload_pod:kube_pod_owner:relabel` rule does: a pod owned by a ReplicaSet belongs
/// to the ReplicaSet's Deployment; DaemonSets, StatefulSets and Jobs own their pods directly.
/// Labels: namespace, pod, workload, workload_type.
fn owners(filter: &str) -> String {
    let direct = |kind: &str, ty: &str| {
        format!(
            r#"max by (namespace, workload, pod, workload_type) (label_replace(label_replace(kube_pod_owner{{namespace="$namespace", owner_kind="{kind}"{filter}}}, "workload", "$1", "owner_name", "(.*)"), "workload_type", "{ty}", "", ""))"#
        )
    };
    let deployment = format!(
        r#"max by (namespace, workload, pod, workload_type) (label_replace(label_replace(label_replace(kube_pod_owner{{namespace="$namespace", owner_kind="ReplicaSet"}}, "replicaset", "$1", "owner_name", "(.*)") * on (replicaset, namespace) group_left (owner_name) topk by (replicaset, namespace) (1, max by (replicaset, namespace, owner_name) (kube_replicaset_owner{{namespace="$namespace"{filter}}})), "workload", "$1", "owner_name", "(.*)"), "workload_type", "deployment", "", ""))"#
    );
    format!(
        "({deployment} or {} or {} or {})",
        direct("DaemonSet", "daemonset"),
        direct("StatefulSet", "statefulset"),
        direct("Job", "job")
    )
}

/// Owners of every pod of the namespace.
fn owners_all() -> String {
    owners("")
}

const CPU_BY_CONTAINER: &str = r#"sum by (namespace, pod, container) (irate(container_cpu_usage_seconds_total{namespace="$namespace", container!="", image!=""}[5m]))"#;
const MEM_BY_CONTAINER: &str = r#"sum by (namespace, pod, container) (container_memory_working_set_bytes{namespace="$namespace", container!="", image!=""})"#;

/// One query of a panel.
#[derive(Debug, Clone)]
pub struct Target {
    pub expr: String,
    /// Grafana's legend format (`{{pod}}`).
    pub legend: &'static str,
}

/// One panel.
#[derive(Debug, Clone)]
pub struct Panel {
    pub id: &'static str,
    pub title: &'static str,
    /// Grafana unit id: `cores`, `bytes`, `Bps`, `short`, `percentunit`.
    pub unit: &'static str,
    pub targets: Vec<Target>,
    /// Stacked series (Grafana `stacking`).
    pub stacked: bool,
}

/// One dashboard.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub name: &'static str,
    pub title: &'static str,
    /// The variables it needs, in order (`namespace`, `workload`, `type`, `pod`).
    pub variables: &'static [&'static str],
    pub panels: Vec<Panel>,
}

fn t(expr: impl Into<String>, legend: &'static str) -> Target {
    Target {
        expr: only_active_pods(&expr.into()),
        legend,
    }
}

/// Requests and limits of pods that are Pending or Running only: kube-state-metrics keeps the
/// series of finished pods (completed Jobs), which kubernetes-mixin filters out the same way.
fn only_active_pods(expr: &str) -> String {
    static RESOURCES: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = RESOURCES.get_or_init(|| {
        regex::Regex::new(r"kube_pod_container_resource_(?:requests|limits)\{[^}]*\}").ok()
    });
    match re {
        Some(re) => re
            .replace_all(expr, |c: &regex::Captures| {
                // One pod's panels need only that pod's phase.
                let pod = if c[0].contains(r#"pod="$pod""#) {
                    r#", pod="$pod""#
                } else {
                    ""
                };
                format!(
                    r#"({} * on (namespace, pod) group_left () max by (namespace, pod) (kube_pod_status_phase{{namespace="$namespace"{pod}, phase=~"Pending|Running"}} == 1))"#,
                    &c[0]
                )
            })
            .into_owned(),
        None => expr.to_string(),
    }
}

fn namespace() -> Dashboard {
    let cpu_by_pod = format!("sum by (pod) ({CPU_BY_CONTAINER})");
    let mem_by_pod = format!("sum by (pod) ({MEM_BY_CONTAINER})");
    Dashboard {
        name: "namespace",
        title: "Compute Resources / Namespace (Pods)",
        variables: &["namespace"],
        panels: vec![
            Panel {
                id: "cpu-utilisation-requests",
                title: "CPU utilisation (from requests)",
                unit: "percentunit",
                targets: vec![t(
                    format!(
                        r#"sum({CPU_BY_CONTAINER}) / sum(kube_pod_container_resource_requests{{namespace="$namespace", resource="cpu"}})"#
                    ),
                    "utilisation",
                )],
                stacked: false,
            },
            Panel {
                id: "memory-utilisation-requests",
                title: "Memory utilisation (from requests)",
                unit: "percentunit",
                targets: vec![t(
                    format!(
                        r#"sum({MEM_BY_CONTAINER}) / sum(kube_pod_container_resource_requests{{namespace="$namespace", resource="memory"}})"#
                    ),
                    "utilisation",
                )],
                stacked: false,
            },
            Panel {
                id: "cpu-usage",
                title: "CPU usage",
                unit: "cores",
                targets: vec![
                    t(cpu_by_pod, "{{pod}}"),
                    t(
                        r#"sum(kube_pod_container_resource_requests{namespace="$namespace", resource="cpu"})"#,
                        "requests",
                    ),
                    t(
                        r#"sum(kube_pod_container_resource_limits{namespace="$namespace", resource="cpu"})"#,
                        "limits",
                    ),
                ],
                stacked: true,
            },
            Panel {
                id: "memory-usage",
                title: "Memory usage (working set)",
                unit: "bytes",
                targets: vec![
                    t(mem_by_pod, "{{pod}}"),
                    t(
                        r#"sum(kube_pod_container_resource_requests{namespace="$namespace", resource="memory"})"#,
                        "requests",
                    ),
                    t(
                        r#"sum(kube_pod_container_resource_limits{namespace="$namespace", resource="memory"})"#,
                        "limits",
                    ),
                ],
                stacked: true,
            },
            Panel {
                id: "network-receive",
                title: "Receive bandwidth",
                unit: "Bps",
                targets: vec![t(
                    r#"sum by (pod) (irate(container_network_receive_bytes_total{namespace="$namespace"}[5m]))"#,
                    "{{pod}}",
                )],
                stacked: true,
            },
            Panel {
                id: "network-transmit",
                title: "Transmit bandwidth",
                unit: "Bps",
                targets: vec![t(
                    r#"sum by (pod) (irate(container_network_transmit_bytes_total{namespace="$namespace"}[5m]))"#,
                    "{{pod}}",
                )],
                stacked: true,
            },
            Panel {
                id: "restarts",
                title: "Container restarts",
                unit: "short",
                targets: vec![t(
                    r#"sum by (pod) (kube_pod_container_status_restarts_total{namespace="$namespace"})"#,
                    "{{pod}}",
                )],
                stacked: false,
            },
            Panel {
                id: "pods-by-phase",
                title: "Pods by phase",
                unit: "short",
                targets: vec![t(
                    r#"sum by (phase) (kube_pod_status_phase{namespace="$namespace"})"#,
                    "{{phase}}",
                )],
                stacked: true,
            },
            Panel {
                id: "cpu-by-workload",
                title: "CPU usage by workload",
                unit: "cores",
                targets: vec![t(
                    format!(
                        "sum by (workload, workload_type) ({CPU_BY_CONTAINER} * on (namespace, pod) group_left (workload, workload_type) {})",
                        owners_all()
                    ),
                    "{{workload}} ({{workload_type}})",
                )],
                stacked: true,
            },
            Panel {
                id: "memory-by-workload",
                title: "Memory usage by workload",
                unit: "bytes",
                targets: vec![t(
                    format!(
                        "sum by (workload, workload_type) ({MEM_BY_CONTAINER} * on (namespace, pod) group_left (workload, workload_type) {})",
                        owners_all()
                    ),
                    "{{workload}} ({{workload_type}})",
                )],
                stacked: true,
            },
            Panel {
                id: "pods-by-workload",
                title: "Running pods by workload",
                unit: "short",
                targets: vec![t(
                    format!(
                        r#"count by (workload, workload_type) ((kube_pod_status_phase{{namespace="$namespace", phase="Running"}} == 1) * on (namespace, pod) group_left (workload, workload_type) {})"#,
                        owners_all()
                    ),
                    "{{workload}} ({{workload_type}})",
                )],
                stacked: false,
            },
        ],
    }
}

fn workload() -> Dashboard {
    // The owner rows of `$workload`, kept only where its type is `$type`.
    let sel = format!(
        r#"({} and on (workload_type) label_replace(vector(1), "workload_type", "$type", "", ""))"#,
        owners(r#", owner_name="$workload""#)
    );
    Dashboard {
        name: "workload",
        title: "Compute Resources / Workload",
        variables: &["namespace", "workload", "type"],
        panels: vec![
            Panel {
                id: "cpu-usage",
                title: "CPU usage by pod",
                unit: "cores",
                targets: vec![t(
                    format!(
                        "sum by (pod) ({CPU_BY_CONTAINER} * on (namespace, pod) group_left (workload, workload_type) {sel})"
                    ),
                    "{{pod}}",
                )],
                stacked: true,
            },
            Panel {
                id: "cpu-requests",
                title: "CPU requests and limits",
                unit: "cores",
                targets: vec![
                    t(
                        format!(
                            r#"sum(kube_pod_container_resource_requests{{namespace="$namespace", resource="cpu"}} * on (namespace, pod) group_left (workload, workload_type) {sel})"#
                        ),
                        "requests",
                    ),
                    t(
                        format!(
                            r#"sum(kube_pod_container_resource_limits{{namespace="$namespace", resource="cpu"}} * on (namespace, pod) group_left (workload, workload_type) {sel})"#
                        ),
                        "limits",
                    ),
                ],
                stacked: false,
            },
            Panel {
                id: "memory-usage",
                title: "Memory usage by pod (working set)",
                unit: "bytes",
                targets: vec![t(
                    format!(
                        "sum by (pod) ({MEM_BY_CONTAINER} * on (namespace, pod) group_left (workload, workload_type) {sel})"
                    ),
                    "{{pod}}",
                )],
                stacked: true,
            },
            Panel {
                id: "memory-requests",
                title: "Memory requests and limits",
                unit: "bytes",
                targets: vec![
                    t(
                        format!(
                            r#"sum(kube_pod_container_resource_requests{{namespace="$namespace", resource="memory"}} * on (namespace, pod) group_left (workload, workload_type) {sel})"#
                        ),
                        "requests",
                    ),
                    t(
                        format!(
                            r#"sum(kube_pod_container_resource_limits{{namespace="$namespace", resource="memory"}} * on (namespace, pod) group_left (workload, workload_type) {sel})"#
                        ),
                        "limits",
                    ),
                ],
                stacked: false,
            },
            Panel {
                id: "network-receive",
                title: "Receive bandwidth by pod",
                unit: "Bps",
                targets: vec![t(
                    format!(
                        r#"sum by (pod) (irate(container_network_receive_bytes_total{{namespace="$namespace"}}[5m]) * on (namespace, pod) group_left (workload, workload_type) {sel})"#
                    ),
                    "{{pod}}",
                )],
                stacked: true,
            },
            Panel {
                id: "network-transmit",
                title: "Transmit bandwidth by pod",
                unit: "Bps",
                targets: vec![t(
                    format!(
                        r#"sum by (pod) (irate(container_network_transmit_bytes_total{{namespace="$namespace"}}[5m]) * on (namespace, pod) group_left (workload, workload_type) {sel})"#
                    ),
                    "{{pod}}",
                )],
                stacked: true,
            },
            Panel {
                id: "restarts",
                title: "Container restarts by pod",
                unit: "short",
                targets: vec![t(
                    format!(
                        r#"sum by (pod) (kube_pod_container_status_restarts_total{{namespace="$namespace"}} * on (namespace, pod) group_left (workload, workload_type) {sel})"#
                    ),
                    "{{pod}}",
                )],
                stacked: false,
            },
        ],
    }
}

fn pod() -> Dashboard {
    let p = r#"namespace="$namespace", pod="$pod""#;
    Dashboard {
        name: "pod",
        title: "Compute Resources / Pod",
        variables: &["namespace", "pod"],
        panels: vec![
            Panel {
                id: "cpu-usage",
                title: "CPU usage by container",
                unit: "cores",
                targets: vec![
                    t(
                        format!(
                            r#"sum by (container) (irate(container_cpu_usage_seconds_total{{{p}, container!="", image!=""}}[5m]))"#
                        ),
                        "{{container}}",
                    ),
                    t(
                        format!(
                            r#"sum(kube_pod_container_resource_requests{{{p}, resource="cpu"}})"#
                        ),
                        "requests",
                    ),
                    t(
                        format!(
                            r#"sum(kube_pod_container_resource_limits{{{p}, resource="cpu"}})"#
                        ),
                        "limits",
                    ),
                ],
                stacked: true,
            },
            Panel {
                id: "memory-usage",
                title: "Memory usage by container (working set)",
                unit: "bytes",
                targets: vec![
                    t(
                        format!(
                            r#"sum by (container) (container_memory_working_set_bytes{{{p}, container!="", image!=""}})"#
                        ),
                        "{{container}}",
                    ),
                    t(
                        format!(
                            r#"sum(kube_pod_container_resource_requests{{{p}, resource="memory"}})"#
                        ),
                        "requests",
                    ),
                    t(
                        format!(
                            r#"sum(kube_pod_container_resource_limits{{{p}, resource="memory"}})"#
                        ),
                        "limits",
                    ),
                ],
                stacked: true,
            },
            Panel {
                id: "network",
                title: "Network bandwidth",
                unit: "Bps",
                targets: vec![
                    t(
                        format!(r#"sum(irate(container_network_receive_bytes_total{{{p}}}[5m]))"#),
                        "receive",
                    ),
                    t(
                        format!(r#"sum(irate(container_network_transmit_bytes_total{{{p}}}[5m]))"#),
                        "transmit",
                    ),
                ],
                stacked: false,
            },
            Panel {
                id: "restarts",
                title: "Container restarts",
                unit: "short",
                targets: vec![t(
                    format!(
                        r#"sum by (container) (kube_pod_container_status_restarts_total{{{p}}})"#
                    ),
                    "{{container}}",
                )],
                stacked: false,
            },
            Panel {
                id: "phase",
                title: "Phase",
                unit: "short",
                targets: vec![t(
                    format!(r#"max by (phase) (kube_pod_status_phase{{{p}}}) == 1"#),
                    "{{phase}}",
                )],
                stacked: false,
            },
        ],
    }
}

/// Every dashboard, in listing order.
pub fn all() -> Vec<Dashboard> {
    vec![namespace(), workload(), pod()]
}

/// The dashboard called `name`.
pub fn by_name(name: &str) -> Option<Dashboard> {
    all().into_iter().find(|d| d.name == name)
}

/// Why a dashboard cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("parameter `{name}` is required")]
    Missing { name: &'static str },
    #[error("parameter `type`: `{value}` is not one of deployment, statefulset, daemonset, job")]
    BadKind { value: String },
}

/// Escapes a value for inside a double-quoted PromQL string (the templates hold the quotes).
fn promql_string(v: &str) -> String {
    let mut quoted = String::with_capacity(v.len() + 2);
    nevermore_promql::model::quote_into(v, &mut quoted);
    quoted[1..quoted.len() - 1].to_string()
}

impl Dashboard {
    /// The panels' expressions with the variables replaced by `values(name)` (escaped).
    pub fn render(
        &self,
        value: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<Panel>, DashboardError> {
        let mut vals = Vec::new();
        for &name in self.variables {
            let v = value(name)
                .filter(|v| !v.is_empty())
                .ok_or(DashboardError::Missing { name })?;
            if name == "type" {
                let lower = v.to_ascii_lowercase();
                if !matches!(
                    lower.as_str(),
                    "deployment" | "statefulset" | "daemonset" | "job"
                ) {
                    return Err(DashboardError::BadKind { value: v });
                }
                vals.push((name, lower));
            } else {
                vals.push((name, promql_string(&v)));
            }
        }
        Ok(self
            .panels
            .iter()
            .map(|p| Panel {
                targets: p
                    .targets
                    .iter()
                    .map(|t| Target {
                        expr: substitute(&t.expr, &vals),
                        legend: t.legend,
                    })
                    .collect(),
                ..p.clone()
            })
            .collect())
    }

    /// The dashboard as Grafana dashboard JSON (schema 39), with a data source variable and
    /// template variables for its parameters.
    pub fn grafana(&self) -> Value {
        let mut templating = vec![json!({
            "name": "datasource", "type": "datasource", "query": "prometheus",
            "label": "Data source", "current": {}, "hide": 0
        })];
        for &v in self.variables {
            let query = match v {
                "namespace" => "label_values(kube_pod_info, namespace)".to_string(),
                "pod" => "label_values(kube_pod_info{namespace=\"$namespace\"}, pod)".to_string(),
                // Workload names of the chosen type, resolved through the owner chain as the
                // panels do (a Deployment's pods are owned by its ReplicaSets).
                "workload" => format!(
                    r#"query_result(count by (workload) ({} and on (workload_type) label_replace(vector(1), "workload_type", "$type", "", "")))"#,
                    owners_all()
                ),
                _ => String::new(),
            };
            if v == "type" {
                templating.push(json!({
                    "name": "type", "type": "custom", "label": "Workload type",
                    "query": "deployment,statefulset,daemonset,job", "current": {}, "hide": 0
                }));
            } else {
                let regex = if v == "workload" {
                    "/workload=\"([^\"]+)\"/"
                } else {
                    ""
                };
                templating.push(json!({
                    "name": v, "type": "query", "label": v,
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": {"query": query, "refId": "vars"}, "refresh": 2, "current": {}, "hide": 0,
                    "sort": 1, "regex": regex
                }));
            }
        }
        let panels: Vec<Value> = self
            .panels
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let targets: Vec<Value> = p
                    .targets
                    .iter()
                    .enumerate()
                    .map(|(j, t)| {
                        json!({
                            "datasource": {"type": "prometheus", "uid": "${datasource}"},
                            "expr": t.expr, "legendFormat": t.legend,
                            "refId": ((b'A' + j as u8) as char).to_string(), "range": true
                        })
                    })
                    .collect();
                json!({
                    "id": i + 1, "title": p.title, "type": "timeseries",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i / 2) * 8},
                    "fieldConfig": {"defaults": {"unit": p.unit, "custom": {
                        "stacking": {"mode": if p.stacked { "normal" } else { "none" }},
                        "fillOpacity": if p.stacked { 10 } else { 0 }
                    }}, "overrides": []},
                    "targets": targets
                })
            })
            .collect();
        json!({
            "title": self.title,
            "uid": format!("nevermore-{}", self.name),
            "tags": ["nevermore", "kubernetes-mixin"],
            "schemaVersion": 39,
            "editable": true,
            "time": {"from": "now-1h", "to": "now"},
            "refresh": "30s",
            "templating": {"list": templating},
            "panels": panels
        })
    }
}

fn substitute(expr: &str, vals: &[(&str, String)]) -> String {
    let mut out = expr.to_string();
    // Longest names first, so `$workload` never sees a shorter variable's prefix.
    let mut vals: Vec<&(&str, String)> = vals.iter().collect();
    vals.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    for (name, v) in vals {
        out = out.replace(&format!("${name}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_panel_parses_after_rendering() {
        for d in all() {
            let panels = d
                .render(|name| {
                    Some(match name {
                        "type" => "deployment".to_string(),
                        _ => "we\"ird\\ns".to_string(),
                    })
                })
                .expect("renders");
            for p in panels {
                for t in p.targets {
                    nevermore_promql::engine::parse(&t.expr)
                        .unwrap_or_else(|e| panic!("{}/{}: {e}\n{}", d.name, p.id, t.expr));
                    assert!(
                        !t.expr.contains('$') || t.expr.contains("\"$1\""),
                        "{}",
                        t.expr
                    );
                }
            }
        }
    }

    #[test]
    fn missing_or_bad_parameters_are_named() {
        let d = by_name("workload").expect("exists");
        let e = d.render(|_| None).unwrap_err().to_string();
        assert!(e.contains("namespace"), "{e}");
        let e = d
            .render(|n| {
                Some(if n == "type" {
                    "pod".into()
                } else {
                    "x".into()
                })
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("type"), "{e}");
    }

    #[test]
    fn grafana_export_keeps_the_variables() {
        let g = by_name("namespace").expect("exists").grafana();
        let s = g.to_string();
        assert!(s.contains("$namespace"));
        assert_eq!(g["templating"]["list"][1]["name"], "namespace");
    }
}
