//! `/api/v1/dashboards`: the namespace, workload and pod dashboards, evaluated over a range, and
//! their Grafana export.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::future::join_all;
use nevermore_promql::engine::{QueryTime, Value as PromValue};
use serde_json::{Value, json};

use super::{ApiError, AppState, guarded, tenant_namespaces, time_range};
use crate::metrics::dashboards;
use crate::metrics::{MetricsError, RequestOptions};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/dashboards", get(list))
        .route("/api/v1/dashboards/{name}", get(render))
        .route("/api/v1/dashboards/{name}/grafana", get(grafana))
}

async fn list() -> Json<Value> {
    let items: Vec<Value> = dashboards::all()
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "title": d.title,
                "parameters": d.variables.iter().map(|v| if *v == "type" { "kind" } else { v }).collect::<Vec<_>>(),
                "path": format!("/api/v1/dashboards/{}", d.name),
                "grafana": format!("/api/v1/dashboards/{}/grafana", d.name),
                "panels": d.panels.iter().map(|p| json!({"id": p.id, "title": p.title, "unit": p.unit})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "dashboards": items }))
}

fn find(name: &str) -> Result<dashboards::Dashboard, ApiError> {
    dashboards::by_name(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no dashboard `{name}`; GET /api/v1/dashboards lists them"),
        )
    })
}

async fn grafana(Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(find(&name)?.grafana()))
}

/// The step when none is given: about 240 points, at least 15 s, in whole seconds.
fn auto_step(range_ms: i64) -> i64 {
    (range_ms / 240 / 1000 * 1000).max(15_000)
}

async fn render(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(p): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let d = find(&name)?;
    let namespaces = tenant_namespaces(&st, &headers)?;
    if let (Some(allowed), Some(ns)) = (&namespaces, p.get("namespace"))
        && !allowed.contains(ns)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token may not see namespace `{ns}`"),
        ));
    }
    let panels = d
        .render(|v| {
            let key = if v == "type" { "kind" } else { v };
            p.get(key).or_else(|| p.get(v)).cloned()
        })
        .map_err(|e| ApiError::bad_param(&name, e))?;
    let range = time_range(&p)?;
    let (start, end) = (range.start_ns / 1_000_000, range.end_ns / 1_000_000);
    let step = match p.get("step") {
        Some(s) => super::prom::parse_duration(s)
            .filter(|s| *s > 0)
            .ok_or_else(|| ApiError::bad_param("step", "not a positive duration such as 30s"))?,
        None => auto_step(end - start),
    };
    if (end - start) / step > 11_000 {
        return Err(ApiError::bad_param(
            "step",
            "more than 11000 points per series; raise the step",
        ));
    }
    let time = QueryTime { start, end, step };
    let namespace = p.get("namespace").cloned().unwrap_or_default();
    guarded(&st, async {
        let mut opts = RequestOptions::new(Instant::now() + st.cfg.request_timeout);
        opts.namespaces = namespaces;
        let jobs = panels.iter().flat_map(|panel| {
            panel
                .targets
                .iter()
                .map(|t| st.metrics.query(&t.expr, time, &opts))
        });
        let mut results = join_all(jobs).await.into_iter();
        let mut out = Vec::new();
        for panel in &panels {
            let mut targets = Vec::new();
            for t in &panel.targets {
                let Some(r) = results.next() else { break };
                targets.push(target_json(t, r, &namespace, start, end)?);
            }
            out.push(json!({
                "id": panel.id, "title": panel.title, "unit": panel.unit,
                "stacked": panel.stacked, "targets": targets,
            }));
        }
        Ok(Json(json!({
            "dashboard": d.name,
            "title": d.title,
            "start": start as f64 / 1000.0,
            "end": end as f64 / 1000.0,
            "step": step as f64 / 1000.0,
            "panels": out,
        })))
    })
    .await
}

/// One evaluated target: its PromQL, legend, series (Prometheus' matrix JSON), warnings, and for
/// series of one pod, the search URL of that pod's logs.
fn target_json(
    t: &dashboards::Target,
    r: Result<
        (
            crate::metrics::Answer<nevermore_promql::engine::Evaluated>,
            crate::metrics::Timings,
        ),
        MetricsError,
    >,
    namespace: &str,
    start: i64,
    end: i64,
) -> Result<Value, ApiError> {
    let (answer, _) = r.map_err(|e| match e {
        MetricsError::Timeout { .. } => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", e.to_string())
        }
        MetricsError::Upstream { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream", e.to_string())
        }
        other => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "query",
            format!("{other}: {}", t.expr),
        ),
    })?;
    let PromValue::Matrix(series) = &answer.data.value else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a range query gave no matrix",
        ));
    };
    let mut result: Value = serde_json::from_str(&super::prom::format_value(&answer.data.value))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    if let Some(items) = result["result"].as_array_mut() {
        for (item, s) in items.iter_mut().zip(series) {
            if let Some(pod) = s.labels.get("pod") {
                item["logs"] = json!(logs_url(namespace, pod, start, end));
            }
        }
    }
    Ok(json!({
        "expr": t.expr,
        "legend": t.legend,
        "series": result["result"].take(),
        "warnings": answer.warnings,
    }))
}

/// The search API URL of one pod's logs over the dashboard's range.
pub fn logs_url(namespace: &str, pod: &str, start_ms: i64, end_ms: i64) -> String {
    let q = format!("namespace:{} pod:{}", quote(namespace), quote(pod));
    let query = serde_urlencoded::to_string([
        ("q", q),
        ("start", format!("{}", start_ms / 1000)),
        ("end", format!("{}", (end_ms + 999) / 1000)),
    ])
    .unwrap_or_default();
    format!("/api/v1/logs/search?{query}")
}

/// A search-language value: bare when it is a plain name, quoted otherwise.
fn quote(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}
