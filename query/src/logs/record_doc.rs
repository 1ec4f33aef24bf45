//! A stored record (its JSON) seen by the language's evaluator.

use nevermore_lang::Field;
use nevermore_lang::eval::Doc;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;

/// A record's JSON as an evaluator document. Field lookups follow `Field::path()`.
#[derive(Debug)]
pub struct ValueDoc<'a> {
    record: &'a Value,
    ts_ns: i64,
}

impl<'a> ValueDoc<'a> {
    pub fn new(record: &'a Value) -> Self {
        let ts_ns = record
            .get("@timestamp")
            .and_then(Value::as_str)
            .and_then(nevermore_index::parse_ts)
            .unwrap_or(i64::MIN);
        ValueDoc { record, ts_ns }
    }
}

impl Doc for ValueDoc<'_> {
    fn timestamp_ns(&self) -> i64 {
        self.ts_ns
    }

    fn message(&self) -> &str {
        self.record
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    fn field(&self, f: &Field) -> Option<&str> {
        match f {
            Field::Message => Some(self.message()),
            Field::Label(key) => self
                .record
                .pointer("/kubernetes/labels")
                .and_then(|l| l.get(key.as_str()))
                .and_then(Value::as_str),
            Field::Time => self.record.get("@timestamp").and_then(Value::as_str),
            other => {
                let mut v = self.record;
                for part in other.path().split('.') {
                    v = v.get(part)?;
                }
                v.as_str()
            }
        }
    }
}

/// The fields the evaluator can ask for, borrowed from a record's JSON where no unescaping is
/// needed: the post-filter of the embedded index reads many records and keeps few, and a full
/// `Value` costs several times more.
#[derive(Debug, serde::Deserialize)]
pub struct LiteDoc<'a> {
    #[serde(rename = "@timestamp", borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow)]
    message: Cow<'a, str>,
    #[serde(borrow, default)]
    stream: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    log: Option<LiteLog<'a>>,
    #[serde(borrow, default)]
    kubernetes: Option<LiteK8s<'a>>,
    #[serde(borrow, default)]
    orchestrator: Option<LiteOrchestrator<'a>>,
    #[serde(borrow, default)]
    host: Option<LiteName<'a>>,
    #[serde(skip)]
    ts_ns: i64,
}

#[derive(Debug, serde::Deserialize)]
struct LiteLog<'a> {
    #[serde(borrow, default)]
    level: Option<Cow<'a, str>>,
}

#[derive(Debug, serde::Deserialize)]
struct LiteName<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Debug, serde::Deserialize)]
struct LiteOrchestrator<'a> {
    #[serde(borrow)]
    cluster: LiteName<'a>,
}

#[derive(Debug, serde::Deserialize)]
struct LiteK8s<'a> {
    #[serde(borrow)]
    namespace: Cow<'a, str>,
    #[serde(borrow)]
    pod: LiteName<'a>,
    #[serde(borrow)]
    container: LiteName<'a>,
    #[serde(borrow, default)]
    workload: Option<LiteName<'a>>,
    #[serde(borrow, default)]
    labels: HashMap<Cow<'a, str>, Cow<'a, str>>,
}

impl<'a> LiteDoc<'a> {
    pub fn parse(json: &'a [u8]) -> Option<LiteDoc<'a>> {
        let mut d: LiteDoc<'a> = serde_json::from_slice(json).ok()?;
        d.ts_ns = nevermore_index::parse_ts(&d.timestamp).unwrap_or(i64::MIN);
        Some(d)
    }
}

impl Doc for LiteDoc<'_> {
    fn timestamp_ns(&self) -> i64 {
        self.ts_ns
    }

    fn message(&self) -> &str {
        &self.message
    }

    fn field(&self, f: &Field) -> Option<&str> {
        let k = self.kubernetes.as_ref();
        match f {
            Field::Message => Some(&self.message),
            Field::Time => Some(&self.timestamp),
            Field::Stream => self.stream.as_deref(),
            Field::Level => self.log.as_ref().and_then(|l| l.level.as_deref()),
            Field::Namespace => k.map(|k| &*k.namespace),
            Field::Pod => k.map(|k| &*k.pod.name),
            Field::Container => k.map(|k| &*k.container.name),
            Field::Workload => k.and_then(|k| k.workload.as_ref()).map(|w| &*w.name),
            Field::Label(key) => k.and_then(|k| k.labels.get(key.as_str())).map(|v| &**v),
            Field::Node => self.host.as_ref().map(|h| &*h.name),
            Field::Cluster => self.orchestrator.as_ref().map(|o| &*o.cluster.name),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Both views answer every field alike, on the fixture set.
    #[test]
    fn lite_and_value_docs_agree() {
        let text = include_str!("../../../testdata/search/records.ndjson");
        let fields = [
            Field::Message,
            Field::Time,
            Field::Stream,
            Field::Level,
            Field::Namespace,
            Field::Pod,
            Field::Container,
            Field::Workload,
            Field::Node,
            Field::Cluster,
            Field::Label("app".into()),
            Field::Label("app.kubernetes.io/name".into()),
        ];
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let full = ValueDoc::new(&v);
            let lite = LiteDoc::parse(line.as_bytes()).unwrap();
            assert_eq!(full.timestamp_ns(), lite.timestamp_ns());
            for f in &fields {
                assert_eq!(full.field(f), lite.field(f), "{f:?} of {line}");
            }
        }
    }
}
