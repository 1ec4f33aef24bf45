//! The embedded log index: a tantivy index in one directory, written by one writer (the
//! collector's `embedded` sink, or `nevermore up`) and read by any number of readers (the query
//! service), in the same process or another.
//!
//! This crate owns the on-disk format: the schema, the message tokenizer, the mapping of a
//! [`LogRecord`](nevermore_schemas::LogRecord) to a document, the version file, and the commit
//! payload that makes replays idempotent. No tokio, no network, no clock (the writer is told the
//! time).
//!
//! Idempotence: every commit stores, per stream, the next `event.sequence` it has not indexed. A
//! collector that crashed after a commit but before its checkpoint replays records of those
//! streams; the writer skips every record below that mark, so the index holds each record once.

mod doc;
pub mod messages;
mod writer;

pub use doc::{IndexDoc, format_ts, parse_ts};
pub use writer::{Retention, RetentionStats, Writer};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{LowerCaser, SimpleTokenizer, TextAnalyzer};
use tantivy::{Index, IndexReader, ReloadPolicy};

/// Version of the on-disk format; another version is refused, never reinterpreted.
pub const FORMAT_VERSION: u32 = 2;
const VERSION_FILE: &str = "nevermore-index.json";

/// The message tokenizer's name: maximal runs of alphanumeric characters, lowercased char by
/// char. Must split exactly as `nevermore_lang::message_tokens` (a test in the query crate
/// checks both on the same strings).
pub const WORDS_TOKENIZER: &str = "nevermore_words";

/// The ordinal stored in the `lvl` fast field: 0 for no level, then trace..fatal as 1..6.
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index {path}: {source}")]
    Tantivy {
        path: PathBuf,
        source: tantivy::TantivyError,
    },
    #[error("index {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("index {path} has format version {found}, this build reads version {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("index {path}: bad version file: {message}")]
    BadVersionFile { path: PathBuf, message: String },
    #[error("index {path}: another writer holds the lock (one writer per index directory)")]
    Locked { path: PathBuf },
}

/// The fields of the schema, by handle. Keyword fields are indexed untokenized (exact match,
/// regex and glob on the whole value) and fast (facets, histograms).
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// `@timestamp` in nanoseconds since the epoch (i64, indexed for ranges, fast for sorting).
    pub ts: Field,
    /// `event.stream_id` as a number: 16 lowercase hex digits order like the u64 they spell, so
    /// sorting by it agrees with Elasticsearch sorting the keyword.
    pub sid: Field,
    pub seq: Field,
    pub id: Field,
    pub message: Field,
    pub level: Field,
    pub lvl: Field,
    pub namespace: Field,
    pub pod: Field,
    pub container: Field,
    pub workload: Field,
    pub node: Field,
    pub cluster: Field,
    pub stream: Field,
    pub dataset: Field,
    /// Every label as `key=value` (keys cannot contain `=`).
    pub labels: Field,
    /// The query names of the optional fields this record has (`level`, `label.app`, ...):
    /// `has:`/`no:` are one term lookup.
    pub present: Field,
    /// The record's JSON exactly as the collector encoded it.
    pub source: Field,
}

pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let keyword = STRING | FAST;
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(WORDS_TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions)
            .set_fieldnorms(false),
    );
    let fields = Fields {
        ts: b.add_i64_field("ts", INDEXED | FAST),
        sid: b.add_u64_field("sid", INDEXED | FAST),
        seq: b.add_u64_field("seq", FAST),
        id: b.add_text_field("id", STRING),
        message: b.add_text_field("message", words),
        level: b.add_text_field("level", STRING),
        lvl: b.add_u64_field("lvl", FAST),
        namespace: b.add_text_field("namespace", keyword.clone()),
        pod: b.add_text_field("pod", keyword.clone()),
        container: b.add_text_field("container", keyword.clone()),
        workload: b.add_text_field("workload", keyword.clone()),
        node: b.add_text_field("node", keyword.clone()),
        cluster: b.add_text_field("cluster", keyword.clone()),
        stream: b.add_text_field("stream", keyword.clone()),
        dataset: b.add_text_field("dataset", keyword.clone()),
        labels: b.add_text_field("labels", keyword),
        present: b.add_text_field("present", STRING),
        source: b.add_bytes_field("source", STORED),
    };
    (b.build(), fields)
}

/// An open index directory. Cheap to share; readers and the writer are made from it.
#[derive(Clone)]
pub struct LogIndex {
    index: Index,
    fields: Fields,
    dir: PathBuf,
}

impl std::fmt::Debug for LogIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogIndex").field("dir", &self.dir).finish()
    }
}

impl LogIndex {
    /// Opens the index in `dir`, creating it (and the directory) if there is none.
    pub fn open(dir: &Path) -> Result<LogIndex, IndexError> {
        let io = |source| IndexError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let tv = |source| IndexError::Tantivy {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let version_path = dir.join(VERSION_FILE);
        let (schema, fields) = schema();
        let plugin = Arc::new(messages::MessagePlugin {
            message: fields.message,
        });
        let index = match std::fs::read(&version_path) {
            Ok(bytes) => {
                check_version(dir, &bytes)?;
                let mut index = Index::open_in_dir(dir).map_err(tv)?;
                index.register_plugin(plugin);
                index
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A directory with tantivy files but no version file was not made by us.
                let index = if dir.join("meta.json").exists() {
                    return Err(IndexError::BadVersionFile {
                        path: dir.to_path_buf(),
                        message: format!("{VERSION_FILE} is missing"),
                    });
                } else {
                    Index::builder()
                        .schema(schema)
                        .register_plugin(plugin)
                        .create_in_dir(dir)
                        .map_err(tv)?
                };
                write_version(dir)?;
                index
            }
            Err(e) => return Err(io(e)),
        };
        index.tokenizers().register(
            WORDS_TOKENIZER,
            TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(LowerCaser)
                .build(),
        );
        Ok(LogIndex {
            index,
            fields,
            dir: dir.to_path_buf(),
        })
    }

    /// Searches segments on a thread pool with one thread a core (readers only; the writer
    /// has its own threads).
    pub fn search_in_parallel(&mut self) -> Result<(), IndexError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.index
            .set_multithread_executor(threads)
            .map_err(|source| IndexError::Tantivy {
                path: self.dir.clone(),
                source,
            })
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A reader that picks up new commits (of this process or another) shortly after they land.
    pub fn reader(&self) -> Result<IndexReader, IndexError> {
        self.index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()
            .map_err(|source| IndexError::Tantivy {
                path: self.dir.clone(),
                source,
            })
    }

    /// Bytes on disk (for size retention and metrics).
    pub fn disk_bytes(&self) -> Result<u64, IndexError> {
        let mut total = 0;
        let entries = std::fs::read_dir(&self.dir).map_err(|source| IndexError::Io {
            path: self.dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            if let Ok(md) = entry.metadata()
                && md.is_file()
            {
                total += md.len();
            }
        }
        Ok(total)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct VersionFile {
    format: String,
    version: u32,
}

fn check_version(dir: &Path, bytes: &[u8]) -> Result<(), IndexError> {
    let v: VersionFile = serde_json::from_slice(bytes).map_err(|e| IndexError::BadVersionFile {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    if v.version != FORMAT_VERSION {
        return Err(IndexError::Version {
            path: dir.to_path_buf(),
            found: v.version,
        });
    }
    Ok(())
}

fn write_version(dir: &Path) -> Result<(), IndexError> {
    let body = serde_json::to_vec(&VersionFile {
        format: "nevermore-embedded-index".into(),
        version: FORMAT_VERSION,
    })
    .unwrap_or_default();
    let tmp = dir.join(format!("{VERSION_FILE}.tmp"));
    let io = |source| IndexError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, body).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, dir.join(VERSION_FILE)).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io)
}
