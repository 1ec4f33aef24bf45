//! The web UI in a real headless Chromium (Debian's `chromium`, or `NEVERMORE_CHROMIUM_BIN`): the
//! namespace dashboard renders every panel as lines with log links, and the log search page
//! answers. A missing browser fails the test, never skips it.

mod common;

use nevermore_query::config::{MetricsConfig, UpstreamConfig};
use nevermore_query::metrics::fixture::{FixtureSpec, openmetrics};
use std::process::Command;

/// Loads `url` in headless Chromium, lets its scripts run, and returns the DOM.
fn rendered_dom(url: &str) -> String {
    let bin = std::env::var("NEVERMORE_CHROMIUM_BIN").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new(&bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=20000",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{bin}` ({e}): install chromium or set NEVERMORE_CHROMIUM_BIN")
        });
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_search_render_in_a_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let file = dir.path().join("cluster.om");
    let spec = FixtureSpec {
        start_ms: (now - 2 * 3_600_000) / 15_000 * 15_000,
        duration_ms: 3 * 3_600_000,
        interval_ms: 15_000,
        gaps: Vec::new(),
        scale: 1,
        extra_labels: Vec::new(),
    };
    std::fs::write(&file, openmetrics(&spec)).expect("fixture");
    let mut cfg = nevermore_query::config::load_str("", "ui").expect("defaults");
    cfg.metrics = MetricsConfig {
        upstreams: vec![UpstreamConfig::Static {
            name: "fixture".into(),
            paths: vec![file],
        }],
        ..MetricsConfig::default()
    };
    let base = common::metric_servers::serve_query(cfg, &dir.path().join("index")).await;

    let url = format!("{base}/#dashboards/namespace?namespace=shop&range=1h");
    let dom = tokio::task::spawn_blocking(move || rendered_dom(&url))
        .await
        .expect("browser task");
    assert!(dom.contains("data-rendered=\"11\""), "{dom}");
    for panel in [
        "cpu-usage",
        "memory-usage",
        "network-receive",
        "pods-by-phase",
        "cpu-by-workload",
    ] {
        assert!(
            dom.contains(&format!("data-panel=\"{panel}\"")),
            "{panel} missing: {dom}"
        );
    }
    assert!(dom.matches("<polyline").count() >= 20, "{dom}");
    assert!(dom.contains("class=\"logs\""), "no log links: {dom}");
    assert!(
        dom.contains("frontend (deployment)"),
        "no workload legend: {dom}"
    );

    let url = format!("{base}/#logs?q=level%3Aerror&since=1h");
    let dom = tokio::task::spawn_blocking(move || rendered_dom(&url))
        .await
        .expect("browser task");
    assert!(dom.contains("0 records"), "{dom}");
}
