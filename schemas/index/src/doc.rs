//! A record as the index sees it: borrowed fields plus the JSON source.

use crate::{Fields, LEVELS};
use nevermore_schemas::record::LogRecord;
use tantivy::TantivyDocument;

/// The indexed view of one record. Built by the collector from its events (no JSON parsing) or
/// from a [`LogRecord`] (the relay).
#[derive(Debug, Clone)]
pub struct IndexDoc<'a> {
    pub ts_ns: i64,
    pub stream_id: u64,
    pub seq: u64,
    pub event_id: &'a str,
    pub message: &'a str,
    pub level: Option<&'a str>,
    pub stream: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub pod: Option<&'a str>,
    pub container: Option<&'a str>,
    pub workload: Option<&'a str>,
    pub node: &'a str,
    pub cluster: &'a str,
    pub dataset: &'a str,
    pub labels: Vec<(&'a str, &'a str)>,
    /// The record's JSON, returned verbatim by searches.
    pub source: &'a [u8],
}

impl<'a> IndexDoc<'a> {
    /// Maps a record; `None` when its timestamp or stream id cannot be read (the caller counts
    /// it as a drop).
    pub fn from_record(r: &'a LogRecord, source: &'a [u8]) -> Option<IndexDoc<'a>> {
        let k = r.kubernetes.as_ref();
        Some(IndexDoc {
            ts_ns: parse_ts(&r.timestamp)?,
            stream_id: u64::from_str_radix(&r.event.stream_id, 16).ok()?,
            seq: r.event.sequence,
            event_id: &r.event.id,
            message: &r.message,
            level: r.log.level.map(|l| l.as_str()),
            stream: r.stream.map(|s| match s {
                nevermore_schemas::record::StdStream::Stdout => "stdout",
                nevermore_schemas::record::StdStream::Stderr => "stderr",
            }),
            namespace: k.map(|k| k.namespace.as_str()),
            pod: k.map(|k| k.pod.name.as_str()),
            container: k.map(|k| k.container.name.as_str()),
            workload: k.and_then(|k| k.workload.as_ref()).map(|w| w.name.as_str()),
            node: &r.host.name,
            cluster: &r.orchestrator.cluster.name,
            dataset: &r.event.dataset,
            labels: k
                .map(|k| {
                    k.labels
                        .iter()
                        .map(|(a, b)| (a.as_str(), b.as_str()))
                        .collect()
                })
                .unwrap_or_default(),
            source,
        })
    }

    pub(crate) fn to_document(&self, f: &Fields) -> TantivyDocument {
        let mut d = TantivyDocument::new();
        d.add_i64(f.ts, self.ts_ns);
        d.add_u64(f.sid, self.stream_id);
        d.add_u64(f.seq, self.seq);
        d.add_text(f.id, self.event_id);
        d.add_text(f.message, self.message);
        let lvl = self
            .level
            .and_then(|l| LEVELS.iter().position(|x| *x == l))
            .map_or(0, |i| i as u64 + 1);
        d.add_u64(f.lvl, lvl);
        for (field, name, value) in [
            (f.level, "level", self.level),
            (f.stream, "stream", self.stream),
            (f.namespace, "namespace", self.namespace),
            (f.pod, "pod", self.pod),
            (f.container, "container", self.container),
            (f.workload, "workload", self.workload),
        ] {
            if let Some(v) = value {
                d.add_text(field, v);
                d.add_text(f.present, name);
            }
        }
        for (field, name, value) in [
            (f.node, "node", self.node),
            (f.cluster, "cluster", self.cluster),
        ] {
            d.add_text(field, value);
            d.add_text(f.present, name);
        }
        d.add_text(f.dataset, self.dataset);
        let mut kv = String::new();
        for (k, v) in &self.labels {
            kv.clear();
            kv.push_str(k);
            kv.push('=');
            kv.push_str(v);
            d.add_text(f.labels, &kv);
            kv.clear();
            kv.push_str("label.");
            kv.push_str(k);
            d.add_text(f.present, &kv);
        }
        d.add_bytes(f.source, self.source);
        d
    }
}

/// RFC 3339 (`2026-11-26T10:00:00.123456789Z`, any offset, 0–9 fraction digits) to
/// nanoseconds since the epoch.
pub fn parse_ts(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                frac = frac * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = (i - start).min(9);
        if digits == 0 {
            return None;
        }
        frac *= 10_i64.pow(9 - digits as u32);
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        s @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let v = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *s == b'+' { v } else { -v }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

/// Nanoseconds since the epoch as RFC 3339 UTC with nine fraction digits.
pub fn format_ts(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_ts;

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_ts("2026-11-26T10:00:00.123456789Z"),
            Some(1_795_687_200_123_456_789)
        );
        assert_eq!(
            parse_ts("2026-11-26T11:00:00.5+01:00"),
            Some(1_795_687_200_500_000_000)
        );
        assert_eq!(parse_ts("2026-11-26T10:00:00"), None);
        for ns in [0, 1_795_687_200_123_456_789, -1, 951_782_400_000_000_000] {
            assert_eq!(parse_ts(&super::format_ts(ns)), Some(ns));
        }
        assert_eq!(super::format_ts(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(parse_ts("garbage"), None);
        assert_eq!(parse_ts("2026-11-26T10:00:00.Z"), None);
    }
}
