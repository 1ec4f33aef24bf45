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
    /// The metrics side is planned (issue 5); its keys are accepted and not used yet.
    metrics: Option<serde::de::IgnoredAny>,
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
    let _ = s.metrics;
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
