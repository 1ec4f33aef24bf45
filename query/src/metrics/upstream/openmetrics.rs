//! Static files in the OpenMetrics text format, every sample with a timestamp: read once, kept
//! in memory, selected like any upstream.
//!
//! - OpenMetrics (any file not ending in `.prom`): timestamps in seconds with an optional
//!   fraction (rounded to the millisecond), `# EOF` last. This is what
//!   `promtool tsdb create-blocks-from openmetrics` reads.
//! - Prometheus text format (files ending in `.prom`): integer millisecond timestamps, no
//!   `# EOF`.
//!
//! Comment lines (`# TYPE`, `# HELP`, `# UNIT`, ...) and blank lines are skipped; exemplars
//! after a sample are ignored. Samples of one series may be spread over the files in any
//! order; two at the same timestamp are an error naming both places.

use super::{UpstreamError, sorted_unique, trim};
use nevermore_promql::model::{
    Labels, Matcher, MemStorage, Millis, Sample, SelectRequest, Series, Storage,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Series loaded from files.
#[derive(Debug)]
pub struct StaticFiles {
    name: String,
    storage: MemStorage,
}

/// How a file writes timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// Seconds with an optional fraction; `# EOF` required.
    OpenMetrics,
    /// Integer milliseconds.
    Prometheus,
}

impl TextFormat {
    pub fn of_path(path: &Path) -> TextFormat {
        if path.extension().is_some_and(|e| e == "prom") {
            TextFormat::Prometheus
        } else {
            TextFormat::OpenMetrics
        }
    }
}

/// A parse failure at a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Where a sample came from, for duplicate errors.
#[derive(Debug, Clone, Copy)]
struct Origin {
    file: usize,
    line: usize,
}

/// Samples with their origins, gathered per label set.
#[derive(Debug, Default)]
struct Collector {
    series: HashMap<Labels, Vec<(Sample, Origin)>>,
}

impl StaticFiles {
    /// Reads and parses every file now.
    pub fn load(name: impl Into<String>, paths: &[PathBuf]) -> Result<StaticFiles, UpstreamError> {
        let name = name.into();
        let mut c = Collector::default();
        for (file, path) in paths.iter().enumerate() {
            let text = std::fs::read_to_string(path).map_err(|e| UpstreamError::Io {
                upstream: name.clone(),
                path: path.clone(),
                message: e.to_string(),
            })?;
            parse_into(&text, TextFormat::of_path(path), file, &mut c).map_err(|e| {
                UpstreamError::Parse {
                    upstream: name.clone(),
                    path: path.clone(),
                    line: e.line,
                    message: e.message,
                }
            })?;
        }
        let series = c.finish().map_err(|(a, b, t)| UpstreamError::Parse {
            upstream: name.clone(),
            path: paths[b.file].clone(),
            line: b.line,
            message: format!(
                "second sample at timestamp {t} ms for the series (the first is at {}:{})",
                paths[a.file].display(),
                a.line
            ),
        })?;
        Ok(StaticFiles {
            name,
            storage: MemStorage::new(series),
        })
    }

    /// Series from text already in memory (tests, embedded fixtures).
    pub fn from_text(
        name: impl Into<String>,
        text: &str,
        format: TextFormat,
    ) -> Result<StaticFiles, UpstreamError> {
        let name = name.into();
        let series = parse(text, format).map_err(|e| UpstreamError::Parse {
            upstream: name.clone(),
            path: PathBuf::from("<text>"),
            line: e.line,
            message: e.message,
        })?;
        Ok(StaticFiles {
            name,
            storage: MemStorage::new(series),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every series held, in label order.
    pub fn series(&self) -> impl Iterator<Item = &Series> {
        self.storage.series().iter().map(|s| s.as_ref())
    }

    pub fn select(&self, req: &SelectRequest) -> Vec<Series> {
        // MemStorage never fails.
        let Ok(found) = self.storage.select(req) else {
            return Vec::new();
        };
        found
            .into_iter()
            .filter_map(|s| {
                let mut samples = s.samples.clone();
                trim(&mut samples, req.start, req.end);
                (!samples.is_empty()).then(|| Series {
                    labels: s.labels.clone(),
                    samples,
                })
            })
            .collect()
    }

    /// Label sets of the series matching any selector (every series when there is none) with a
    /// sample in `[start, end]`, in label order.
    pub fn series_matching(
        &self,
        selectors: &[Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> Vec<Labels> {
        self.index(selectors, start, end).cloned().collect()
    }

    /// Label names over those series.
    pub fn label_names(
        &self,
        selectors: &[Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> Vec<String> {
        sorted_unique(
            self.index(selectors, start, end)
                .flat_map(|l| l.iter().map(|l| l.name.clone()))
                .collect(),
        )
    }

    /// Values of label `name` over those series.
    pub fn label_values(
        &self,
        name: &str,
        selectors: &[Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> Vec<String> {
        sorted_unique(
            self.index(selectors, start, end)
                .filter_map(|l| l.get(name).map(str::to_string))
                .collect(),
        )
    }

    /// What an index would answer, exactly: label sets (in order, each once) of the series
    /// matching any selector with a sample in the window.
    fn index<'a>(
        &'a self,
        selectors: &'a [Vec<Matcher>],
        start: Millis,
        end: Millis,
    ) -> impl Iterator<Item = &'a Labels> {
        self.series()
            .filter(move |s| selectors.is_empty() || selectors.iter().any(|m| s.labels.matches(m)))
            .filter(move |s| {
                // Samples are in time order.
                let i = s.samples.partition_point(|x| x.t < start);
                s.samples.get(i).is_some_and(|x| x.t <= end)
            })
            .map(|s| &s.labels)
    }
}

/// Parses one file's text into series (samples sorted; duplicates are an error).
pub fn parse(text: &str, format: TextFormat) -> Result<Vec<Series>, ParseError> {
    let mut c = Collector::default();
    parse_into(text, format, 0, &mut c)?;
    c.finish().map_err(|(a, b, t)| ParseError {
        line: b.line,
        message: format!(
            "second sample at timestamp {t} ms for the series (the first is on line {})",
            a.line
        ),
    })
}

impl Collector {
    /// Sorted series, or the two places of a duplicate timestamp and the timestamp.
    fn finish(self) -> Result<Vec<Series>, (Origin, Origin, i64)> {
        let mut out = Vec::with_capacity(self.series.len());
        for (labels, mut samples) in self.series {
            // Stable: of two samples at one time, the earlier-read comes first.
            samples.sort_by_key(|(s, _)| s.t);
            if let Some(w) = samples.windows(2).find(|w| w[0].0.t == w[1].0.t) {
                return Err((w[0].1, w[1].1, w[0].0.t));
            }
            out.push(Series {
                labels,
                samples: samples.into_iter().map(|(s, _)| s).collect(),
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

fn parse_into(
    text: &str,
    format: TextFormat,
    file: usize,
    c: &mut Collector,
) -> Result<(), ParseError> {
    let mut eof_at = None;
    let mut last_line = 0;
    for (i, line) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        last_line = n;
        if let Some(at) = eof_at {
            return Err(ParseError {
                line: n,
                message: format!("text after `# EOF` (line {at})"),
            });
        }
        if line.starts_with('#') {
            if line.trim_end() == "# EOF" {
                if format == TextFormat::Prometheus {
                    return Err(ParseError {
                        line: n,
                        message: "`# EOF` in a prometheus text format (.prom) file: openmetrics \
                                  files, with timestamps in seconds, need another extension"
                            .into(),
                    });
                }
                eof_at = Some(n);
            }
            continue;
        }
        let (labels, sample) =
            parse_sample(line, format).map_err(|message| ParseError { line: n, message })?;
        c.series
            .entry(labels)
            .or_default()
            .push((sample, Origin { file, line: n }));
    }
    if format == TextFormat::OpenMetrics && eof_at.is_none() {
        return Err(ParseError {
            line: last_line + 1,
            message: "missing `# EOF`: openmetrics files end with it (prometheus text format \
                      files, with millisecond timestamps, need the .prom extension)"
                .into(),
        });
    }
    Ok(())
}

/// `name{a="b",...} value timestamp [# exemplar]`.
fn parse_sample(line: &str, format: TextFormat) -> Result<(Labels, Sample), String> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    let name = &line[..i];
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return Err("expected a metric name".into());
    }
    let mut pairs: Vec<(String, String)> = vec![("__name__".into(), name.into())];
    if b.get(i) == Some(&b'{') {
        i += 1;
        loop {
            i = skip_spaces(b, i);
            if b.get(i) == Some(&b'}') {
                i += 1;
                break;
            }
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let lname = &line[start..i];
            if lname.is_empty() || lname.as_bytes()[0].is_ascii_digit() {
                return Err(format!("expected a label name at column {}", start + 1));
            }
            if lname == "__name__" || pairs.iter().any(|(n, _)| n == lname) {
                return Err(format!("label {lname} given twice"));
            }
            i = skip_spaces(b, i);
            if b.get(i) != Some(&b'=') {
                return Err(format!("expected `=` at column {}", i + 1));
            }
            i = skip_spaces(b, i + 1);
            if b.get(i) != Some(&b'"') {
                return Err(format!("expected `\"` at column {}", i + 1));
            }
            let (value, next) = label_value(line, i + 1)?;
            pairs.push((lname.to_string(), value));
            i = skip_spaces(b, next);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {}
                _ => return Err(format!("expected `,` or `}}` at column {}", i + 1)),
            }
        }
    }
    let rest = &line[i..];
    if !rest.starts_with([' ', '\t']) {
        return Err(format!("expected a space and a value at column {}", i + 1));
    }
    // Exemplars follow ` # `.
    let rest = rest.split(" # ").next().unwrap_or(rest);
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("expected a value")?;
    let v = parse_value(value).ok_or_else(|| format!("bad value {value:?}"))?;
    let ts = fields.next().ok_or_else(|| {
        "sample without a timestamp: static files need one on every sample".to_string()
    })?;
    let t = match format {
        TextFormat::OpenMetrics => seconds_to_ms(ts),
        TextFormat::Prometheus => ts.parse::<i64>().ok(),
    }
    .ok_or_else(|| format!("bad timestamp {ts:?}"))?;
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the timestamp"));
    }
    Ok((Labels::from_pairs(pairs), Sample { t, v }))
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| *c == b' ' || *c == b'\t') {
        i += 1;
    }
    i
}

/// A label value starting after its opening quote: the value and the index after the closing
/// quote. Escapes: `\\`, `\"`, `\n`.
fn label_value(line: &str, start: usize) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = line[start..].char_indices();
    while let Some((j, c)) = chars.next() {
        match c {
            '"' => return Ok((out, start + j + 1)),
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                Some((k, other)) => {
                    return Err(format!(
                        "unknown escape `\\{other}` at column {}",
                        start + k
                    ));
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated label value".into())
}

/// A sample value: a float, `NaN`, `+Inf`, `-Inf` (also `Inf`, any case, as Prometheus).
fn parse_value(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        // Rust would also take "infinity" and the like; only digits and exponents here.
        l if l
            .bytes()
            .all(|c| c.is_ascii_digit() || b"+-.e".contains(&c)) =>
        {
            l.parse().ok()
        }
        _ => None,
    }
}

/// Seconds with an optional fraction, or exponent form, to milliseconds (rounded half away
/// from zero). Plain decimals are converted exactly.
fn seconds_to_ms(s: &str) -> Option<i64> {
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = !int.is_empty() || !frac.is_empty();
    if plain && int.bytes().all(|c| c.is_ascii_digit()) && frac.bytes().all(|c| c.is_ascii_digit())
    {
        let whole: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut ms: i64 = 0;
        for c in frac.bytes().chain(std::iter::repeat(b'0')).take(3) {
            ms = ms * 10 + i64::from(c - b'0');
        }
        let round_up = frac.as_bytes().get(3).is_some_and(|c| *c >= b'5');
        let abs = whole
            .checked_mul(1000)?
            .checked_add(ms + i64::from(round_up))?;
        return Some(if neg { -abs } else { abs });
    }
    let f: f64 = s.parse().ok()?;
    let ms = (f * 1000.0).round();
    (ms.is_finite() && ms.abs() < 9.0e18).then_some(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn om(s: &str) -> Result<Vec<Series>, ParseError> {
        parse(s, TextFormat::OpenMetrics)
    }

    #[test]
    fn parses_openmetrics() {
        let text = "# HELP foo_total A counter.\n# TYPE foo_total counter\n\
            foo_total{job=\"j\",inst=\"1\"} 2 1700000015.5\n\
            foo_total{job=\"j\",inst=\"1\"} 1 1700000000\n\
            foo_total{inst=\"1\",job=\"j\"} NaN 1700000030.0004\n\
            foo_total{job=\"j\",inst=\"1\"} +Inf 1700000045.0005 # {trace_id=\"x\"} 1 1700000045\n\
            # TYPE g gauge\n# UNIT g seconds\n\
            g{a=\"x\\\"y\\\\z\\nw\",e=\"\"} -3.5e1 1700000000.001\n\
            g -Inf 1e9\n# EOF\n";
        let s = om(text).unwrap();
        assert_eq!(s.len(), 3);
        let foo = s
            .iter()
            .find(|s| s.labels.metric_name() == Some("foo_total"))
            .unwrap();
        let ts: Vec<i64> = foo.samples.iter().map(|s| s.t).collect();
        assert_eq!(
            ts,
            [1700000000000, 1700000015500, 1700000030000, 1700000045001]
        );
        assert!(foo.samples[2].v.is_nan());
        assert_eq!(foo.samples[3].v, f64::INFINITY);
        let g = s.iter().find(|s| s.labels.get("a").is_some()).unwrap();
        assert_eq!(g.labels.get("a"), Some("x\"y\\z\nw"));
        assert_eq!(g.labels.get("e"), None);
        assert_eq!(
            g.samples,
            vec![Sample {
                t: 1700000000001,
                v: -35.0
            }]
        );
        let bare = s.iter().find(|s| s.labels.len() == 1).unwrap();
        assert_eq!(
            bare.samples,
            vec![Sample {
                t: 1_000_000_000_000,
                v: f64::NEG_INFINITY
            }]
        );
    }

    #[test]
    fn prometheus_text_takes_milliseconds() {
        let s = parse("up{a=\"b\"} 1 1700000000123\n", TextFormat::Prometheus).unwrap();
        assert_eq!(s[0].samples[0].t, 1700000000123);
        assert!(parse("up 1 1\n# EOF\n", TextFormat::Prometheus).is_err());
    }

    #[test]
    fn positioned_errors() {
        let cases = [
            ("# TYPE x gauge\nx 1\n# EOF\n", 2, "without a timestamp"),
            ("x 1 1\nx{a=\"1} 1 1\n# EOF\n", 2, "unterminated"),
            ("x 1 1\n\nx{a=\"\\t\"} 1 1\n# EOF\n", 3, "escape"),
            (
                "x 1 1\nx 2 1.0\n# EOF\n",
                2,
                "second sample at timestamp 1000",
            ),
            ("x 1 1\n", 2, "missing `# EOF`"),
            ("x 1 1\n# EOF\nx 1 2\n", 3, "after `# EOF`"),
            ("x{a=\"1\",a=\"2\"} 1 1\n# EOF\n", 1, "twice"),
            ("x one 1\n# EOF\n", 1, "bad value"),
            ("x 1 1s\n# EOF\n", 1, "bad timestamp"),
            ("x 1 1 2\n# EOF\n", 1, "after the timestamp"),
            ("{a=\"1\"} 1 1\n# EOF\n", 1, "metric name"),
        ];
        for (text, line, what) in cases {
            let e = om(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e:?}");
            assert!(e.message.contains(what), "{text:?}: {e:?}");
        }
    }

    #[test]
    fn seconds_convert_exactly() {
        assert_eq!(seconds_to_ms("1700000000.123"), Some(1700000000123));
        assert_eq!(seconds_to_ms("0.0015"), Some(2));
        assert_eq!(seconds_to_ms("-1.5"), Some(-1500));
        assert_eq!(seconds_to_ms(".5"), Some(500));
        assert_eq!(seconds_to_ms("1.7e9"), Some(1_700_000_000_000));
        assert_eq!(seconds_to_ms("."), None);
        assert_eq!(seconds_to_ms("99999999999999999999"), None);
        assert_eq!(seconds_to_ms("NaN"), None);
    }

    #[test]
    fn files_merge_and_duplicates_name_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.om");
        let b = dir.path().join("b.om");
        std::fs::write(&a, "x 1 1\n# EOF\n").unwrap();
        std::fs::write(&b, "x 2 2\n# EOF\n").unwrap();
        let s = StaticFiles::load("files", &[a.clone(), b.clone()]).unwrap();
        assert_eq!(s.series().next().unwrap().samples.len(), 2);
        std::fs::write(&b, "x 2 2\nx 3 1\n# EOF\n").unwrap();
        let e = StaticFiles::load("files", &[a.clone(), b.clone()]).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, UpstreamError::Parse { line: 2, path, .. } if *path == b),
            "{msg}"
        );
        assert!(msg.contains("a.om:1"), "{msg}");
        let e = StaticFiles::load("files", &[dir.path().join("none.om")]).unwrap_err();
        assert!(matches!(e, UpstreamError::Io { .. }));
    }

    proptest! {
        #[test]
        fn never_panics(text in "(?s).{0,300}") {
            let _ = om(&text);
            let _ = parse(&text, TextFormat::Prometheus);
        }

        #[test]
        fn never_panics_on_near_misses(
            lines in proptest::collection::vec(
                "[a-z_:]{0,3}(\\{([a-z]{0,2}=\"([^\"\\\\]|\\\\.){0,3}\"?,?){0,3}\\}?)? ?[-+0-9.eENaIinf]{0,6} ?[-+0-9.e]{0,12}( # .{0,5})?",
                0..8,
            ),
            eof in any::<bool>(),
        ) {
            let mut text = lines.join("\n");
            if eof {
                text.push_str("\n# EOF\n");
            }
            let _ = om(&text);
        }
    }
}
