//! Golden output of the whole collector: the bundled demo pods (CRI with a partial line, a
//! gzipped rotated segment, docker json-file) → `testdata/demo/expected.ndjson`.
//! `UPDATE_GOLDEN=1 cargo test -p nevermore-collector --test golden` rewrites it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{config, start, stop};
use std::path::Path;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_pods_give_the_expected_records() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let pods = repo.join("testdata/demo/pods");
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out.ndjson");
    let mut cfg = config(root.path(), &out);
    cfg.node_name = "demo-node".into();
    cfg.cluster = "demo".into();
    cfg.sources[0].kind = nevermore_collector::config::SourceKind::Kubernetes {
        pods_dir: pods.clone(),
    };
    let r = start(cfg);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.lines().count() >= 27 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(r).await;
    let text = std::fs::read_to_string(&out).unwrap();
    // Paths relative to the repository, records grouped by stream in delivery order.
    let prefix = format!("{}/", repo.display());
    let mut lines: Vec<(String, u64, String)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let key = v["kubernetes"]["pod"]["uid"].as_str().unwrap().to_owned();
            let seq = v["event"]["sequence"].as_u64().unwrap();
            (key, seq, l.replace(&prefix, ""))
        })
        .collect();
    lines.sort();
    let mut actual: String = lines.into_iter().map(|(_, _, l)| l + "\n").collect();
    if actual.is_empty() {
        actual.push('\n');
    }
    let golden = repo.join("testdata/demo/expected.ndjson");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    if expected != actual {
        for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
            assert_eq!(e, a, "record {i} differs (UPDATE_GOLDEN=1 to accept)");
        }
        panic!(
            "expected {} records, got {} (UPDATE_GOLDEN=1 to accept)",
            expected.lines().count(),
            actual.lines().count()
        );
    }
}
