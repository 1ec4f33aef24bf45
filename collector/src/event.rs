//! What flows from the tailer to the sinks: events in batches, with the checkpoint marks that
//! their acknowledgement commits.

use nevermore_parse::Flags;
use nevermore_schemas::StreamCheckpoint;
use nevermore_schemas::record::{
    Cluster, Container, Event as EventFields, Host, Kubernetes, Level, Log, LogFile, LogRecord,
    Node, Orchestrator, Pod, StdStream, Workload,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// What every record of a stream shares; built once per stream.
#[derive(Debug)]
pub struct StreamInfo {
    /// Index of the source in the config (sinks route by it).
    pub source: usize,
    /// The stream key's text form (checkpoints, event ids).
    pub key: Arc<str>,
    pub kubernetes: Option<Kubernetes>,
    pub cluster: String,
    pub node: String,
    pub dataset: String,
    /// `"kubernetes":{..},"orchestrator":{..},"host":{..}` pre-encoded, so encoding a record
    /// writes only what changes per record.
    shared_json: String,
    dataset_json: String,
    /// Hash of (cluster, node, stream): the seed of every event id of the stream, and
    /// `event.stream_id`.
    id_seed: u64,
}

impl StreamInfo {
    /// The deterministic event id of a record of this stream.
    pub fn event_id(&self, fingerprint: u64, offset: u64) -> u64 {
        event_id_seeded(self.id_seed, fingerprint, offset)
    }

    /// `event.stream_id` as a number (its 16 hex digits).
    pub fn stream_id(&self) -> u64 {
        self.id_seed
    }

    pub fn new(
        source: usize,
        key: Arc<str>,
        kubernetes: Option<Kubernetes>,
        cluster: String,
        node: String,
        dataset: String,
    ) -> Self {
        let mut shared_json = String::new();
        if let Some(k) = &kubernetes {
            shared_json.push_str("\"kubernetes\":");
            shared_json.push_str(&serde_json::to_string(k).unwrap_or_else(|_| "{}".into()));
            shared_json.push(',');
        }
        let _ = write!(
            shared_json,
            "\"orchestrator\":{{\"cluster\":{{\"name\":{}}}}},\"host\":{{\"name\":{}}}",
            json_str(&cluster),
            json_str(&node)
        );
        let dataset_json = json_str(&dataset);
        let id_seed = id_seed(&cluster, &node, &key);
        StreamInfo {
            id_seed,
            source,
            key,
            kubernetes,
            cluster,
            node,
            dataset,
            shared_json,
            dataset_json,
        }
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The path of a segment as recorded in `log.file.path`, with its JSON form cached.
#[derive(Debug)]
pub struct SegmentPath {
    pub path: String,
    json: String,
}

impl SegmentPath {
    pub fn new(path: String) -> Self {
        let json = json_str(&path);
        SegmentPath { path, json }
    }
}

/// One record on its way to the sinks.
#[derive(Debug)]
pub struct Event {
    pub stream: Arc<StreamInfo>,
    pub path: Arc<SegmentPath>,
    pub timestamp_ns: i64,
    pub std: Option<StdStream>,
    pub message: String,
    pub level: Option<Level>,
    pub flags: Flags,
    pub offset: u64,
    pub sequence: u64,
    pub id: u64,
}

impl Event {
    /// The record as the schema type (slow path: tests, the embedded index).
    pub fn to_record(&self) -> LogRecord {
        let mut ts = String::with_capacity(32);
        nevermore_parse::time::format_rfc3339(self.timestamp_ns, &mut ts);
        LogRecord {
            timestamp: ts,
            message: self.message.clone(),
            stream: self.std,
            log: Log {
                level: self.level,
                file: LogFile {
                    path: self.path.path.clone(),
                },
                offset: self.offset,
                flags: self.flags.iter().collect(),
            },
            kubernetes: self.stream.kubernetes.clone(),
            orchestrator: Orchestrator {
                cluster: Cluster {
                    name: self.stream.cluster.clone(),
                },
            },
            host: Host {
                name: self.stream.node.clone(),
            },
            event: EventFields {
                id: format!("{:016x}", self.id),
                stream_id: format!("{:016x}", self.stream.id_seed),
                sequence: self.sequence,
                dataset: self.stream.dataset.clone(),
            },
        }
    }

    /// Appends the record as one line of JSON (with `\n`). Same bytes as serialising
    /// [`Event::to_record`] with serde_json; see [`JsonEncoder`] for the fast path.
    pub fn encode_json(&self, out: &mut Vec<u8>) {
        JsonEncoder::default().encode(self, out);
    }
}

/// Encodes events as NDJSON, remembering the last formatted second (records of a batch mostly
/// share it).
#[derive(Debug, Default)]
pub struct JsonEncoder {
    last_sec: Option<i64>,
    ts: [u8; 30],
}

impl JsonEncoder {
    pub fn encode(&mut self, ev: &Event, out: &mut Vec<u8>) {
        let secs = ev.timestamp_ns.div_euclid(1_000_000_000);
        if self.last_sec != Some(secs) {
            nevermore_parse::time::write_seconds(secs, &mut self.ts);
            self.ts[29] = b'Z';
            self.last_sec = Some(secs);
        }
        nevermore_parse::time::put_digits(
            &mut self.ts[20..29],
            ev.timestamp_ns.rem_euclid(1_000_000_000),
        );
        out.extend_from_slice(b"{\"@timestamp\":\"");
        out.extend_from_slice(&self.ts);
        out.extend_from_slice(b"\",\"message\":");
        push_json_str(out, &ev.message);
        match ev.std {
            Some(StdStream::Stdout) => out.extend_from_slice(b",\"stream\":\"stdout\""),
            Some(StdStream::Stderr) => out.extend_from_slice(b",\"stream\":\"stderr\""),
            None => {}
        }
        out.extend_from_slice(b",\"log\":{");
        if let Some(level) = ev.level {
            out.extend_from_slice(b"\"level\":\"");
            out.extend_from_slice(level.as_str().as_bytes());
            out.extend_from_slice(b"\",");
        }
        out.extend_from_slice(b"\"file\":{\"path\":");
        out.extend_from_slice(ev.path.json.as_bytes());
        out.extend_from_slice(b"},\"offset\":");
        push_u64(out, ev.offset);
        if !ev.flags.is_empty() {
            out.extend_from_slice(b",\"flags\":[");
            for (i, f) in ev.flags.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(f.as_str().as_bytes());
                out.push(b'"');
            }
            out.push(b']');
        }
        out.extend_from_slice(b"},");
        out.extend_from_slice(ev.stream.shared_json.as_bytes());
        out.extend_from_slice(b",\"event\":{\"id\":\"");
        push_hex16(out, ev.id);
        out.extend_from_slice(b"\",\"stream_id\":\"");
        push_hex16(out, ev.stream.id_seed);
        out.extend_from_slice(b"\",\"sequence\":");
        push_u64(out, ev.sequence);
        out.extend_from_slice(b",\"dataset\":");
        out.extend_from_slice(ev.stream.dataset_json.as_bytes());
        out.extend_from_slice(b"}}\n");
    }
}

/// A JSON string. Most log lines need no escaping: check that with a loop the compiler
/// vectorises, and copy them whole.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let needs = b.iter().fold(false, |acc, &c| {
        acc | (c < 0x20) | (c == b'"') | (c == b'\\')
    });
    if needs {
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(b.len() + 2);
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
    }
}

fn push_hex16(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for (i, c) in buf.iter_mut().enumerate() {
        *c = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    out.extend_from_slice(&buf);
}

fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = itoa_buf(v);
    out.extend_from_slice(buf.as_bytes_mut());
}

/// Small integer formatting without allocation.
fn itoa_buf(mut v: u64) -> DigitBuf {
    let mut b = DigitBuf {
        bytes: [0; 20],
        start: 20,
    };
    loop {
        b.start -= 1;
        b.bytes[b.start] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    b
}

struct DigitBuf {
    bytes: [u8; 20],
    start: usize,
}

impl DigitBuf {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

/// The deterministic event id: hash of (cluster, node, stream, segment fingerprint, offset).
pub fn event_id(cluster: &str, node: &str, stream: &str, fingerprint: u64, offset: u64) -> u64 {
    event_id_seeded(id_seed(cluster, node, stream), fingerprint, offset)
}

/// The per-stream part of the id, computed once per stream.
fn id_seed(cluster: &str, node: &str, stream: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [cluster, node, stream] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.digest()
}

fn event_id_seeded(seed: u64, fingerprint: u64, offset: u64) -> u64 {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&fingerprint.to_le_bytes());
    b[8..].copy_from_slice(&offset.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64_with_seed(&b, seed)
}

/// What the acknowledgement of a batch commits for one stream.
#[derive(Debug, Clone)]
pub enum Mark {
    Advance {
        stream: Arc<str>,
        checkpoint: StreamCheckpoint,
    },
    /// The stream ended (its files are gone and everything was delivered).
    Remove { stream: Arc<str> },
}

/// A batch: events in delivery order, and the marks that its acknowledgement commits.
#[derive(Debug, Default)]
pub struct Batch {
    pub id: u64,
    pub events: Vec<Event>,
    pub marks: Vec<Mark>,
    /// Message bytes in `events` (for batch_max_bytes).
    pub bytes: usize,
}

/// Builds the Kubernetes part of records from a pod log path.
pub fn kubernetes_fields(
    pc: &crate::discover::PodContainer,
    node: &str,
    labels: BTreeMap<String, String>,
) -> Kubernetes {
    Kubernetes {
        namespace: pc.namespace.clone(),
        pod: Pod {
            name: pc.pod.clone(),
            uid: pc.uid.clone(),
        },
        container: Container {
            name: pc.container.clone(),
            restart_count: pc.restart,
        },
        node: Node {
            name: node.to_owned(),
        },
        workload: Some(Workload {
            name: workload_name(&pc.pod).to_owned(),
        }),
        labels,
    }
}

/// The characters of the random suffixes Kubernetes generates for pod and ReplicaSet names.
const GENERATED: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The workload a pod belongs to, from its name alone (no API server on the node): strips a
/// Deployment's `-<replicaset hash>-<suffix>`, a DaemonSet's or Job's `-<suffix>` (and a
/// CronJob's `-<minutes>` before it), or a StatefulSet's `-<ordinal>`. Other names (static
/// pods) are their own workload.
pub fn workload_name(pod: &str) -> &str {
    let generated = |s: &str, len: std::ops::RangeInclusive<usize>| {
        len.contains(&s.len()) && s.bytes().all(|b| GENERATED.contains(&b))
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some((head, last)) = pod.rsplit_once('-').filter(|(h, _)| !h.is_empty()) else {
        return pod;
    };
    if generated(last, 5..=5) {
        if let Some((owner, mid)) = head.rsplit_once('-').filter(|(h, _)| !h.is_empty())
            && (generated(mid, 6..=10) || digits(mid))
        {
            return owner;
        }
        return head;
    }
    if digits(last) {
        return head;
    }
    pod
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn workloads_from_pod_names() {
        for (pod, want) in [
            ("api-7d9f8c6b5-x2x9k", "api"),
            ("shop-api-7d9f8c6b5-x2x9k", "shop-api"),
            ("node-exporter-x2x9k", "node-exporter"),
            ("db-0", "db"),
            ("db-12", "db"),
            ("backup-29012345-x2x9k", "backup"),
            ("kube-apiserver-node-a", "kube-apiserver-node-a"),
            ("api", "api"),
            ("-0", "-0"),
            ("api-7d9f", "api-7d9f"),
        ] {
            assert_eq!(workload_name(pod), want, "{pod}");
        }
    }
    use nevermore_schemas::record::LogFlag;
    use proptest::prelude::*;

    fn info(k8s: bool) -> Arc<StreamInfo> {
        let pc = crate::discover::PodContainer {
            namespace: "shop".into(),
            pod: "api-7d9f".into(),
            uid: "5c1e".into(),
            container: "api".into(),
            restart: 2,
        };
        Arc::new(StreamInfo::new(
            0,
            "k8s:shop_api-7d9f_5c1e/api/2".into(),
            k8s.then(|| kubernetes_fields(&pc, "node-a", BTreeMap::new())),
            "prod \"eu\"".into(),
            "node-a".into(),
            "container".into(),
        ))
    }

    proptest! {
        #[test]
        fn fast_encoding_equals_serde(
            message in ".*", ts in 0i64..4_000_000_000_000_000_000, offset in any::<u64>(),
            seq in any::<u64>(), id in any::<u64>(), k8s in any::<bool>(), lvl in 0usize..7,
            flags in 0u8..32, std in 0u8..3,
        ) {
            let mut f = Flags::default();
            for (i, flag) in [LogFlag::Partial, LogFlag::Multiline, LogFlag::Truncated, LogFlag::InvalidUtf8, LogFlag::Unterminated].into_iter().enumerate() {
                if flags & (1 << i) != 0 { f.insert(flag); }
            }
            let ev = Event {
                stream: info(k8s),
                path: Arc::new(SegmentPath::new("/var/log/pods/a\\b/0.log".into())),
                timestamp_ns: ts,
                std: [None, Some(StdStream::Stdout), Some(StdStream::Stderr)][std as usize],
                message,
                level: [None, Some(Level::Trace), Some(Level::Debug), Some(Level::Info), Some(Level::Warn), Some(Level::Error), Some(Level::Fatal)][lvl],
                flags: f,
                offset,
                sequence: seq,
                id,
            };
            let mut out = Vec::new();
            ev.encode_json(&mut out);
            prop_assert_eq!(out.last(), Some(&b'\n'));
            let expected = serde_json::to_vec(&ev.to_record()).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&out[..out.len() - 1]), String::from_utf8_lossy(&expected));
        }
    }

    proptest! {
        #[test]
        fn one_encoder_for_many_events_equals_serde(ts in proptest::collection::vec(0i64..4_000_000_000_000_000_000, 1..20), spread in 0i64..3_000_000_000) {
            let mut enc = JsonEncoder::default();
            let mut t = ts[0];
            for (i, extra) in ts.iter().enumerate() {
                t += extra % spread.max(1);
                let ev = Event {
                    stream: info(true),
                    path: Arc::new(SegmentPath::new("p".into())),
                    timestamp_ns: t,
                    std: None,
                    message: format!("line {i} \"quoted\" \u{7}"),
                    level: None,
                    flags: Flags::default(),
                    offset: i as u64,
                    sequence: i as u64,
                    id: *extra as u64,
                };
                let mut out = Vec::new();
                enc.encode(&ev, &mut out);
                let expected = serde_json::to_vec(&ev.to_record()).unwrap();
                prop_assert_eq!(&out[..out.len() - 1], &expected[..]);
            }
        }
    }

    #[test]
    fn event_ids_differ_by_every_part() {
        let base = event_id("c", "n", "s", 1, 2);
        assert_ne!(base, event_id("c2", "n", "s", 1, 2));
        assert_ne!(base, event_id("c", "n2", "s", 1, 2));
        assert_ne!(base, event_id("c", "n", "s2", 1, 2));
        assert_ne!(base, event_id("c", "n", "s", 3, 2));
        assert_ne!(base, event_id("c", "n", "s", 1, 3));
        // No ambiguity from concatenation.
        assert_ne!(
            event_id("ab", "c", "s", 1, 2),
            event_id("a", "bc", "s", 1, 2)
        );
    }
}
