//! Decoding of one docker json-file line: `{"log":"text\n","stream":"stdout","time":"..."}`.

use crate::DecodeError;
use crate::time::parse_rfc3339;
use nevermore_schemas::record::StdStream;
use serde::Deserialize;
use std::borrow::Cow;

/// One decoded docker line. `message` has its final `\n` removed; it borrows from the input
/// unless the JSON string had escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerLine<'a> {
    pub timestamp_ns: i64,
    pub stream: StdStream,
    /// The `log` value did not end in `\n`: the message continues in the next line.
    pub partial: bool,
    pub message: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
}

/// Decodes one line (without its `\n`).
pub fn decode(line: &[u8]) -> Result<DockerLine<'_>, DecodeError> {
    let raw: Raw<'_> = serde_json::from_slice(line).map_err(|_| DecodeError::BadJson)?;
    let timestamp_ns = parse_rfc3339(raw.time.as_bytes()).ok_or(DecodeError::BadTimestamp)?;
    let stream = match &*raw.stream {
        "stdout" => StdStream::Stdout,
        "stderr" => StdStream::Stderr,
        _ => return Err(DecodeError::BadStream),
    };
    let (partial, message) = match raw.log {
        Cow::Borrowed(s) => match s.strip_suffix('\n') {
            Some(m) => (false, Cow::Borrowed(m)),
            None => (true, Cow::Borrowed(s)),
        },
        Cow::Owned(mut s) => {
            let partial = !s.ends_with('\n');
            if !partial {
                s.pop();
            }
            (partial, Cow::Owned(s))
        }
    };
    Ok(DockerLine {
        timestamp_ns,
        stream,
        partial,
        message,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn full_line() {
        let l = decode(br#"{"log":"hello\n","stream":"stdout","time":"2026-11-26T10:00:00.5Z"}"#)
            .unwrap();
        assert_eq!(l.message, "hello");
        assert!(!l.partial);
        assert_eq!(l.stream, StdStream::Stdout);
        assert_eq!(l.timestamp_ns, 1_795_687_200_500_000_000);
    }

    #[test]
    fn partial_and_escapes() {
        let l = decode(
            br#"{"log":"say \"hi\"\t","stream":"stderr","time":"2026-11-26T10:00:00Z","attrs":{}}"#,
        )
        .unwrap();
        assert!(l.partial);
        assert_eq!(l.message, "say \"hi\"\t");
        assert_eq!(l.stream, StdStream::Stderr);
        let l = decode(br#"{"log":"caf\u00e9\n","stream":"stdout","time":"2026-11-26T10:00:00Z"}"#)
            .unwrap();
        assert_eq!(l.message, "café");
        assert!(!l.partial);
    }

    #[test]
    fn errors() {
        assert_eq!(decode(b"{").unwrap_err(), DecodeError::BadJson);
        assert_eq!(
            decode(br#"{"log":"x\n","stream":"stdout"}"#).unwrap_err(),
            DecodeError::BadJson
        );
        assert_eq!(
            decode(br#"{"log":"x\n","stream":"stdout","time":"yesterday"}"#).unwrap_err(),
            DecodeError::BadTimestamp
        );
        assert_eq!(
            decode(br#"{"log":"x\n","stream":"stdin","time":"2026-11-26T10:00:00Z"}"#).unwrap_err(),
            DecodeError::BadStream
        );
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode(&b);
        }
    }
}
