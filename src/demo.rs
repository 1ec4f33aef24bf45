//! The bundled demo of `nevermore up` with no arguments: the sample pods of testdata/demo plus a
//! small live generator that writes CRI logs the way kubelet does (size rotation to
//! `0.log.<stamp>`, the older rotated segments gzipped, the oldest deleted), so a newcomer sees
//! live, searchable logs at once.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The sample pods, compiled in so the binary runs from any directory.
const SAMPLES: &[(&str, &[u8])] = &[
    (
        "shop_api-7d9f_5c1e4a2b-0000-4000-8000-000000000001/api/0.log",
        include_bytes!(
            "../testdata/demo/pods/shop_api-7d9f_5c1e4a2b-0000-4000-8000-000000000001/api/0.log"
        ),
    ),
    (
        "shop_api-7d9f_5c1e4a2b-0000-4000-8000-000000000001/api/0.log.20261126-095959.gz",
        include_bytes!(
            "../testdata/demo/pods/shop_api-7d9f_5c1e4a2b-0000-4000-8000-000000000001/api/0.log.20261126-095959.gz"
        ),
    ),
    (
        "payments_worker-5b8c_9a7e4a2b-0000-4000-8000-000000000002/worker/0.log",
        include_bytes!(
            "../testdata/demo/pods/payments_worker-5b8c_9a7e4a2b-0000-4000-8000-000000000002/worker/0.log"
        ),
    ),
];

/// The demo's directory and the config that `up` runs with.
#[derive(Debug)]
pub struct Demo {
    pub root: PathBuf,
    pub pods_dir: PathBuf,
    pub config_yaml: String,
}

/// Writes the sample pods into a fresh directory under the system temp dir and returns the
/// config of the demo (collector with an embedded sink, query service on `listen`).
pub fn prepare(listen: &str) -> std::io::Result<Demo> {
    let root = std::env::temp_dir().join(format!("nevermore-up-{}", std::process::id()));
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    let pods_dir = root.join("pods");
    for (rel, bytes) in SAMPLES {
        let path = pods_dir.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, bytes)?;
    }
    let data_dir = root.join("data");
    // Cluster metrics for the dashboards and the Prometheus API: three hours back and three ahead
    // of now, so "the last hour" stays full while the demo runs (queries never look past now).
    let metrics_file = root.join("metrics.om");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let hour = 3_600_000;
    let spec = nevermore_query::metrics::fixture::FixtureSpec {
        start_ms: (now_ms - 3 * hour) / 30_000 * 30_000,
        duration_ms: 6 * hour,
        interval_ms: 30_000,
        gaps: Vec::new(),
        scale: 1,
        extra_labels: Vec::new(),
    };
    std::fs::write(
        &metrics_file,
        nevermore_query::metrics::fixture::openmetrics(&spec),
    )?;
    let config_yaml = format!(
        "node_name: demo-node\n\
         cluster: demo\n\
         data_dir: {data}\n\
         telemetry: {{listen: \"off\"}}\n\
         pipeline: {{batch_timeout_ms: 200}}\n\
         sources:\n  pods: {{type: kubernetes_logs, pods_dir: {pods}}}\n\
         sinks:\n  local: {{type: embedded, commit_interval_ms: 500, max_age_ms: 86400000}}\n\
         serve:\n  listen: \"{listen}\"\n  \
         metrics: {{upstreams: [{{type: static, name: demo, paths: [{metrics}]}}]}}\n",
        data = yaml_str(&data_dir),
        pods = yaml_str(&pods_dir),
        metrics = yaml_str(&metrics_file),
    );
    Ok(Demo {
        root,
        pods_dir,
        config_yaml,
    })
}

fn yaml_str(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).unwrap_or_default()
}

/// One pod of the generator and what it says.
struct FakePod {
    dir: &'static str,
    lines: &'static [&'static str],
}

const PODS: &[FakePod] = &[
    FakePod {
        dir: "shop_api-7d9f8c6b5-x2x9k_11111111-2222-4333-8444-000000000010/api",
        lines: &[
            r#"{"level":"info","msg":"GET /api/v1/products/{n} 200","duration_ms":{d}}"#,
            r#"{"level":"info","msg":"GET /api/v1/cart 200","duration_ms":{d}}"#,
            r#"{"level":"info","msg":"POST /api/v1/checkout 201","duration_ms":{d}}"#,
            r#"{"level":"warn","msg":"slow upstream payments","latency_ms":{d}}"#,
            r#"{"level":"error","msg":"upstream payments: connection refused","attempt":{n}}"#,
        ],
    },
    FakePod {
        dir: "shop_web-5f6d7c8b9-k4m2p_11111111-2222-4333-8444-000000000011/nginx",
        lines: &[
            "10.0.{n}.7 - - \"GET / HTTP/1.1\" 200 5120 \"-\" \"Mozilla/5.0\"",
            "10.0.{n}.9 - - \"GET /static/app.js HTTP/1.1\" 304 0 \"-\" \"Mozilla/5.0\"",
            "10.0.{n}.3 - - \"GET /api/v1/cart HTTP/1.1\" 502 157 \"-\" \"curl/8.5.0\"",
        ],
    },
    FakePod {
        dir: "payments_ledger-0_11111111-2222-4333-8444-000000000012/ledger",
        lines: &[
            "level=info msg=\"charge accepted\" id=ch_{n} amount_cents={d}",
            "level=info msg=\"settlement batch closed\" batch={n}",
            "level=warn msg=\"retrying charge\" id=ch_{n} attempt=2",
            "level=error msg=\"database: connection refused\" host=10.0.0.7:5432",
        ],
    },
    FakePod {
        dir: "kube-system_coredns-6f6b679f8f-q7r2t_11111111-2222-4333-8444-000000000013/coredns",
        lines: &[
            "[INFO] 10.244.0.{n}:53 - \"A IN api.shop.svc.cluster.local. udp\" NOERROR {d}ms",
            "[INFO] 10.244.0.{n}:53 - \"AAAA IN ledger.payments.svc.cluster.local. udp\" NXDOMAIN {d}ms",
            "[ERROR] plugin/errors: 2 example.invalid. A: read udp 10.244.0.3:{n}->8.8.8.8:53: i/o timeout",
        ],
    },
];

/// kubelet's default is 10 MiB; small here so the demo rotates within minutes.
const ROTATE_BYTES: u64 = 256 * 1024;
const KEEP_ROTATED: usize = 3;

/// Writes about `lines_per_sec` CRI lines a second over the fake pods until `stop` fires,
/// rotating like kubelet.
pub async fn generate(
    pods_dir: PathBuf,
    lines_per_sec: u32,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let tick = Duration::from_millis(100);
    let per_tick = (lines_per_sec / 10).max(1);
    loop {
        for _ in 0..per_tick {
            let r = next();
            let pod = &PODS[(r % PODS.len() as u64) as usize];
            // Errors are rarer than the rest: the last line of each pod is its error.
            let mut i = ((r >> 8) % pod.lines.len() as u64) as usize;
            if i == pod.lines.len() - 1 && (r >> 20) % 4 != 0 {
                i = 0;
            }
            let line = pod.lines[i]
                .replace("{n}", &((r >> 24) % 200).to_string())
                .replace("{d}", &((r >> 32) % 900 + 3).to_string());
            let stream = if line.contains("error") || line.contains("ERROR") {
                "stderr"
            } else {
                "stdout"
            };
            if let Err(e) = append(&pods_dir.join(pod.dir), stream, &line, (r >> 40) % 50 == 0) {
                tracing::warn!(error = %e, "demo generator cannot write");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Appends one CRI record to `<dir>/0.log`, split into a partial and a final chunk when
/// `split` (as kubelet does for long lines), and rotates first when the file is full.
fn append(dir: &Path, stream: &str, line: &str, split: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let live = dir.join("0.log");
    if std::fs::metadata(&live).map(|m| m.len()).unwrap_or(0) >= ROTATE_BYTES {
        rotate(dir)?;
    }
    let ts = nevermore_index::format_ts(now_ns());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&live)?;
    let mut buf = String::new();
    if split && line.len() > 8 {
        let cut = line
            .char_indices()
            .nth(line.chars().count() / 2)
            .map_or(0, |(i, _)| i);
        buf.push_str(&format!("{ts} {stream} P {}\n", &line[..cut]));
        buf.push_str(&format!("{ts} {stream} F {}\n", &line[cut..]));
    } else {
        buf.push_str(&format!("{ts} {stream} F {line}\n"));
    }
    f.write_all(buf.as_bytes())
}

/// kubelet's rotation: the live file is renamed with a timestamp, a new one is created, the
/// previously rotated plain segments are gzipped, and the oldest beyond the limit are deleted.
fn rotate(dir: &Path) -> std::io::Result<()> {
    let stamp = {
        let s = nevermore_index::format_ts(now_ns());
        // 2026-11-26T10:00:00.… → 20261126-100000
        format!(
            "{}{}{}-{}{}{}",
            &s[0..4],
            &s[5..7],
            &s[8..10],
            &s[11..13],
            &s[14..16],
            &s[17..19]
        )
    };
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("0.log."))
        })
        .collect();
    for p in &rotated {
        if p.extension().is_none_or(|e| e != "gz") {
            gzip(p)?;
        }
    }
    let target = dir.join(format!("0.log.{stamp}"));
    if target.exists() || dir.join(format!("0.log.{stamp}.gz")).exists() {
        // Two rotations within a second: keep writing to the live file.
        return Ok(());
    }
    std::fs::rename(dir.join("0.log"), &target)?;
    rotated = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "gz"))
        .collect();
    rotated.sort();
    while rotated.len() > KEEP_ROTATED {
        std::fs::remove_file(rotated.remove(0))?;
    }
    Ok(())
}

fn gzip(path: &Path) -> std::io::Result<()> {
    let data = std::fs::read(path)?;
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let tmp = PathBuf::from(format!("{}.tmp", gz.display()));
    let mut enc =
        flate2::write::GzEncoder::new(std::fs::File::create(&tmp)?, flate2::Compression::fast());
    enc.write_all(&data)?;
    enc.finish()?;
    std::fs::rename(&tmp, &gz)?;
    std::fs::remove_file(path)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
