//! A stored record (its JSON) seen by the language's evaluator.

use nevermore_lang::Field;
use nevermore_lang::eval::Doc;
use serde_json::Value;

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
