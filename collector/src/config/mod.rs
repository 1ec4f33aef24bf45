//! The collector's configuration, as the code uses it: validated, with defaults applied.
//!
//! The YAML file is read into the serde raw types of [`raw`] (`deny_unknown_fields`), then
//! validated into [`CollectorConfig`]. Every problem names the key and its file position.

pub mod error;
pub mod load;
pub mod node;
pub mod raw;
pub mod sink;

pub use error::{ConfigDiagnostic, ConfigError, ConfigErrors, Severity};
pub use load::{HostEnv, Loaded, load, load_str, load_str_with};
pub use sink::{
    DeadLetter, ElasticsearchSinkConfig, EsAuth, EsTls, IndexTarget, KafkaCompression, KafkaSasl,
    KafkaSinkConfig, KafkaTls, Oversize, RelayConfig, RelayKafka, TopicPart, TopicTemplate,
    parse_topic_template, valid_topic,
};

use regex::Regex;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `nevermore collect` needs.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// `node_name`, else `$NODE_NAME`, else the host name.
    pub node_name: String,
    /// `cluster`, default `default`.
    pub cluster: String,
    /// `data_dir`, default `/var/lib/nevermore`: checkpoints live in `<data_dir>/checkpoints.json`.
    pub data_dir: PathBuf,
    /// In file order.
    pub sources: Vec<SourceConfig>,
    /// In file order. Default when the file names none: one `stdout` sink.
    pub sinks: Vec<SinkConfig>,
    /// `relay:`, read by `nevermore relay` (the collector ignores it).
    pub relay: Option<RelayConfig>,
    pub telemetry: TelemetryConfig,
    pub pipeline: PipelineConfig,
}

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `telemetry.listen`: address of `/metrics` and `/health`; `None` when set to `off`.
    /// Default `127.0.0.1:9801`.
    pub listen: Option<SocketAddr>,
}

/// Tuning of the tail → parse → batch → sink pipeline (`pipeline:` section).
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// `batch_max_records`, default 4096.
    pub batch_max_records: usize,
    /// `batch_max_bytes`, default 4 MiB (message bytes).
    pub batch_max_bytes: usize,
    /// `batch_timeout_ms`, default 200: a partly filled batch is sent after this long.
    pub batch_timeout: Duration,
    /// `max_batches_in_flight`, default 4: batches sent and not yet acknowledged. When reached,
    /// reading stops (backpressure).
    pub max_batches_in_flight: usize,
    /// `checkpoint_interval_ms`, default 1000.
    pub checkpoint_interval: Duration,
    /// `scan_interval_ms`, default 2000: periodic stat reconciliation of every source besides
    /// inotify, so a missed event costs latency, never data.
    pub scan_interval: Duration,
    /// `read_chunk_bytes`, default 64 KiB: bytes read from one stream per turn (fairness).
    pub read_chunk_bytes: usize,
    /// `max_open_files`, default 4096.
    pub max_open_files: usize,
    /// The kubelet's `containerLogMaxSize` × (`containerLogMaxFiles` − 1): a container stream
    /// with more unread bytes than this risks losing a segment to kubelet's rotation before it
    /// is read, and is named in a warning. From `kubelet_container_log_max_size_bytes`
    /// (default 10 MiB, kubelet's default) and `kubelet_container_log_max_files` (default 5).
    pub rotation_risk_bytes: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch_max_records: 4096,
            batch_max_bytes: 4 << 20,
            batch_timeout: Duration::from_millis(200),
            max_batches_in_flight: 4,
            checkpoint_interval: Duration::from_millis(1000),
            scan_interval: Duration::from_millis(2000),
            read_chunk_bytes: 64 << 10,
            max_open_files: 4096,
            rotation_risk_bytes: (10 << 20) * 4,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The key under `sources:`.
    pub id: String,
    pub kind: SourceKind,
    pub parse: ParseConfig,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    /// `type: kubernetes_logs`: `<pods_dir>/<ns>_<pod>_<uid>/<container>/<restart>.log` and
    /// kubelet's rotated `N.log.<timestamp>` and `N.log.<timestamp>.gz`.
    Kubernetes {
        /// `pods_dir`, default `/var/log/pods`.
        pods_dir: PathBuf,
    },
    /// `type: file`: files matched by `include` globs and not by `exclude` globs.
    File {
        include: Vec<String>,
        exclude: Vec<String>,
        /// `dataset`, default the source id.
        dataset: String,
    },
}

/// Line format of a source: the parser's own type (`container` = CRI or docker json-file,
/// detected per line, the `kubernetes_logs` default; `plain` is the `file` default).
pub use nevermore_parse::LineFormat;

#[derive(Debug, Clone)]
pub struct ParseConfig {
    /// `format`.
    pub format: LineFormat,
    /// `max_record_bytes`, default 1 MiB: longer messages are truncated and flagged `truncated`.
    pub max_record_bytes: usize,
    /// `partial_timeout_ms`, default 5000: a CRI `P` / docker partial chunk never followed by its
    /// final chunk is sent after this long, flagged `unterminated`.
    pub partial_timeout: Duration,
    /// `multiline: {start_pattern, timeout_ms, max_lines}`.
    pub multiline: Option<MultilineConfig>,
    /// `json_level`, default true: take the level of JSON message bodies into `log.level`.
    pub json_level: bool,
}

#[derive(Debug, Clone)]
pub struct MultilineConfig {
    /// A line matching this starts a new record; other lines continue the current one.
    pub start_pattern: Regex,
    /// `timeout_ms`, default 1000.
    pub timeout: Duration,
    /// `max_lines`, default 500.
    pub max_lines: usize,
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The key under `sinks:`.
    pub id: String,
    /// `inputs`: source ids; default every source.
    pub inputs: Vec<String>,
    pub kind: SinkKind,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    /// `type: file`: NDJSON, one record a line, in delivery order.
    File { path: PathBuf },
    /// `type: stdout`: NDJSON on standard output.
    Stdout,
    /// `type: embedded`: the embedded search index.
    Embedded(EmbeddedSinkConfig),
    /// `type: kafka`.
    Kafka(KafkaSinkConfig),
    /// `type: elasticsearch`.
    Elasticsearch(ElasticsearchSinkConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedSinkConfig {
    /// The index directory; `None` = `<data_dir>/index`.
    pub path: Option<PathBuf>,
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
    pub commit_interval: Duration,
    pub writer_memory_bytes: u64,
}
