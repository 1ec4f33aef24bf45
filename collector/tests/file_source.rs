//! The `file` source: include/exclude globs, plain and JSON lines, logrotate-style rotation
//! (rename, then a new file at the path) and a restart after the checkpointed file was renamed.
#![allow(clippy::unwrap_used)]

mod common;

use common::{config, start, stop};
use nevermore_collector::config::{LineFormat, SourceKind};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn file_config(
    root: &Path,
    out: &Path,
    format: LineFormat,
) -> nevermore_collector::config::CollectorConfig {
    let mut cfg = config(root, out);
    cfg.sources[0].id = "app".into();
    cfg.sources[0].kind = SourceKind::File {
        include: vec![format!("{}/logs/*.log", root.display())],
        exclude: vec![format!("{}/logs/*.debug.log", root.display())],
        dataset: "app".into(),
    };
    cfg.sources[0].parse.format = format;
    cfg.sinks[0].inputs = vec!["app".into()];
    cfg
}

fn messages(out: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(out)
        .unwrap_or_default()
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn wait_count(out: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = messages(out);
        if m.len() >= n || Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_follows_logrotate_renames_and_restarts() {
    let root = tempfile::tempdir().unwrap();
    let logs = root.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let out = root.path().join("out.ndjson");
    let app = logs.join("app.log");
    append(&app, (0..50).map(|i| format!("line {i}")));
    append(&logs.join("noise.debug.log"), ["excluded".to_owned()]);
    let r = start(file_config(root.path(), &out, LineFormat::Plain));
    wait_count(&out, 50).await;
    // logrotate `create`: rename, then a new file at the path.
    fs::rename(&app, logs.join("app.log.1")).unwrap();
    append(
        &logs.join("app.log.1"),
        (50..60).map(|i| format!("line {i}")),
    );
    append(&app, (60..100).map(|i| format!("line {i}")));
    wait_count(&out, 100).await;
    stop(r).await;
    // While stopped: more lines, and the file is renamed again.
    append(&app, (100..120).map(|i| format!("line {i}")));
    fs::rename(&app, logs.join("app.log.2")).unwrap();
    append(&app, (120..130).map(|i| format!("line {i}")));
    let r = start(file_config(root.path(), &out, LineFormat::Plain));
    let got = wait_count(&out, 130).await;
    stop(r).await;
    let msgs: Vec<&str> = got.iter().map(|v| v["message"].as_str().unwrap()).collect();
    let want: Vec<String> = (0..130).map(|i| format!("line {i}")).collect();
    assert_eq!(msgs, want);
    assert!(
        got.iter()
            .all(|v| v["event"]["dataset"] == "app" && v.get("kubernetes").is_none())
    );
    let seqs: Vec<u64> = got
        .iter()
        .map(|v| v["event"]["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..130).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_get_their_level() {
    let root = tempfile::tempdir().unwrap();
    let logs = root.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let out = root.path().join("out.ndjson");
    append(
        &logs.join("audit.log"),
        [
            r#"{"level":"warning","msg":"disk 91% full"}"#.to_owned(),
            r#"{"severity":"ERROR","message":"boom"}"#.to_owned(),
            "not json at all".to_owned(),
        ],
    );
    let r = start(file_config(root.path(), &out, LineFormat::Json));
    let got = wait_count(&out, 3).await;
    stop(r).await;
    let levels: Vec<Option<&str>> = got.iter().map(|v| v["log"]["level"].as_str()).collect();
    assert_eq!(levels, [Some("warn"), Some("error"), None]);
}
