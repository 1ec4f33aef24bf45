//! An unreadable log file (permission denied) is skipped with a warning; the readable ones are
//! collected. The collector runs as `nobody` (tests run as root, which no permission stops).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn unreadable_file_is_skipped_and_others_are_collected() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    assert!(
        is_root,
        "this test drops to `nobody` and needs to start as root"
    );
    let root = tempfile::tempdir().unwrap();
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let pods = root.path().join("pods");
    for (pod, mode) in [("open", 0o644), ("closed", 0o000)] {
        let dir = pods.join(format!("ns_{pod}_uid-{pod}")).join("app");
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("0.log");
        fs::write(
            &file,
            format!("2026-11-26T10:00:00Z stdout F hello from {pod}\n"),
        )
        .unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
    }
    for d in walk_dirs(&pods) {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = root.path().join("out.ndjson");
    let data = root.path().join("data");
    let config = root.path().join("config.yaml");
    fs::write(
        &config,
        format!(
            "node_name: n\ndata_dir: {}\ntelemetry: {{listen: \"off\"}}\nsources:\n  pods: {{type: kubernetes_logs, pods_dir: {}}}\nsinks:\n  out: {{type: file, path: {}}}\n",
            data.display(),
            pods.display(),
            out.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let log = root.path().join("log");
    // The build directory may not be reachable by `nobody`: run a copy.
    let bin = root.path().join("nevermore");
    fs::copy(env!("CARGO_BIN_EXE_nevermore"), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(&bin)
        .args(["collect", "--config"])
        .arg(&config)
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline
        && !fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("hello from open")
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    let text = fs::read_to_string(&out).unwrap_or_default();
    let logged = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("hello from open"),
        "readable file collected; log:\n{logged}"
    );
    assert!(!text.contains("hello from closed"));
    assert!(
        logged.contains("cannot open log file") && logged.contains("ns_closed_uid-closed"),
        "{logged}"
    );
    assert!(
        status.success(),
        "collector exited with {status}; log:\n{logged}"
    );
}

fn walk_dirs(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = vec![p.to_owned()];
    for e in fs::read_dir(p).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            v.extend(walk_dirs(&e.path()));
        }
    }
    v
}
