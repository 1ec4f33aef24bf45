//! A record as the index sees it: borrowed fields plus the JSON source.

use crate::{Fields, LEVELS};
use nevermore_schemas::record::{Kubernetes, LogRecord};
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
        Some(
            IndexDoc {
                ts_ns: parse_ts(&r.timestamp)?,
                stream_id: u64::from_str_radix(&r.event.stream_id, 16).ok()?,
                seq: r.event.sequence,
                event_id: &r.event.id,
                message: &r.message,
                level: r.log.level.map(|l| l.as_str()),
                stream: r.stream.map(|s| s.as_str()),
                namespace: None,
                pod: None,
                container: None,
                workload: None,
                node: &r.host.name,
                cluster: &r.orchestrator.cluster.name,
                dataset: &r.event.dataset,
                labels: Vec::new(),
                source,
            }
            .with_kubernetes(r.kubernetes.as_ref()),
        )
    }

    /// Fills the Kubernetes fields from a record's `kubernetes` part.
    pub fn with_kubernetes(mut self, k: Option<&'a Kubernetes>) -> Self {
        if let Some(k) = k {
            self.namespace = Some(&k.namespace);
            self.pod = Some(&k.pod.name);
            self.container = Some(&k.container.name);
            self.workload = k.workload.as_ref().map(|w| w.name.as_str());
            self.labels = k
                .labels
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
        }
        self
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

/// Nanoseconds since the epoch as RFC 3339 UTC with nine fraction digits (the record's
/// `@timestamp`).
pub fn format_ts(ns: i64) -> String {
    let mut out = String::with_capacity(30);
    nevermore_schemas::time::format_rfc3339(ns, &mut out);
    out
}

/// RFC 3339 (`2026-11-26T10:00:00.123456789Z`, any offset, any fraction digits) to nanoseconds
/// since the epoch.
pub fn parse_ts(s: &str) -> Option<i64> {
    nevermore_schemas::time::parse_rfc3339(s.as_bytes())
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
