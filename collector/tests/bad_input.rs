//! Bad input through real files: every case gives a record, a counted drop or a skip with a log
//! line, never a panic or a stalled collector.
#![allow(clippy::unwrap_used)]

mod common;

use common::{config, start, stop};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn container_dir(root: &Path, pod: &str) -> PathBuf {
    let d = root
        .join("pods")
        .join(format!("ns_{pod}_uid-{pod}"))
        .join("app");
    fs::create_dir_all(&d).unwrap();
    d
}

fn records(out: &Path) -> Vec<serde_json::Value> {
    let text = fs::read_to_string(out).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn wait_for(
    out: &Path,
    what: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = records(out);
        if what(&r) || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn messages(r: &[serde_json::Value], pod: &str) -> Vec<String> {
    r.iter()
        .filter(|v| v["kubernetes"]["pod"]["name"] == pod)
        .map(|v| v["message"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_lines_become_records_or_counted_drops() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out.ndjson");
    let mut cfg = config(root.path(), &out);
    cfg.sources[0].parse.partial_timeout = Duration::from_millis(200);
    let addr = free_addr();
    cfg.telemetry.listen = Some(addr);

    let d = container_dir(root.path(), "bad");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.join("0.log"))
        .unwrap();
    f.write_all(b"2026-11-26T10:00:00.000000001Z stdout F invalid \xff\xfe utf-8\n")
        .unwrap();
    f.write_all(b"no tag at all\n").unwrap();
    f.write_all(b"2026-13-45T99:00:00Z stdout F bad timestamp\n")
        .unwrap();
    f.write_all(b"\x00\x01\x02\x7f\x1b[31m binary \x00garbage\n")
        .unwrap();
    let big = "y".repeat(1 << 20);
    writeln!(f, "2026-11-26T10:00:01.000000001Z stdout F {big}").unwrap();
    let huge = "z".repeat(3 << 20);
    writeln!(f, "2026-11-26T10:00:02.000000001Z stdout F {huge}").unwrap();
    f.write_all(b"2026-11-26T10:00:03.000000001Z stdout P never finished\n")
        .unwrap();
    f.write_all(b"2026-11-26T10:00:04.000000001Z stderr F last line\n")
        .unwrap();
    // An empty container log, a directory that is not <ns>_<pod>_<uid>, a symlink loop, a FIFO.
    let empty = container_dir(root.path(), "empty");
    fs::write(empty.join("0.log"), b"").unwrap();
    let junk = root.path().join("pods").join("not-a-pod-dir").join("app");
    fs::create_dir_all(&junk).unwrap();
    fs::write(
        junk.join("0.log"),
        b"2026-11-26T10:00:00Z stdout F should not be read\n",
    )
    .unwrap();
    let looped = container_dir(root.path(), "loop");
    std::os::unix::fs::symlink(looped.join("0.log"), looped.join("0.log")).unwrap();
    let fifo = container_dir(root.path(), "fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(fifo.join("0.log"))
            .status()
            .unwrap()
            .success()
    );

    let r = start(cfg);
    let got = wait_for(&out, |r| {
        r.iter()
            .any(|v| v["message"].as_str() == Some("never finished"))
    })
    .await;
    let msgs = messages(&got, "bad");
    assert_eq!(msgs[0], "invalid \u{fffd}\u{fffd} utf-8");
    assert_eq!(got[0]["log"]["flags"], serde_json::json!(["invalid_utf8"]));
    assert!(msgs.iter().any(|m| m == "no tag at all"), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m.ends_with("bad timestamp")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("binary")), "{msgs:?}");
    let one_mib = got
        .iter()
        .find(|v| v["message"].as_str().is_some_and(|m| m.starts_with('y')))
        .unwrap();
    assert_eq!(one_mib["message"].as_str().unwrap().len(), 1 << 20);
    assert!(one_mib["log"].get("flags").is_none());
    let cut = got
        .iter()
        .find(|v| v["message"].as_str().is_some_and(|m| m.starts_with('z')))
        .unwrap();
    assert_eq!(cut["message"].as_str().unwrap().len(), 1 << 20);
    assert_eq!(cut["log"]["flags"], serde_json::json!(["truncated"]));
    let unterminated = got
        .iter()
        .find(|v| v["message"] == "never finished")
        .unwrap();
    assert_eq!(
        unterminated["log"]["flags"],
        serde_json::json!(["partial", "unterminated"])
    );
    assert!(msgs.iter().any(|m| m == "last line"));
    assert!(
        got.iter().all(|v| v["kubernetes"]["pod"]["name"] == "bad"),
        "only the valid pod dir is read"
    );

    // The empty file grows later: its lines arrive.
    let mut e = OpenOptions::new()
        .append(true)
        .open(empty.join("0.log"))
        .unwrap();
    e.write_all(b"2026-11-26T10:00:05.000000001Z stdout F now with content\n")
        .unwrap();
    let got = wait_for(&out, |r| {
        r.iter().any(|v| v["message"] == "now with content")
    })
    .await;
    assert!(got.iter().any(|v| v["message"] == "now with content"));

    let m = scrape(addr);
    assert!(metric(&m, "nevermore_invalid_lines_total") >= 3.0, "{m}");
    assert!(
        metric(&m, "nevermore_records_truncated_total") >= 1.0,
        "{m}"
    );
    assert!(metric(&m, "nevermore_unterminated_total") >= 1.0, "{m}");
    // Caught up: no stream lags, in bytes or in seconds (the last lines are old by now).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut m = scrape(addr);
    while (metric(&m, "nevermore_lag_bytes") != 0.0 || metric(&m, "nevermore_lag_seconds") != 0.0)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        m = scrape(addr);
    }
    assert_eq!(metric(&m, "nevermore_lag_bytes"), 0.0, "{m}");
    assert_eq!(metric(&m, "nevermore_lag_seconds"), 0.0, "{m}");
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_truncated_to_zero_while_read_is_followed_and_counted() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out.ndjson");
    let mut cfg = config(root.path(), &out);
    let addr = free_addr();
    cfg.telemetry.listen = Some(addr);
    let d = container_dir(root.path(), "t");
    let path = d.join("0.log");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    for i in 0..100 {
        writeln!(f, "2026-11-26T10:00:00.{i:09}Z stdout F before {i}").unwrap();
    }
    let r = start(cfg);
    wait_for(&out, |r| r.len() >= 100).await;
    // Truncate in place with no copy, then keep writing: the new lines are read from offset 0.
    f.set_len(0).unwrap();
    for i in 0..10 {
        writeln!(f, "2026-11-26T10:00:01.{i:09}Z stdout F after {i}").unwrap();
    }
    let got = wait_for(&out, |r| r.iter().any(|v| v["message"] == "after 9")).await;
    let after: Vec<&str> = got
        .iter()
        .filter_map(|v| v["message"].as_str())
        .filter(|m| m.starts_with("after"))
        .collect();
    assert_eq!(
        after,
        (0..10).map(|i| format!("after {i}")).collect::<Vec<_>>()
    );
    let m = scrape(addr);
    assert!(
        m.contains("nevermore_bytes_lost_total{reason=\"truncated\"}"),
        "{m}"
    );
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_future_checkpoint_starts_clean() {
    for content in [
        &b"{\"version\": 1, \"streams\": {\"k8s:x"[..],
        &b"{\"version\": 99, \"streams\": {}}"[..],
        &b"\x00\xff garbage"[..],
    ] {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out.ndjson");
        let cfg = config(root.path(), &out);
        fs::create_dir_all(&cfg.data_dir).unwrap();
        fs::write(cfg.data_dir.join("checkpoints.json"), content).unwrap();
        let d = container_dir(root.path(), "c");
        fs::write(d.join("0.log"), b"2026-11-26T10:00:00Z stdout F hello\n").unwrap();
        let r = start(cfg);
        let got = wait_for(&out, |r| !r.is_empty()).await;
        stop(r).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["message"], "hello");
        assert!(root.path().join("data/checkpoints.json.corrupt").exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_ends_its_stream_and_releases_its_files() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out.ndjson");
    let mut cfg = config(root.path(), &out);
    let addr = free_addr();
    cfg.telemetry.listen = Some(addr);
    let data_dir = cfg.data_dir.clone();
    let d = container_dir(root.path(), "gone");
    fs::write(d.join("0.log"), b"2026-11-26T10:00:00Z stdout F bye\n").unwrap();
    let keep = container_dir(root.path(), "stays");
    fs::write(keep.join("0.log"), b"2026-11-26T10:00:00Z stdout F hi\n").unwrap();
    let r = start(cfg);
    wait_for(&out, |r| r.len() >= 2).await;
    fs::remove_dir_all(d.parent().unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut m = String::new();
    while Instant::now() < deadline {
        m = scrape(addr);
        if metric(&m, "nevermore_streams ") == 1.0 && metric(&m, "nevermore_open_files ") == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&m, "nevermore_streams "), 1.0, "{m}");
    assert_eq!(metric(&m, "nevermore_open_files "), 1.0, "{m}");
    assert!(
        !m.contains("ns_gone_uid-gone"),
        "metrics of the ended stream are removed: {m}"
    );
    stop(r).await;
    let cp = fs::read_to_string(data_dir.join("checkpoints.json")).unwrap();
    assert!(!cp.contains("ns_gone_uid-gone"), "{cp}");
    assert!(cp.contains("ns_stays_uid-stays"), "{cp}");
}
