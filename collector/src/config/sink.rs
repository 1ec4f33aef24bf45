//! The validated options of the Kafka and Elasticsearch sinks and of the relay.

use std::path::PathBuf;
use std::time::Duration;

/// `type: kafka`. The producer is always idempotent with `acks=all`: the delivery report is
/// the acknowledgement that advances checkpoints, and it must mean "on every in-sync replica".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSinkConfig {
    /// `bootstrap_servers`: librdkafka's `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `topic`: a name, or a template such as `logs-{kubernetes.namespace}`.
    pub topic: TopicTemplate,
    /// `fallback_topic`: where a record goes when a field of the template is missing (or gives
    /// an invalid topic name). Default `logs`.
    pub fallback_topic: String,
    /// `compression`: none | gzip | snappy | lz4 | zstd (default none, like librdkafka).
    pub compression: KafkaCompression,
    /// `batch_max_bytes`: librdkafka `batch.size` (default 1000000).
    pub batch_max_bytes: u64,
    /// `batch_max_records`: librdkafka `batch.num.messages` (default 10000).
    pub batch_max_records: u64,
    /// `linger_ms`: librdkafka `linger.ms` (default 5).
    pub linger: Duration,
    /// `message_max_bytes`: librdkafka `message.max.bytes` (default 1000000). A record whose
    /// JSON is bigger is handled by `oversize`.
    pub message_max_bytes: u64,
    /// `message_timeout_ms`: librdkafka `message.timeout.ms` (default 300000): how long a
    /// record may wait for a broker before its delivery fails and its batch is written again.
    pub message_timeout: Duration,
    /// `oversize`: what happens to a record bigger than `message_max_bytes`.
    pub oversize: Oversize,
    /// `tls` and `sasl`, mapped to librdkafka's `security.protocol`, `ssl.*` and `sasl.*`.
    pub tls: Option<KafkaTls>,
    pub sasl: Option<KafkaSasl>,
    /// `librdkafka_options`: passed through as given, last (keys that would break the delivery
    /// guarantee, such as `acks` or `enable.idempotence`, are rejected at load).
    pub librdkafka_options: Vec<(String, String)>,
}

/// A topic name with `{field.path}` placeholders taken from the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    pub parts: Vec<TopicPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPart {
    Literal(String),
    /// One of the record fields of [`TOPIC_FIELDS`].
    Field(String),
}

/// The record fields a topic template may use.
pub const TOPIC_FIELDS: &[&str] = &[
    "kubernetes.namespace",
    "kubernetes.pod.name",
    "kubernetes.container.name",
    "kubernetes.workload.name",
    "kubernetes.node.name",
    "orchestrator.cluster.name",
    "event.dataset",
    "log.level",
    "stream",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaCompression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl KafkaCompression {
    /// librdkafka's `compression.codec` value.
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

/// What a sink does with a record too big for its destination. Never a silent drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Oversize {
    /// The message is cut so the record fits and flagged `truncated` (the default).
    Truncate,
    /// The whole record goes to this topic (its broker must accept it: raise the topic's
    /// `max.message.bytes`).
    DeadLetter { topic: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub key_password: Option<String>,
    /// `verify_hostname`, default true.
    pub verify_hostname: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSasl {
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` (librdkafka's `sasl.mechanisms`).
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

/// `type: elasticsearch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElasticsearchSinkConfig {
    /// `endpoints`: base URLs (`http://` or `https://`), tried in turn on connection errors.
    pub endpoints: Vec<String>,
    /// `index` (default `logs-nevermore`), or `data_stream`.
    pub target: IndexTarget,
    pub auth: Option<EsAuth>,
    pub tls: EsTls,
    /// `batch_max_records` (default 1000): documents in one `_bulk` request.
    pub batch_max_records: usize,
    /// `batch_max_bytes` (default 5 MiB): uncompressed body of one `_bulk` request.
    pub batch_max_bytes: usize,
    /// `flush_interval_ms` (default 1000): the longest a written record waits for a
    /// partly filled request to be sent.
    pub flush_interval: Duration,
    /// `compression`: gzip request bodies (default true).
    pub gzip: bool,
    /// `request_timeout_ms` (default 60000).
    pub request_timeout: Duration,
    /// `retry_initial_backoff_ms` (default 100) and `retry_max_backoff_ms` (default 10000):
    /// exponential backoff with full jitter for 429, 5xx and connection errors.
    pub retry_initial_backoff: Duration,
    pub retry_max_backoff: Duration,
    /// `dead_letter`: where documents rejected for good (4xx other than 409, 429) go.
    pub dead_letter: DeadLetter,
    /// `install_template` (default true): PUT the index template of `nevermore-schemas` at
    /// start (OpenSearch gets its twin).
    pub install_template: bool,
    /// `template_name` (default `nevermore-` and the index name up to its first date field).
    pub template_name: String,
}

/// Where documents go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexTarget {
    /// `index:` with optional strftime fields of the record's UTC `@timestamp`: `%Y %m %d %H`
    /// (`logs-%Y.%m.%d`).
    Index(String),
    /// `data_stream:` (writes are `create`, which data streams require anyway).
    DataStream(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsAuth {
    Basic {
        username: String,
        password: String,
    },
    Bearer {
        token: String,
    },
    /// `api_key`: the base64 `id:key` of Elasticsearch's API keys.
    ApiKey {
        key: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EsTls {
    /// `tls.ca_file`: PEM roots added to the system ones.
    pub ca_file: Option<PathBuf>,
    /// `tls.insecure_skip_verify` (default false).
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetter {
    /// `dead_letter: {file: PATH}`: NDJSON lines `{"reason":..,"status":..,"index":..,"document":{..}}`.
    File(PathBuf),
    /// `dead_letter: {index: NAME}`: the same object, indexed.
    Index(String),
}

/// `relay:`: Kafka topics into sinks (`elasticsearch`, `embedded`, `file`).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `relay.kafka`.
    pub kafka: RelayKafka,
    /// `relay.sinks`: ids of top-level sinks this relay writes (default: every sink of a
    /// type the relay can write).
    pub sinks: Vec<String>,
    /// `relay.batch_max_records` (default 2000) and `relay.batch_timeout_ms` (default 500):
    /// records consumed before one write to the sinks and an offset commit.
    pub batch_max_records: usize,
    pub batch_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayKafka {
    pub bootstrap_servers: String,
    /// `topics`: names; an entry starting with `^` is a regex (librdkafka subscribes by pattern).
    pub topics: Vec<String>,
    /// `group_id` (default `nevermore-relay`).
    pub group_id: String,
    /// `instance_id`: static group membership (librdkafka `group.instance.id`, KIP-345). A
    /// relay that restarts with the same id takes its partitions back at once instead of
    /// waiting for the group to notice the old member is gone (use the pod name of a
    /// StatefulSet). Each running relay needs its own.
    pub instance_id: Option<String>,
    /// `session_timeout_ms` (default 45000).
    pub session_timeout: Duration,
    /// `start_from`: where a group with no committed offset starts (`earliest`, the default,
    /// or `latest`).
    pub start_from_earliest: bool,
    pub tls: Option<KafkaTls>,
    pub sasl: Option<KafkaSasl>,
    pub librdkafka_options: Vec<(String, String)>,
}

/// A Kafka topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `logs-{kubernetes.namespace}` → literal and field parts.
pub fn parse_topic_template(text: &str) -> Result<TopicTemplate, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let Some(end) = rest.find('}') else {
                    return Err("unclosed `{` in the topic template".into());
                };
                let field = &rest[1..end];
                if !TOPIC_FIELDS.contains(&field) {
                    return Err(format!(
                        "unknown field `{field}` in the topic template, expected one of {}",
                        TOPIC_FIELDS
                            .iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                parts.push(TopicPart::Field(field.to_owned()));
                rest = &rest[end + 1..];
            }
            found => {
                let end = found.unwrap_or(rest.len());
                let lit = &rest[..end];
                if lit.contains('}') {
                    return Err("unmatched `}` in the topic template".into());
                }
                if !lit
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                {
                    return Err(format!(
                        "`{lit}` is not valid in a topic name (letters, digits, `.`, `_`, `-`)"
                    ));
                }
                parts.push(TopicPart::Literal(lit.to_owned()));
                rest = &rest[end..];
            }
        }
    }
    Ok(TopicTemplate { parts })
}
