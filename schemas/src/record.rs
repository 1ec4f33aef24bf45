//! The log record (ECS field names).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One log record: one line of a container (after partial/multiline merge) or of a log file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogRecord {
    /// RFC 3339 UTC timestamp with nanoseconds, e.g. `2026-11-26T10:00:00.123456789Z`.
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    /// The log line, without its trailing newline. Invalid UTF-8 is replaced by U+FFFD and the
    /// record carries `invalid_utf8` in `log.flags`.
    pub message: String,
    /// `stdout` or `stderr` for container logs; absent for plain files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StdStream>,
    pub log: Log,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<Kubernetes>,
    pub orchestrator: Orchestrator,
    pub host: Host,
    pub event: Event,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StdStream {
    Stdout,
    Stderr,
}

impl StdStream {
    pub const fn as_str(self) -> &'static str {
        match self {
            StdStream::Stdout => "stdout",
            StdStream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// Normalised level: trace, debug, info, warn, error, fatal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    pub file: LogFile,
    /// Byte offset of the record's first byte in its segment (decompressed for `.gz`).
    pub offset: u64,
    /// Markers: `partial` (merged from CRI/docker partial chunks), `multiline`, `truncated`,
    /// `invalid_utf8`, `unterminated` (flushed by timeout without its final chunk).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<LogFlag>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LogFlag {
    Partial,
    Multiline,
    Truncated,
    InvalidUtf8,
    Unterminated,
}

impl LogFlag {
    pub const fn as_str(self) -> &'static str {
        match self {
            LogFlag::Partial => "partial",
            LogFlag::Multiline => "multiline",
            LogFlag::Truncated => "truncated",
            LogFlag::InvalidUtf8 => "invalid_utf8",
            LogFlag::Unterminated => "unterminated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// Path of the segment the record was read from, as first seen by the collector.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Kubernetes {
    pub namespace: String,
    pub pod: Pod,
    pub container: Container,
    pub node: Node,
    /// The controller that owns the pod (Deployment, StatefulSet, DaemonSet, Job, ...), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// The workload's name: `api` for the pods `api-7d9f8c6b5-x2x9k`, `db` for `db-0`.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Container {
    pub name: String,
    pub restart_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Orchestrator {
    pub cluster: Cluster,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Deterministic id: hash of (cluster, node, stream, segment fingerprint, byte offset), as
    /// 16 lowercase hex digits. The Elasticsearch `_id`.
    pub id: String,
    /// The stream the record belongs to (one container restart, or one log file), as 16
    /// lowercase hex digits. With `sequence` it orders records of equal `@timestamp`.
    pub stream_id: String,
    /// Monotonic per stream, without gaps, starting at 0.
    pub sequence: u64,
    /// `container` for Kubernetes container logs, or the `dataset` of a file source.
    pub dataset: String,
}

/// The node the record was collected on (ECS `host`): present on every record, also for file
/// sources that have no Kubernetes fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
}
