//! Real Prometheus and VictoriaMetrics servers for tests, on loopback ports, in temporary
//! directories, killed on drop. Binaries: `NEVERMORE_PROMETHEUS_BIN`, `NEVERMORE_PROMTOOL_BIN`,
//! `NEVERMORE_VICTORIA_METRICS_BIN` (default `prometheus`, `promtool`, `victoria-metrics` on
//! the PATH). A missing binary fails the test with a message saying which, never skips it.
//!
//! Everything here is blocking (a tiny HTTP/1.0 client over `std::net`), so it can be called
//! from plain and async tests alike.

use nevermore_promql::model::{Sample, Series};
use nevermore_query::metrics::upstream::openmetrics::{self, TextFormat};
use nevermore_query::metrics::upstream::prompb;
use prost::Message;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY_WITHIN: Duration = Duration::from_secs(20);

fn bin(env: &str, default: &str) -> String {
    std::env::var(env)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn spawn(program: &str, env: &str, args: &[String], log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("create server log");
    let err = out.try_clone().expect("clone log handle");
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `{program}` ({e}): install it or point {env} at the binary \
                 (these tests need the real server and never skip)"
            )
        })
}

/// A port free right now on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Polls `url` until it answers 2xx; panics with the server's log if the process exits or
/// `READY_WITHIN` passes.
fn wait_ready(what: &str, child: &mut Child, url: &str, log: &Path) {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Some(status) = child.try_wait().expect("poll server process") {
            panic!(
                "{what} exited ({status}) before it was ready; log:\n{}",
                log_tail(log)
            );
        }
        if let Ok((200..=299, _)) = http("GET", url, &[], b"") {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{what} not ready at {url} after {READY_WITHIN:?}; log:\n{}",
                log_tail(log)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One blocking HTTP/1.0 request (so the answer is never chunked): status and body.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not http: {url}"))
    })?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed http answer");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, answer[split + 4..].to_vec()))
}

/// `application/x-www-form-urlencoded` of the pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A Prometheus server holding the blocks backfilled from an OpenMetrics file, with the given
/// external labels and no scrape configs. Its remote write receiver is on (for data that
/// backfilling cannot express, such as staleness markers).
pub struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(openmetrics_file: &Path, external_labels: &[(&str, &str)]) -> Prometheus {
        Self::start_with_flags(openmetrics_file, external_labels, &[])
    }

    /// As [`Prometheus::start`], with more command-line flags.
    pub fn start_with_flags(
        openmetrics_file: &Path,
        external_labels: &[(&str, &str)],
        flags: &[&str],
    ) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let promtool = bin("NEVERMORE_PROMTOOL_BIN", "promtool");
        let out = Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(openmetrics_file)
            .arg(&data)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{promtool}` ({e}): install it or point NEVERMORE_PROMTOOL_BIN at \
                     the binary (these tests need it and never skip)"
                )
            });
        assert!(
            out.status.success(),
            "promtool tsdb create-blocks-from openmetrics {} failed ({}):\n{}\n{}",
            openmetrics_file.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let mut cfg = String::from("global:\n  external_labels:\n");
        for (k, v) in external_labels {
            // A JSON string is a YAML double-quoted scalar.
            cfg.push_str(&format!("    {k}: {}\n", serde_json::json!(v)));
        }
        if external_labels.is_empty() {
            cfg.push_str("    {}\n");
        }
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, cfg).expect("write prometheus.yml");

        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let log = dir.path().join("prometheus.log");
        let prometheus = bin("NEVERMORE_PROMETHEUS_BIN", "prometheus");
        let mut args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--storage.tsdb.retention.time=100y".into(),
            "--web.enable-remote-write-receiver".into(),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        let mut child = spawn(&prometheus, "NEVERMORE_PROMETHEUS_BIN", &args, &log);
        wait_ready("prometheus", &mut child, &format!("{url}/-/ready"), &log);
        let p = Prometheus {
            child,
            url,
            log,
            _dir: dir,
        };
        p.wait_for_blocks(openmetrics_file);
        p
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Backfilled blocks are loaded at start; this makes sure a query sees the file's last
    /// sample before tests run.
    fn wait_for_blocks(&self, file: &Path) {
        let text = std::fs::read_to_string(file).expect("read openmetrics file");
        let series = openmetrics::parse(&text, TextFormat::OpenMetrics).expect("parse fixture");
        let Some(last) = series
            .iter()
            .filter_map(|s| s.samples.last())
            .map(|s| s.t)
            .max()
        else {
            return;
        };
        let at = seconds(last);
        let query = form(&[
            ("match[]", r#"{__name__=~".+"}"#),
            ("start", &at),
            ("end", &at),
        ]);
        let url = format!("{}/api/v1/series?{query}", self.url);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok((200, body)) = http("GET", &url, &[], b"")
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                && v["data"].as_array().is_some_and(|a| !a.is_empty())
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "prometheus at {} does not show the backfilled blocks; log:\n{}",
                    self.url,
                    log_tail(&self.log)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Writes series through the remote write receiver (values bit-exact). Prometheus takes
    /// only samples newer than its newest block.
    pub fn remote_write(&self, series: &[Series]) {
        remote_write(&format!("{}/api/v1/write", self.url), series);
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A single-node VictoriaMetrics with an empty data directory.
pub struct VictoriaMetrics {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl VictoriaMetrics {
    pub fn start() -> VictoriaMetrics {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let log = dir.path().join("victoria-metrics.log");
        let vm = bin("NEVERMORE_VICTORIA_METRICS_BIN", "victoria-metrics");
        let mut child = spawn(
            &vm,
            "NEVERMORE_VICTORIA_METRICS_BIN",
            &[
                format!("-httpListenAddr=127.0.0.1:{port}"),
                format!("-storageDataPath={}", dir.path().join("data").display()),
                "-retentionPeriod=100y".into(),
                "-search.latencyOffset=0s".into(),
                "-search.disableCache".into(),
            ],
            &log,
        );
        wait_ready(
            "victoria-metrics",
            &mut child,
            &format!("{url}/health"),
            &log,
        );
        VictoriaMetrics {
            child,
            url,
            log,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn import_openmetrics_file(&self, path: &Path) {
        let text = std::fs::read_to_string(path).expect("read openmetrics file");
        self.import_openmetrics(&text);
    }

    /// Imports OpenMetrics text (timestamps in seconds, `# EOF`) through
    /// `/api/v1/import/prometheus`, which takes millisecond timestamps, then flushes so that
    /// the data is queryable. VictoriaMetrics drops NaN samples (not staleness markers, which
    /// this format cannot carry).
    pub fn import_openmetrics(&self, text: &str) {
        let series = openmetrics::parse(text, TextFormat::OpenMetrics).expect("parse openmetrics");
        let mut body = String::new();
        for s in &series {
            let name = s.labels.metric_name().expect("metric name");
            let mut labels = String::new();
            for l in s.labels.iter().filter(|l| l.name != "__name__") {
                if !labels.is_empty() {
                    labels.push(',');
                }
                labels.push_str(&format!("{}=\"{}\"", l.name, escape(&l.value)));
            }
            for x in &s.samples {
                body.push_str(&format!("{name}{{{labels}}} {} {}\n", value_text(x.v), x.t));
            }
        }
        let url = format!("{}/api/v1/import/prometheus", self.url);
        let (status, answer) =
            http("POST", &url, &[], body.as_bytes()).expect("import into victoria-metrics");
        assert!(
            (200..300).contains(&status),
            "victoria-metrics import: {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        self.flush_until_visible(&series);
    }

    /// Writes series through `/api/v1/write` (Prometheus remote write), then flushes.
    pub fn remote_write(&self, series: &[Series]) {
        remote_write(&format!("{}/api/v1/write", self.url), series);
        self.flush_until_visible(series);
    }

    /// Forces a flush, then waits until the last sample written is exported.
    fn flush_until_visible(&self, series: &[Series]) {
        let last = series
            .iter()
            .filter_map(|s| {
                s.samples
                    .iter()
                    .rev()
                    .find(|x| !x.v.is_nan())
                    .map(|x| (s, x.t))
            })
            .max_by_key(|(_, t)| *t);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let (status, _) = http(
                "GET",
                &format!("{}/internal/force_flush", self.url),
                &[],
                b"",
            )
            .expect("victoria-metrics force_flush");
            assert!((200..300).contains(&status), "force_flush: {status}");
            let Some((s, t)) = last else {
                return;
            };
            let selector = format!(
                "{{{}}}",
                s.labels
                    .iter()
                    .map(|l| format!("{}=\"{}\"", l.name, escape(&l.value)))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let at = seconds(t);
            let body = form(&[("match[]", &selector), ("start", &at), ("end", &at)]);
            let (_, text) = http(
                "POST",
                &format!("{}/api/v1/export", self.url),
                &[("Content-Type", "application/x-www-form-urlencoded")],
                body.as_bytes(),
            )
            .expect("victoria-metrics export");
            if !text.trim_ascii().is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "imported data not visible in victoria-metrics at {}; log:\n{}",
                    self.url,
                    log_tail(&self.log)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A label value in the text formats' escaping.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Milliseconds as seconds with three decimals.
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

fn value_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}")
    }
}

/// `prometheus.WriteRequest` (only the series).
#[derive(Clone, PartialEq, prost::Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<prompb::TimeSeries>,
}

/// Sends series with Prometheus' remote write protocol 1.0.
pub fn remote_write(url: &str, series: &[Series]) {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|s| prompb::TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|l| prompb::Label {
                        name: l.name.clone(),
                        value: l.value.clone(),
                    })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|x: &Sample| prompb::Sample {
                        value: x.v,
                        timestamp: x.t,
                    })
                    .collect(),
            })
            .collect(),
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy");
    let (status, answer) = http(
        "POST",
        url,
        &[
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &body,
    )
    .expect("remote write");
    assert!(
        (200..300).contains(&status),
        "remote write to {url}: {status}: {}",
        String::from_utf8_lossy(&answer)
    );
}

/// Our query service with `cfg` (logs on an empty embedded index in `index_dir`, which the caller
/// keeps and removes) on a free loopback port, until the process ends; its base URL.
pub async fn serve_query(cfg: nevermore_query::config::ServeConfig, index_dir: &Path) -> String {
    let index = nevermore_index::LogIndex::open(index_dir).expect("empty embedded index");
    let backend = nevermore_query::logs::embedded::EmbeddedBackend::new(index).expect("backend");
    let metrics =
        nevermore_query::metrics::Metrics::from_config(&cfg.metrics).expect("metric upstreams");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(nevermore_query::http::serve(
        listener,
        nevermore_query::http::AppState::new(
            nevermore_query::logs::Backend::Embedded(backend),
            metrics,
            cfg,
        ),
        std::future::pending(),
    ));
    format!("http://{addr}")
}
