//! Records of documents rejected for good: where they go, and their shape.
//!
//! `{"@timestamp":now,"reason":..,"status":..,"index":..,"id":..,"document":..}`: in a file, the
//! document is the original JSON object (or, if it is not valid JSON, its text as a string); in
//! a dead letter index it is always the text as a string, so a document that broke the mapping
//! of its index cannot break the dead letter index's mapping too.

use super::EsError;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

/// A document the server refused for good.
#[derive(Debug, Clone)]
pub(super) struct Rejected {
    /// Position in the documents given to `deliver`.
    pub doc: usize,
    pub status: u16,
    pub reason: String,
}

#[derive(Debug)]
pub(super) enum Destination {
    File {
        path: PathBuf,
        file: Arc<std::fs::File>,
        /// A failed write may have left part of a line: the next write starts a new one.
        torn: bool,
    },
    Index(String),
}

impl Destination {
    pub fn open(cfg: &crate::config::DeadLetter) -> Result<Self, EsError> {
        match cfg {
            crate::config::DeadLetter::Index(name) => Ok(Destination::Index(name.clone())),
            crate::config::DeadLetter::File(path) => {
                let open_err = |source| EsError::DeadLetterOpen {
                    path: path.clone(),
                    source,
                };
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(open_err)?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(open_err)?;
                Ok(Destination::File {
                    path: path.clone(),
                    file: Arc::new(file),
                    torn: false,
                })
            }
        }
    }

    /// Appends `lines` and fsyncs the file (on the blocking pool).
    pub async fn append(&mut self, mut lines: Vec<u8>) -> Result<(), EsError> {
        let Destination::File { path, file, torn } = self else {
            return Ok(());
        };
        if *torn {
            lines.insert(0, b'\n');
        }
        let f = Arc::clone(file);
        let result = tokio::task::spawn_blocking(move || {
            (&*f).write_all(&lines)?;
            f.sync_data()
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        *torn = result.is_err();
        result.map_err(|source| EsError::DeadLetterWrite {
            path: path.clone(),
            source,
        })
    }
}

/// Appends `s` as a JSON string.
pub(super) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends JSON text, with raw line breaks (only ever whitespace between tokens in valid
/// JSON) turned into spaces, so it stays on one NDJSON line.
pub(super) fn push_one_line(out: &mut Vec<u8>, json: &[u8]) {
    if memchr::memchr2(b'\n', b'\r', json).is_none() {
        out.extend_from_slice(json);
    } else {
        out.extend(
            json.iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
    }
}

/// One dead letter record (no newline). `embed` puts the document as JSON when it is valid
/// JSON; otherwise (and always when false) as a string.
pub(super) fn record(
    out: &mut Vec<u8>,
    now_ns: i64,
    rejected: &Rejected,
    index: &str,
    id: &str,
    source: &[u8],
    embed: bool,
) {
    out.extend_from_slice(b"{\"@timestamp\":\"");
    out.extend_from_slice(&nevermore_schemas::time::rfc3339_bytes(now_ns));
    out.extend_from_slice(b"\",\"reason\":");
    push_json_str(out, &rejected.reason);
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(rejected.status.to_string().as_bytes());
    out.extend_from_slice(b",\"index\":");
    push_json_str(out, index);
    out.extend_from_slice(b",\"id\":");
    push_json_str(out, id);
    out.extend_from_slice(b",\"document\":");
    if embed && serde_json::from_slice::<serde::de::IgnoredAny>(source).is_ok() {
        push_one_line(out, source);
    } else {
        push_json_str(out, &String::from_utf8_lossy(source));
    }
    out.push(b'}');
}

/// Nanoseconds since the epoch, now.
pub(super) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_embed_valid_json_and_quote_the_rest() {
        let r = Rejected {
            doc: 0,
            status: 400,
            reason: "mapper_parsing_exception: \"n\"".into(),
        };
        let mut out = Vec::new();
        record(&mut out, 0, &r, "logs", "00ab", b"{\"n\":\n\"x\"}", true);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(!out.contains(&b'\n'));
        assert_eq!(v["@timestamp"], "1970-01-01T00:00:00.000000000Z");
        assert_eq!(v["status"], 400);
        assert_eq!(v["reason"], "mapper_parsing_exception: \"n\"");
        assert_eq!(v["document"]["n"], "x");
        assert_eq!(v["id"], "00ab");
        out.clear();
        record(&mut out, 0, &r, "logs", "00ab", b"not json", true);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["document"], "not json");
        out.clear();
        record(&mut out, 0, &r, "logs", "00ab", b"{\"n\":1}", false);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["document"], "{\"n\":1}");
    }
}
