//! Golden tests: `testdata/parse/<format>/<name>.log` → `<name>.ndjson`, one record a line.
//!
//! Positions are byte offsets in the file: `start` of the first line, `end` just past the `\n`
//! of the last line. Each directory may hold a `config.txt` of `key=value` lines overriding the
//! merger config (see `load_config`). Run with `UPDATE_GOLDEN=1` to rewrite the expectations.
#![allow(clippy::unwrap_used)]

use nevermore_parse::time::format_rfc3339;
use nevermore_parse::{LineFormat, Merger, MergerConfig, MultilineConfig, RawLine, Record};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const READ_TIME_NS: i64 = 1_800_000_000_000_000_000;
/// Monotonic ms between two lines of a fixture.
const LINE_MS: u64 = 10;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/parse")
}

fn load_config(dir: &Path) -> MergerConfig {
    let name = dir.file_name().unwrap().to_str().unwrap();
    let format = match name {
        "cri" | "cri-multiline" => LineFormat::Cri,
        "docker" => LineFormat::Docker,
        "plain" => LineFormat::Plain,
        "json" => LineFormat::Json,
        "container" => LineFormat::Container,
        other => panic!("unknown golden directory {other}"),
    };
    let mut cfg = MergerConfig::new(format);
    let mut start = None;
    let mut ml_timeout = 1_000;
    let mut ml_max = 500;
    if let Ok(text) = std::fs::read_to_string(dir.join("config.txt")) {
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').expect("config line is key=value");
            let (k, v) = (k.trim(), v.trim());
            match k {
                "max_record_bytes" => cfg.max_record_bytes = v.parse().unwrap(),
                "partial_timeout_ms" => cfg.partial_timeout_ms = v.parse().unwrap(),
                "json_level" => cfg.json_level = v.parse().unwrap(),
                "multiline_start" => start = Some(v.to_owned()),
                "multiline_timeout_ms" => ml_timeout = v.parse().unwrap(),
                "multiline_max_lines" => ml_max = v.parse().unwrap(),
                other => panic!("{}: unknown key {other}", dir.display()),
            }
        }
    }
    cfg.multiline = start.map(|s| MultilineConfig {
        start_pattern: regex::Regex::new(&s).unwrap(),
        timeout_ms: ml_timeout,
        max_lines: ml_max,
    });
    cfg
}

fn run(cfg: &Arc<MergerConfig>, input: &[u8]) -> Vec<Record<u64>> {
    let mut m = Merger::new(Arc::clone(cfg));
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut now = 0u64;
    while pos < input.len() {
        let (bytes, next) = match memchr::memchr(b'\n', &input[pos..]) {
            Some(i) => (&input[pos..pos + i], pos + i + 1),
            None => (&input[pos..], input.len()),
        };
        m.flush_expired(now, &mut out);
        let line = RawLine {
            bytes,
            start: pos as u64,
            end: next as u64,
            cut: false,
        };
        m.push(line, now, READ_TIME_NS, &mut out);
        pos = next;
        now += LINE_MS;
    }
    m.flush_all(&mut out);
    out
}

fn render(records: &[Record<u64>]) -> String {
    let mut s = String::new();
    for r in records {
        let mut ts = String::new();
        format_rfc3339(r.timestamp_ns, &mut ts);
        let flags: Vec<&str> = r.flags.iter().map(|f| f.as_str()).collect();
        let v = serde_json::json!({
            "timestamp": ts,
            "stream": r.stream,
            "message": r.message,
            "level": r.level,
            "flags": flags,
            "start": r.start,
            "end": r.end,
        });
        writeln!(s, "{v}").unwrap();
    }
    s
}

#[test]
fn golden() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no golden directories under {}",
        root().display()
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in dirs {
        let cfg = Arc::new(load_config(&dir));
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let actual = render(&run(&cfg, &std::fs::read(&log).unwrap()));
            let golden = log.with_extension("ndjson");
            checked += 1;
            if update {
                std::fs::write(&golden, &actual).unwrap();
                continue;
            }
            let expected = std::fs::read_to_string(&golden).unwrap_or_default();
            if expected != actual {
                failures.push(diff(&golden, &expected, &actual));
            }
        }
    }
    assert!(checked > 0, "no golden fixtures found");
    assert!(
        failures.is_empty(),
        "{} golden file(s) differ (rerun with UPDATE_GOLDEN=1 to accept):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn diff(path: &Path, expected: &str, actual: &str) -> String {
    let mut s = format!("--- {}\n", path.display());
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                writeln!(s, "record {}:", i + 1).unwrap();
                writeln!(s, "  expected: {}", x.unwrap_or(&"<none>")).unwrap();
                writeln!(s, "  actual:   {}", y.unwrap_or(&"<none>")).unwrap();
            }
        }
    }
    s
}
