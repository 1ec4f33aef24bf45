//! The stateful merger: decodes raw lines, joins CRI/docker partial chunks, joins multiline
//! records, enforces the record size limit and detects levels.

use crate::flags::Flags;
use crate::level::{detect_json, detect_plain};
use crate::{cri, docker};
use nevermore_schemas::record::{Level, LogFlag, StdStream};
use std::borrow::Cow;
use std::sync::Arc;

/// How the lines of a source are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// Container log of unknown runtime: per line, `{` selects docker json-file, else CRI.
    Container,
    Cri,
    Docker,
    /// One record per line; no timestamp, no stream.
    Plain,
    /// Like `Plain`, and the level is read from the JSON body.
    Json,
}

/// One raw line from the tailer.
#[derive(Debug, Clone, Copy)]
pub struct RawLine<'a, P> {
    /// The line without its trailing `\n`.
    pub bytes: &'a [u8],
    pub start: P,
    pub end: P,
    /// The tailer cut an oversize raw line: the record carries [`LogFlag::Truncated`].
    pub cut: bool,
}

#[derive(Debug, Clone)]
pub struct MergerConfig {
    pub format: LineFormat,
    /// Longer messages are truncated at a UTF-8 char boundary and flagged `Truncated`.
    pub max_record_bytes: usize,
    /// A partial chunk without its final chunk is flushed this long after the last chunk,
    /// flagged `Unterminated` and `Partial`.
    pub partial_timeout_ms: u64,
    pub multiline: Option<MultilineConfig>,
    /// Take the level of JSON message bodies into the record level (container formats).
    pub json_level: bool,
}

impl MergerConfig {
    /// Defaults: 1 MiB records, 5 s partial timeout, no multiline, JSON levels on.
    pub fn new(format: LineFormat) -> Self {
        MergerConfig {
            format,
            max_record_bytes: 1 << 20,
            partial_timeout_ms: 5_000,
            multiline: None,
            json_level: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MultilineConfig {
    /// A line matching this starts a new record; other lines continue the pending one.
    pub start_pattern: regex::Regex,
    /// The pending record is emitted this long after its last line.
    pub timeout_ms: u64,
    /// The pending record is emitted when it has this many lines.
    pub max_lines: usize,
}

/// One merged record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<P> {
    /// From the CRI/docker line (the first chunk's); `read_time_ns` for plain lines and for
    /// lines that failed to decode.
    pub timestamp_ns: i64,
    /// `None` for Plain/Json and for lines that failed to decode.
    pub stream: Option<StdStream>,
    pub message: String,
    pub level: Option<Level>,
    pub flags: Flags,
    /// `start` of the first line of the record.
    pub start: P,
    /// `end` of the last line of the record.
    pub end: P,
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeStats {
    pub lines: u64,
    pub records: u64,
    /// Records made of more than one partial chunk.
    pub partials_merged: u64,
    /// Records made of more than one line by multiline merge.
    pub multiline_merged: u64,
    pub truncated: u64,
    /// Lines that failed CRI/docker decoding (each emitted as its own record).
    pub invalid_lines: u64,
    /// Partial records flushed without their final chunk.
    pub unterminated: u64,
}

/// Merger state of one source. Keys: 0 stdout, 1 stderr, 2 no stream (plain files).
#[derive(Debug)]
pub struct Merger<P> {
    cfg: Arc<MergerConfig>,
    partial: [Option<PartialBuf<P>>; 2],
    multi: [Option<MultiBuf<P>>; 3],
    /// Line counter: orders pending records for `oldest_pending`.
    seq: u64,
    stats: MergeStats,
}

#[derive(Debug)]
struct PartialBuf<P> {
    buf: Vec<u8>,
    timestamp_ns: i64,
    start: P,
    end: P,
    chunks: u32,
    flags: Flags,
    /// The size limit was reached: later chunks are dropped.
    full: bool,
    seq: u64,
    deadline_ms: u64,
}

#[derive(Debug)]
struct MultiBuf<P> {
    rec: Record<P>,
    lines: usize,
    full: bool,
    seq: u64,
    deadline_ms: u64,
}

/// A line after partial merge, before multiline merge.
struct Logical<P> {
    rec: Record<P>,
    seq: u64,
}

enum Msg<'a> {
    Bytes(&'a [u8]),
    Text(Cow<'a, str>),
}

impl Msg<'_> {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Msg::Bytes(b) => b,
            Msg::Text(t) => t.as_bytes(),
        }
    }

    fn into_string(self, max: usize, flags: &mut Flags) -> String {
        match self {
            Msg::Bytes(b) => slice_to_string(b, max, flags),
            Msg::Text(Cow::Borrowed(s)) => slice_to_string(s.as_bytes(), max, flags),
            Msg::Text(Cow::Owned(mut s)) => {
                cap_string(&mut s, max, flags);
                s
            }
        }
    }
}

const fn key(stream: Option<StdStream>) -> usize {
    match stream {
        Some(StdStream::Stdout) => 0,
        Some(StdStream::Stderr) => 1,
        None => 2,
    }
}

const STREAMS: [StdStream; 2] = [StdStream::Stdout, StdStream::Stderr];

impl<P: Copy> Merger<P> {
    pub fn new(cfg: Arc<MergerConfig>) -> Self {
        Merger {
            cfg,
            partial: [None, None],
            multi: [None, None, None],
            seq: 0,
            stats: MergeStats::default(),
        }
    }

    /// Feeds one line. Completed records are appended to `out` in completion order.
    ///
    /// `now_ms` is a monotonic clock for timeouts; `read_time_ns` the wall clock used as the
    /// timestamp of lines that carry none. Timeouts are only acted on by
    /// [`flush_expired`](Self::flush_expired).
    pub fn push(
        &mut self,
        line: RawLine<'_, P>,
        now_ms: u64,
        read_time_ns: i64,
        out: &mut Vec<Record<P>>,
    ) {
        self.stats.lines += 1;
        self.seq += 1;
        let seq = self.seq;
        let docker = match self.cfg.format {
            LineFormat::Plain | LineFormat::Json => {
                let bytes = line.bytes.strip_suffix(b"\r").unwrap_or(line.bytes);
                let mut flags = Flags::empty();
                if line.cut {
                    flags.insert(LogFlag::Truncated);
                }
                let message = slice_to_string(bytes, self.cfg.max_record_bytes, &mut flags);
                let rec = Record {
                    timestamp_ns: read_time_ns,
                    stream: None,
                    message,
                    level: None,
                    flags,
                    start: line.start,
                    end: line.end,
                };
                self.logical(Logical { rec, seq }, now_ms, out);
                return;
            }
            LineFormat::Cri => false,
            LineFormat::Docker => true,
            LineFormat::Container => line.bytes.first() == Some(&b'{'),
        };
        if docker {
            match docker::decode(line.bytes) {
                Ok(d) => self.chunk(
                    d.stream,
                    d.timestamp_ns,
                    d.partial,
                    Msg::Text(d.message),
                    &line,
                    seq,
                    now_ms,
                    out,
                ),
                Err(_) => self.invalid(&line, read_time_ns, out),
            }
        } else {
            match cri::decode(line.bytes) {
                Ok(c) => self.chunk(
                    c.stream,
                    c.timestamp_ns,
                    c.partial,
                    Msg::Bytes(c.message),
                    &line,
                    seq,
                    now_ms,
                    out,
                ),
                Err(_) => self.invalid(&line, read_time_ns, out),
            }
        }
    }

    /// Flushes pending records whose partial or multiline timeout expired at `now_ms`.
    pub fn flush_expired(&mut self, now_ms: u64, out: &mut Vec<Record<P>>) {
        for (k, stream) in STREAMS.into_iter().enumerate() {
            if self.partial[k]
                .as_ref()
                .is_some_and(|p| p.deadline_ms <= now_ms)
                && let Some(p) = self.partial[k].take()
            {
                self.finish_partial(p, stream, true, now_ms, out);
            }
        }
        self.flush_multi(|m| m.deadline_ms <= now_ms, out);
    }

    /// Flushes everything pending (the end of a file that will never grow). Pending partials
    /// are flagged `Unterminated`.
    pub fn flush_all(&mut self, out: &mut Vec<Record<P>>) {
        for (k, stream) in STREAMS.into_iter().enumerate() {
            if let Some(p) = self.partial[k].take() {
                let now = p.deadline_ms;
                self.finish_partial(p, stream, true, now, out);
            }
        }
        self.flush_multi(|_| true, out);
    }

    /// `start` of the oldest unfinished record (a pending partial or multiline record).
    pub fn oldest_pending(&self) -> Option<P> {
        let partials = self.partial.iter().flatten().map(|p| (p.seq, p.start));
        let multis = self.multi.iter().flatten().map(|m| (m.seq, m.rec.start));
        partials
            .chain(multis)
            .min_by_key(|(seq, _)| *seq)
            .map(|(_, start)| start)
    }

    /// Earliest `now_ms` at which [`flush_expired`](Self::flush_expired) would flush something.
    pub fn next_deadline(&self) -> Option<u64> {
        let partials = self.partial.iter().flatten().map(|p| p.deadline_ms);
        let multis = self.multi.iter().flatten().map(|m| m.deadline_ms);
        partials.chain(multis).min()
    }

    pub fn stats(&self) -> MergeStats {
        self.stats
    }

    #[allow(clippy::too_many_arguments)]
    fn chunk(
        &mut self,
        stream: StdStream,
        timestamp_ns: i64,
        partial: bool,
        msg: Msg<'_>,
        line: &RawLine<'_, P>,
        seq: u64,
        now_ms: u64,
        out: &mut Vec<Record<P>>,
    ) {
        let k = key(Some(stream));
        let max = self.cfg.max_record_bytes;
        let deadline_ms = now_ms.saturating_add(self.cfg.partial_timeout_ms);
        let mut flags = Flags::empty();
        if line.cut {
            flags.insert(LogFlag::Truncated);
        }
        match self.partial[k].take() {
            // the common case: a whole line, one allocation for its message
            None if !partial => {
                let message = msg.into_string(max, &mut flags);
                let rec = Record {
                    timestamp_ns,
                    stream: Some(stream),
                    message,
                    level: None,
                    flags,
                    start: line.start,
                    end: line.end,
                };
                self.logical(Logical { rec, seq }, now_ms, out);
            }
            None => {
                let mut p = PartialBuf {
                    buf: Vec::new(),
                    timestamp_ns,
                    start: line.start,
                    end: line.end,
                    chunks: 1,
                    flags,
                    full: false,
                    seq,
                    deadline_ms,
                };
                p.append(msg.as_bytes(), max);
                self.partial[k] = Some(p);
            }
            Some(mut p) => {
                p.append(msg.as_bytes(), max);
                p.end = line.end;
                p.chunks = p.chunks.saturating_add(1);
                p.flags = p.flags.union(flags);
                p.deadline_ms = deadline_ms;
                if partial {
                    self.partial[k] = Some(p);
                } else {
                    self.finish_partial(p, stream, false, now_ms, out);
                }
            }
        }
    }

    fn finish_partial(
        &mut self,
        p: PartialBuf<P>,
        stream: StdStream,
        unterminated: bool,
        now_ms: u64,
        out: &mut Vec<Record<P>>,
    ) {
        let mut flags = p.flags;
        if p.chunks > 1 {
            flags.insert(LogFlag::Partial);
            self.stats.partials_merged += 1;
        }
        if unterminated {
            flags.insert(LogFlag::Partial);
            flags.insert(LogFlag::Unterminated);
            self.stats.unterminated += 1;
        }
        let message = vec_to_string(p.buf, self.cfg.max_record_bytes, &mut flags);
        let rec = Record {
            timestamp_ns: p.timestamp_ns,
            stream: Some(stream),
            message,
            level: None,
            flags,
            start: p.start,
            end: p.end,
        };
        self.logical(Logical { rec, seq: p.seq }, now_ms, out);
    }

    /// A line that failed to decode: its own record, leaving pending records alone.
    fn invalid(&mut self, line: &RawLine<'_, P>, read_time_ns: i64, out: &mut Vec<Record<P>>) {
        self.stats.invalid_lines += 1;
        let mut flags = Flags::empty();
        if line.cut {
            flags.insert(LogFlag::Truncated);
        }
        let message = slice_to_string(line.bytes, self.cfg.max_record_bytes, &mut flags);
        self.emit(
            Record {
                timestamp_ns: read_time_ns,
                stream: None,
                message,
                level: None,
                flags,
                start: line.start,
                end: line.end,
            },
            out,
        );
    }

    /// Multiline stage.
    fn logical(&mut self, l: Logical<P>, now_ms: u64, out: &mut Vec<Record<P>>) {
        let Some(ml) = self.cfg.multiline.as_ref() else {
            self.emit(l.rec, out);
            return;
        };
        let deadline_ms = now_ms.saturating_add(ml.timeout_ms);
        let max_lines = ml.max_lines;
        let is_start = ml.start_pattern.is_match(&l.rec.message);
        let max = self.cfg.max_record_bytes;
        let k = key(l.rec.stream);
        let full = match self.multi[k].as_mut() {
            Some(m) if !is_start => {
                m.append(l.rec, max);
                m.deadline_ms = deadline_ms;
                m.lines >= max_lines
            }
            _ => {
                if let Some(prev) = self.multi[k].take() {
                    self.emit_multi(prev, out);
                }
                self.multi[k] = Some(MultiBuf {
                    rec: l.rec,
                    lines: 1,
                    full: false,
                    seq: l.seq,
                    deadline_ms,
                });
                max_lines <= 1
            }
        };
        if full && let Some(m) = self.multi[k].take() {
            self.emit_multi(m, out);
        }
    }

    fn flush_multi(&mut self, due: impl Fn(&MultiBuf<P>) -> bool, out: &mut Vec<Record<P>>) {
        // oldest first, so output follows line order across keys
        let mut keys: Vec<(u64, usize)> = (0..3)
            .filter_map(|k| {
                self.multi[k]
                    .as_ref()
                    .filter(|m| due(m))
                    .map(|m| (m.seq, k))
            })
            .collect();
        keys.sort_unstable();
        for (_, k) in keys {
            if let Some(m) = self.multi[k].take() {
                self.emit_multi(m, out);
            }
        }
    }

    fn emit_multi(&mut self, m: MultiBuf<P>, out: &mut Vec<Record<P>>) {
        let mut rec = m.rec;
        if m.lines > 1 {
            rec.flags.insert(LogFlag::Multiline);
            self.stats.multiline_merged += 1;
        }
        self.emit(rec, out);
    }

    fn emit(&mut self, mut rec: Record<P>, out: &mut Vec<Record<P>>) {
        let json = match self.cfg.format {
            LineFormat::Json => true,
            LineFormat::Plain => false,
            _ => self.cfg.json_level,
        };
        let msg = rec.message.as_bytes();
        rec.level = if json && msg.trim_ascii_start().first() == Some(&b'{') {
            detect_json(msg)
        } else {
            detect_plain(msg)
        };
        self.stats.records += 1;
        if rec.flags.contains(LogFlag::Truncated) {
            self.stats.truncated += 1;
        }
        out.push(rec);
    }
}

impl<P> PartialBuf<P> {
    /// Appends a chunk, never growing past `max` bytes.
    fn append(&mut self, chunk: &[u8], max: usize) {
        if self.full {
            return;
        }
        let room = max.saturating_sub(self.buf.len());
        let take = chunk.len().min(room);
        let want = self.buf.len() + take;
        if want > self.buf.capacity() {
            // amortised growth, capped so the buffer never exceeds the record limit
            let target = want.max(self.buf.capacity().saturating_mul(2)).min(max);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(&chunk[..take]);
        if take == chunk.len() {
            return;
        }
        self.full = true;
        self.flags.insert(LogFlag::Truncated);
        // the cut must not split a char across the buffer and the chunk
        if is_cont(chunk[take]) {
            let len = self.buf.len();
            let lim = len.saturating_sub(3);
            let mut j = len;
            while j > lim && is_cont(self.buf[j - 1]) {
                j -= 1;
            }
            if j > 0 && self.buf[j - 1] >= 0xC0 {
                self.buf.truncate(j - 1);
            }
        }
    }
}

impl<P> MultiBuf<P> {
    fn append(&mut self, rec: Record<P>, max: usize) {
        self.lines += 1;
        self.rec.end = rec.end;
        self.rec.flags = self.rec.flags.union(rec.flags);
        if self.full {
            return;
        }
        let msg = &mut self.rec.message;
        if msg.len() + 1 + rec.message.len() <= max {
            msg.push('\n');
            msg.push_str(&rec.message);
            return;
        }
        self.full = true;
        self.rec.flags.insert(LogFlag::Truncated);
        let room = max.saturating_sub(msg.len());
        if room > 0 {
            msg.push('\n');
            let mut k = room - 1;
            while !rec.message.is_char_boundary(k) {
                k -= 1;
            }
            msg.push_str(&rec.message[..k]);
        }
    }
}

#[inline]
fn is_cont(b: u8) -> bool {
    b & 0xC0 == 0x80
}

/// Largest cut `<= n` that does not split a UTF-8 char.
fn utf8_floor(b: &[u8], n: usize) -> usize {
    if n >= b.len() {
        return b.len();
    }
    let mut k = n;
    while k > 0 && n - k < 3 && is_cont(b[k]) {
        k -= 1;
    }
    if is_cont(b[k]) { n } else { k }
}

fn cap_string(s: &mut String, max: usize, flags: &mut Flags) {
    if s.len() > max {
        let mut k = max;
        while !s.is_char_boundary(k) {
            k -= 1;
        }
        s.truncate(k);
        flags.insert(LogFlag::Truncated);
    }
}

fn slice_to_string(b: &[u8], max: usize, flags: &mut Flags) -> String {
    let b = if b.len() > max {
        flags.insert(LogFlag::Truncated);
        &b[..utf8_floor(b, max)]
    } else {
        b
    };
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            flags.insert(LogFlag::InvalidUtf8);
            let mut s = String::from_utf8_lossy(b).into_owned();
            // U+FFFD is 3 bytes: replacement can grow the message past the limit
            cap_string(&mut s, max, flags);
            s
        }
    }
}

fn vec_to_string(v: Vec<u8>, max: usize, flags: &mut Flags) -> String {
    match String::from_utf8(v) {
        Ok(s) => s,
        Err(e) => {
            flags.insert(LogFlag::InvalidUtf8);
            let mut s = String::from_utf8_lossy(e.as_bytes()).into_owned();
            cap_string(&mut s, max, flags);
            s
        }
    }
}
