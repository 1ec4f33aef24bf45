//! Decoding of one CRI log line: `<RFC3339Nano> <stdout|stderr> <P|F>[:tag...] <message>`.

use crate::DecodeError;
use crate::time::parse_rfc3339;
use memchr::memchr;
use nevermore_schemas::record::StdStream;

/// One decoded CRI line; `message` borrows from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CriLine<'a> {
    pub timestamp_ns: i64,
    pub stream: StdStream,
    /// `P`: the message continues in the next line of the same stream.
    pub partial: bool,
    /// Everything after the tag's separating space, as is (a trailing `\r` is kept).
    pub message: &'a [u8],
}

/// Decodes one line (without its `\n`). No allocation.
pub fn decode(line: &[u8]) -> Result<CriLine<'_>, DecodeError> {
    let sp = memchr(b' ', line).ok_or(DecodeError::MissingField)?;
    let timestamp_ns = parse_rfc3339(&line[..sp]).ok_or(DecodeError::BadTimestamp)?;
    let rest = &line[sp + 1..];
    let stream = match rest.get(..7) {
        Some(b"stdout ") => StdStream::Stdout,
        Some(b"stderr ") => StdStream::Stderr,
        Some(_) => return Err(DecodeError::BadStream),
        None => return Err(DecodeError::MissingField),
    };
    let rest = &rest[7..];
    let (tags, message) = match memchr(b' ', rest) {
        Some(p) => (&rest[..p], &rest[p + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let first = &tags[..memchr(b':', tags).unwrap_or(tags.len())];
    let partial = match first {
        b"P" => true,
        b"F" => false,
        _ => return Err(DecodeError::BadTag),
    };
    Ok(CriLine {
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

    const TS: i64 = 1_795_687_200_123_456_789; // 2026-11-26T10:00:00.123456789Z

    #[test]
    fn full_and_partial() {
        let l = decode(b"2026-11-26T10:00:00.123456789Z stdout F hello world").unwrap();
        assert_eq!(l.timestamp_ns, TS);
        assert_eq!(l.stream, StdStream::Stdout);
        assert!(!l.partial);
        assert_eq!(l.message, b"hello world");
        let l = decode(b"2026-11-26T10:00:00.123456789Z stderr P part ").unwrap();
        assert_eq!(l.stream, StdStream::Stderr);
        assert!(l.partial);
        assert_eq!(l.message, b"part ");
    }

    #[test]
    fn tags_with_colons_and_empty_messages() {
        let l = decode(b"2026-11-26T10:00:00Z stdout F:x:y msg").unwrap();
        assert!(!l.partial);
        assert_eq!(l.message, b"msg");
        let l = decode(b"2026-11-26T10:00:00Z stdout P:1 ").unwrap();
        assert!(l.partial);
        assert_eq!(l.message, b"");
        let l = decode(b"2026-11-26T10:00:00Z stdout F").unwrap();
        assert_eq!(l.message, b"");
    }

    #[test]
    fn keeps_carriage_return_and_inner_spaces() {
        let l = decode(b"2026-11-26T10:00:00Z stdout F  two  spaces\r").unwrap();
        assert_eq!(l.message, b" two  spaces\r");
    }

    #[test]
    fn errors() {
        assert_eq!(decode(b""), Err(DecodeError::MissingField));
        assert_eq!(decode(b"no-spaces"), Err(DecodeError::MissingField));
        assert_eq!(
            decode(b"2026-11-26T10:00:00Z stdout"),
            Err(DecodeError::MissingField)
        );
        assert_eq!(
            decode(b"2026-11-26T10:00:00Z stdout "),
            Err(DecodeError::BadTag)
        );
        assert_eq!(
            decode(b"2026-11-26T10:00:00Z stdout hello world"),
            Err(DecodeError::BadTag)
        );
        assert_eq!(
            decode(b"2026-11-26T25:00:00Z stdout F x"),
            Err(DecodeError::BadTimestamp)
        );
        assert_eq!(
            decode(b"2026-11-26T10:00:00Z stdin  F x"),
            Err(DecodeError::BadStream)
        );
        assert_eq!(
            decode(b"2026-11-26T10:00:00Z stdout X x"),
            Err(DecodeError::BadTag)
        );
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode(&b);
        }
    }
}
