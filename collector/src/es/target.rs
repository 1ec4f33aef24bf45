//! Index names from the target pattern, and the index template that matches them.

use super::EsError;
use crate::config::IndexTarget;

/// One piece of an index pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `%Y`, `%m`, `%d`, `%H`: a byte range of the RFC 3339 form of the timestamp.
    Field(std::ops::Range<usize>),
}

const NS_PER_HOUR: i64 = 3_600_000_000_000;

/// Resolves the index of a document from its timestamp (UTC): `logs-%Y.%m.%d` gives
/// `logs-2026.11.26`. Remembers the last hour it resolved (records come mostly in order).
#[derive(Debug, Clone)]
pub struct IndexResolver {
    parts: Vec<Part>,
    /// The name when the pattern has no field (a data stream, a plain index).
    fixed: Option<String>,
    cached_hour: Option<i64>,
    cached: String,
}

/// Splits a pattern into literals and fields; `%%` is a `%`, an unknown `%x` stays literal
/// (the config loader rejects it).
fn parse(pattern: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            lit.push(c);
            continue;
        }
        let range = match chars.peek() {
            Some('Y') => 0..4,
            Some('m') => 5..7,
            Some('d') => 8..10,
            Some('H') => 11..13,
            Some('%') => {
                chars.next();
                lit.push('%');
                continue;
            }
            _ => {
                lit.push('%');
                continue;
            }
        };
        chars.next();
        if !lit.is_empty() {
            parts.push(Part::Literal(std::mem::take(&mut lit)));
        }
        parts.push(Part::Field(range));
    }
    if !lit.is_empty() {
        parts.push(Part::Literal(lit));
    }
    parts
}

impl IndexResolver {
    pub fn new(target: &IndexTarget) -> Self {
        let parts = match target {
            IndexTarget::Index(pattern) => parse(pattern),
            IndexTarget::DataStream(name) => vec![Part::Literal(name.clone())],
        };
        let fixed = if parts.iter().all(|p| matches!(p, Part::Literal(_))) {
            Some(
                parts
                    .iter()
                    .map(|p| match p {
                        Part::Literal(s) => s.as_str(),
                        Part::Field(_) => "",
                    })
                    .collect(),
            )
        } else {
            None
        };
        IndexResolver {
            parts,
            fixed,
            cached_hour: None,
            cached: String::new(),
        }
    }

    /// True when every document goes to the same index.
    pub fn is_fixed(&self) -> bool {
        self.fixed.is_some()
    }

    /// The index of a document whose `@timestamp` is `ts_ns` nanoseconds since the epoch.
    pub fn resolve(&mut self, ts_ns: i64) -> &str {
        if let Some(name) = &self.fixed {
            return name;
        }
        let hour = ts_ns.div_euclid(NS_PER_HOUR);
        if self.cached_hour != Some(hour) {
            let ts = nevermore_schemas::time::rfc3339_bytes(ts_ns);
            self.cached.clear();
            for p in &self.parts {
                match p {
                    Part::Literal(s) => self.cached.push_str(s),
                    Part::Field(r) => {
                        for &b in &ts[r.clone()] {
                            self.cached.push(char::from(b));
                        }
                    }
                }
            }
            self.cached_hour = Some(hour);
        }
        &self.cached
    }
}

/// The `index_patterns` entry of the template for a target: the span from the first to the
/// last strftime field becomes one `*` (`logs-%Y.%m.%d` → `logs-*`); a data stream or a plain
/// index is matched by its name.
pub fn template_index_pattern(target: &IndexTarget) -> String {
    let parts = match target {
        IndexTarget::Index(pattern) => parse(pattern),
        IndexTarget::DataStream(name) => return name.clone(),
    };
    let first = parts.iter().position(|p| matches!(p, Part::Field(_)));
    let last = parts.iter().rposition(|p| matches!(p, Part::Field(_)));
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        match (first, last) {
            (Some(f), Some(l)) if i >= f && i <= l => {
                if i == f {
                    out.push('*');
                }
            }
            _ => {
                if let Part::Literal(s) = p {
                    out.push_str(s);
                }
            }
        }
    }
    out
}

/// The body of `PUT _index_template/<name>`: the schemas' template (`opensearch` picks its
/// twin) with `index_patterns` from the target, and `data_stream: {}` for a data stream.
pub fn template_body(target: &IndexTarget, opensearch: bool) -> Result<serde_json::Value, EsError> {
    let text = if opensearch {
        nevermore_schemas::OPENSEARCH_INDEX_TEMPLATE
    } else {
        nevermore_schemas::ES_INDEX_TEMPLATE
    };
    let mut body: serde_json::Value =
        serde_json::from_str(text).map_err(|source| EsError::TemplateJson { source })?;
    if let Some(obj) = body.as_object_mut() {
        obj.insert(
            "index_patterns".into(),
            serde_json::json!([template_index_pattern(target)]),
        );
        if matches!(target, IndexTarget::DataStream(_)) {
            obj.insert("data_stream".into(), serde_json::json!({}));
        }
    }
    Ok(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ns(rfc3339: &str) -> i64 {
        nevermore_schemas::time::parse_rfc3339(rfc3339.as_bytes()).unwrap()
    }

    fn index(p: &str) -> IndexTarget {
        IndexTarget::Index(p.into())
    }

    #[test]
    fn resolves_date_fields_in_utc() {
        let mut r = IndexResolver::new(&index("logs-%Y.%m.%d"));
        assert!(!r.is_fixed());
        assert_eq!(
            r.resolve(ns("2026-11-26T23:59:59.999999999Z")),
            "logs-2026.11.26"
        );
        assert_eq!(r.resolve(ns("2026-11-27T00:00:00Z")), "logs-2026.11.27");
        // An offset is converted to UTC first.
        assert_eq!(
            r.resolve(ns("2026-11-27T01:00:00+02:00")),
            "logs-2026.11.26"
        );
        let mut r = IndexResolver::new(&index("a-%Y-%m-%dT%H-b"));
        assert_eq!(r.resolve(ns("2024-02-29T07:30:00Z")), "a-2024-02-29T07-b");
        assert_eq!(r.resolve(ns("2024-02-29T08:00:00Z")), "a-2024-02-29T08-b");
        assert_eq!(r.resolve(0), "a-1970-01-01T00-b");
        assert_eq!(r.resolve(-1), "a-1969-12-31T23-b");
    }

    #[test]
    fn fixed_names_and_escapes() {
        let mut r = IndexResolver::new(&index("logs-nevermore"));
        assert!(r.is_fixed());
        assert_eq!(r.resolve(12345), "logs-nevermore");
        let mut r = IndexResolver::new(&IndexTarget::DataStream("logs-k8s-default".into()));
        assert_eq!(r.resolve(12345), "logs-k8s-default");
        let mut r = IndexResolver::new(&index("a%%b-%Y%q"));
        assert_eq!(r.resolve(ns("2030-01-02T03:04:05Z")), "a%b-2030%q");
    }

    #[test]
    fn template_patterns_from_targets() {
        for (target, want) in [
            (index("logs-%Y.%m.%d"), "logs-*"),
            (index("logs-%Y.%m.%d-%H"), "logs-*"),
            (index("logs-%Y.%m-app"), "logs-*-app"),
            (index("%Y-logs"), "*-logs"),
            (index("logs-nevermore"), "logs-nevermore"),
            (index("a%%b-%Y"), "a%b-*"),
            (IndexTarget::DataStream("logs-k8s".into()), "logs-k8s"),
        ] {
            assert_eq!(template_index_pattern(&target), want, "{target:?}");
        }
    }

    #[test]
    fn template_bodies() {
        let es = template_body(&index("logs-%Y.%m.%d"), false).unwrap();
        assert_eq!(es["index_patterns"], serde_json::json!(["logs-*"]));
        assert!(es.get("data_stream").is_none());
        assert_eq!(
            es["template"]["mappings"]["properties"]["@timestamp"]["type"],
            "date_nanos"
        );
        let ds = template_body(&IndexTarget::DataStream("logs-k8s".into()), true).unwrap();
        assert_eq!(ds["index_patterns"], serde_json::json!(["logs-k8s"]));
        assert_eq!(ds["data_stream"], serde_json::json!({}));
    }
}
