//! The `serve` section of the config file (the same file `collect` reads; its other sections
//! are the collector's business and are not looked at here).

use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {message}")]
    Read { file: String, message: String },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: serve.{key}: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

/// The file as this crate reads it. Top-level keys are checked by the collector's loader.
#[derive(Debug, Default, Deserialize)]
struct RawFile {
    #[serde(default)]
    data_dir: Option<PathBuf>,
    #[serde(default)]
    serve: Option<RawServe>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    listen: Option<String>,
    logs: Option<RawLogs>,
    request_timeout_ms: Option<u64>,
    max_in_flight: Option<usize>,
    max_page_size: Option<usize>,
    tenants: Option<Vec<RawTenant>>,
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    upstreams: Option<Vec<RawUpstream>>,
    replica_labels: Option<Vec<String>>,
    dedup: Option<String>,
    dedup_interval_ms: Option<u64>,
    partial_response: Option<bool>,
    lookback_delta_ms: Option<u64>,
    max_samples: Option<usize>,
    max_series: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
enum RawUpstream {
    Prometheus {
        url: String,
        name: Option<String>,
        timeout_ms: Option<u64>,
        bearer_token: Option<String>,
        /// `streamed` (XOR chunks, the default) or `samples`.
        response_type: Option<String>,
    },
    #[serde(rename = "victoriametrics")]
    VictoriaMetrics {
        url: String,
        name: Option<String>,
        timeout_ms: Option<u64>,
        bearer_token: Option<String>,
    },
    Static {
        paths: Vec<PathBuf>,
        name: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "backend", rename_all = "snake_case")]
enum RawLogs {
    Embedded {
        path: Option<PathBuf>,
    },
    Elasticsearch {
        endpoints: Vec<String>,
        index: Option<String>,
        username: Option<String>,
        password: Option<String>,
        bearer_token: Option<String>,
        request_timeout_ms: Option<u64>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    token: String,
    namespaces: Vec<String>,
}

/// The validated `serve` section.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub logs: LogsConfig,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
    pub max_page_size: usize,
    /// Empty: no authentication (local use).
    pub tenants: Vec<Tenant>,
    pub metrics: MetricsConfig,
}

/// `serve.metrics`: where samples come from and how replicas are merged.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Empty: the metrics API answers with no data (and says so in a warning).
    pub upstreams: Vec<UpstreamConfig>,
    pub replica_labels: Vec<String>,
    pub dedup: nevermore_promql::dedup::Algorithm,
    /// Whether an upstream failure gives a partial answer with a warning (Thanos'
    /// `partial_response`) rather than an error; a request may override it.
    pub partial_response: bool,
    pub lookback_delta: Duration,
    pub max_samples: usize,
    pub max_series: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            upstreams: Vec::new(),
            replica_labels: vec!["replica".into(), "prometheus_replica".into()],
            dedup: nevermore_promql::dedup::Algorithm::Penalty,
            partial_response: true,
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            max_series: 500_000,
        }
    }
}

/// A credential: `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, Clone)]
pub enum UpstreamConfig {
    /// Prometheus remote read (`POST /api/v1/read`).
    Prometheus {
        name: String,
        url: String,
        timeout: Duration,
        bearer_token: Option<Secret>,
        streamed: bool,
    },
    /// VictoriaMetrics' export API (single node, or vmselect with its URL prefix).
    VictoriaMetrics {
        name: String,
        url: String,
        timeout: Duration,
        bearer_token: Option<Secret>,
    },
    /// OpenMetrics files with timestamps, loaded at start.
    Static { name: String, paths: Vec<PathBuf> },
}

#[derive(Debug, Clone)]
pub enum LogsConfig {
    Embedded {
        path: PathBuf,
    },
    Elasticsearch {
        endpoints: Vec<String>,
        index: String,
        username: Option<String>,
        password: Option<String>,
        bearer_token: Option<String>,
        request_timeout: Duration,
    },
}

#[derive(Clone)]
pub struct Tenant {
    pub token: String,
    pub namespaces: BTreeSet<String>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token.
        f.debug_struct("Tenant")
            .field("namespaces", &self.namespaces)
            .finish_non_exhaustive()
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9800";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/nevermore";

/// Where the embedded index lives under a data dir (the collector's embedded sink uses the same).
pub fn default_index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index")
}

pub fn load(path: &Path) -> Result<ServeConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: file.clone(),
        message: e.to_string(),
    })?;
    load_str(&text, &file)
}

pub fn load_str(text: &str, file: &str) -> Result<ServeConfig, ConfigError> {
    let raw: RawFile = if text.trim().is_empty() {
        RawFile::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_string(),
            message: e.to_string(),
        })?
    };
    validate(raw, file)
}

/// The configuration with nothing set: local use on the default data dir.
pub fn defaults(data_dir: &Path) -> ServeConfig {
    let raw = RawFile {
        data_dir: Some(data_dir.to_path_buf()),
        serve: None,
    };
    // Defaults are valid by construction.
    validate(raw, "<defaults>").unwrap_or_else(|_| unreachable_defaults())
}

fn unreachable_defaults() -> ServeConfig {
    ServeConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 9800)),
        logs: LogsConfig::Embedded {
            path: PathBuf::from(DEFAULT_DATA_DIR).join("index"),
        },
        request_timeout: Duration::from_secs(30),
        max_in_flight: 64,
        max_page_size: 1000,
        tenants: Vec::new(),
        metrics: MetricsConfig::default(),
    }
}

fn validate(raw: RawFile, file: &str) -> Result<ServeConfig, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        file: file.to_string(),
        key: key.to_string(),
        message,
    };
    let data_dir = raw
        .data_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let s = raw.serve.unwrap_or_default();
    let metrics = validate_metrics(s.metrics.unwrap_or_default(), &invalid)?;
    let listen_text = s.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen = listen_text.parse().map_err(|_| {
        invalid(
            "listen",
            format!("`{listen_text}` is not an address such as {DEFAULT_LISTEN}"),
        )
    })?;
    let logs = match s.logs.unwrap_or(RawLogs::Embedded { path: None }) {
        RawLogs::Embedded { path } => LogsConfig::Embedded {
            path: path.unwrap_or_else(|| default_index_dir(&data_dir)),
        },
        RawLogs::Elasticsearch {
            endpoints,
            index,
            username,
            password,
            bearer_token,
            request_timeout_ms,
        } => {
            if endpoints.is_empty() {
                return Err(invalid(
                    "logs.endpoints",
                    "at least one endpoint is needed".into(),
                ));
            }
            for e in &endpoints {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    return Err(invalid(
                        "logs.endpoints",
                        format!("`{e}` is not an http:// or https:// URL"),
                    ));
                }
            }
            if password.is_some() && username.is_none() {
                return Err(invalid(
                    "logs.password",
                    "a password needs a username".into(),
                ));
            }
            LogsConfig::Elasticsearch {
                endpoints,
                index: index.unwrap_or_else(|| "logs-nevermore*".into()),
                username,
                password,
                bearer_token,
                request_timeout: Duration::from_millis(request_timeout_ms.unwrap_or(30_000)),
            }
        }
    };
    let request_timeout_ms = s.request_timeout_ms.unwrap_or(30_000);
    if request_timeout_ms == 0 {
        return Err(invalid("request_timeout_ms", "must be positive".into()));
    }
    let max_in_flight = s.max_in_flight.unwrap_or(64);
    if max_in_flight == 0 {
        return Err(invalid("max_in_flight", "must be positive".into()));
    }
    let max_page_size = s.max_page_size.unwrap_or(1000);
    if !(1..=10_000).contains(&max_page_size) {
        return Err(invalid(
            "max_page_size",
            "must be between 1 and 10000".into(),
        ));
    }
    let mut tenants = Vec::new();
    for (i, t) in s.tenants.unwrap_or_default().into_iter().enumerate() {
        if t.token.len() < 16 {
            return Err(invalid(
                &format!("tenants[{i}].token"),
                "must be at least 16 characters".into(),
            ));
        }
        if t.namespaces.is_empty() {
            return Err(invalid(
                &format!("tenants[{i}].namespaces"),
                "a tenant needs at least one namespace".into(),
            ));
        }
        // An empty name would match records and series without a namespace (cluster-wide ones).
        if t.namespaces.iter().any(|n| n.trim().is_empty()) {
            return Err(invalid(
                &format!("tenants[{i}].namespaces"),
                "a namespace name cannot be empty".into(),
            ));
        }
        tenants.push(Tenant {
            token: t.token,
            namespaces: t.namespaces.into_iter().collect(),
        });
    }
    Ok(ServeConfig {
        listen,
        logs,
        request_timeout: Duration::from_millis(request_timeout_ms),
        max_in_flight,
        max_page_size,
        tenants,
        metrics,
    })
}

fn validate_metrics(
    m: RawMetrics,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<MetricsConfig, ConfigError> {
    use nevermore_promql::dedup::Algorithm;
    let d = MetricsConfig::default();
    let interval_ms = m.dedup_interval_ms.unwrap_or(15_000);
    if interval_ms == 0 {
        return Err(invalid(
            "metrics.dedup_interval_ms",
            "must be positive".into(),
        ));
    }
    let dedup = match m.dedup.as_deref().unwrap_or("penalty") {
        "penalty" => Algorithm::Penalty,
        "interval" => Algorithm::Interval {
            interval_ms: interval_ms as i64,
        },
        "chain" => Algorithm::Chain,
        "none" => Algorithm::None,
        other => {
            return Err(invalid(
                "metrics.dedup",
                format!("`{other}` is not one of penalty, interval, chain, none"),
            ));
        }
    };
    if m.dedup_interval_ms.is_some() && !matches!(dedup, Algorithm::Interval { .. }) {
        return Err(invalid(
            "metrics.dedup_interval_ms",
            "applies only to `dedup: interval`".into(),
        ));
    }
    let replica_labels = m.replica_labels.unwrap_or(d.replica_labels);
    for (i, l) in replica_labels.iter().enumerate() {
        if !nevermore_promql::model::is_label_name(l) {
            return Err(invalid(
                &format!("metrics.replica_labels[{i}]"),
                format!("`{l}` is not a label name"),
            ));
        }
    }
    let lookback_ms = m.lookback_delta_ms.unwrap_or(300_000);
    if lookback_ms == 0 {
        return Err(invalid(
            "metrics.lookback_delta_ms",
            "must be positive".into(),
        ));
    }
    let max_samples = m.max_samples.unwrap_or(d.max_samples);
    let max_series = m.max_series.unwrap_or(d.max_series);
    if max_samples == 0 || max_series == 0 {
        return Err(invalid(
            "metrics.max_samples",
            "limits must be positive".into(),
        ));
    }
    let mut upstreams = Vec::new();
    let mut names = BTreeSet::new();
    for (i, u) in m.upstreams.unwrap_or_default().into_iter().enumerate() {
        let key = |k: &str| format!("metrics.upstreams[{i}].{k}");
        let check_url = |url: &str| -> Result<(), ConfigError> {
            if url.starts_with("http://") || url.starts_with("https://") {
                Ok(())
            } else {
                Err(invalid(
                    &key("url"),
                    format!("`{url}` is not an http:// or https:// URL"),
                ))
            }
        };
        let timeout = |t: Option<u64>| -> Result<Duration, ConfigError> {
            match t.unwrap_or(30_000) {
                0 => Err(invalid(&key("timeout_ms"), "must be positive".into())),
                ms => Ok(Duration::from_millis(ms)),
            }
        };
        let u = match u {
            RawUpstream::Prometheus {
                url,
                name,
                timeout_ms,
                bearer_token,
                response_type,
            } => {
                check_url(&url)?;
                let streamed = match response_type.as_deref().unwrap_or("streamed") {
                    "streamed" => true,
                    "samples" => false,
                    other => {
                        return Err(invalid(
                            &key("response_type"),
                            format!("`{other}` is not one of streamed, samples"),
                        ));
                    }
                };
                UpstreamConfig::Prometheus {
                    name: name.unwrap_or_else(|| url.clone()),
                    url: url.trim_end_matches('/').to_string(),
                    timeout: timeout(timeout_ms)?,
                    bearer_token: bearer_token.map(Secret),
                    streamed,
                }
            }
            RawUpstream::VictoriaMetrics {
                url,
                name,
                timeout_ms,
                bearer_token,
            } => {
                check_url(&url)?;
                UpstreamConfig::VictoriaMetrics {
                    name: name.unwrap_or_else(|| url.clone()),
                    url: url.trim_end_matches('/').to_string(),
                    timeout: timeout(timeout_ms)?,
                    bearer_token: bearer_token.map(Secret),
                }
            }
            RawUpstream::Static { paths, name } => {
                if paths.is_empty() {
                    return Err(invalid(&key("paths"), "at least one file is needed".into()));
                }
                UpstreamConfig::Static {
                    name: name.unwrap_or_else(|| format!("static-{i}")),
                    paths,
                }
            }
        };
        let name = match &u {
            UpstreamConfig::Prometheus { name, .. }
            | UpstreamConfig::VictoriaMetrics { name, .. }
            | UpstreamConfig::Static { name, .. } => name.clone(),
        };
        if !names.insert(name.clone()) {
            return Err(invalid(
                &key("name"),
                format!("`{name}` names two upstreams"),
            ));
        }
        upstreams.push(u);
    }
    Ok(MetricsConfig {
        upstreams,
        replica_labels,
        dedup,
        partial_response: m.partial_response.unwrap_or(true),
        lookback_delta: Duration::from_millis(lookback_ms),
        max_samples,
        max_series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let c = load_str("", "f").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(matches!(c.logs, LogsConfig::Embedded { .. }));
        let c = load_str(
            "data_dir: /d\nsources: {}\nserve:\n  listen: 127.0.0.1:1\n  tenants:\n    - {token: aaaaaaaaaaaaaaaa, namespaces: [shop]}\n",
            "f",
        )
        .unwrap();
        assert_eq!(c.tenants.len(), 1);
        let e = load_str("serve:\n  lisen: x\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen"), "{e}");
        let e = load_str(
            "serve:\n  logs: {backend: elasticsearch, endpoints: []}\n",
            "f",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("logs.endpoints"), "{e}");
    }
}
