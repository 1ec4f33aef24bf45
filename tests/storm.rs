//! The rotation storm: several containers write fast and are rotated kubelet-style (rename
//! `0.log` → `0.log.<ts>`, new `0.log`, gzip the previous rotated segment, keep at most N files)
//! while `nevermore collect` runs with a file sink and is killed with SIGKILL several times.
//!
//! Afterwards every line of every container must be in the sink, in order. A SIGKILL can leave
//! records that were written but not yet acknowledged: they are sent again after the restart with
//! the same `event.id` and `event.sequence` (so an id-keyed store such as Elasticsearch holds them
//! once). The test collapses those by id, checks each repeat is identical to its first delivery,
//! and that repeats are bounded by the unacknowledged window.
//!
//! An embedded index sink runs beside the file sink: there, the writer's replay check must leave
//! every record exactly once, whatever the SIGKILLs interrupted (a commit, a checkpoint).

#![allow(clippy::unwrap_used)]

use flate2::write::GzEncoder;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CONTAINERS: usize = 4;
const ROTATE_BYTES: u64 = 512 << 10;
// kubelet deletes what is beyond this: the retention must outlast a restart of the (debug)
// collector on a loaded machine, or lines are really lost (and counted, and this test fails).
const KEEP_FILES: usize = 40;

struct Container {
    dir: PathBuf,
    tag: String,
    file: File,
    written: u64,
    next: u64,
    rotations: u64,
}

impl Container {
    fn new(pods: &Path, i: usize) -> Self {
        let dir = pods
            .join(format!("storm_writer-{i}_uid-{i:04}"))
            .join("app");
        fs::create_dir_all(&dir).unwrap();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("0.log"))
            .unwrap();
        Container {
            dir,
            tag: format!("c{i}"),
            file,
            written: 0,
            next: 0,
            rotations: 0,
        }
    }

    fn write_lines(&mut self, n: u64, buf: &mut Vec<u8>) {
        buf.clear();
        for _ in 0..n {
            let s = self.next;
            // ~200 bytes a line; every 7th line is split into a CRI partial pair.
            if s % 7 == 3 {
                writeln!(
                    buf,
                    "2026-11-26T10:00:00.{:09}Z stdout P {} seq={:010} {}",
                    s % 1_000_000_000,
                    self.tag,
                    s,
                    "p".repeat(60)
                )
                .unwrap();
                writeln!(
                    buf,
                    "2026-11-26T10:00:00.{:09}Z stdout F {}",
                    s % 1_000_000_000,
                    "q".repeat(90)
                )
                .unwrap();
            } else {
                writeln!(
                    buf,
                    "2026-11-26T10:00:00.{:09}Z stdout F {} seq={:010} {}",
                    s % 1_000_000_000,
                    self.tag,
                    s,
                    "x".repeat(150)
                )
                .unwrap();
            }
            self.next += 1;
        }
        self.file.write_all(buf).unwrap();
        self.written += buf.len() as u64;
        if self.written >= ROTATE_BYTES {
            self.rotate();
        }
    }

    /// Rotated segments, oldest first.
    fn rotated(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("0.log.")
            })
            .collect();
        v.sort();
        v
    }

    fn rotate(&mut self) {
        self.rotations += 1;
        let stamp = format!("20261126-{:06}", self.rotations);
        fs::rename(
            self.dir.join("0.log"),
            self.dir.join(format!("0.log.{stamp}")),
        )
        .unwrap();
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("0.log"))
            .unwrap();
        self.written = 0;
        let rotated = self.rotated();
        let plain: Vec<&PathBuf> = rotated
            .iter()
            .filter(|p| p.extension().is_none_or(|e| e != "gz"))
            .collect();
        if plain.len() >= 2 {
            for p in &plain[..plain.len() - 1] {
                let bytes = fs::read(p).unwrap();
                let gz = PathBuf::from(format!("{}.gz", p.display()));
                let tmp = PathBuf::from(format!("{}.tmp", gz.display()));
                let mut enc =
                    GzEncoder::new(File::create(&tmp).unwrap(), flate2::Compression::fast());
                enc.write_all(&bytes).unwrap();
                enc.finish().unwrap();
                fs::rename(&tmp, &gz).unwrap();
                fs::remove_file(p).unwrap();
            }
        }
        let rotated = self.rotated();
        if rotated.len() + 1 > KEEP_FILES {
            for p in &rotated[..rotated.len() + 1 - KEEP_FILES] {
                fs::remove_file(p).unwrap();
            }
        }
    }
}

fn start_collector(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nevermore"))
        .args(["collect", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

#[derive(Debug)]
struct Seen {
    seq_in_msg: u64,
    sequence: u64,
    line: String,
}

#[test]
fn rotation_storm_with_sigkill_loses_nothing_and_keeps_order() {
    let rate: u64 = std::env::var("STORM_LINES_PER_SEC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let total_per_container: u64 = std::env::var("STORM_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    storm(rate, total_per_container, false);
}

/// The same storm into the embedded index too, slower: indexing costs more CPU than appending
/// to a file, and a collector that falls behind kubelet's retention really loses lines.
#[test]
fn embedded_index_holds_every_record_once_across_sigkills() {
    storm(20_000, 30_000, true);
}

fn storm(rate: u64, total_per_container: u64, with_index: bool) {
    let guard = tempfile::tempdir().unwrap();
    let root_dir = guard.path().to_path_buf();
    // STORM_KEEP=1 keeps the files (pods, sink, collector log) for a post-mortem.
    let _guard = if std::env::var_os("STORM_KEEP").is_some() {
        eprintln!("storm: files kept in {}", guard.keep().display());
        None
    } else {
        Some(guard)
    };
    let pods = root_dir.join("pods");
    let out = root_dir.as_path().join("out.ndjson");
    let config = root_dir.as_path().join("config.yaml");
    fs::write(
        &config,
        format!(
            "node_name: storm\ncluster: storm\ndata_dir: {}\ntelemetry: {{listen: \"off\"}}\n\
             pipeline: {{scan_interval_ms: 500, checkpoint_interval_ms: 100, batch_timeout_ms: 50}}\n\
             sources:\n  pods: {{type: kubernetes_logs, pods_dir: {}}}\n\
             sinks:\n  out: {{type: file, path: {}}}\n{}",
            root_dir.as_path().join("data").display(),
            pods.display(),
            out.display(),
            if with_index {
                "  index: {type: embedded, commit_interval_ms: 200}\n"
            } else {
                ""
            }
        ),
    )
    .unwrap();
    let mut containers: Vec<Container> =
        (0..CONTAINERS).map(|i| Container::new(&pods, i)).collect();
    let log = root_dir.as_path().join("collector.log");
    let mut collector = start_collector(&config, &log);

    // Writers: round-robin in chunks, paced to the total rate; three SIGKILLs along the way.
    let started = Instant::now();
    let chunk = 50u64;
    let mut buf = Vec::new();
    let kills_at = [0.25, 0.5, 0.75];
    let mut kills = 0;
    let total = total_per_container * CONTAINERS as u64;
    let mut written = 0u64;
    while written < total {
        for c in containers.iter_mut() {
            let n = chunk.min(total_per_container - c.next);
            if n > 0 {
                c.write_lines(n, &mut buf);
                written += n;
            }
        }
        let progress = written as f64 / total as f64;
        if kills < kills_at.len() && progress >= kills_at[kills] {
            collector.kill().unwrap(); // SIGKILL
            collector.wait().unwrap();
            collector = start_collector(&config, &log);
            kills += 1;
        }
        let due = Duration::from_secs_f64(written as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let write_secs = started.elapsed().as_secs_f64();

    // Wait until every container's last line arrived.
    let deadline = Instant::now() + Duration::from_secs(120);
    let last: Vec<String> = containers
        .iter()
        .map(|c| format!("{} seq={:010}", c.tag, c.next - 1))
        .collect();
    loop {
        let text = fs::read_to_string(&out).unwrap_or_default();
        if last.iter().all(|l| text.contains(l.as_str())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all lines arrived; collector log:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(collector.id().to_string())
        .status();
    let status = collector.wait().unwrap();
    assert!(status.success(), "collector exited with {status}");

    // Check: per container, distinct records in order, repeats identical to their first delivery.
    let mut by_id: HashMap<String, (String, u64)> = HashMap::new();
    let mut order: HashMap<String, Vec<Seen>> = HashMap::new();
    let mut repeats = 0u64;
    for line in BufReader::new(File::open(&out).unwrap()).lines() {
        let line = line.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let msg = v["message"].as_str().unwrap().to_owned();
        let id = v["event"]["id"].as_str().unwrap().to_owned();
        let sequence = v["event"]["sequence"].as_u64().unwrap();
        if let Some((m, s)) = by_id.get(&id) {
            if (m, *s) != (&msg, sequence) {
                let log_text = fs::read_to_string(&log).unwrap_or_default();
                let warnings: Vec<&str> = log_text
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .collect();
                panic!(
                    "a repeated event.id carries another record: first ({m:.30}, {s}), then ({msg:.30}, {sequence}); collector warnings:\n{}",
                    warnings.join("\n")
                );
            }
            repeats += 1;
            continue;
        }
        by_id.insert(id, (msg.clone(), sequence));
        let (tag, rest) = msg.split_once(" seq=").unwrap();
        let seq_in_msg: u64 = rest[..10].parse().unwrap();
        order.entry(tag.to_owned()).or_default().push(Seen {
            seq_in_msg,
            sequence,
            line: line.chars().take(400).collect(),
        });
    }
    for c in &containers {
        let seen = &order[&c.tag];
        if let Some(bad) = seen
            .iter()
            .enumerate()
            .position(|(i, s)| s.seq_in_msg != i as u64)
        {
            let lo = bad.saturating_sub(2);
            let around: Vec<&str> = seen[lo..(bad + 3).min(seen.len())]
                .iter()
                .map(|s| s.line.as_str())
                .collect();
            let log_text = fs::read_to_string(&log).unwrap_or_default();
            let warnings: Vec<&str> = log_text.lines().filter(|l| !l.contains("INFO")).collect();
            panic!(
                "{}: record {bad} out of place:\n{}\ncollector log:\n{}",
                c.tag,
                around.join("\n"),
                warnings.join("\n")
            );
        }
        assert_eq!(seen.len() as u64, c.next, "{}: distinct records", c.tag);
        for (i, s) in seen.iter().enumerate() {
            assert_eq!(s.seq_in_msg, i as u64, "{}: line order", c.tag);
            assert_eq!(s.sequence, i as u64, "{}: event.sequence", c.tag);
        }
    }
    // Each SIGKILL may repeat at most what was in flight (4 batches of 4096 records) and, with
    // the index, what its commit acknowledged at once but the next checkpoint tick had not yet
    // recorded (up to the same 4 batches).
    let window = if with_index { 2 * 4 * 4096 } else { 4 * 4096 };
    assert!(repeats <= 3 * window, "{repeats} repeated records");
    if with_index {
        check_index(&root_dir.as_path().join("data").join("index"), &containers);
    }
    let rotations: u64 = containers.iter().map(|c| c.rotations).sum();
    eprintln!(
        "storm: {total} lines in {write_secs:.1}s ({:.0} lines/s), {rotations} rotations, 3 SIGKILLs, {repeats} records repeated after kills",
        total as f64 / write_secs
    );
}

/// The embedded index holds each record once, and each stream's sequences without a gap.
fn check_index(dir: &Path, containers: &[Container]) {
    use tantivy::collector::DocSetCollector;
    use tantivy::query::AllQuery;
    use tantivy::schema::Value as _;
    let index = nevermore_index::LogIndex::open(dir).unwrap();
    let reader = index.index().reader().unwrap();
    let searcher = reader.searcher();
    let docs = searcher.search(&AllQuery, &DocSetCollector).unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut by_stream: HashMap<String, Vec<u64>> = HashMap::new();
    for addr in docs {
        let doc: tantivy::TantivyDocument = searcher.doc(addr).unwrap();
        let src = doc
            .get_first(index.fields().source)
            .and_then(|v| v.as_bytes())
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(src).unwrap();
        let id = v["event"]["id"].as_str().unwrap().to_owned();
        assert!(ids.insert(id.clone()), "record {id} is in the index twice");
        let tag = v["message"]
            .as_str()
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_owned();
        by_stream
            .entry(tag)
            .or_default()
            .push(v["event"]["sequence"].as_u64().unwrap());
    }
    for c in containers {
        let mut seqs = by_stream.remove(&c.tag).unwrap_or_default();
        seqs.sort_unstable();
        assert_eq!(seqs.len() as u64, c.next, "{}: records in the index", c.tag);
        assert!(
            seqs.iter().enumerate().all(|(i, s)| *s == i as u64),
            "{}: sequence gap",
            c.tag
        );
    }
}
