//! Pure parsers for container and file log lines, and the stateful partial/multiline merger.
//!
//! Invariants of this crate (the tailer and the sinks rely on them):
//! - **no IO**: it only sees byte slices handed in by the caller;
//! - **no tokio**, no threads, no async;
//! - **no clock**: monotonic time (`now_ms`) and wall time (`read_time_ns`) are arguments;
//! - **never panics**, whatever the bytes: a line that cannot be decoded becomes a record of its
//!   own (counted in [`MergeStats::invalid_lines`]);
//! - **bounded memory**: a pending record never holds more than `max_record_bytes` plus one line.

pub mod cri;
pub mod docker;
mod flags;
pub mod level;
pub mod merge;
/// The record's timestamp format (it lives with the record, in `nevermore-schemas`).
pub use nevermore_schemas::time;

pub use flags::Flags;
pub use merge::{LineFormat, MergeStats, Merger, MergerConfig, MultilineConfig, RawLine, Record};
pub use nevermore_schemas::record::{Level, LogFlag, StdStream};

/// Why a container line could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("missing field")]
    MissingField,
    #[error("bad timestamp")]
    BadTimestamp,
    #[error("unknown stream")]
    BadStream,
    #[error("bad partial tag")]
    BadTag,
    #[error("bad json")]
    BadJson,
}
