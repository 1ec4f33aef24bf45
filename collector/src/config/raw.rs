//! Raw serde types of the config file: what the YAML says, before defaults and validation.
//!
//! Units are in the key names (`*_ms`, `*_bytes`). Unknown keys are errors. The loader
//! ([`super::load`]) deserializes each top-level key, each source and each sink on its own so
//! that one problem does not hide the others, and assembles a [`RawConfig`].

use serde::Deserialize;
use std::path::PathBuf;

/// The keys of the top level of the file.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "node_name",
    "cluster",
    "data_dir",
    "telemetry",
    "pipeline",
    "sources",
    "sinks",
    "relay",
    "serve",
];

/// The whole file, as assembled by the loader. `serve` (read by `nevermore serve`) is accepted
/// and not kept here.
#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    pub node_name: Option<String>,
    pub cluster: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub telemetry: Option<RawTelemetry>,
    pub pipeline: Option<RawPipeline>,
    /// In file order; `None` when the key is absent.
    pub sources: Option<Vec<(String, RawSource)>>,
    /// In file order; `None` when the key is absent.
    pub sinks: Option<Vec<(String, RawSinkEntry)>>,
    pub relay: Option<RawRelay>,
}

/// `telemetry:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawTelemetry {
    pub listen: Option<RawListen>,
}

/// `telemetry.listen`: an address, or `off` (which YAML 1.1 readers take for the boolean false).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawListen {
    Bool(bool),
    Text(String),
}

impl<'de> Deserialize<'de> for RawListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawListen;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an address such as `127.0.0.1:9801`, or `off`")
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawListen, E> {
                Ok(RawListen::Bool(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawListen, E> {
                Ok(RawListen::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `pipeline:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawPipeline {
    pub batch_max_records: Option<u64>,
    pub batch_max_bytes: Option<u64>,
    pub batch_timeout_ms: Option<u64>,
    pub max_batches_in_flight: Option<u64>,
    pub checkpoint_interval_ms: Option<u64>,
    pub scan_interval_ms: Option<u64>,
    pub read_chunk_bytes: Option<u64>,
    pub max_open_files: Option<u64>,
    pub kubelet_container_log_max_size_bytes: Option<u64>,
    pub kubelet_container_log_max_files: Option<u64>,
}

/// `sources.<id>.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawSourceType {
    KubernetesLogs,
    File,
}

/// `sources.<id>.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawFormat {
    Container,
    Cri,
    Docker,
    Plain,
    Json,
}

/// `sources.<id>:`. One struct for every type (so every key gets its own position in errors);
/// the loader rejects keys that do not belong to the source's type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawSource {
    #[serde(rename = "type")]
    pub kind: RawSourceType,
    /// `kubernetes_logs` only.
    pub pods_dir: Option<PathBuf>,
    /// `file` only.
    pub include: Option<Vec<String>>,
    /// `file` only.
    pub exclude: Option<Vec<String>>,
    /// `file` only.
    pub dataset: Option<String>,
    pub format: Option<RawFormat>,
    pub max_record_bytes: Option<u64>,
    pub partial_timeout_ms: Option<u64>,
    pub json_level: Option<bool>,
    pub multiline: Option<RawMultiline>,
}

/// `sources.<id>.multiline:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawMultiline {
    pub start_pattern: String,
    pub timeout_ms: Option<u64>,
    pub max_lines: Option<u64>,
}

/// `sinks.<id>.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawSinkType {
    File,
    Stdout,
    Kafka,
    Elasticsearch,
    Embedded,
}

impl RawSinkType {
    pub fn name(self) -> &'static str {
        match self {
            RawSinkType::File => "file",
            RawSinkType::Stdout => "stdout",
            RawSinkType::Kafka => "kafka",
            RawSinkType::Elasticsearch => "elasticsearch",
            RawSinkType::Embedded => "embedded",
        }
    }
}

/// `sinks.<id>:`, read by the shape its `type` names.
#[derive(Debug, Clone)]
pub enum RawSinkEntry {
    /// `file`, `stdout`, `embedded`.
    Local(RawSink),
    Kafka(RawKafkaSink),
    Elasticsearch(RawElasticsearchSink),
}

/// `sinks.<id>:` of type `file`, `stdout` or `embedded`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawSink {
    #[serde(rename = "type")]
    pub kind: RawSinkType,
    /// `file`: the file; `embedded`: the index directory (default `<data_dir>/index`).
    pub path: Option<PathBuf>,
    pub inputs: Option<Vec<String>>,
    /// `embedded` only: records older than this are deleted.
    pub max_age_ms: Option<u64>,
    /// `embedded` only: the oldest records are deleted while the index is bigger.
    pub max_bytes: Option<u64>,
    /// `embedded` only: the least time between two commits (each commit is a durable point
    /// and makes records searchable).
    pub commit_interval_ms: Option<u64>,
    /// `embedded` only: the indexing buffer.
    pub writer_memory_bytes: Option<u64>,
}

/// `sinks.<id>:` of type `kafka`: librdkafka's producer options, by their usual names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawKafkaSink {
    #[serde(rename = "type")]
    pub kind: RawSinkType,
    pub inputs: Option<Vec<String>>,
    pub bootstrap_servers: String,
    pub topic: Option<String>,
    pub fallback_topic: Option<String>,
    pub compression: Option<String>,
    pub batch_max_bytes: Option<u64>,
    pub batch_max_records: Option<u64>,
    pub linger_ms: Option<u64>,
    pub message_max_bytes: Option<u64>,
    pub message_timeout_ms: Option<u64>,
    pub oversize: Option<RawOversize>,
    pub tls: Option<RawKafkaTls>,
    pub sasl: Option<RawKafkaSasl>,
    pub librdkafka_options: Option<std::collections::BTreeMap<String, RawScalar>>,
}

/// `oversize:` `truncate`, or `{dead_letter_topic: NAME}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "`truncate`, or `{dead_letter_topic: NAME}`")]
pub enum RawOversize {
    Word(String),
    DeadLetter(RawDeadLetterTopic),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeadLetterTopic {
    pub dead_letter_topic: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawKafkaTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub key_password: Option<String>,
    pub verify_hostname: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawKafkaSasl {
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

/// A scalar given to librdkafka as text (`linger.ms: 5` and `linger.ms: "5"` alike).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a string, number or boolean")]
pub enum RawScalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl RawScalar {
    pub fn to_text(&self) -> String {
        match self {
            RawScalar::Bool(b) => b.to_string(),
            RawScalar::Int(i) => i.to_string(),
            RawScalar::Float(f) => f.to_string(),
            RawScalar::Text(t) => t.clone(),
        }
    }
}

/// `sinks.<id>:` of type `elasticsearch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawElasticsearchSink {
    #[serde(rename = "type")]
    pub kind: RawSinkType,
    pub inputs: Option<Vec<String>>,
    pub endpoints: Vec<String>,
    pub index: Option<String>,
    pub data_stream: Option<String>,
    pub auth: Option<RawEsAuth>,
    pub tls: Option<RawEsTls>,
    pub batch_max_records: Option<u64>,
    pub batch_max_bytes: Option<u64>,
    pub flush_interval_ms: Option<u64>,
    /// `gzip` (default) or `none`.
    pub compression: Option<String>,
    pub request_timeout_ms: Option<u64>,
    pub retry_initial_backoff_ms: Option<u64>,
    pub retry_max_backoff_ms: Option<u64>,
    pub dead_letter: Option<RawEsDeadLetter>,
    pub install_template: Option<bool>,
    pub template_name: Option<String>,
}

/// `auth:` one of `{username, password}`, `{bearer_token}`, `{api_key}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawEsAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub bearer_token: Option<String>,
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawEsTls {
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: Option<bool>,
}

/// `dead_letter:` `{file: PATH}` or `{index: NAME}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawEsDeadLetter {
    pub file: Option<PathBuf>,
    pub index: Option<String>,
}

/// `relay:`: what `nevermore relay` consumes, and into which of the file's sinks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawRelay {
    pub kafka: RawRelayKafka,
    pub sinks: Option<Vec<String>>,
    pub batch_max_records: Option<u64>,
    pub batch_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawRelayKafka {
    pub bootstrap_servers: String,
    pub topics: Vec<String>,
    pub group_id: Option<String>,
    pub instance_id: Option<String>,
    pub session_timeout_ms: Option<u64>,
    /// `earliest` (default) or `latest`.
    pub start_from: Option<String>,
    pub tls: Option<RawKafkaTls>,
    pub sasl: Option<RawKafkaSasl>,
    pub librdkafka_options: Option<std::collections::BTreeMap<String, RawScalar>>,
}
