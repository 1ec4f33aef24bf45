//! The `nevermore` binary, run as users run it.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn nevermore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nevermore"))
        .args(args)
        .current_dir(config_dir())
        .env_remove("NEVERMORE_CONFIG")
        .output()
        .unwrap()
}

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/config")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn version() {
    let o = nevermore(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("nevermore {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_mentions_every_subcommand() {
    let o = nevermore(&["--help"]);
    assert!(o.status.success());
    let out = stdout(&o);
    for cmd in ["collect", "check-config", "relay", "serve", "up", "search"] {
        assert!(out.contains(cmd), "--help does not mention {cmd}:\n{out}");
    }
}

#[test]
fn check_config_good_file() {
    let o = nevermore(&["check-config", "full.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout(&o), "config ok: 3 sources, 2 sinks\n");
}

#[test]
fn check_config_bad_file_prints_every_problem() {
    let o = nevermore(&["check-config", "many-problems.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let want = std::fs::read_to_string(config_dir().join("many-problems.diagnostics")).unwrap();
    assert_eq!(stdout(&o), want);
}

#[test]
fn check_config_missing_file() {
    let o = nevermore(&["check-config", "does-not-exist.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).starts_with("does-not-exist.yaml: error: cannot read the config file"));
}

#[test]
fn collect_with_bad_config_exits_1() {
    let o = nevermore(&["collect", "--config", "bad-keys.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad-keys.yaml:2:1: error: clustr"));
}

#[test]
fn relay_without_a_relay_section_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {}\ntelemetry: {{listen: off}}\nsinks: {{f: {{type: file, path: {}}}}}\n",
            dir.path().display(),
            dir.path().join("out.ndjson").display()
        ),
    )
    .unwrap();
    let o = nevermore(&["relay", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the config file has no `relay` section"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn serve_with_a_bad_config_exits_1_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, "serve:\n  listen: 127.0.0.1:0\n  max_in_fligth: 3\n").unwrap();
    let o = nevermore(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("max_in_fligth"), "{err}");
}

#[test]
fn search_without_a_server_says_so() {
    let o = nevermore(&["search", "level:error", "--server", "http://127.0.0.1:9"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot reach http://127.0.0.1:9"), "{err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A GET over plain HTTP/1.0 (the server closes the connection after the answer); the JSON body.
fn http_get_json(addr: &str, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {resp}"))
}

/// README's first command: `nevermore up` with no config shows live, searchable logs within
/// seconds, and `nevermore search` finds them.
#[test]
fn up_demo_is_searchable_within_seconds() {
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let server = format!("http://{listen}");
    let mut up = Command::new(env!("CARGO_BIN_EXE_nevermore"))
        .args(["up", "--listen", &listen, "--demo-rate", "200"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut found = Vec::new();
    while started.elapsed() < std::time::Duration::from_secs(30) {
        let o = nevermore(&[
            "search",
            "namespace:kube-system",
            "--server",
            &server,
            "--json",
            "-n",
            "5",
        ]);
        if o.status.success() {
            found = stdout(&o).lines().map(str::to_owned).collect();
            if !found.is_empty() {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let took = started.elapsed();
    assert!(
        !found.is_empty(),
        "no generated record became searchable in {took:?}"
    );
    for line in &found {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["kubernetes"]["namespace"], "kube-system");
    }
    // The bundled sample pods are there too (their timestamps are fixed, hence the wide range).
    let o = nevermore(&[
        "search",
        "\"connection refused\" pod:api-7d9f",
        "--server",
        &server,
        "--since",
        "3650d",
        "--color",
        "never",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        stdout(&o).contains("ERROR connection refused: dial tcp 10.0.0.7:5432"),
        "{}",
        stdout(&o)
    );
    // `--follow` prints records as they arrive (the generator keeps writing).
    let mut follow = Command::new(env!("CARGO_BIN_EXE_nevermore"))
        .args([
            "search",
            "namespace:payments",
            "--follow",
            "--json",
            "--server",
            &server,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A watchdog: a follow that prints nothing must fail the test, not hang it.
    let pid = follow.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(30));
        let _ = Command::new("kill").arg("-9").arg(pid).status();
    });
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().unwrap()));
    let first = lines
        .next()
        .expect("--follow printed nothing in 30 s")
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["kubernetes"]["namespace"], "payments");
    follow.kill().unwrap();
    follow.wait().unwrap();
    // A bad query is a positioned error.
    let o = nevermore(&["search", "level:>=loud", "--server", &server]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad_query"),
        "{o:?}"
    );
    // The demo's cluster metrics answer on the Prometheus API and in the dashboards.
    let v = http_get_json(
        &listen,
        "/api/v1/query?query=count%20by%20(namespace)%20(kube_pod_info)",
    );
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 3, "{v}");
    let v = http_get_json(&listen, "/api/v1/dashboards/namespace?namespace=shop");
    let cpu = &v["panels"].as_array().unwrap()[2];
    assert!(
        !cpu["targets"][0]["series"].as_array().unwrap().is_empty(),
        "{cpu}"
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(up.id().to_string())
        .status();
    let status = up.wait().unwrap();
    assert!(status.success(), "nevermore up exited with {status}");
    eprintln!("up: first generated record searchable after {took:?}");
}
