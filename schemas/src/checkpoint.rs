//! The collector's checkpoint file: versioned JSON, one entry per stream.
//!
//! A stream's checkpoint says where reading resumes after a restart and how far records were
//! acknowledged. Encoding and decoding are pure; the collector writes the bytes atomically.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The format version this build writes. Files of another version are rejected as a whole and
/// the collector starts clean (and says so).
pub const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub version: u32,
    /// Stream key (see the collector's `StreamKey`) → its checkpoint.
    pub streams: BTreeMap<String, StreamCheckpoint>,
}

/// Where one stream stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamCheckpoint {
    /// Where reading resumes: the first byte of the oldest record not yet acknowledged, or of the
    /// oldest unfinished partial/multiline record.
    pub resume: SegmentPos,
    /// End of the last acknowledged record. Records that end at or before this position are
    /// re-read after a restart (to rebuild merge state) but not sent again.
    pub acked: SegmentPos,
    /// `event.sequence` of the next record to send.
    pub next_sequence: u64,
    /// Fingerprints of segments of this stream that were read to their end and fully
    /// acknowledged (newest last, bounded), so a restart never reads them again.
    #[serde(default)]
    pub finished: Vec<u64>,
}

/// A byte position in one segment of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentPos {
    /// Segment fingerprint: xxh3-64 of its first line (at most 4 KiB).
    pub fingerprint: u64,
    pub dev: u64,
    pub inode: u64,
    /// Byte offset (in the decompressed bytes for a `.gz` segment).
    pub offset: u64,
    /// xxh3-64 of the (at most 4 KiB) bytes just before `offset`: a changed value means the file
    /// was truncated or the inode reused, and the position is not trusted.
    pub before_hash: u64,
    /// Path the segment had when last seen (for logs only: identity is the fingerprint).
    pub path: String,
    /// Size of the segment when last read (to count the bytes lost if it vanishes).
    #[serde(default)]
    pub size_seen: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint is not valid json at line {line} column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("checkpoint has version {found}, this build reads version {expected}")]
    Version { found: u32, expected: u32 },
}

impl Checkpoint {
    pub fn new() -> Self {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            streams: BTreeMap::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let syntax = |e: serde_json::Error| CheckpointError::Syntax {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        };
        let v: VersionOnly = serde_json::from_slice(bytes).map_err(syntax)?;
        if v.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version {
                found: v.version,
                expected: CHECKPOINT_VERSION,
            });
        }
        serde_json::from_slice(bytes).map_err(syntax)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(offset: u64) -> SegmentPos {
        SegmentPos {
            fingerprint: 7,
            dev: 1,
            inode: 2,
            offset,
            before_hash: 9,
            path: "/var/log/pods/a_b_c/d/0.log".into(),
            size_seen: 100,
        }
    }

    #[test]
    fn round_trip() {
        let mut c = Checkpoint::new();
        c.streams.insert(
            "k8s/ns/pod/uid/ctr/0".into(),
            StreamCheckpoint {
                resume: pos(10),
                acked: pos(20),
                next_sequence: 3,
                finished: vec![1, 2],
            },
        );
        assert_eq!(Checkpoint::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn unknown_version_is_rejected() {
        let err = Checkpoint::decode(br#"{"version": 99, "streams": {}}"#).unwrap_err();
        assert!(
            matches!(err, CheckpointError::Version { found: 99, .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_a_positioned_error() {
        let err = Checkpoint::decode(b"{\"version\": 1,\n \"streams\": [").unwrap_err();
        assert!(
            matches!(err, CheckpointError::Syntax { line: 2, .. }),
            "{err}"
        );
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = Checkpoint::decode(&bytes);
        }
    }
}
