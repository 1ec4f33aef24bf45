//! Behaviour of the merger through its public API.
#![allow(clippy::unwrap_used)]

use nevermore_parse::{
    Flags, Level, LineFormat, LogFlag, MergeStats, Merger, MergerConfig, MultilineConfig, RawLine,
    Record, StdStream,
};
use proptest::prelude::*;
use std::sync::Arc;

const READ_NS: i64 = 1_800_000_000_000_000_000;
const TS: i64 = 1_795_687_200_000_000_000; // 2026-11-26T10:00:00Z

fn cfg(format: LineFormat) -> MergerConfig {
    MergerConfig {
        partial_timeout_ms: 1_000,
        ..MergerConfig::new(format)
    }
}

/// Feeds lines with positions = line index, one ms apart.
struct Feed {
    m: Merger<u64>,
    out: Vec<Record<u64>>,
    n: u64,
}

impl Feed {
    fn new(c: MergerConfig) -> Self {
        Feed {
            m: Merger::new(Arc::new(c)),
            out: Vec::new(),
            n: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> &mut Self {
        self.push_cut(bytes, false)
    }

    fn push_cut(&mut self, bytes: &[u8], cut: bool) -> &mut Self {
        let line = RawLine {
            bytes,
            start: self.n * 100,
            end: self.n * 100 + 99,
            cut,
        };
        self.m.push(line, self.n, READ_NS, &mut self.out);
        self.n += 1;
        self
    }

    fn take(&mut self) -> Vec<Record<u64>> {
        std::mem::take(&mut self.out)
    }

    fn stats(&self) -> MergeStats {
        self.m.stats()
    }
}

fn flags(f: &[LogFlag]) -> Flags {
    f.iter().copied().collect()
}

fn cri(stream: &str, tag: &str, msg: &str) -> Vec<u8> {
    format!("2026-11-26T10:00:00Z {stream} {tag} {msg}").into_bytes()
}

#[test]
fn cri_full_line() {
    let mut f = Feed::new(cfg(LineFormat::Cri));
    f.push(b"2026-11-26T10:00:00.123456789Z stdout F level=warn disk low");
    let r = f.take();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].timestamp_ns, TS + 123_456_789);
    assert_eq!(r[0].stream, Some(StdStream::Stdout));
    assert_eq!(r[0].message, "level=warn disk low");
    assert_eq!(r[0].level, Some(Level::Warn));
    assert!(r[0].flags.is_empty());
    assert_eq!((r[0].start, r[0].end), (0, 99));
    assert_eq!(f.m.oldest_pending(), None);
    assert_eq!(f.m.next_deadline(), None);
}

#[test]
fn cri_no_tag_is_invalid_and_does_not_disturb_partials() {
    let mut f = Feed::new(cfg(LineFormat::Cri));
    f.push(&cri("stdout", "P", "hel"));
    f.push(b"2026-11-26T10:00:00Z stdout hello without tag");
    f.push(&cri("stdout", "F", "lo"));
    let r = f.take();
    assert_eq!(r.len(), 2);
    assert_eq!(
        r[0].message,
        "2026-11-26T10:00:00Z stdout hello without tag"
    );
    assert_eq!(r[0].timestamp_ns, READ_NS);
    assert_eq!(r[0].stream, None);
    assert_eq!(r[1].message, "hello");
    assert_eq!(r[1].flags, flags(&[LogFlag::Partial]));
    assert_eq!((r[1].start, r[1].end), (0, 299));
    let s = f.stats();
    assert_eq!(s.invalid_lines, 1);
    assert_eq!(s.partials_merged, 1);
    assert_eq!(s.records, 2);
    assert_eq!(s.lines, 3);
}

#[test]
fn cri_bad_timestamp() {
    let mut f = Feed::new(cfg(LineFormat::Cri));
    f.push(b"2026-11-26T99:00:00Z stderr F boom");
    let r = f.take();
    assert_eq!(r[0].timestamp_ns, READ_NS);
    assert_eq!(r[0].message, "2026-11-26T99:00:00Z stderr F boom");
    assert_eq!(f.stats().invalid_lines, 1);
}

#[test]
fn invalid_utf8_is_replaced_and_flagged() {
    let mut f = Feed::new(cfg(LineFormat::Cri));
    f.push(b"2026-11-26T10:00:00Z stdout F caf\xc3 \xff!");
    let r = f.take();
    assert_eq!(r[0].message, "caf\u{fffd} \u{fffd}!");
    assert_eq!(r[0].flags, flags(&[LogFlag::InvalidUtf8]));
}

#[test]
fn utf8_split_across_partial_chunks_is_rejoined() {
    let mut f = Feed::new(cfg(LineFormat::Cri));
    f.push(b"2026-11-26T10:00:00Z stdout P caf\xc3");
    f.push(b"2026-11-26T10:00:00Z stdout F \xa9!");
    let r = f.take();
    assert_eq!(r[0].message, "café!");
    assert_eq!(r[0].flags, flags(&[LogFlag::Partial]));
}

#[test]
fn one_mib_message_and_truncation() {
    let big = "x".repeat(1 << 20);
    let mut f = Feed::new(cfg(LineFormat::Cri));
    f.push(&cri("stdout", "F", &big));
    let r = f.take();
    assert_eq!(r[0].message.len(), 1 << 20);
    assert!(r[0].flags.is_empty());

    let mut c = cfg(LineFormat::Cri);
    c.max_record_bytes = 1000;
    let mut f = Feed::new(c);
    f.push(&cri("stdout", "F", &big));
    // a multibyte char straddling the limit is dropped whole
    let mut s = "y".repeat(999);
    s.push('é');
    f.push(&cri("stderr", "F", &s));
    let r = f.take();
    assert_eq!(r[0].message.len(), 1000);
    assert_eq!(r[0].flags, flags(&[LogFlag::Truncated]));
    assert_eq!(r[1].message, "y".repeat(999));
    assert_eq!(f.stats().truncated, 2);
}

#[test]
fn partial_merge_respects_the_limit_and_stays_bounded() {
    let mut c = cfg(LineFormat::Cri);
    c.max_record_bytes = 10_000;
    let mut f = Feed::new(c);
    let chunk = "é".repeat(1000); // 2000 bytes
    for _ in 0..100 {
        f.push(&cri("stdout", "P", &chunk));
    }
    f.push(&cri("stdout", "F", "end"));
    let r = f.take();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].message, "é".repeat(5000));
    assert_eq!(r[0].flags, flags(&[LogFlag::Partial, LogFlag::Truncated]));
    assert_eq!(r[0].end, 100 * 100 + 99);
    assert!(r[0].message.capacity() <= 10_000);

    // the cut falls inside a 2-byte char: it is dropped whole
    let mut c = cfg(LineFormat::Cri);
    c.max_record_bytes = 5;
    let mut f = Feed::new(c);
    f.push(&cri("stdout", "P", "abcd"));
    f.push(&cri("stdout", "F", "éf"));
    assert_eq!(f.take()[0].message, "abcd");
}

#[test]
fn cut_lines_are_flagged_truncated() {
    let mut f = Feed::new(cfg(LineFormat::Cri));
    f.push_cut(&cri("stdout", "P", "aaa"), true);
    f.push(&cri("stdout", "F", "bbb"));
    f.push_cut(b"plain garbage", true);
    let r = f.take();
    assert_eq!(r[0].flags, flags(&[LogFlag::Partial, LogFlag::Truncated]));
    assert_eq!(r[0].message, "aaabbb");
    assert_eq!(r[1].flags, flags(&[LogFlag::Truncated]));
}

#[test]
fn unterminated_partial_is_flushed_by_timeout() {
    let mut f = Feed::new(cfg(LineFormat::Cri));
    f.push(&cri("stdout", "P", "never ends"));
    assert_eq!(f.m.oldest_pending(), Some(0));
    assert_eq!(f.m.next_deadline(), Some(1_000));
    let mut out = Vec::new();
    f.m.flush_expired(999, &mut out);
    assert!(out.is_empty());
    f.m.flush_expired(1_000, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].message, "never ends");
    assert_eq!(
        out[0].flags,
        flags(&[LogFlag::Partial, LogFlag::Unterminated])
    );
    assert_eq!(f.stats().unterminated, 1);
    assert_eq!(f.m.oldest_pending(), None);
    assert_eq!(f.m.next_deadline(), None);
}

#[test]
fn binary_garbage_and_empty_lines() {
    for format in [
        LineFormat::Container,
        LineFormat::Cri,
        LineFormat::Docker,
        LineFormat::Plain,
        LineFormat::Json,
    ] {
        let mut f = Feed::new(cfg(format));
        f.push(b"\x00\x01\xff\xfe{\x80 stdout F");
        f.push(b"");
        let r = f.take();
        assert_eq!(r.len(), 2, "{format:?}");
        assert!(r[0].flags.contains(LogFlag::InvalidUtf8));
        assert_eq!(r[1].message, "");
        assert_eq!(r[1].timestamp_ns, READ_NS);
    }
}

#[test]
fn cri_empty_messages() {
    let mut f = Feed::new(cfg(LineFormat::Cri));
    f.push(b"2026-11-26T10:00:00Z stdout F ");
    f.push(b"2026-11-26T10:00:00Z stdout F");
    let r = f.take();
    assert_eq!(r.len(), 2);
    assert!(
        r.iter()
            .all(|r| r.message.is_empty() && r.timestamp_ns == TS)
    );
    assert_eq!(f.stats().invalid_lines, 0);
}

#[test]
fn interleaved_streams() {
    let mut f = Feed::new(cfg(LineFormat::Cri));
    f.push(b"2026-11-26T10:00:00.1Z stdout P out-");
    f.push(b"2026-11-26T10:00:00.2Z stderr F err");
    let r = f.take();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].message, "err");
    assert_eq!(r[0].stream, Some(StdStream::Stderr));
    assert_eq!(f.m.oldest_pending(), Some(0));
    f.push(b"2026-11-26T10:00:00.3Z stdout F done");
    let r = f.take();
    assert_eq!(r[0].message, "out-done");
    assert_eq!(r[0].timestamp_ns, TS + 100_000_000);
    assert_eq!((r[0].start, r[0].end), (0, 299));
    assert_eq!(f.m.oldest_pending(), None);
}

#[test]
fn docker_partials() {
    let mut f = Feed::new(cfg(LineFormat::Docker));
    f.push(br#"{"log":"first ","stream":"stdout","time":"2026-11-26T10:00:00Z"}"#);
    f.push(br#"{"log":"err\n","stream":"stderr","time":"2026-11-26T10:00:01Z"}"#);
    f.push(br#"{"log":"second\n","stream":"stdout","time":"2026-11-26T10:00:02Z"}"#);
    f.push(br#"{"log":"\n","stream":"stdout","time":"2026-11-26T10:00:03Z"}"#);
    f.push(br#"{"log":"broken"#);
    let r = f.take();
    let msgs: Vec<_> = r.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(msgs, ["err", "first second", "", "{\"log\":\"broken"]);
    assert_eq!(r[1].timestamp_ns, TS);
    assert_eq!(r[1].flags, flags(&[LogFlag::Partial]));
    assert_eq!(r[3].timestamp_ns, READ_NS);
    assert_eq!(f.stats().invalid_lines, 1);
}

#[test]
fn container_format_picks_per_line() {
    let mut f = Feed::new(cfg(LineFormat::Container));
    f.push(br#"{"log":"{\"level\":\"error\"}\n","stream":"stdout","time":"2026-11-26T10:00:00Z"}"#);
    f.push(br#"2026-11-26T10:00:00Z stderr F {"lvl":"debug"}"#);
    let r = f.take();
    assert_eq!(r[0].message, r#"{"level":"error"}"#);
    assert_eq!(r[0].level, Some(Level::Error));
    assert_eq!(r[1].level, Some(Level::Debug));

    let mut c = cfg(LineFormat::Container);
    c.json_level = false;
    let mut f = Feed::new(c);
    f.push(br#"2026-11-26T10:00:00Z stderr F {"lvl":"debug"}"#);
    assert_eq!(f.take()[0].level, None);
}

#[test]
fn plain_and_json() {
    let mut f = Feed::new(cfg(LineFormat::Plain));
    f.push(b"[WARN] low disk\r");
    let r = f.take();
    assert_eq!(r[0].message, "[WARN] low disk");
    assert_eq!(r[0].level, Some(Level::Warn));
    assert_eq!(r[0].stream, None);
    assert_eq!(r[0].timestamp_ns, READ_NS);

    let mut f = Feed::new(cfg(LineFormat::Json));
    f.push(br#"{"severity":"critical","msg":"x"}"#);
    f.push(b"not json ERROR");
    let r = f.take();
    assert_eq!(r[0].level, Some(Level::Fatal));
    assert_eq!(r[1].level, Some(Level::Error));
}

fn multiline(timeout_ms: u64, max_lines: usize) -> MergerConfig {
    MergerConfig {
        multiline: Some(MultilineConfig {
            start_pattern: regex::Regex::new(r"^\d{4}-").unwrap(),
            timeout_ms,
            max_lines,
        }),
        ..cfg(LineFormat::Cri)
    }
}

#[test]
fn multiline_stack_trace() {
    let mut f = Feed::new(multiline(500, 100));
    f.push(&cri("stdout", "F", "2026-11-26 10:00:00 ERROR boom"));
    f.push(&cri("stdout", "F", "java.lang.IllegalStateException: x"));
    f.push(&cri("stderr", "F", "2026-11-26 other stream"));
    f.push(&cri("stdout", "F", "\tat a.b.C.d(C.java:1)"));
    assert_eq!(f.out.len(), 0);
    assert_eq!(f.m.oldest_pending(), Some(0));
    f.push(&cri("stdout", "F", "2026-11-26 10:00:01 INFO next"));
    let r = f.take();
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0].message,
        "2026-11-26 10:00:00 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.b.C.d(C.java:1)"
    );
    assert_eq!(r[0].flags, flags(&[LogFlag::Multiline]));
    assert_eq!(r[0].level, Some(Level::Error));
    assert_eq!((r[0].start, r[0].end), (0, 399));
    // the stderr record started at line 2: it is now the oldest
    assert_eq!(f.m.oldest_pending(), Some(200));
    assert_eq!(f.m.next_deadline(), Some(2 + 500));
    let mut out = Vec::new();
    f.m.flush_expired(502, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].stream, Some(StdStream::Stderr));
    f.m.flush_all(&mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].message, "2026-11-26 10:00:01 INFO next");
    assert!(out[1].flags.is_empty());
    assert_eq!(f.stats().multiline_merged, 1);
}

#[test]
fn multiline_max_lines_and_orphans() {
    let mut f = Feed::new(multiline(500, 3));
    f.push(&cri("stdout", "F", "orphan continuation"));
    f.push(&cri("stdout", "F", "more"));
    f.push(&cri("stdout", "F", "more"));
    f.push(&cri("stdout", "F", "after max"));
    let r = f.take();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].message, "orphan continuation\nmore\nmore");
    let mut out = Vec::new();
    f.m.flush_all(&mut out);
    assert_eq!(out[0].message, "after max");
}

#[test]
fn multiline_timeout_counts_from_the_last_line() {
    let mut f = Feed::new(multiline(10, 100));
    f.push(&cri("stdout", "F", "2026 start")); // t=0
    f.push(&cri("stdout", "F", " cont")); // t=1
    assert_eq!(f.m.next_deadline(), Some(11));
    let mut out = Vec::new();
    f.m.flush_expired(10, &mut out);
    assert!(out.is_empty());
    f.m.flush_expired(11, &mut out);
    assert_eq!(out[0].message, "2026 start\n cont");
}

#[test]
fn multiline_respects_the_limit() {
    let mut c = multiline(10, 100);
    c.max_record_bytes = 12;
    let mut f = Feed::new(c);
    f.push(&cri("stdout", "F", "2026-x"));
    f.push(&cri("stdout", "F", "éééé"));
    f.push(&cri("stdout", "F", "zzz"));
    let mut out = Vec::new();
    f.m.flush_all(&mut out);
    assert_eq!(out[0].message, "2026-x\néé");
    assert_eq!(
        out[0].flags,
        flags(&[LogFlag::Multiline, LogFlag::Truncated])
    );
    assert_eq!(out[0].end, 299);
}

#[test]
fn unterminated_partial_feeds_multiline() {
    let mut f = Feed::new(multiline(10, 100));
    f.push(&cri("stdout", "F", "2026 start"));
    f.push(&cri("stdout", "P", "dangling"));
    let mut out = Vec::new();
    f.m.flush_all(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].message, "2026 start\ndangling");
    assert_eq!(
        out[0].flags,
        flags(&[LogFlag::Partial, LogFlag::Multiline, LogFlag::Unterminated])
    );
}

fn any_format() -> impl Strategy<Value = LineFormat> {
    prop_oneof![
        Just(LineFormat::Container),
        Just(LineFormat::Cri),
        Just(LineFormat::Docker),
        Just(LineFormat::Plain),
        Just(LineFormat::Json),
    ]
}

fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        // near-valid CRI lines exercise the partial paths
        (
            prop_oneof![Just("stdout"), Just("stderr"), Just("stdin")],
            prop_oneof![Just("P"), Just("F"), Just("F:x"), Just("")],
            proptest::collection::vec(any::<u8>(), 0..32)
        )
            .prop_map(|(s, t, m)| {
                let mut v = format!("2026-11-26T10:00:00.5Z {s} {t} ").into_bytes();
                v.extend(m);
                v
            }),
        proptest::collection::vec(any::<u8>(), 0..32).prop_map(|m| {
            let log = String::from_utf8_lossy(&m).into_owned();
            serde_json::json!({"log": log, "stream": "stderr", "time": "2026-11-26T10:00:00Z"})
                .to_string()
                .into_bytes()
        }),
    ]
}

proptest! {
    #[test]
    fn push_never_panics(
        format in any_format(),
        ml in any::<bool>(),
        max in 0usize..40,
        lines in proptest::collection::vec((line_bytes(), any::<bool>(), 0u64..50), 0..30),
    ) {
        let mut c = if ml { multiline(5, 3) } else { cfg(format) };
        c.format = format;
        c.max_record_bytes = max;
        c.partial_timeout_ms = 7;
        let mut m = Merger::new(Arc::new(c));
        let mut out = Vec::new();
        let mut now = 0;
        for (i, (b, cut, dt)) in lines.iter().enumerate() {
            now += dt;
            let i = i as u64;
            m.push(RawLine { bytes: b, start: i, end: i + 1, cut: *cut }, now, READ_NS, &mut out);
            if dt % 3 == 0 {
                m.flush_expired(now, &mut out);
            }
        }
        m.flush_all(&mut out);
        prop_assert_eq!(m.oldest_pending(), None);
        prop_assert_eq!(m.next_deadline(), None);
        prop_assert_eq!(m.stats().records, out.len() as u64);
        for r in &out {
            prop_assert!(r.message.len() <= max);
        }
    }

    #[test]
    fn random_cri_chunking_round_trips(
        msg in "\\PC{0,200}",
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let bytes = msg.as_bytes();
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        at.dedup();
        let mut pieces = Vec::new();
        let mut prev = 0;
        for c in at {
            pieces.push(&bytes[prev..c]);
            prev = c;
        }
        pieces.push(&bytes[prev..]);
        let mut m = Merger::new(Arc::new(cfg(LineFormat::Cri)));
        let mut out = Vec::new();
        let n = pieces.len();
        for (i, p) in pieces.iter().enumerate() {
            let tag = if i + 1 == n { "F" } else { "P" };
            let mut line = format!("2026-11-26T10:00:00Z stdout {tag} ").into_bytes();
            line.extend_from_slice(p);
            m.push(RawLine { bytes: &line, start: i, end: i, cut: false }, 0, READ_NS, &mut out);
        }
        prop_assert_eq!(out.len(), 1);
        prop_assert_eq!(&out[0].message, &msg);
        prop_assert_eq!(out[0].flags.contains(LogFlag::Partial), n > 1);
        prop_assert!(!out[0].flags.contains(LogFlag::InvalidUtf8));
        prop_assert_eq!((out[0].start, out[0].end), (0, n - 1));
    }
}
