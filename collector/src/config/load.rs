//! Loading a config file: YAML → [`RawConfig`] → validated [`CollectorConfig`], reporting every
//! problem of the file at once.

mod sinks;

use super::error::{ConfigDiagnostic, ConfigError, ConfigErrors, Severity};
use super::node::{self, DeError, DeErrorKind, Kind, Node, Pos, Seg};
use super::raw::{
    RawConfig, RawFormat, RawListen, RawPipeline, RawRelay, RawSink, RawSinkEntry, RawSinkType,
    RawSource, RawSourceType, RawTelemetry, TOP_LEVEL_KEYS,
};
use super::{
    CollectorConfig, EmbeddedSinkConfig, LineFormat, MultilineConfig, ParseConfig, PipelineConfig,
    SinkConfig, SinkKind, SourceConfig, SourceKind, TelemetryConfig,
};
use regex::Regex;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default of `data_dir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/nevermore";
/// Default of `telemetry.listen`.
pub const DEFAULT_TELEMETRY_LISTEN: &str = "127.0.0.1:9801";
/// Default of `sources.<id>.pods_dir`.
pub const DEFAULT_PODS_DIR: &str = "/var/log/pods";
/// Default of `cluster`.
pub const DEFAULT_CLUSTER: &str = "default";

/// A valid config, and the warnings found in it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub collector: CollectorConfig,
    pub warnings: Vec<ConfigDiagnostic>,
}

impl Loaded {
    /// `config ok: N sources, M sinks`.
    pub fn summary(&self) -> String {
        let n = self.collector.sources.len();
        let m = self.collector.sinks.len();
        format!(
            "config ok: {n} source{}, {m} sink{}",
            if n == 1 { "" } else { "s" },
            if m == 1 { "" } else { "s" }
        )
    }
}

/// What the loader takes from the host besides the file: used when `node_name` is absent.
#[derive(Debug, Clone, Default)]
pub struct HostEnv {
    /// `$NODE_NAME`.
    pub node_name: Option<String>,
    /// The host name.
    pub hostname: Option<String>,
}

impl HostEnv {
    /// `$NODE_NAME` and the host name of this process' host.
    pub fn from_process() -> HostEnv {
        HostEnv {
            node_name: std::env::var("NODE_NAME").ok(),
            hostname: hostname(),
        }
    }
}

fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            let name = std::fs::read_to_string(p).ok()?;
            let name = name.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
}

/// Reads and validates the config file at `path`. Diagnostics name the file as `path` shows.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, &file),
        Err(e) => Err(ConfigErrors {
            diagnostics: vec![ConfigDiagnostic {
                file,
                severity: Severity::Error,
                error: ConfigError::Read {
                    path: String::new(),
                    line: 0,
                    column: 0,
                    message: lower_first(&e.to_string()),
                },
            }],
        }),
    }
}

/// Validates the config `text`; diagnostics name the file `file_name`. `node_name` defaults
/// to `$NODE_NAME`, then the host name.
pub fn load_str(text: &str, file_name: &str) -> Result<Loaded, ConfigErrors> {
    load_str_with(text, file_name, &HostEnv::from_process())
}

/// [`load_str`] with the host environment given (tests need not set environment variables).
pub fn load_str_with(text: &str, file_name: &str, env: &HostEnv) -> Result<Loaded, ConfigErrors> {
    let mut cx = Cx::default();
    let collector = match node::parse(text) {
        Ok(root) => {
            let raw = read_raw(&root, &mut cx);
            validate(&raw, &root, env, &mut cx)
        }
        Err(e) => {
            cx.error(ConfigError::Syntax {
                path: String::new(),
                line: e.pos.line,
                column: e.pos.column,
                message: e.message,
            });
            None
        }
    };
    let diagnostics = cx.finish(file_name);
    match collector {
        Some(collector) if !diagnostics.iter().any(ConfigDiagnostic::is_error) => Ok(Loaded {
            collector,
            warnings: diagnostics,
        }),
        _ => Err(ConfigErrors { diagnostics }),
    }
}

/// The problems found so far.
#[derive(Default)]
struct Cx {
    found: Vec<(Severity, ConfigError)>,
    /// Key paths removed from the document after an error in their value: a "missing key"
    /// for them would only repeat that error.
    removed: HashSet<String>,
}

impl Cx {
    fn error(&mut self, e: ConfigError) {
        self.found.push((Severity::Error, e));
    }

    fn warn(&mut self, e: ConfigError) {
        self.found.push((Severity::Warning, e));
    }

    fn invalid(&mut self, path: String, pos: Pos, message: impl Into<String>) {
        self.error(ConfigError::InvalidValue {
            path,
            line: pos.line,
            column: pos.column,
            message: message.into(),
        });
    }

    fn missing(&mut self, path: &str, pos: Pos, key: &str) {
        self.error(ConfigError::MissingKey {
            path: path.to_owned(),
            line: pos.line,
            column: pos.column,
            key: key.to_owned(),
        });
    }

    fn finish(self, file: &str) -> Vec<ConfigDiagnostic> {
        let removed = self.removed;
        let mut found: Vec<(Severity, ConfigError)> = self
            .found
            .into_iter()
            .filter(|(_, e)| match e {
                ConfigError::MissingKey { path, key, .. } => {
                    !removed.contains(&node::join(path, key))
                }
                _ => true,
            })
            .collect();
        found.sort_by_key(|(severity, e)| (e.position(), *severity));
        found.dedup();
        found
            .into_iter()
            .map(|(severity, error)| ConfigDiagnostic {
                file: file.to_owned(),
                severity,
                error,
            })
            .collect()
    }

    /// Deserializes `node` (at key path `base`) into `T`. After an error, the offending entry
    /// is removed and deserialization retried, so that every unknown key and every bad value
    /// of the node is reported, not only the first one.
    fn de<T: DeserializeOwned>(&mut self, node: &Node, base: &str) -> Option<T> {
        let mut node = node.clone();
        for _ in 0..256 {
            match node::from_node::<T>(&node) {
                Ok(v) => return Some(v),
                Err(e) => {
                    let mut remove = self.report_de(e.clone(), base, node.pos);
                    if remove.is_empty() {
                        return None;
                    }
                    for segs in remove.drain(..) {
                        self.removed.insert(node::path_string(base, &segs));
                        if !node.remove(&segs) {
                            return None;
                        }
                    }
                }
            }
        }
        None
    }

    /// Records `e`; returns the paths (relative to the node) to remove before retrying.
    fn report_de(&mut self, e: DeError, base: &str, fallback: Pos) -> Vec<Vec<Seg>> {
        let segs = e.path.clone().unwrap_or_default();
        let path = node::path_string(base, &segs);
        let pos = e.pos.unwrap_or(fallback);
        match e.kind {
            DeErrorKind::UnknownKey { expected, .. } => {
                let expected = quoted_list(expected.iter().map(String::as_str));
                let mut remove = vec![segs.clone()];
                self.error(ConfigError::UnknownKey {
                    path,
                    line: pos.line,
                    column: pos.column,
                    key: last_key(&segs),
                    expected: expected.clone(),
                });
                for (other, pos) in e.more_unknown {
                    self.error(ConfigError::UnknownKey {
                        path: node::path_string(base, &other),
                        line: pos.line,
                        column: pos.column,
                        key: last_key(&other),
                        expected: expected.clone(),
                    });
                    remove.push(other);
                }
                remove
            }
            DeErrorKind::MissingKey { key } => {
                self.missing(&path, pos, &key);
                Vec::new()
            }
            DeErrorKind::Invalid { message } => {
                self.error(ConfigError::InvalidType {
                    path,
                    line: pos.line,
                    column: pos.column,
                    message,
                });
                if segs.is_empty() {
                    Vec::new()
                } else {
                    vec![segs]
                }
            }
        }
    }
}

fn last_key(segs: &[Seg]) -> String {
    match segs.last() {
        Some(Seg::Key(k)) => k.clone(),
        _ => String::new(),
    }
}

fn quoted_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Reports every duplicate key of the document (outside `serve`, which belongs to `nevermore
/// serve`).
fn check_duplicates(node: &Node, path: &str, cx: &mut Cx) {
    match &node.kind {
        Kind::Map(entries) => {
            for (i, (k, v)) in entries.iter().enumerate() {
                let child = node::join(path, &k.text);
                if let Some((first, _)) = entries[..i].iter().find(|(f, _)| f.text == k.text) {
                    cx.error(ConfigError::DuplicateKey {
                        path: child,
                        line: k.pos.line,
                        column: k.pos.column,
                        first_line: first.pos.line,
                    });
                } else if !(path.is_empty() && k.text == "serve") {
                    check_duplicates(v, &child, cx);
                }
            }
        }
        Kind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                check_duplicates(item, &format!("{path}[{i}]"), cx);
            }
        }
        _ => {}
    }
}

/// Deserializes each top-level key, each source and each sink on its own.
fn read_raw(root: &Node, cx: &mut Cx) -> RawConfig {
    check_duplicates(root, "", cx);
    let mut raw = RawConfig::default();
    let entries = match root.entries() {
        Some(entries) => entries,
        None if root.is_null() => Vec::new(),
        None => {
            cx.error(ConfigError::InvalidType {
                path: String::new(),
                line: root.pos.line,
                column: root.pos.column,
                message: format!("expected a mapping, found {}", root.kind_name()),
            });
            return raw;
        }
    };
    for (key, value) in entries {
        let k = key.text.as_str();
        match k {
            "node_name" => raw.node_name = cx.de::<Option<String>>(value, k).flatten(),
            "cluster" => raw.cluster = cx.de::<Option<String>>(value, k).flatten(),
            "data_dir" => raw.data_dir = cx.de::<Option<PathBuf>>(value, k).flatten(),
            "telemetry" => raw.telemetry = cx.de::<Option<RawTelemetry>>(value, k).flatten(),
            "pipeline" => raw.pipeline = cx.de::<Option<RawPipeline>>(value, k).flatten(),
            "sources" => raw.sources = Some(read_entries(value, k, cx, read_source)),
            "sinks" => raw.sinks = Some(read_entries(value, k, cx, read_sink)),
            "relay" => raw.relay = cx.de::<Option<RawRelay>>(value, k).flatten(),
            // Read by `nevermore serve`.
            "serve" => {}
            _ => cx.error(ConfigError::UnknownKey {
                path: k.to_owned(),
                line: key.pos.line,
                column: key.pos.column,
                key: k.to_owned(),
                expected: quoted_list(TOP_LEVEL_KEYS.iter().copied()),
            }),
        }
    }
    raw
}

fn read_entries<T>(
    node: &Node,
    path: &str,
    cx: &mut Cx,
    read: fn(&Node, &str, &mut Cx) -> Option<T>,
) -> Vec<(String, T)> {
    let Some(entries) = node.entries() else {
        if !node.is_null() {
            cx.error(ConfigError::InvalidType {
                path: path.to_owned(),
                line: node.pos.line,
                column: node.pos.column,
                message: format!(
                    "expected a mapping of ids to {path}, found {}",
                    node.kind_name()
                ),
            });
        }
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in entries {
        let id_path = node::join(path, &key.text);
        if !valid_id(&key.text) {
            cx.invalid(
                id_path.clone(),
                key.pos,
                "invalid id: use letters, digits, `_`, `-` and `.`",
            );
        }
        if let Some(v) = read(value, &id_path, cx) {
            out.push((key.text.clone(), v));
        }
    }
    out
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn read_source(node: &Node, path: &str, cx: &mut Cx) -> Option<RawSource> {
    cx.de(node, path)
}

fn read_sink(node: &Node, path: &str, cx: &mut Cx) -> Option<RawSinkEntry> {
    // The shape to read is the one its `type` names; a missing or unknown type is reported by
    // reading the common shape.
    let kind = node
        .get("type")
        .and_then(|t| node::from_node::<RawSinkType>(t).ok());
    match kind {
        Some(RawSinkType::Kafka) => cx.de(node, path).map(RawSinkEntry::Kafka),
        Some(RawSinkType::Elasticsearch) => cx.de(node, path).map(RawSinkEntry::Elasticsearch),
        _ => cx.de(node, path).map(RawSinkEntry::Local),
    }
}

/// The node at `keys` below `root`, or the deepest one found on the way.
fn locate<'a>(root: &'a Node, keys: &[&str]) -> &'a Node {
    let mut node = root;
    for k in keys {
        match node.get(k) {
            Some(n) => node = n,
            None => break,
        }
    }
    node
}

/// The position of the key at `keys` below `root` (of its value's parent when absent).
fn locate_key(root: &Node, keys: &[&str]) -> Pos {
    let Some((last, parents)) = keys.split_last() else {
        return root.pos;
    };
    let parent = locate(root, parents);
    parent.key(last).map(|k| k.pos).unwrap_or(parent.pos)
}

fn element_pos(node: &Node, index: usize) -> Pos {
    match &node.kind {
        Kind::Seq(items) => items.get(index).map(|n| n.pos).unwrap_or(node.pos),
        _ => node.pos,
    }
}

fn positive(cx: &mut Cx, root: &Node, keys: &[&str], value: Option<u64>, default: u64) -> u64 {
    match value {
        Some(0) => {
            cx.invalid(
                keys.join("."),
                locate(root, keys).pos,
                "must be greater than 0",
            );
            default
        }
        Some(v) => v,
        None => default,
    }
}

fn positive_usize(
    cx: &mut Cx,
    root: &Node,
    keys: &[&str],
    value: Option<u64>,
    default: usize,
) -> usize {
    // Counts and sizes beyond this are configuration mistakes, and would overflow the
    // arithmetic and allocations they feed.
    const MAX: u64 = 1 << 30;
    let v = positive(cx, root, keys, value, default as u64);
    match usize::try_from(v) {
        Ok(v) if v as u64 <= MAX => v,
        _ => {
            cx.invalid(
                keys.join("."),
                locate(root, keys).pos,
                format!("value too large (at most {MAX})"),
            );
            default
        }
    }
}

fn positive_ms(
    cx: &mut Cx,
    root: &Node,
    keys: &[&str],
    value: Option<u64>,
    default: u64,
) -> Duration {
    Duration::from_millis(positive(cx, root, keys, value, default))
}

fn non_empty(
    cx: &mut Cx,
    root: &Node,
    keys: &[&str],
    value: Option<String>,
    default: &str,
) -> String {
    match value {
        Some(v) if v.trim().is_empty() => {
            cx.invalid(keys.join("."), locate(root, keys).pos, "must not be empty");
            default.to_owned()
        }
        Some(v) => v,
        None => default.to_owned(),
    }
}

fn validate(raw: &RawConfig, root: &Node, env: &HostEnv, cx: &mut Cx) -> Option<CollectorConfig> {
    let node_name = match &raw.node_name {
        Some(n) if n.trim().is_empty() => {
            cx.invalid(
                "node_name".into(),
                locate(root, &["node_name"]).pos,
                "must not be empty",
            );
            String::new()
        }
        Some(n) => n.clone(),
        None => match env
            .node_name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .or(env.hostname.as_deref())
        {
            Some(n) => n.to_owned(),
            None => {
                cx.invalid(
                    "node_name".into(),
                    Pos { line: 1, column: 1 },
                    "not set, and neither $NODE_NAME nor the host name is available",
                );
                String::new()
            }
        },
    };
    let cluster = non_empty(cx, root, &["cluster"], raw.cluster.clone(), DEFAULT_CLUSTER);
    let data_dir = match &raw.data_dir {
        Some(d) if d.as_os_str().is_empty() => {
            cx.invalid(
                "data_dir".into(),
                locate(root, &["data_dir"]).pos,
                "must not be empty",
            );
            PathBuf::from(DEFAULT_DATA_DIR)
        }
        Some(d) => d.clone(),
        None => PathBuf::from(DEFAULT_DATA_DIR),
    };
    let telemetry = validate_telemetry(raw.telemetry.as_ref(), root, cx);
    let pipeline = validate_pipeline(raw.pipeline.as_ref(), root, cx);

    // Every id under `sources:`, including those whose entry has errors, so that a sink
    // naming one is not reported as naming an unknown source.
    let source_ids: Vec<String> = match root.get("sources") {
        None => vec!["pods".to_owned()],
        Some(n) => n
            .entries()
            .unwrap_or_default()
            .iter()
            .map(|(k, _)| k.text.clone())
            .collect(),
    };
    let sources = match &raw.sources {
        None => vec![SourceConfig {
            id: "pods".to_owned(),
            kind: SourceKind::Kubernetes {
                pods_dir: PathBuf::from(DEFAULT_PODS_DIR),
            },
            parse: default_parse(LineFormat::Container),
        }],
        Some(list) => {
            if source_ids.is_empty() {
                let n = locate(root, &["sources"]);
                cx.invalid(
                    "sources".into(),
                    n.pos,
                    "no source given (omit `sources` for the default `kubernetes_logs` source)",
                );
            }
            list.iter()
                .map(|(id, s)| validate_source(id, s, root, cx))
                .collect()
        }
    };

    let mut sinks = Vec::new();
    let mut file_paths: Vec<(PathBuf, String)> = Vec::new();
    for (id, s) in raw.sinks.iter().flatten() {
        let sink = match s {
            RawSinkEntry::Local(s) => validate_sink(id, s, &source_ids, &mut file_paths, root, cx),
            RawSinkEntry::Kafka(s) => sinks::kafka_sink(id, s, root, cx).map(|kind| SinkConfig {
                id: id.clone(),
                inputs: validate_inputs(id, s.inputs.as_ref(), &source_ids, root, cx),
                kind,
            }),
            RawSinkEntry::Elasticsearch(s) => {
                sinks::elasticsearch_sink(id, s, &data_dir, &mut file_paths, root, cx).map(|kind| {
                    SinkConfig {
                        id: id.clone(),
                        inputs: validate_inputs(id, s.inputs.as_ref(), &source_ids, root, cx),
                        kind,
                    }
                })
            }
        };
        if let Some(sink) = sink {
            sinks.push(sink);
        }
    }
    let relay = raw
        .relay
        .as_ref()
        .and_then(|r| sinks::relay(r, &sinks, root, cx));
    let sinks_given = root
        .get("sinks")
        .and_then(Node::entries)
        .is_some_and(|e| !e.is_empty());
    if !sinks_given {
        sinks.push(SinkConfig {
            id: "stdout".to_owned(),
            inputs: source_ids.clone(),
            kind: SinkKind::Stdout,
        });
    }

    Some(CollectorConfig {
        node_name,
        cluster,
        data_dir,
        sources,
        sinks,
        relay,
        telemetry,
        pipeline,
    })
}

fn validate_telemetry(raw: Option<&RawTelemetry>, root: &Node, cx: &mut Cx) -> TelemetryConfig {
    let default: Option<SocketAddr> = DEFAULT_TELEMETRY_LISTEN.parse().ok();
    let keys = ["telemetry", "listen"];
    let listen = match raw.and_then(|t| t.listen.as_ref()) {
        None => default,
        Some(RawListen::Bool(false)) => None,
        Some(RawListen::Text(t)) if t == "off" => None,
        Some(RawListen::Bool(true)) => {
            cx.invalid(
                keys.join("."),
                locate(root, &keys).pos,
                "expected an address such as `127.0.0.1:9801`, or `off`",
            );
            default
        }
        Some(RawListen::Text(t)) => match t.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                cx.invalid(
                    keys.join("."),
                    locate(root, &keys).pos,
                    format!("invalid listen address `{t}`: expected ip:port such as `127.0.0.1:9801`, or `off`"),
                );
                default
            }
        },
    };
    TelemetryConfig { listen }
}

fn validate_pipeline(raw: Option<&RawPipeline>, root: &Node, cx: &mut Cx) -> PipelineConfig {
    let d = PipelineConfig::default();
    let Some(p) = raw else { return d };
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    PipelineConfig {
        batch_max_records: positive_usize(
            cx,
            root,
            &["pipeline", "batch_max_records"],
            p.batch_max_records,
            d.batch_max_records,
        ),
        batch_max_bytes: positive_usize(
            cx,
            root,
            &["pipeline", "batch_max_bytes"],
            p.batch_max_bytes,
            d.batch_max_bytes,
        ),
        batch_timeout: positive_ms(
            cx,
            root,
            &["pipeline", "batch_timeout_ms"],
            p.batch_timeout_ms,
            ms(d.batch_timeout),
        ),
        max_batches_in_flight: positive_usize(
            cx,
            root,
            &["pipeline", "max_batches_in_flight"],
            p.max_batches_in_flight,
            d.max_batches_in_flight,
        ),
        checkpoint_interval: positive_ms(
            cx,
            root,
            &["pipeline", "checkpoint_interval_ms"],
            p.checkpoint_interval_ms,
            ms(d.checkpoint_interval),
        ),
        scan_interval: positive_ms(
            cx,
            root,
            &["pipeline", "scan_interval_ms"],
            p.scan_interval_ms,
            ms(d.scan_interval),
        ),
        read_chunk_bytes: positive_usize(
            cx,
            root,
            &["pipeline", "read_chunk_bytes"],
            p.read_chunk_bytes,
            d.read_chunk_bytes,
        ),
        max_open_files: positive_usize(
            cx,
            root,
            &["pipeline", "max_open_files"],
            p.max_open_files,
            d.max_open_files,
        ),
        rotation_risk_bytes: {
            let size = positive(
                cx,
                root,
                &["pipeline", "kubelet_container_log_max_size_bytes"],
                p.kubelet_container_log_max_size_bytes,
                10 << 20,
            );
            let files = p.kubelet_container_log_max_files.unwrap_or(5);
            if files < 2 {
                cx.invalid(
                    "pipeline.kubelet_container_log_max_files".into(),
                    locate(root, &["pipeline", "kubelet_container_log_max_files"]).pos,
                    "must be at least 2 (kubelet's own minimum)",
                );
            }
            size.saturating_mul(files.saturating_sub(1).max(1))
        },
    }
}

/// Defaults of the parse settings of a source whose file sets none.
pub fn default_parse(format: LineFormat) -> ParseConfig {
    ParseConfig {
        format,
        max_record_bytes: 1 << 20,
        partial_timeout: Duration::from_millis(5000),
        multiline: None,
        json_level: true,
    }
}

fn validate_source(id: &str, s: &RawSource, root: &Node, cx: &mut Cx) -> SourceConfig {
    let base = ["sources", id];
    let k = |key: &'static str| [base[0], base[1], key];
    let path = |key: &str| format!("sources.{id}.{key}");
    let not_for = |cx: &mut Cx, key: &'static str, present: bool, kind: &str| {
        if present {
            cx.invalid(
                path(key),
                locate_key(root, &k(key)),
                format!("not valid for a source of type `{kind}`"),
            );
        }
    };
    let kind = match s.kind {
        RawSourceType::KubernetesLogs => {
            not_for(cx, "include", s.include.is_some(), "kubernetes_logs");
            not_for(cx, "exclude", s.exclude.is_some(), "kubernetes_logs");
            not_for(cx, "dataset", s.dataset.is_some(), "kubernetes_logs");
            let pods_dir = match &s.pods_dir {
                Some(d) if d.as_os_str().is_empty() => {
                    cx.invalid(
                        path("pods_dir"),
                        locate(root, &k("pods_dir")).pos,
                        "must not be empty",
                    );
                    PathBuf::from(DEFAULT_PODS_DIR)
                }
                Some(d) => d.clone(),
                None => PathBuf::from(DEFAULT_PODS_DIR),
            };
            SourceKind::Kubernetes { pods_dir }
        }
        RawSourceType::File => {
            not_for(cx, "pods_dir", s.pods_dir.is_some(), "file");
            let include = s.include.clone().unwrap_or_default();
            match &s.include {
                None => cx.missing(&format!("sources.{id}"), locate(root, &base).pos, "include"),
                Some(list) if list.is_empty() => {
                    cx.invalid(
                        path("include"),
                        locate(root, &k("include")).pos,
                        "must list at least one glob",
                    );
                }
                Some(_) => {}
            }
            for (key, list) in [
                ("include", &include),
                ("exclude", &s.exclude.clone().unwrap_or_default()),
            ] {
                for (i, g) in list.iter().enumerate() {
                    let at = || element_pos(locate(root, &k(key)), i);
                    if let Err(e) = globset::Glob::new(g) {
                        cx.invalid(
                            format!("sources.{id}.{key}[{i}]"),
                            at(),
                            format!("invalid glob `{g}`: {}", e.kind()),
                        );
                    } else if !g.starts_with('/') {
                        cx.invalid(
                            format!("sources.{id}.{key}[{i}]"),
                            at(),
                            format!("glob `{g}` must be an absolute path"),
                        );
                    }
                }
            }
            let dataset = non_empty(cx, root, &k("dataset"), s.dataset.clone(), id);
            SourceKind::File {
                include,
                exclude: s.exclude.clone().unwrap_or_default(),
                dataset,
            }
        }
    };
    let default_format = match s.kind {
        RawSourceType::KubernetesLogs => LineFormat::Container,
        RawSourceType::File => LineFormat::Plain,
    };
    let format = match s.format {
        None => default_format,
        Some(RawFormat::Container) => LineFormat::Container,
        Some(RawFormat::Cri) => LineFormat::Cri,
        Some(RawFormat::Docker) => LineFormat::Docker,
        Some(RawFormat::Plain) => LineFormat::Plain,
        Some(RawFormat::Json) => LineFormat::Json,
    };
    let d = default_parse(format);
    let multiline = s.multiline.as_ref().and_then(|m| {
        let mk = |key: &'static str| [base[0], base[1], "multiline", key];
        let timeout = positive_ms(cx, root, &mk("timeout_ms"), m.timeout_ms, 1000);
        let max_lines = positive_usize(cx, root, &mk("max_lines"), m.max_lines, 500);
        let at = locate(root, &mk("start_pattern")).pos;
        let pattern_path = format!("sources.{id}.multiline.start_pattern");
        if m.start_pattern.is_empty() {
            cx.invalid(pattern_path, at, "must not be empty");
            return None;
        }
        match Regex::new(&m.start_pattern) {
            Ok(start_pattern) => Some(MultilineConfig {
                start_pattern,
                timeout,
                max_lines,
            }),
            Err(e) => {
                cx.invalid(
                    pattern_path,
                    at,
                    format!("invalid regex: {}", regex_message(&e)),
                );
                None
            }
        }
    });
    let parse = ParseConfig {
        format,
        max_record_bytes: positive_usize(
            cx,
            root,
            &k("max_record_bytes"),
            s.max_record_bytes,
            d.max_record_bytes,
        ),
        partial_timeout: positive_ms(
            cx,
            root,
            &k("partial_timeout_ms"),
            s.partial_timeout_ms,
            5000,
        ),
        multiline,
        json_level: s.json_level.unwrap_or(true),
    };
    SourceConfig {
        id: id.to_owned(),
        kind,
        parse,
    }
}

/// The one-line reason of a regex error (its `Display` draws the pattern over several lines).
fn regex_message(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.replace('\n', " "))
}

fn validate_sink(
    id: &str,
    s: &RawSink,
    source_ids: &[String],
    file_paths: &mut Vec<(PathBuf, String)>,
    root: &Node,
    cx: &mut Cx,
) -> Option<SinkConfig> {
    let k = |key: &'static str| ["sinks", id, key];
    let path = |key: &str| format!("sinks.{id}.{key}");
    let kind = match s.kind {
        RawSinkType::File => match &s.path {
            None => {
                cx.missing(
                    &format!("sinks.{id}"),
                    locate(root, &["sinks", id]).pos,
                    "path",
                );
                return None;
            }
            Some(p) if p.as_os_str().is_empty() => {
                cx.invalid(
                    path("path"),
                    locate(root, &k("path")).pos,
                    "must not be empty",
                );
                return None;
            }
            Some(p) => {
                let at = locate(root, &k("path")).pos;
                if let Some((_, other)) = file_paths.iter().find(|(q, _)| q == p) {
                    cx.invalid(
                        path("path"),
                        at,
                        format!("duplicate path: sink `{other}` writes the same file"),
                    );
                }
                file_paths.push((p.clone(), id.to_owned()));
                if p.is_dir() {
                    cx.invalid(
                        path("path"),
                        at,
                        format!("`{}` is a directory", p.display()),
                    );
                } else if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty())
                    && !parent.is_dir()
                {
                    cx.warn(ConfigError::MissingDirectory {
                        path: path("path"),
                        line: at.line,
                        column: at.column,
                        dir: parent.display().to_string(),
                    });
                }
                SinkKind::File { path: p.clone() }
            }
        },
        RawSinkType::Stdout => {
            if s.path.is_some() {
                cx.invalid(
                    path("path"),
                    locate_key(root, &k("path")),
                    "not valid for a sink of type `stdout`",
                );
            }
            SinkKind::Stdout
        }
        RawSinkType::Embedded => {
            let memory = s.writer_memory_bytes.unwrap_or(64 << 20);
            if !(15_000_000..=(4u64 << 30)).contains(&memory) {
                cx.invalid(
                    path("writer_memory_bytes"),
                    locate(root, &k("writer_memory_bytes")).pos,
                    "must be between 15000000 and 4294967296",
                );
            }
            if s.max_bytes == Some(0) || s.max_age_ms == Some(0) {
                let key = if s.max_bytes == Some(0) {
                    "max_bytes"
                } else {
                    "max_age_ms"
                };
                cx.invalid(
                    path(key),
                    locate(root, &k(key)).pos,
                    "must be positive (omit it to keep everything)",
                );
            }
            // One writer per index directory: two sinks on one index would fight for its lock.
            let dir = s
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from("<data_dir>/index"));
            if let Some((_, other)) = file_paths.iter().find(|(q, _)| *q == dir) {
                cx.invalid(
                    path("path"),
                    locate(root, &["sinks", id]).pos,
                    format!("sink `{other}` writes the same index directory"),
                );
            }
            file_paths.push((dir, id.to_owned()));
            SinkKind::Embedded(EmbeddedSinkConfig {
                path: s.path.clone(),
                max_age: s.max_age_ms.map(Duration::from_millis),
                max_bytes: s.max_bytes,
                commit_interval: Duration::from_millis(s.commit_interval_ms.unwrap_or(1000)),
                writer_memory_bytes: memory,
            })
        }
        // Read in their own shapes.
        RawSinkType::Kafka | RawSinkType::Elasticsearch => return None,
    };
    if s.kind != RawSinkType::Embedded {
        for (key, set) in [
            ("max_age_ms", s.max_age_ms.is_some()),
            ("max_bytes", s.max_bytes.is_some()),
            ("commit_interval_ms", s.commit_interval_ms.is_some()),
            ("writer_memory_bytes", s.writer_memory_bytes.is_some()),
        ] {
            if set {
                cx.invalid(
                    path(key),
                    locate_key(root, &k(key)),
                    format!("not valid for a sink of type `{}`", s.kind.name()),
                );
            }
        }
    }
    Some(SinkConfig {
        id: id.to_owned(),
        inputs: validate_inputs(id, s.inputs.as_ref(), source_ids, root, cx),
        kind,
    })
}

/// `sinks.<id>.inputs`: source ids, default every source.
fn validate_inputs(
    id: &str,
    inputs: Option<&Vec<String>>,
    source_ids: &[String],
    root: &Node,
    cx: &mut Cx,
) -> Vec<String> {
    let k = |key: &'static str| ["sinks", id, key];
    let path = |key: &str| format!("sinks.{id}.{key}");
    match inputs {
        None => source_ids.to_vec(),
        Some(list) => {
            let node = locate(root, &k("inputs"));
            if list.is_empty() {
                cx.invalid(
                    path("inputs"),
                    node.pos,
                    "must name at least one source (omit `inputs` for every source)",
                );
            }
            for (i, input) in list.iter().enumerate() {
                let at = element_pos(node, i);
                if !source_ids.iter().any(|s| s == input) {
                    cx.error(ConfigError::UnknownInput {
                        path: format!("sinks.{id}.inputs[{i}]"),
                        line: at.line,
                        column: at.column,
                        source_id: input.clone(),
                        expected: quoted_list(source_ids.iter().map(String::as_str)),
                    });
                } else if list[..i].contains(input) {
                    cx.invalid(
                        format!("sinks.{id}.inputs[{i}]"),
                        at,
                        format!("duplicate input `{input}`"),
                    );
                }
            }
            list.clone()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env() -> HostEnv {
        HostEnv {
            node_name: None,
            hostname: Some("host-1".to_owned()),
        }
    }

    fn ok(text: &str) -> Loaded {
        match load_str_with(text, "t.yaml", &env()) {
            Ok(l) => l,
            Err(e) => panic!("unexpected errors:\n{e}"),
        }
    }

    fn errors(text: &str) -> Vec<String> {
        match load_str_with(text, "t.yaml", &env()) {
            Ok(l) => panic!("expected errors, got {:?}", l.collector),
            Err(e) => e.errors().map(ToString::to_string).collect(),
        }
    }

    const FULL: &str = include_str!("../../../testdata/config/full.yaml");

    #[test]
    fn full_config_every_key() {
        let c = ok(FULL).collector;
        assert_eq!(c.node_name, "node-a");
        assert_eq!(c.cluster, "prod-eu");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/nevermore"));
        assert_eq!(c.telemetry.listen, Some("127.0.0.1:9801".parse().unwrap()));
        let p = &c.pipeline;
        assert_eq!((p.batch_max_records, p.batch_max_bytes), (4096, 4_194_304));
        assert_eq!(p.batch_timeout, Duration::from_millis(200));
        assert_eq!(p.max_batches_in_flight, 4);
        assert_eq!(p.checkpoint_interval, Duration::from_millis(1000));
        assert_eq!(p.scan_interval, Duration::from_millis(2000));
        assert_eq!((p.read_chunk_bytes, p.max_open_files), (65536, 4096));
        let ids: Vec<_> = c.sources.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["pods", "audit", "app"]);
        assert!(
            matches!(&c.sources[0].kind, SourceKind::Kubernetes { pods_dir } if pods_dir == Path::new("/var/log/pods"))
        );
        match &c.sources[1].kind {
            SourceKind::File {
                include,
                exclude,
                dataset,
            } => {
                assert_eq!(include, &["/var/log/kubernetes/audit/*.log"]);
                assert!(exclude.is_empty());
                assert_eq!(dataset, "audit");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.sources[1].parse.format, LineFormat::Json);
        let app = &c.sources[2];
        assert!(
            matches!(&app.kind, SourceKind::File { exclude, dataset, .. } if exclude == &["/var/log/app/*.gz"] && dataset == "app")
        );
        assert_eq!(app.parse.format, LineFormat::Plain);
        assert_eq!(app.parse.max_record_bytes, 1 << 20);
        assert_eq!(app.parse.partial_timeout, Duration::from_millis(5000));
        assert!(app.parse.json_level);
        let m = app.parse.multiline.as_ref().unwrap();
        assert!(m.start_pattern.is_match("2026-11-26 10:00:00 start"));
        assert_eq!((m.timeout, m.max_lines), (Duration::from_millis(1000), 500));
        let sinks: Vec<_> = c.sinks.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(sinks, ["debug", "out"]);
        assert_eq!(c.sinks[0].inputs, ["pods"]);
        assert!(
            matches!(&c.sinks[0].kind, SinkKind::File { path } if path == Path::new("/tmp/records.ndjson"))
        );
        assert_eq!(c.sinks[1].inputs, ["pods", "audit", "app"]);
        assert!(matches!(c.sinks[1].kind, SinkKind::Stdout));
    }

    #[test]
    fn defaults() {
        let l = ok("");
        let c = l.collector;
        assert!(l.warnings.is_empty());
        assert_eq!(c.node_name, "host-1");
        assert_eq!(c.cluster, "default");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/nevermore"));
        assert_eq!(c.telemetry.listen, Some("127.0.0.1:9801".parse().unwrap()));
        assert_eq!(
            c.pipeline.batch_max_records,
            PipelineConfig::default().batch_max_records
        );
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.sources[0].id, "pods");
        assert!(
            matches!(&c.sources[0].kind, SourceKind::Kubernetes { pods_dir } if pods_dir == Path::new("/var/log/pods"))
        );
        assert_eq!(c.sources[0].parse.format, LineFormat::Container);
        assert!(c.sources[0].parse.multiline.is_none());
        assert_eq!(c.sinks.len(), 1);
        assert_eq!(c.sinks[0].id, "stdout");
        assert_eq!(c.sinks[0].inputs, ["pods"]);
        assert!(matches!(c.sinks[0].kind, SinkKind::Stdout));
        // An empty `sinks` map also means the default sink; file sources default to plain.
        let c = ok("sources: {a: {type: file, include: [/x/*.log]}}\nsinks: {}\n").collector;
        assert_eq!(c.sinks[0].id, "stdout");
        assert_eq!(c.sources[0].parse.format, LineFormat::Plain);
        assert!(matches!(&c.sources[0].kind, SourceKind::File { dataset, .. } if dataset == "a"));
        // Multiline defaults.
        let c = ok("sources: {a: {type: file, include: [/x], multiline: {start_pattern: x}}}")
            .collector;
        let m = c.sources[0].parse.multiline.as_ref().unwrap();
        assert_eq!((m.timeout, m.max_lines), (Duration::from_millis(1000), 500));
    }

    #[test]
    fn node_name_from_env_then_hostname() {
        let with_var = HostEnv {
            node_name: Some("node-env".into()),
            hostname: Some("h".into()),
        };
        assert_eq!(
            load_str_with("", "t.yaml", &with_var)
                .unwrap()
                .collector
                .node_name,
            "node-env"
        );
        assert_eq!(
            load_str_with("node_name: n1", "t.yaml", &with_var)
                .unwrap()
                .collector
                .node_name,
            "n1"
        );
        let none = HostEnv::default();
        let e = load_str_with("", "t.yaml", &none).unwrap_err().to_string();
        assert!(e.contains("node_name: not set"), "{e}");
    }

    #[test]
    fn unknown_keys_top_level_and_nested() {
        let e = errors(
            "node_name: a\nclustr: x\nsources:\n  app:\n    type: file\n    include: [/x]\n    multiline: {start_pattern: x, timeot_ms: 3}\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("t.yaml:2:1: error: clustr: unknown key, expected one of `node_name`"),
            "{}",
            e[0]
        );
        assert!(
            e[1].starts_with("t.yaml:7:35: error: sources.app.multiline.timeot_ms: unknown key"),
            "{}",
            e[1]
        );
        let err = load_str_with("clustr: x", "t.yaml", &env()).unwrap_err();
        let d = &err.diagnostics[0];
        assert_eq!((d.line(), d.column(), d.error.path()), (1, 1, "clustr"));
        assert!(matches!(&d.error, ConfigError::UnknownKey { key, .. } if key == "clustr"));
    }

    #[test]
    fn every_problem_in_one_run() {
        let text = "\
node_name: a
pipeline: {batch_max_records: 0, bogus: 1}
sources:
  a: {type: file, include: [], format: xml}
  b: {type: file, include: [/x], multiline: {start_pattern: '('}}
  c: {type: nope}
sinks:
  k: {type: kafka, topic: logs}
  f: {type: file, path: /tmp/x, inputs: [zz]}
";
        let err = load_str_with(text, "t.yaml", &env()).unwrap_err();
        let got: Vec<(u32, u32, &str)> = err
            .diagnostics
            .iter()
            .map(|d| (d.line(), d.column(), d.error.path()))
            .collect();
        assert_eq!(
            got,
            [
                (2, 31, "pipeline.batch_max_records"),
                (2, 34, "pipeline.bogus"),
                (4, 28, "sources.a.include"),
                (4, 40, "sources.a.format"),
                (5, 61, "sources.b.multiline.start_pattern"),
                (6, 13, "sources.c.type"),
                (8, 6, "sinks.k"),
                (9, 42, "sinks.f.inputs[0]"),
            ],
            "{err}"
        );
    }

    #[test]
    fn bad_regex() {
        let e =
            errors("sources: {a: {type: file, include: [/x], multiline: {start_pattern: 'a[b'}}}");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].contains(
                "sources.a.multiline.start_pattern: invalid regex: unclosed character class"
            ),
            "{}",
            e[0]
        );
    }

    #[test]
    fn unknown_sink_input() {
        let e = errors(
            "sources: {a: {type: file, include: [/x]}}\nsinks: {o: {type: stdout, inputs: [a, b]}}",
        );
        assert_eq!(
            e,
            ["t.yaml:2:39: error: sinks.o.inputs[1]: unknown source `b`, expected one of `a`"]
        );
    }

    #[test]
    fn kafka_and_elasticsearch_sinks_and_relay() {
        let l = ok(
            "sinks:\n  es: {type: elasticsearch, endpoints: [\"http://x:9200/\"], index: \"logs-%Y.%m.%d\"}\n  \
             bus: {type: kafka, bootstrap_servers: \"b:9092\", topic: \"logs-{kubernetes.namespace}\"}\n\
             relay: {kafka: {bootstrap_servers: \"b:9092\", topics: [\"^logs-.*\"]}}\n",
        );
        let c = l.collector;
        let SinkKind::Elasticsearch(es) = &c.sinks[0].kind else {
            panic!("{:?}", c.sinks[0].kind)
        };
        assert_eq!(es.endpoints, ["http://x:9200"]);
        assert_eq!(es.template_name, "nevermore-logs");
        assert!(es.gzip && es.install_template);
        assert_eq!(
            es.dead_letter,
            crate::config::DeadLetter::File(PathBuf::from(
                "/var/lib/nevermore/dead-letter-es.ndjson"
            ))
        );
        let SinkKind::Kafka(k) = &c.sinks[1].kind else {
            panic!("{:?}", c.sinks[1].kind)
        };
        assert_eq!(k.fallback_topic, "logs");
        assert_eq!(k.message_timeout, Duration::from_secs(300));
        let relay = c.relay.unwrap();
        assert_eq!(
            relay.sinks,
            ["es"],
            "the relay writes every sink it can by default"
        );
        assert_eq!(relay.kafka.group_id, "nevermore-relay");
        assert!(relay.kafka.start_from_earliest);
    }

    #[test]
    fn listen_off_and_address() {
        assert_eq!(
            ok("telemetry: {listen: off}").collector.telemetry.listen,
            None
        );
        assert_eq!(
            ok("telemetry: {listen: \"off\"}")
                .collector
                .telemetry
                .listen,
            None
        );
        let addr = ok("telemetry: {listen: \"0.0.0.0:9000\"}")
            .collector
            .telemetry
            .listen;
        assert_eq!(addr, Some("0.0.0.0:9000".parse().unwrap()));
        let e = errors("telemetry: {listen: nowhere}");
        assert!(
            e[0].starts_with("t.yaml:1:21: error: telemetry.listen: invalid listen address"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn type_errors_and_duplicates() {
        let e =
            errors("cluster: [a]\nsources:\n  a: {type: file, include: /x}\n  a: {type: file}\n");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].starts_with("t.yaml:1:10: error: cluster: expected a string"),
            "{}",
            e[0]
        );
        assert!(
            e[1].starts_with("t.yaml:3:28: error: sources.a.include: expected a list"),
            "{}",
            e[1]
        );
        assert_eq!(
            e[2],
            "t.yaml:4:3: error: sources.a: duplicate key, first given at line 3"
        );
    }

    #[test]
    fn missing_parent_dir_is_a_warning() {
        let l = ok("sinks: {f: {type: file, path: /nonexistent-nevermore/x.ndjson}}");
        assert_eq!(l.warnings.len(), 1);
        assert_eq!(l.warnings[0].severity, Severity::Warning);
        assert!(
            l.warnings[0]
                .to_string()
                .contains("warning: sinks.f.path: directory")
        );
    }

    #[test]
    fn syntax_error_has_position() {
        let e = errors("a: [1, 2\nb: 3\n");
        assert!(e[0].starts_with("t.yaml:2:"), "{}", e[0]);
        assert!(e[0].contains("error: invalid yaml:"), "{}", e[0]);
    }
}
