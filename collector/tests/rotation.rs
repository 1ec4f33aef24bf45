//! The collector against real files: kubelet-style rotation (rename, new file, gzip of the
//! previous segment, deletion of the oldest), copytruncate, restarts from the checkpoint, and a
//! failing sink. Every line must arrive exactly once and in order per stream.
#![allow(clippy::unwrap_used)]

use flate2::write::GzEncoder;
mod common;

use common::{config, start, stop};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A container log written the way kubelet and the container runtime do it.
struct KubeletWriter {
    dir: PathBuf,
    stream_tag: String,
    next: u64,
    rotations: u64,
    file: File,
    /// A CRI `P` chunk is pending: the next line finishes it.
    open_partial: bool,
}

impl KubeletWriter {
    fn new(pods: &Path, pod: &str, container: &str) -> Self {
        let dir = pods.join(format!("ns_{pod}_uid-{pod}")).join(container);
        fs::create_dir_all(&dir).unwrap();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("0.log"))
            .unwrap();
        KubeletWriter {
            dir,
            stream_tag: format!("{pod}/{container}"),
            next: 0,
            rotations: 0,
            file,
            open_partial: false,
        }
    }

    fn line(&mut self, partial_split: bool) {
        let msg = format!("{} seq={:08}", self.stream_tag, self.next);
        let ts = format!(
            "2026-11-26T10:00:{:02}.{:09}Z",
            (self.next / 1_000_000_000) % 60,
            self.next % 1_000_000_000
        );
        if partial_split {
            let (a, b) = msg.split_at(msg.len() / 2);
            writeln!(self.file, "{ts} stdout P {a}").unwrap();
            self.open_partial = true;
            writeln!(self.file, "{ts} stdout F {b}").unwrap();
            self.open_partial = false;
        } else {
            writeln!(self.file, "{ts} stdout F {msg}").unwrap();
        }
        self.next += 1;
    }

    fn write(&mut self, n: usize, partial_every: usize) {
        for i in 0..n {
            self.line(partial_every > 0 && i % partial_every == 0);
        }
        self.file.flush().unwrap();
    }

    /// rename 0.log → 0.log.<stamp>, create a new 0.log; gzip the previous rotated segment;
    /// keep at most `keep` files.
    fn rotate(&mut self, keep: usize) {
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
        self.gzip_previous();
        self.prune(keep);
    }

    fn rotated(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("0.log.")
            })
            .collect();
        v.sort();
        v
    }

    fn gzip_previous(&mut self) {
        let plain: Vec<PathBuf> = self
            .rotated()
            .into_iter()
            .filter(|p| p.extension().is_none_or(|e| e != "gz"))
            .collect();
        // All but the newest rotated plain segment get compressed.
        if plain.len() < 2 {
            return;
        }
        for p in &plain[..plain.len() - 1] {
            let bytes = fs::read(p).unwrap();
            let gz = PathBuf::from(format!("{}.gz", p.display()));
            let tmp = PathBuf::from(format!("{}.tmp", gz.display()));
            let mut enc = GzEncoder::new(File::create(&tmp).unwrap(), flate2::Compression::fast());
            enc.write_all(&bytes).unwrap();
            enc.finish().unwrap();
            fs::rename(&tmp, &gz).unwrap();
            fs::remove_file(p).unwrap();
        }
    }

    fn prune(&mut self, keep: usize) {
        let rotated = self.rotated();
        if rotated.len() + 1 > keep {
            for p in &rotated[..rotated.len() + 1 - keep] {
                fs::remove_file(p).unwrap();
            }
        }
    }

    fn copytruncate(&mut self) {
        self.rotations += 1;
        let stamp = format!("20261126-{:06}", self.rotations);
        fs::copy(
            self.dir.join("0.log"),
            self.dir.join(format!("0.log.{stamp}")),
        )
        .unwrap();
        self.file.set_len(0).unwrap();
    }
}

/// A temporary root with one container `a/app` and the sink's output path.
fn fixture() -> (tempfile::TempDir, PathBuf, KubeletWriter) {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out.ndjson");
    let a = KubeletWriter::new(&root.path().join("pods"), "a", "app");
    (root, out, a)
}

/// stream tag → sequence numbers in delivery order; also checks event.sequence per stream.
fn delivered(out: &Path) -> BTreeMap<String, Vec<u64>> {
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut seqs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let Ok(text) = fs::read_to_string(out) else {
        return m;
    };
    // The sink may be mid-write: only complete lines count.
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let msg = v["message"].as_str().unwrap();
        let (tag, seq) = msg.split_once(" seq=").unwrap();
        m.entry(tag.to_owned())
            .or_default()
            .push(seq.parse().unwrap());
        seqs.entry(tag.to_owned())
            .or_default()
            .push(v["event"]["sequence"].as_u64().unwrap());
    }
    for (tag, s) in &seqs {
        for (i, w) in s.iter().enumerate() {
            assert_eq!(
                *w, i as u64,
                "event.sequence of {tag} has a gap or duplicate at {i}"
            );
        }
    }
    m
}

async fn wait_all(out: &Path, writers: &[&KubeletWriter]) -> BTreeMap<String, Vec<u64>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = delivered(out);
        let done = writers
            .iter()
            .all(|w| d.get(&w.stream_tag).map_or(0, Vec::len) as u64 >= w.next);
        if done || Instant::now() > deadline {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_exact(d: &BTreeMap<String, Vec<u64>>, w: &KubeletWriter) {
    let got = d.get(&w.stream_tag).cloned().unwrap_or_default();
    let want: Vec<u64> = (0..w.next).collect();
    if got != want {
        let first_bad = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{}: got {} records, want {}; first difference at index {first_bad}: got {:?} want {:?}",
            w.stream_tag,
            got.len(),
            want.len(),
            got.get(first_bad),
            want.get(first_bad)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_gzip_and_restart_deliver_every_line_once_in_order() {
    let (root, out, mut a) = fixture();
    let mut b = KubeletWriter::new(&root.path().join("pods"), "b", "app");
    a.write(500, 7);
    b.write(100, 0);
    let r = start(config(root.path(), &out));
    for _ in 0..6 {
        a.write(300, 5);
        a.rotate(4);
        b.write(50, 0);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_exact(&wait_all(&out, &[&a, &b]).await, &a);
    stop(r).await;

    // While stopped: more lines, two rotations (the first rotated segment gets gzipped).
    a.write(200, 3);
    a.rotate(10);
    a.write(200, 0);
    a.rotate(10);
    a.write(100, 0);
    b.write(10, 0);
    let r = start(config(root.path(), &out));
    let d = wait_all(&out, &[&a, &b]).await;
    stop(r).await;
    assert_exact(&d, &a);
    assert_exact(&d, &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_line_at_restart_is_completed_not_duplicated() {
    let (root, out, mut a) = fixture();
    a.write(10, 0);
    // An unfinished P chunk is in the file when the collector stops.
    writeln!(a.file, "2026-11-26T10:00:00.000000001Z stdout P a/app se").unwrap();
    writeln!(
        a.file,
        "2026-11-26T10:00:00.000000001Z stderr F interleaved"
    )
    .unwrap();
    a.file.flush().unwrap();
    let r = start(config(root.path(), &out));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(r).await;
    // The final chunk arrives in the next segment, after a rotation.
    a.rotate(5);
    writeln!(a.file, "2026-11-26T10:00:00.000000002Z stdout F q=00000010").unwrap();
    a.next += 1;
    a.write(5, 0);
    let r = start(config(root.path(), &out));
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop(r).await;
    let text = fs::read_to_string(&out).unwrap();
    assert_eq!(text.matches("interleaved").count(), 1, "{text}");
    let d = delivered_filtered(&out);
    assert_eq!(d, (0..16).collect::<Vec<_>>());
}

fn delivered_filtered(out: &Path) -> Vec<u64> {
    fs::read_to_string(out)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["message"]
                .as_str()
                .unwrap()
                .split_once(" seq=")
                .map(|(_, s)| s.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_reads_the_rest_from_the_copy() {
    let (root, out, mut a) = fixture();
    a.write(100, 0);
    let r = start(config(root.path(), &out));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        a.write(100, 0);
        a.copytruncate();
        a.write(50, 0);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let d = wait_all(&out, &[&a]).await;
    stop(r).await;
    assert_exact(&d, &a);
}

#[derive(Debug, Clone)]
enum Op {
    Write(usize),
    WritePartial(usize),
    Rotate,
    CopyTruncate,
    /// kubelet prunes the oldest rotated segment (once its lines were delivered: deleting
    /// unread bytes is real loss, which the collector counts but cannot undo).
    DeleteOldest,
    Restart,
    /// The sink's directory disappears for a while: writes fail and are retried.
    SinkOutage(u64),
    Pause(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..200).prop_map(Op::Write),
        2 => (1usize..100).prop_map(Op::WritePartial),
        2 => Just(Op::Rotate),
        1 => Just(Op::CopyTruncate),
        1 => Just(Op::DeleteOldest),
        1 => Just(Op::Restart),
        1 => (50u64..400).prop_map(Op::SinkOutage),
        1 => (0u64..100).prop_map(Op::Pause),
    ]
}

/// Waits until `seq` of the writer's stream is in the output.
async fn wait_delivered(out: &Path, tag: &str, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if delivered(out).get(tag).is_some_and(|v| v.contains(&seq)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One run of the model: `ops` against a running collector; every written line must arrive
/// once, in order.
async fn run_model(ops: Vec<Op>) {
    let root = tempfile::tempdir().unwrap();
    let out_dir = root.path().join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("out.ndjson");
    let pods = root.path().join("pods");
    let mut a = KubeletWriter::new(&pods, "a", "app");
    let mut r = Some(start(config(root.path(), &out)));
    for op in ops {
        match op {
            Op::Write(n) => a.write(n, 0),
            Op::WritePartial(n) => a.write(n, 2),
            Op::Rotate => a.rotate(100),
            Op::CopyTruncate => {
                // Applied whether or not the collector caught up: it may be behind, and
                // the writer may re-grow the file past its offset before it looks.
                // Lines written between the copy and the truncation are lost by
                // logrotate itself (its documented race), so the writer, like a
                // well-behaved application here, writes nothing in between.
                a.copytruncate();
            }
            Op::DeleteOldest => {
                if let Some(oldest) = a.rotated().first().cloned() {
                    if a.next > 0 {
                        wait_delivered(&out, &a.stream_tag, a.next - 1).await;
                    }
                    let _ = fs::remove_file(oldest);
                }
            }
            Op::Restart => {
                if let Some(run) = r.take() {
                    stop(run).await;
                }
                r = Some(start(config(root.path(), &out)));
            }
            Op::SinkOutage(ms) => {
                let away = root.path().join("out-away");
                fs::rename(&out_dir, &away).unwrap();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                fs::rename(&away, &out_dir).unwrap();
            }
            Op::Pause(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
    }
    let d = wait_all(&out, &[&a]).await;
    if let Some(run) = r.take() {
        stop(run).await;
    }
    assert_exact(&d, &a);
}

proptest! {
    #![proptest_config(ProptestConfig {
        // MODEL_CASES=500 for a longer run.
        cases: std::env::var("MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
        ..ProptestConfig::default()
    })]
    /// A model test: random writes, partial lines, rotations (rename + gzip), copytruncate,
    /// pruning, restarts and sink outages; the model is "every written line, once, in order",
    /// with consecutive `event.sequence`.
    #[test]
    fn model_random_operations(ops in proptest::collection::vec(op(), 1..25)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run_model(ops));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_copytruncate_of_unread_file() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (root, out, mut a) = fixture();
    let r = start(config(root.path(), &out));
    stop(r).await;
    let r = start(config(root.path(), &out));
    a.copytruncate();
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.write(50, 0);
    a.write(51, 2);
    a.copytruncate();
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.write(33, 0);
    a.write(80, 2);
    a.write(15, 2);
    a.rotate(100);
    a.rotate(100);
    a.write(24, 0);
    let d = wait_all(&out, &[&a]).await;
    stop(r).await;
    assert_exact(&d, &a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_duplicate_at_restart() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    for _ in 0..5 {
        let (root, out, mut a) = fixture();
        let r = start(config(root.path(), &out));
        tokio::time::sleep(Duration::from_millis(46)).await;
        a.rotate(100);
        a.write(139, 0);
        a.write(34, 2);
        tokio::time::sleep(Duration::from_millis(71)).await;
        a.write(105, 0);
        a.rotate(100);
        a.write(72, 0);
        stop(r).await;
        let cp = fs::read_to_string(root.path().join("data/checkpoints.json")).unwrap_or_default();
        let r = start(config(root.path(), &out));
        a.rotate(100);
        a.rotate(100);
        tokio::time::sleep(Duration::from_millis(99)).await;
        a.write(67, 2);
        a.rotate(100);
        let d = wait_all(&out, &[&a]).await;
        stop(r).await;
        let got = d.get(&a.stream_tag).cloned().unwrap_or_default();
        if got != (0..a.next).collect::<Vec<_>>() {
            eprintln!("checkpoint after first stop: {cp}");
            for e in fs::read_dir(a.dir.clone()).unwrap() {
                eprintln!("{:?}", e.unwrap().path());
            }
        }
        assert_exact(&d, &a);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_restart_right_after_rotation() {
    for _ in 0..5 {
        let (root, out, mut a) = fixture();
        let r = start(config(root.path(), &out));
        a.write(59, 0);
        a.write(146, 0);
        a.write(28, 0);
        a.write(44, 0);
        a.rotate(100);
        stop(r).await;
        let cp = fs::read_to_string(root.path().join("data/checkpoints.json")).unwrap_or_default();
        let r = start(config(root.path(), &out));
        a.write(138, 0);
        a.rotate(100);
        tokio::time::sleep(Duration::from_millis(23)).await;
        a.write(90, 2);
        a.write(74, 2);
        a.rotate(100);
        tokio::time::sleep(Duration::from_millis(8)).await;
        stop(r).await;
        let r = start(config(root.path(), &out));
        let d = wait_all(&out, &[&a]).await;
        stop(r).await;
        let got = d.get(&a.stream_tag).cloned().unwrap_or_default();
        if got != (0..a.next).collect::<Vec<_>>() {
            eprintln!("checkpoint after first stop: {cp}");
        }
        assert_exact(&d, &a);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_rotations_before_first_read() {
    let (root, out, mut a) = fixture();
    let r = start(config(root.path(), &out));
    tokio::time::sleep(Duration::from_millis(28)).await;
    a.rotate(100);
    a.write(168, 0);
    a.write(53, 0);
    a.rotate(100);
    a.write(156, 0);
    a.rotate(100);
    let d = wait_all(&out, &[&a]).await;
    stop(r).await;
    assert_exact(&d, &a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_copytruncate_between_rotations_with_restarts() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (root, out, mut a) = fixture();
    let r = start(config(root.path(), &out));
    stop(r).await;
    let r = start(config(root.path(), &out));
    a.rotate(100);
    a.write(168, 0);
    a.write(15, 0);
    a.rotate(100);
    a.write(57, 0);
    a.copytruncate();
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.write(95, 0);
    a.write(5, 2);
    a.write(170, 0);
    a.rotate(100);
    stop(r).await;
    let r = start(config(root.path(), &out));
    let d = wait_all(&out, &[&a]).await;
    stop(r).await;
    assert_exact(&d, &a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_rotations_then_restart_keep_the_first_segment() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    for _ in 0..5 {
        let (root, out, mut a) = fixture();
        let r = start(config(root.path(), &out));
        a.write(75, 2);
        a.write(58, 0);
        a.rotate(100);
        a.rotate(100);
        a.write(39, 0);
        a.rotate(100);
        a.rotate(100);
        stop(r).await;
        let r = start(config(root.path(), &out));
        a.write(50, 0);
        let d = wait_all(&out, &[&a]).await;
        stop(r).await;
        assert_exact(&d, &a);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_write_rotate_write_right_after_start() {
    for _ in 0..10 {
        let (root, out, mut a) = fixture();
        let r = start(config(root.path(), &out));
        a.write(136, 0);
        a.rotate(100);
        a.write(77, 0);
        let d = wait_all(&out, &[&a]).await;
        stop(r).await;
        assert_exact(&d, &a);
    }
}

/// copytruncate twice (each time with the collector caught up), then a rotation that gzips the
/// copies: the copies must not be read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_copies_gzipped_after_copytruncate_are_not_read_again() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    for _ in 0..10 {
        let (root, out, mut a) = fixture();
        let r = start(config(root.path(), &out));
        a.write(71, 0);
        a.rotate(100);
        a.write(238, 0);
        a.rotate(100);
        a.write(155, 0);
        wait_delivered(&out, &a.stream_tag, a.next - 1).await;
        a.copytruncate();
        tokio::time::sleep(Duration::from_millis(50)).await;
        a.write(160, 0);
        wait_delivered(&out, &a.stream_tag, a.next - 1).await;
        a.copytruncate();
        tokio::time::sleep(Duration::from_millis(50)).await;
        a.rotate(100);
        a.write(100, 0);
        let d = wait_all(&out, &[&a]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let d2 = delivered(&out);
        stop(r).await;
        assert_eq!(d, d2, "records arrived after all were delivered");
        assert_exact(&d2, &a);
    }
}

/// The collector's sink is away: it reads until every batch permit is taken, then stops, far
/// behind the writer. A long scan interval keeps the periodic scan from looking at the file
/// meanwhile, so the tailer's next read is the first to meet the truncated file.
fn blocked_config(root: &Path, out: &Path) -> nevermore_collector::config::CollectorConfig {
    let mut cfg = config(root, out);
    cfg.pipeline.scan_interval = Duration::from_secs(3600);
    cfg
}

/// Fixture with the sink's output in its own directory (renamed away for an outage).
fn fixture_out_dir() -> (tempfile::TempDir, PathBuf, PathBuf, KubeletWriter) {
    let root = tempfile::tempdir().unwrap();
    let out_dir = root.path().join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("out.ndjson");
    let a = KubeletWriter::new(&root.path().join("pods"), "a", "app");
    (root, out_dir, out, a)
}

/// copytruncate while the collector is stopped behind the writer, and the truncated file
/// re-grown past the checkpointed offset before it starts again: the rest of the old content
/// comes from the copy, then the new file from its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_while_stopped_and_regrown_past_the_checkpoint() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (root, out, mut a) = fixture();
    a.write(100, 0);
    let r = start(config(root.path(), &out));
    wait_delivered(&out, &a.stream_tag, a.next - 1).await;
    stop(r).await;
    a.write(200, 0);
    a.copytruncate();
    a.write(700, 3);
    let r = start(config(root.path(), &out));
    let d = wait_all(&out, &[&a]).await;
    stop(r).await;
    assert_exact(&d, &a);
}

/// The collector is running but behind (its sink is away, every batch permit taken) when the
/// file is copied and truncated, and the writer re-grows it past the collector's offset
/// before the collector reads again: the size never looks smaller than the offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_while_behind_and_regrown_past_the_offset() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    for copies in 1..=2 {
        let (root, out_dir, out, mut a) = fixture_out_dir();
        a.write(10, 0);
        let r = start(blocked_config(root.path(), &out));
        wait_delivered(&out, &a.stream_tag, a.next - 1).await;
        let away = root.path().join("out-away");
        fs::rename(&out_dir, &away).unwrap();
        // Far more than the permits let the collector read (4 batches of one 64 KiB chunk).
        a.write(20_000, 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..copies {
            a.copytruncate();
            a.write(3_000, 5);
        }
        a.write(30_000, 0);
        fs::rename(&away, &out_dir).unwrap();
        let d = wait_all(&out, &[&a]).await;
        stop(r).await;
        assert_exact(&d, &a);
    }
}

/// Behind on an older (renamed) segment while the live file, not yet started, is copied and
/// truncated twice, with scans in between (the tailer scans while it waits for a permit): the
/// copies are read in their order, before what the live file holds now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncates_of_an_unstarted_live_file_keep_their_order() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (root, out_dir, out, mut a) = fixture_out_dir();
    let mut cfg = config(root.path(), &out);
    cfg.pipeline.scan_interval = Duration::from_millis(100);
    a.write(10, 0);
    let r = start(cfg);
    wait_delivered(&out, &a.stream_tag, a.next - 1).await;
    let away = root.path().join("out-away");
    fs::rename(&out_dir, &away).unwrap();
    a.write(20_000, 0);
    let scan = || tokio::time::sleep(Duration::from_millis(400));
    scan().await;
    a.rotate(100);
    a.write(1_000, 0);
    scan().await;
    a.copytruncate();
    a.write(2_000, 0);
    scan().await;
    a.copytruncate();
    a.write(3_000, 0);
    scan().await;
    fs::rename(&away, &out_dir).unwrap();
    let d = wait_all(&out, &[&a]).await;
    stop(r).await;
    assert_exact(&d, &a);
}

/// Found by the model: copied and truncated while behind, then a restart at once (the final
/// checkpoint names the truncated file at an offset its copy holds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_restart_right_after_copytruncate_while_behind() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    for _ in 0..5 {
        let (root, out_dir, out, mut a) = fixture_out_dir();
        let r = start(config(root.path(), &out));
        tokio::time::sleep(Duration::from_millis(86)).await;
        a.copytruncate();
        a.write(99, 2);
        a.write(106, 0);
        wait_delivered(&out, &a.stream_tag, a.next - 1).await;
        let _ = fs::remove_file(a.rotated().first().unwrap());
        a.write(25, 2);
        a.copytruncate();
        stop(r).await;
        let r = start(config(root.path(), &out));
        a.write(101, 0);
        a.write(80, 0);
        a.write(110, 0);
        a.write(6, 2);
        let away = root.path().join("out-away");
        fs::rename(&out_dir, &away).unwrap();
        tokio::time::sleep(Duration::from_millis(354)).await;
        fs::rename(&away, &out_dir).unwrap();
        tokio::time::sleep(Duration::from_millis(52)).await;
        a.rotate(100);
        a.write(173, 0);
        let d = wait_all(&out, &[&a]).await;
        stop(r).await;
        assert_exact(&d, &a);
    }
}

/// The collector starts while logrotate is still copying (copytruncate copies, then
/// truncates): the copy is listed half-written, ending mid-line, next to its original. Reading
/// goes on in the original instead of ending the copy early (a cut line) and reading the
/// original again from its start (duplicates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_starting_during_the_copy_of_copytruncate() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (root, out, mut a) = fixture();
    a.write(300, 2);
    let bytes = fs::read(a.dir.join("0.log")).unwrap();
    let copy = a.dir.join("0.log.20261126-000001");
    let half = bytes.len() / 2 + 7;
    fs::write(&copy, &bytes[..half]).unwrap();
    let r = start(config(root.path(), &out));
    tokio::time::sleep(Duration::from_millis(500)).await;
    OpenOptions::new()
        .append(true)
        .open(&copy)
        .unwrap()
        .write_all(&bytes[half..])
        .unwrap();
    a.file.set_len(0).unwrap();
    a.write(400, 0);
    let d = wait_all(&out, &[&a]).await;
    stop(r).await;
    assert_exact(&d, &a);
}
