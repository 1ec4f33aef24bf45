//! Collector → Kafka → relay → Elasticsearch, as processes, under faults; against both Kafka
//! brokers (noida-db, tansu), each run writing to both Elasticsearch-API servers (noida-db as
//! ES 8, osmem as OpenSearch) at once.
//!
//! - SIGKILL of the collector and of the relay, several times while containers log: every
//!   record ends up in each Elasticsearch exactly once (ids) and in the relay's embedded index
//!   once (per-stream sequence), and Kafka holds duplicates only within the unacknowledged window.
//! - A broker restart while the consumer group rebalances (one of two relays killed): the relay
//!   loses nothing.

#![allow(clippy::unwrap_used)]

#[path = "../collector/tests/common/kafka.rs"]
#[allow(dead_code)]
mod kafka;

use kafka::{Impl, OwnBroker};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CONTAINERS: usize = 3;

fn es_urls() -> Vec<String> {
    let urls = std::env::var("NEVERMORE_ES_URLS").unwrap_or_default();
    assert!(
        !urls.trim().is_empty(),
        "NEVERMORE_ES_URLS is not set: run `.ci/services start` and source its env file"
    );
    urls.split(',').map(|u| u.trim().to_owned()).collect()
}

/// A `nevermore` process that is killed when dropped (a failing test leaves none behind).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn spawn(sub: &str, config: &Path, log: &Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_nevermore"))
            .args([sub, "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .unwrap(),
    )
}

fn sigkill(c: &mut Child) {
    let _ = c.kill();
    let _ = c.wait();
}

fn sigterm(c: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(c.id().to_string())
        .status();
    let _ = c.wait();
}

/// Appends CRI lines `c<i> seq=<n>` to container `i`.
fn write_lines(pods: &Path, i: usize, from: u64, n: u64) {
    let dir = pods.join(format!("relay_writer-{i}_uid-{i}")).join("app");
    fs::create_dir_all(&dir).unwrap();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("0.log"))
        .unwrap();
    let mut buf = Vec::new();
    for s in from..from + n {
        writeln!(
            buf,
            "2026-11-26T10:00:00.{:09}Z stdout F c{i} seq={s:08} {}",
            s % 1_000_000_000,
            "r".repeat(60)
        )
        .unwrap();
    }
    f.write_all(&buf).unwrap();
}

fn expected(per_container: u64) -> HashSet<String> {
    let mut out = HashSet::new();
    for i in 0..CONTAINERS {
        for s in 0..per_container {
            out.insert(format!("c{i} seq={s:08} {}", "r".repeat(60)));
        }
    }
    out
}

fn collector_config(root: &Path, bootstrap: &str, topic: &str) -> PathBuf {
    let path = root.join("collector.yaml");
    fs::write(
        &path,
        format!(
            "node_name: node-a\ncluster: test\ndata_dir: {data}\ntelemetry: {{listen: off}}\n\
             sources: {{pods: {{type: kubernetes_logs, pods_dir: {pods}}}}}\n\
             sinks:\n  bus: {{type: kafka, bootstrap_servers: \"{bootstrap}\", topic: {topic}, compression: lz4, linger_ms: 20}}\n\
             pipeline: {{batch_timeout_ms: 50, batch_max_records: 200, scan_interval_ms: 300, checkpoint_interval_ms: 100}}\n",
            data = root.join("collector-data").display(),
            pods = root.join("pods").display(),
        ),
    )
    .unwrap();
    path
}

/// A relay config; `instance` is its static group membership id.
fn relay_config(
    root: &Path,
    bootstrap: &str,
    topic: &str,
    group: &str,
    instance: &str,
    index: &str,
) -> PathBuf {
    let urls = es_urls();
    let mut sinks = String::new();
    for (i, url) in urls.iter().enumerate() {
        sinks.push_str(&format!(
            "  es{i}: {{type: elasticsearch, endpoints: [\"{url}\"], index: {index}, flush_interval_ms: 100, \
             retry_max_backoff_ms: 1000, dead_letter: {{file: {dl}}}}}\n",
            dl = root.join(format!("dead-letter-{i}.ndjson")).display()
        ));
    }
    // Every relay of a test also writes one embedded index (the first relay's instance owns it).
    if instance == "relay-a" {
        sinks.push_str(&format!(
            "  local: {{type: embedded, path: {}, commit_interval_ms: 200}}\n",
            root.join("index").display()
        ));
    }
    let path = root.join(format!("relay-{group}-{instance}.yaml"));
    fs::write(
        &path,
        format!(
            "node_name: node-a\ndata_dir: {data}\ntelemetry: {{listen: off}}\n\
             sources: {{pods: {{type: kubernetes_logs, pods_dir: {pods}}}}}\n\
             sinks:\n{sinks}\
             relay:\n  kafka: {{bootstrap_servers: \"{bootstrap}\", topics: [{topic}], group_id: {group}, instance_id: {instance}, session_timeout_ms: 6000}}\n  \
             batch_max_records: 300\n  batch_timeout_ms: 200\n",
            data = root.join("relay-data").display(),
            pods = root.join("pods").display(),
        ),
    )
    .unwrap();
    path
}

/// The messages of an embedded index, with how many records carry each.
fn embedded_messages(dir: &Path) -> HashMap<String, u64> {
    use tantivy::collector::DocSetCollector;
    use tantivy::query::AllQuery;
    use tantivy::schema::Value as _;
    let index = nevermore_index::LogIndex::open(dir).unwrap();
    let reader = index.reader().unwrap();
    let searcher = reader.searcher();
    let mut out = HashMap::new();
    for addr in searcher.search(&AllQuery, &DocSetCollector).unwrap() {
        let doc: tantivy::TantivyDocument = searcher.doc(addr).unwrap();
        let source = doc
            .get_first(index.fields().source)
            .and_then(|v| v.as_bytes())
            .unwrap();
        let record: Value = serde_json::from_slice(source).unwrap();
        *out.entry(record["message"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    out
}

/// Every document of `index` on `url`: message → how many documents carry it.
async fn es_messages(url: &str, index: &str) -> (u64, HashMap<String, u64>) {
    let client = reqwest::Client::new();
    let _ = client.post(format!("{url}/{index}/_refresh")).send().await;
    let count: Value = match client.get(format!("{url}/{index}/_count")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let count = count["count"].as_u64().unwrap_or(0);
    let mut out: HashMap<String, u64> = HashMap::new();
    if count == 0 {
        return (0, out);
    }
    let body =
        serde_json::json!({"size": 10000, "_source": ["message"], "query": {"match_all": {}}});
    let r: Value = client
        .post(format!("{url}/{index}/_search"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for h in r["hits"]["hits"].as_array().unwrap() {
        let m = h["_source"]["message"].as_str().unwrap().to_owned();
        *out.entry(m).or_default() += 1;
    }
    (count, out)
}

/// Waits until every ES server holds `want` documents in `index`, then checks each holds
/// exactly the expected messages, once.
async fn assert_es_exactly(index: &str, want: &HashSet<String>, timeout: Duration) {
    for url in es_urls() {
        let deadline = Instant::now() + timeout;
        let (mut count, mut msgs) = es_messages(&url, index).await;
        while (count as usize) < want.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            (count, msgs) = es_messages(&url, index).await;
        }
        // A little longer: a duplicate would show as more documents.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (count, msgs2) = es_messages(&url, index).await;
        if !msgs2.is_empty() {
            msgs = msgs2;
        }
        let missing = want.iter().filter(|m| !msgs.contains_key(*m)).count();
        let dups: u64 = msgs.values().filter(|n| **n > 1).map(|n| n - 1).sum();
        assert_eq!(
            (count as usize, missing, dups),
            (want.len(), 0, 0),
            "{url}/{index}: (documents, missing, duplicated) records"
        );
    }
}

async fn sigkills(which: Impl) {
    let brokers = kafka::brokers();
    let bootstrap = match which {
        Impl::Noida => brokers[0].clone(),
        Impl::Tansu => brokers[1].clone(),
    };
    // RELAY_KEEP=1 keeps the configs and logs (the path is printed).
    let (_guard, root) = if std::env::var("RELAY_KEEP").is_ok() {
        let kept = tempfile::tempdir().unwrap().keep();
        eprintln!("files in {}", kept.display());
        (None, kept)
    } else {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().to_owned();
        (Some(d), p)
    };
    let root = root.as_path();
    let topic = kafka::unique("relay");
    let index = format!("logs-nevermore-{}", kafka::unique("relay"));
    kafka::create_topics(&bootstrap, &[&topic], 3).await;
    let c_cfg = collector_config(root, &bootstrap, &topic);
    let r_cfg = relay_config(
        root,
        &bootstrap,
        &topic,
        &kafka::unique("g"),
        "relay-a",
        &index,
    );
    let (c_log, r_log) = (root.join("collector.log"), root.join("relay.log"));
    let pods = root.join("pods");

    let mut collector = spawn("collect", &c_cfg, &c_log);
    let mut relay = spawn("relay", &r_cfg, &r_log);
    let per_tick = 10;
    let ticks = 150;
    let mut kills = 0;
    for tick in 0..ticks {
        for i in 0..CONTAINERS {
            write_lines(&pods, i, tick * per_tick, per_tick);
        }
        match tick % 40 {
            15 => {
                sigkill(&mut collector);
                collector = spawn("collect", &c_cfg, &c_log);
                kills += 1;
            }
            30 => {
                sigkill(&mut relay);
                relay = spawn("relay", &r_cfg, &r_log);
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let per_container = ticks * per_tick;
    let want = expected(per_container);
    assert_es_exactly(&index, &want, Duration::from_secs(120)).await;
    sigterm(&mut collector);
    sigterm(&mut relay);
    let in_index = embedded_messages(&root.join("index"));
    let missing = want.iter().filter(|m| !in_index.contains_key(*m)).count();
    let dups: u64 = in_index.values().map(|n| n - 1).sum();
    assert_eq!(
        (missing, dups),
        (0, 0),
        "embedded index: (missing, duplicated) records"
    );

    // Kafka: every record, duplicates only within the unacknowledged window of each kill
    // (at most `max_batches_in_flight` batches of `batch_max_records`).
    let got = tokio::task::spawn_blocking({
        let (b, t) = (bootstrap.clone(), topic.clone());
        let n = want.len();
        move || kafka::consume(&b, &[&t], n, Duration::from_secs(60))
    })
    .await
    .unwrap();
    let mut ids: HashMap<String, u64> = HashMap::new();
    for g in &got {
        *ids.entry(g.payload["event"]["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let dups: u64 = ids.values().map(|n| n - 1).sum();
    assert_eq!(ids.len(), want.len(), "kafka holds every record");
    let window = kills * 4 * 200;
    assert!(
        dups <= window,
        "kafka duplicates {dups} beyond the unacknowledged window {window}"
    );
    eprintln!(
        "{which:?}: {} records, {kills} collector kills, kafka duplicates {dups}, elasticsearch duplicates 0",
        want.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_of_collector_and_relay_lose_and_duplicate_nothing_noida() {
    sigkills(Impl::Noida).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_of_collector_and_relay_lose_and_duplicate_nothing_tansu() {
    sigkills(Impl::Tansu).await;
}

/// Records already in Kafka; two relays in one group (static members, as a StatefulSet would
/// run them: noida-db never drops a dead dynamic member, so its partitions would stay
/// unassigned); one is killed and comes back while the broker restarts (noida-db: stopped and started on its data; tansu, whose storage
/// is in memory: frozen for 10 s). Every record ends up in Elasticsearch once.
async fn broker_restart_mid_rebalance(which: Impl) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut broker = OwnBroker::start(which, &root.join("broker"));
    let bootstrap = broker.bootstrap();
    let topic = kafka::unique("rebal");
    let index = format!("logs-nevermore-{}", kafka::unique("rebal"));
    kafka::create_topics(&bootstrap, &[&topic], 4).await;
    let pods = root.join("pods");
    let per_container = 1500;
    for i in 0..CONTAINERS {
        write_lines(&pods, i, 0, per_container);
    }
    let want = expected(per_container);
    // Fill the topic first and stop the collector (a clean stop: acknowledged = in Kafka).
    let c_cfg = collector_config(root, &bootstrap, &topic);
    let mut collector = spawn("collect", &c_cfg, &root.join("collector.log"));
    let in_kafka = tokio::task::spawn_blocking({
        let (b, t) = (bootstrap.clone(), topic.clone());
        let n = want.len();
        move || kafka::consume(&b, &[&t], n, Duration::from_secs(60))
    })
    .await
    .unwrap();
    sigterm(&mut collector);
    assert!(in_kafka.len() >= want.len(), "the topic holds every record");

    let group = kafka::unique("g");
    let r1_cfg = relay_config(root, &bootstrap, &topic, &group, "relay-1", &index);
    let r2_cfg = relay_config(root, &bootstrap, &topic, &group, "relay-2", &index);
    let mut r1 = spawn("relay", &r1_cfg, &root.join("relay1.log"));
    let mut r2 = spawn("relay", &r2_cfg, &root.join("relay2.log"));
    // Let both join and start writing, then: kill one, restart the broker.
    tokio::time::sleep(Duration::from_secs(5)).await;
    sigkill(&mut r1);
    match which {
        Impl::Noida => {
            broker.stop();
            tokio::time::sleep(Duration::from_secs(2)).await;
            broker.start_again();
        }
        Impl::Tansu => {
            broker.freeze();
            tokio::time::sleep(Duration::from_secs(10)).await;
            broker.thaw();
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut r1 = spawn("relay", &r1_cfg, &root.join("relay1.log"));
    assert_es_exactly(&index, &want, Duration::from_secs(120)).await;
    sigterm(&mut r1);
    sigterm(&mut r2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_rebalance_loses_nothing_noida() {
    broker_restart_mid_rebalance(Impl::Noida).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_rebalance_loses_nothing_tansu() {
    broker_restart_mid_rebalance(Impl::Tansu).await;
}

/// Backpressure: with the broker unavailable, the collector stops reading (its memory stays
/// flat while 30 MB wait on disk), the lag shows in `/metrics`, a warning names the stream
/// whose unread bytes exceed kubelet's rotation budget; when the broker is back, reading
/// resumes where it stopped and every record arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_down_stops_reading_and_names_streams_at_rotation_risk() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let broker = OwnBroker::start(Impl::Tansu, &root.join("broker"));
    let bootstrap = broker.bootstrap();
    let topic = kafka::unique("bp");
    kafka::create_topics(&bootstrap, &[&topic], 1).await;
    let port = kafka::free_port();
    let cfg = root.join("collector.yaml");
    fs::write(
        &cfg,
        format!(
            "node_name: node-a\ndata_dir: {data}\ntelemetry: {{listen: \"127.0.0.1:{port}\"}}\n\
             sources: {{pods: {{type: kubernetes_logs, pods_dir: {pods}}}}}\n\
             sinks:\n  bus: {{type: kafka, bootstrap_servers: \"{bootstrap}\", topic: {topic}}}\n\
             pipeline: {{batch_max_records: 1000, kubelet_container_log_max_size_bytes: 1000000, kubelet_container_log_max_files: 3}}\n",
            data = root.join("data").display(),
            pods = root.join("pods").display(),
        ),
    )
    .unwrap();
    let log = root.join("collector.log");
    let pods = root.join("pods");
    write_lines(&pods, 0, 0, 100);
    let mut collector = spawn("collect", &cfg, &log);
    let got = tokio::task::spawn_blocking({
        let (b, t) = (bootstrap.clone(), topic.clone());
        move || kafka::consume(&b, &[&t], 100, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 100, "delivered before the outage");
    let rss = |pid: u32| -> u64 {
        let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    let rss_before = rss(collector.id());

    broker.freeze();
    // ~30 MB while the broker answers nothing.
    let per_container = 200_000u64;
    for chunk in 0..20 {
        let n = (per_container - 100) / 20;
        write_lines(&pods, 0, 100 + chunk * n, n);
    }
    let total = 100 + (per_container - 100) / 20 * 20;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lag: f64 = metrics
        .lines()
        .find(|l| l.starts_with("nevermore_lag_bytes{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no lag in {metrics}"));
    let rss_during = rss(collector.id());
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        lag > 20e6,
        "the collector stopped reading: {lag} bytes wait on disk"
    );
    assert!(
        rss_during < rss_before + 40 * 1024,
        "memory stays flat: {rss_before} KiB before, {rss_during} KiB with the broker down"
    );
    assert!(
        text.contains("kubelet may delete unread segments") && text.contains("relay_writer-0"),
        "a warning names the stream at risk"
    );

    broker.thaw();
    let got = tokio::task::spawn_blocking({
        let (b, t) = (bootstrap.clone(), topic.clone());
        let n = total as usize;
        move || kafka::consume(&b, &[&t], n, Duration::from_secs(120))
    })
    .await
    .unwrap();
    sigterm(&mut collector);
    let mut seen = HashSet::new();
    for g in &got {
        assert!(
            seen.insert(g.payload["event"]["id"].as_str().unwrap().to_owned()),
            "duplicate"
        );
    }
    assert_eq!(
        seen.len() as u64,
        total,
        "every record after the outage, once"
    );
    eprintln!("backpressure: lag {lag} bytes, rss {rss_before} → {rss_during} KiB");
}
