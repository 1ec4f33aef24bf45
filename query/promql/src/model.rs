//! Samples, series and the storage boundary of the engine.

use std::fmt;
use std::sync::Arc;

pub use promql_parser::label::{MatchOp, Matcher};

/// Milliseconds since the Unix epoch, as everywhere in Prometheus.
pub type Millis = i64;

/// The bit pattern Prometheus writes as a staleness marker (a NaN that is not the usual NaN).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is Prometheus' staleness marker (distinct from an ordinary NaN value).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The staleness marker as a value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Whether `s` is a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Appends `s` as a double-quoted string literal that PromQL (and MetricsQL) read back as `s`.
pub fn quote_into(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One label pair.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: String,
    pub value: String,
}

/// A label set: sorted by name, names unique, no empty values (an empty value means "absent",
/// as in Prometheus).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set from pairs in any order; later duplicates win, empty values are dropped.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut v: Vec<Label> = Vec::new();
        for (n, val) in pairs {
            let (name, value) = (n.into(), val.into());
            v.retain(|l| l.name != name);
            if !value.is_empty() {
                v.push(Label { name, value });
            }
        }
        v.sort();
        Labels(v)
    }

    /// Builds from labels already sorted by unique name with no empty value (checked in debug).
    pub fn from_sorted(v: Vec<Label>) -> Self {
        debug_assert!(v.windows(2).all(|w| w[0].name < w[1].name));
        Labels(v)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Sets `name` to `value` (removes it when `value` is empty).
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].value = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(
                i,
                Label {
                    name: name.to_string(),
                    value: value.to_string(),
                },
            ),
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.set(name, "");
    }

    /// Removes the labels named in `names` and returns them (in label order).
    pub fn take(&mut self, names: &[&str]) -> Vec<Label> {
        let mut taken = Vec::new();
        self.0.retain_mut(|l| {
            if names.contains(&l.name.as_str()) {
                taken.push(std::mem::take(l));
                false
            } else {
                true
            }
        });
        taken
    }

    /// The set without the metric name.
    pub fn without_metric_name(&self) -> Labels {
        self.without(&[METRIC_NAME])
    }

    /// The set without the given names.
    pub fn without(&self, names: &[&str]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| !names.contains(&l.name.as_str()))
                .cloned()
                .collect(),
        )
    }

    /// The set with only the given names.
    pub fn only(&self, names: &[&str]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| names.contains(&l.name.as_str()))
                .cloned()
                .collect(),
        )
    }

    /// Whether every matcher accepts this set (an absent label reads as "").
    pub fn matches(&self, matchers: &[Matcher]) -> bool {
        matchers
            .iter()
            .all(|m| m.is_match(self.get(&m.name).unwrap_or("")))
    }
}

impl fmt::Display for Labels {
    /// Prometheus' form: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.metric_name() {
            f.write_str(n)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

/// One float sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub t: Millis,
    pub v: f64,
}

/// A series: its labels and its samples in strictly increasing time order. Stale markers are
/// kept as samples (see [`is_stale_nan`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// What the engine will do with a selection; upstreams and dedup may use it (Prometheus'
/// `SelectHints`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SelectHints {
    /// The function the selector feeds directly (`rate`, `sum_over_time`, ...), if any. Dedup
    /// adjusts counters across replicas only for `rate`, `irate`, `increase` and `resets`.
    pub func: Option<String>,
    /// The range of a matrix selector, 0 for an instant selector.
    pub range_ms: Millis,
    /// The step of the evaluation (0 for an instant query).
    pub step_ms: Millis,
}

/// One selection: series matching every matcher, samples in `[start, end]` (inclusive).
#[derive(Clone, Debug)]
pub struct SelectRequest {
    pub matchers: Vec<Matcher>,
    pub start: Millis,
    pub end: Millis,
    pub hints: SelectHints,
}

impl SelectRequest {
    /// A stable key of the request: the same selector in the same window with the same hints.
    pub fn key(&self) -> String {
        let mut ms: Vec<String> = self
            .matchers
            .iter()
            .map(|m| format!("{}{}{:?}", m.name, m.op, m.value))
            .collect();
        ms.sort();
        format!(
            "{}|{}|{}|{:?}|{}|{}",
            ms.join(","),
            self.start,
            self.end,
            self.hints.func,
            self.hints.range_ms,
            self.hints.step_ms
        )
    }
}

/// Why a selection failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("upstream {upstream} failed: {message}")]
    Upstream { upstream: String, message: String },
    #[error("selection was not prepared: {key}")]
    NotPrepared { key: String },
}

/// The only way the engine reads data.
///
/// Implementations may return samples outside `[start, end]`; the engine filters by window.
/// Series must have distinct label sets and samples in increasing time order.
pub trait Storage {
    fn select(&self, req: &SelectRequest) -> Result<Vec<Arc<Series>>, StorageError>;
}

/// Series held in memory, filtered by matchers on every selection (fixtures, the conformance
/// runner, the static upstream after loading).
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    series: Vec<Arc<Series>>,
}

impl MemStorage {
    pub fn new(mut series: Vec<Series>) -> Self {
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        MemStorage {
            series: series.into_iter().map(Arc::new).collect(),
        }
    }

    pub fn series(&self) -> &[Arc<Series>] {
        &self.series
    }
}

impl Storage for MemStorage {
    fn select(&self, req: &SelectRequest) -> Result<Vec<Arc<Series>>, StorageError> {
        Ok(self
            .series
            .iter()
            .filter(|s| s.labels.matches(&req.matchers))
            .filter(|s| s.samples.iter().any(|x| x.t >= req.start && x.t <= req.end))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sorted_unique_and_empty_means_absent() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        assert_eq!(l.as_slice().len(), 2);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
        let mut m = l.clone();
        m.set("c", "x");
        m.remove("a");
        assert_eq!(m.to_string(), r#"{b="3", c="x"}"#);
    }

    #[test]
    fn stale_marker_is_not_plain_nan() {
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
    }
}
