//! Runs Prometheus' own PromQL test scripts (`promqltest` format) against the engine.
//!
//! Every query goes through `plan`, then a storage that serves exactly the planned selections
//! (so the plan/evaluation contract is exercised on every block).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nevermore_promql::engine::{self, EngineError, EvalOptions, QueryTime, Value};
use nevermore_promql::model::{
    Labels, MemStorage, Millis, Sample, SelectRequest, Series, Storage, StorageError, is_stale_nan,
    stale_nan,
};
use nevermore_promql::promql_parser;
use promql_parser::parser::Expr;

/// Serves only what `plan` listed, keyed by `SelectRequest::key`.
struct PlannedStorage {
    prepared: HashMap<String, Vec<Arc<Series>>>,
}

impl Storage for PlannedStorage {
    fn select(&self, req: &SelectRequest) -> Result<Vec<Arc<Series>>, StorageError> {
        self.prepared
            .get(&req.key())
            .cloned()
            .ok_or_else(|| StorageError::NotPrepared { key: req.key() })
    }
}

#[derive(Debug, Default, Clone)]
struct Counts {
    passed: usize,
    unsupported: usize,
    failed: usize,
}

enum Outcome {
    Pass,
    Unsupported(String),
    Fail(String),
}

#[derive(Debug, Default)]
struct Data {
    series: HashMap<Labels, Vec<Sample>>,
    /// Label sets of native-histogram series (not loaded; selecting them is unsupported).
    histograms: Vec<Labels>,
}

fn parse_duration(s: &str) -> Option<Millis> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(n * 1000);
    }
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ms = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        total += n * ms;
    }
    Some(total)
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// One expanded point: `None` is `_` (no sample).
fn expand_values(tokens: &[&str]) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for tok in tokens {
        if *tok == "_" {
            out.push(None);
            continue;
        }
        if *tok == "stale" {
            out.push(Some(stale_nan()));
            continue;
        }
        if let Some(v) = parse_float(tok) {
            out.push(Some(v));
            continue;
        }
        // `a+bxn`, `a-bxn`, `axn`, `_xn`.
        let Some(xi) = tok.rfind('x') else {
            return Err(format!("bad value {tok}"));
        };
        let count: usize = tok[xi + 1..]
            .parse()
            .map_err(|_| format!("bad count in {tok}"))?;
        let head = &tok[..xi];
        if head == "_" {
            out.extend(std::iter::repeat_n(None, count));
            continue;
        }
        if head == "stale" {
            out.extend(std::iter::repeat_n(Some(stale_nan()), count));
            continue;
        }
        let bytes = head.as_bytes();
        let mut split = None;
        for i in (1..bytes.len()).rev() {
            if (bytes[i] == b'+' || bytes[i] == b'-')
                && bytes[i - 1] != b'e'
                && bytes[i - 1] != b'E'
            {
                split = Some(i);
                break;
            }
        }
        let (start, step) = match split {
            Some(i) => {
                let a = parse_float(&head[..i]).ok_or_else(|| format!("bad start in {tok}"))?;
                let b = parse_float(&head[i + 1..]).ok_or_else(|| format!("bad step in {tok}"))?;
                (a, if bytes[i] == b'-' { -b } else { b })
            }
            None => (
                parse_float(head).ok_or_else(|| format!("bad value {tok}"))?,
                0.0,
            ),
        };
        let mut v = start;
        out.push(Some(v));
        for _ in 0..count {
            v += step;
            out.push(Some(v));
        }
    }
    Ok(out)
}

/// Splits `metric{a="b"} 1 2 3` into the labels and the value tokens.
fn split_series(line: &str) -> Result<(Labels, &str), String> {
    let line = line.trim();
    let end = if let Some(open) = line.find('{') {
        if line[..open].contains(char::is_whitespace) {
            line.find(char::is_whitespace).unwrap_or(line.len())
        } else {
            // Find the matching brace outside quotes.
            let mut in_q: Option<char> = None;
            let mut esc = false;
            let mut end = None;
            for (i, c) in line.char_indices().skip_while(|(i, _)| *i < open) {
                if let Some(q) = in_q {
                    if esc {
                        esc = false;
                    } else if c == '\\' {
                        esc = true;
                    } else if c == q {
                        in_q = None;
                    }
                } else if c == '"' || c == '\'' || c == '`' {
                    in_q = Some(c);
                } else if c == '}' {
                    end = Some(i + 1);
                    break;
                }
            }
            end.ok_or_else(|| format!("unclosed labels in {line}"))?
        }
    } else {
        line.find(char::is_whitespace).unwrap_or(line.len())
    };
    let sel = &line[..end];
    let rest = &line[end..];
    let labels = if sel == "{}" {
        Labels::default()
    } else {
        match promql_parser::parser::parse(sel) {
            Ok(Expr::VectorSelector(vs)) => {
                let mut pairs: Vec<(String, String)> = Vec::new();
                if let Some(n) = vs.name {
                    pairs.push(("__name__".into(), n));
                }
                for m in vs.matchers.matchers {
                    pairs.push((m.name, m.value));
                }
                Labels::from_pairs(pairs)
            }
            other => return Err(format!("bad series {sel}: {other:?}")),
        }
    };
    Ok((labels, rest))
}

#[derive(Debug)]
struct Block {
    line: usize,
    query: String,
    /// Instant time, or range (start, end, step).
    time: QueryTime,
    range: bool,
    expect_fail: bool,
    fail_msg: Option<String>,
    fail_regex: Option<String>,
    ordered: bool,
    string: Option<String>,
    range_vector: Option<(Millis, Millis, Millis)>,
    expected: Vec<String>,
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && (s.starts_with('"') && s.ends_with('"') || s.starts_with('`') && s.ends_with('`'))
    {
        let inner = &s[1..s.len() - 1];
        if s.starts_with('"') {
            return inner.replace("\\\"", "\"").replace("\\\\", "\\");
        }
        return inner.to_string();
    }
    s.to_string()
}

fn values_equal(exp: f64, act: f64) -> bool {
    if exp.is_nan() && act.is_nan() {
        return true;
    }
    if exp == act {
        return true;
    }
    let eps = 1e-6;
    let abs_sum = exp.abs() + act.abs();
    let diff = (exp - act).abs();
    if exp == 0.0 || act == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < eps * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

fn run_block(data: &Data, mem: &MemStorage, b: &Block) -> Outcome {
    if b.expected.iter().any(|l| l.contains("{{")) {
        return Outcome::Unsupported("expects native histograms".into());
    }
    let opts = EvalOptions::default();
    let expr = match engine::parse(&b.query) {
        Ok(e) => e,
        Err(EngineError::Unsupported { construct }) => return Outcome::Unsupported(construct),
        Err(e) => return check_error(b, &e),
    };
    let planned = match engine::plan(&expr, b.time, &opts) {
        Ok(p) => p,
        Err(EngineError::Unsupported { construct }) => return Outcome::Unsupported(construct),
        Err(e) => return check_error(b, &e),
    };
    let mut prepared = HashMap::new();
    for req in &planned {
        if data.histograms.iter().any(|h| h.matches(&req.matchers)) {
            return Outcome::Unsupported("native histogram series".into());
        }
        match mem.select(req) {
            Ok(s) => {
                prepared.insert(req.key(), s);
            }
            Err(e) => return Outcome::Fail(format!("storage: {e}")),
        }
    }
    let storage = PlannedStorage { prepared };
    let res = if b.range {
        engine::eval_range(&expr, &storage, b.time, &opts)
    } else {
        engine::eval_instant(&expr, &storage, b.time.start, &opts)
    };
    let value = match res {
        Ok(ev) => ev.value,
        Err(EngineError::Unsupported { construct }) => return Outcome::Unsupported(construct),
        Err(e) => return check_error(b, &e),
    };
    if b.expect_fail {
        return Outcome::Fail(format!("expected failure, got {}", describe(&value)));
    }
    match compare(b, &value) {
        Ok(()) => Outcome::Pass,
        Err(why) => Outcome::Fail(format!("{why}\n      got: {}", describe(&value))),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Scalar { v, .. } => format!("scalar {v}"),
        Value::String { v, .. } => format!("string {v:?}"),
        Value::Vector(vs) => {
            let parts: Vec<String> = vs
                .iter()
                .take(12)
                .map(|e| format!("{} {}", e.labels, e.v))
                .collect();
            format!("vector[{}] {}", vs.len(), parts.join("; "))
        }
        Value::Matrix(ms) => {
            let parts: Vec<String> = ms
                .iter()
                .take(8)
                .map(|s| {
                    let pts: Vec<String> = s
                        .samples
                        .iter()
                        .take(20)
                        .map(|p| format!("{}@{}", p.v, p.t))
                        .collect();
                    format!("{} [{}]", s.labels, pts.join(" "))
                })
                .collect();
            format!("matrix[{}] {}", ms.len(), parts.join("; "))
        }
    }
}

fn check_error(b: &Block, e: &EngineError) -> Outcome {
    if !b.expect_fail {
        return Outcome::Fail(format!("unexpected error: {e}"));
    }
    let msg = e.to_string();
    if let Some(m) = &b.fail_msg
        && &msg != m
    {
        return Outcome::Fail(format!("error message {msg:?}, expected {m:?}"));
    }
    if let Some(r) = &b.fail_regex {
        match regex::Regex::new(r) {
            Ok(re) if re.is_match(&msg) => {}
            _ => return Outcome::Fail(format!("error message {msg:?} does not match {r:?}")),
        }
    }
    Outcome::Pass
}

fn compare(b: &Block, v: &Value) -> Result<(), String> {
    if let Some(s) = &b.string {
        return match v {
            Value::String { v, .. } if v == s => Ok(()),
            _ => Err(format!("expected string {s:?}")),
        };
    }
    // Expected series: labels and points.
    let mut exp: Vec<(Option<Labels>, Vec<Option<f64>>)> = Vec::new();
    for l in &b.expected {
        let t = l.trim();
        let first = t.split_whitespace().next().unwrap_or("");
        if parse_float(first).is_some() && !t.contains('{') {
            let toks: Vec<&str> = t.split_whitespace().collect();
            exp.push((None, expand_values(&toks)?));
            continue;
        }
        let (labels, rest) = split_series(t)?;
        let toks: Vec<&str> = rest.split_whitespace().collect();
        exp.push((Some(labels), expand_values(&toks)?));
    }
    match v {
        Value::Scalar { v, .. } => {
            if exp.len() != 1 || exp[0].0.is_some() {
                return Err(format!("expected {} series, got scalar", exp.len()));
            }
            let e = exp[0].1.first().copied().flatten().unwrap_or(f64::NAN);
            if values_equal(e, *v) {
                Ok(())
            } else {
                Err(format!("expected scalar {e}"))
            }
        }
        Value::String { .. } => Err("unexpected string".into()),
        Value::Vector(elems) => {
            if b.range {
                return Err("range query returned a vector".into());
            }
            if exp.len() != elems.len() {
                return Err(format!(
                    "expected {} elements, got {}",
                    exp.len(),
                    elems.len()
                ));
            }
            for (k, (l, vals)) in exp.iter().enumerate() {
                let l = l.clone().unwrap_or_default();
                let e = vals.first().copied().flatten().unwrap_or(f64::NAN);
                let pos = elems.iter().position(|x| x.labels == l);
                let Some(pos) = pos else {
                    return Err(format!("missing {l} {e}"));
                };
                if b.ordered && pos != k {
                    return Err(format!("{l} at position {pos}, expected {k}"));
                }
                if !values_equal(e, elems[pos].v) {
                    return Err(format!("{l}: expected {e}, got {}", elems[pos].v));
                }
            }
            Ok(())
        }
        Value::Matrix(series) => {
            let (start, step) = if b.range {
                (b.time.start, b.time.step)
            } else if let Some((from, _, step)) = b.range_vector {
                (from, step)
            } else {
                return Err("instant query returned a matrix without `expect range vector`".into());
            };
            let exp: Vec<_> = exp
                .into_iter()
                .filter(|(_, v)| v.iter().any(Option::is_some))
                .collect();
            if exp.len() != series.len() {
                return Err(format!(
                    "expected {} series, got {}",
                    exp.len(),
                    series.len()
                ));
            }
            for (l, vals) in &exp {
                let l = l.clone().unwrap_or_default();
                let Some(s) = series.iter().find(|s| s.labels == l) else {
                    return Err(format!("missing series {l}"));
                };
                let want: Vec<(Millis, f64)> = vals
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (start + step * i as Millis, v)))
                    .collect();
                let got: Vec<(Millis, f64)> = s.samples.iter().map(|p| (p.t, p.v)).collect();
                if want.len() != got.len()
                    || want
                        .iter()
                        .zip(&got)
                        .any(|(w, g)| w.0 != g.0 || !values_equal(w.1, g.1))
                {
                    return Err(format!("series {l}: expected {want:?}, got {got:?}"));
                }
            }
            Ok(())
        }
    }
}

fn parse_eval_line(line: &str) -> Result<(bool, QueryTime, String), String> {
    let rest = line.trim();
    if let Some(r) = rest.strip_prefix("instant at ") {
        let (t, q) = r
            .trim()
            .split_once(char::is_whitespace)
            .ok_or("bad eval line")?;
        let t = parse_duration(t).ok_or_else(|| format!("bad time {t}"))?;
        return Ok((false, QueryTime::instant(t), q.trim().to_string()));
    }
    if let Some(r) = rest.strip_prefix("range from ") {
        let toks: Vec<&str> = r.splitn(6, char::is_whitespace).collect();
        if toks.len() < 6 || toks[1] != "to" || toks[3] != "step" {
            return Err(format!("bad range line {line}"));
        }
        let start = parse_duration(toks[0]).ok_or("bad start")?;
        let end = parse_duration(toks[2]).ok_or("bad end")?;
        let step = parse_duration(toks[4]).ok_or("bad step")?;
        return Ok((
            true,
            QueryTime { start, end, step },
            toks[5].trim().to_string(),
        ));
    }
    Err(format!("bad eval line {line}"))
}

fn run_file(path: &Path, failures: &mut Vec<String>) -> Counts {
    let text = std::fs::read_to_string(path).expect("read test file");
    let lines: Vec<&str> = text.lines().collect();
    let mut counts = Counts::default();
    let mut data = Data::default();
    let mut mem = MemStorage::default();
    let mut dirty = false;
    let mut i = 0;
    let fname = path
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "clear" {
            data = Data::default();
            dirty = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("load") {
            let with_nhcb = rest.starts_with("_with_nhcb");
            let interval = rest.trim_start_matches("_with_nhcb").trim();
            let interval = parse_duration(interval).expect("load interval");
            while i < lines.len()
                && !lines[i].trim().is_empty()
                && lines[i].starts_with(char::is_whitespace)
            {
                let l = lines[i].trim();
                i += 1;
                if l.starts_with('#') {
                    continue;
                }
                let (labels, rest) = split_series(l).expect("load series");
                if rest.contains("{{") {
                    data.histograms.push(labels);
                    continue;
                }
                let toks: Vec<&str> = rest.split_whitespace().collect();
                let vals = expand_values(&toks).expect("load values");
                if with_nhcb
                    && let Some(name) = labels.metric_name().and_then(|n| n.strip_suffix("_bucket"))
                {
                    let mut h = labels.without(&["le"]);
                    h.set("__name__", name);
                    data.histograms.push(h);
                }
                let entry = data.series.entry(labels).or_default();
                for (k, v) in vals.into_iter().enumerate() {
                    if let Some(v) = v {
                        let t = k as Millis * interval;
                        entry.retain(|s| s.t != t);
                        entry.push(Sample { t, v });
                    }
                }
                entry.sort_by_key(|s| s.t);
            }
            dirty = true;
            continue;
        }
        let (kind, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if !kind.starts_with("eval") {
            panic!("{fname}:{i}: unknown command {line}");
        }
        if dirty {
            mem = MemStorage::new(
                data.series
                    .iter()
                    .map(|(l, s)| Series {
                        labels: l.clone(),
                        samples: s.clone(),
                    })
                    .collect(),
            );
            dirty = false;
        }
        let (range, time, query) =
            parse_eval_line(rest).unwrap_or_else(|e| panic!("{fname}:{i}: {e}"));
        let mut block = Block {
            line: i,
            query,
            time,
            range,
            expect_fail: false,
            fail_msg: None,
            fail_regex: None,
            ordered: false,
            string: None,
            range_vector: None,
            expected: Vec::new(),
        };
        match kind {
            "eval_fail" => block.expect_fail = true,
            "eval_ordered" => block.ordered = true,
            _ => {}
        }
        while i < lines.len() && !lines[i].trim().is_empty() {
            let l = lines[i].trim();
            i += 1;
            if l.starts_with('#') {
                continue;
            }
            if let Some(e) = l.strip_prefix("expect ") {
                let e = e.trim();
                if let Some(r) = e.strip_prefix("fail") {
                    block.expect_fail = true;
                    let r = r.trim();
                    if let Some(m) = r.strip_prefix("msg:") {
                        block.fail_msg = Some(unquote(m));
                    } else if let Some(m) = r.strip_prefix("regex:") {
                        block.fail_regex = Some(unquote(m));
                    }
                } else if e == "ordered" {
                    block.ordered = true;
                } else if let Some(s) = e.strip_prefix("string") {
                    block.string = Some(unquote(s));
                } else if let Some(r) = e.strip_prefix("range vector from ") {
                    let toks: Vec<&str> = r.split_whitespace().collect();
                    if toks.len() >= 5 {
                        block.range_vector = Some((
                            parse_duration(toks[0]).unwrap_or(0),
                            parse_duration(toks[2]).unwrap_or(0),
                            parse_duration(toks[4]).unwrap_or(0),
                        ));
                    }
                }
                // warn / info / no_warn / no_info annotations are not checked.
                continue;
            }
            if let Some(m) = l.strip_prefix("expected_fail_message") {
                block.fail_msg = Some(m.trim().to_string());
                continue;
            }
            if let Some(m) = l.strip_prefix("expected_fail_regexp") {
                block.fail_regex = Some(m.trim().to_string());
                continue;
            }
            block.expected.push(l.to_string());
        }
        match run_block(&data, &mem, &block) {
            Outcome::Pass => counts.passed += 1,
            Outcome::Unsupported(why) => {
                counts.unsupported += 1;
                if std::env::var("CONFORMANCE_VERBOSE").is_ok() {
                    eprintln!(
                        "UNSUPPORTED {fname}:{} {} -- {why}",
                        block.line, block.query
                    );
                }
            }
            Outcome::Fail(why) => {
                counts.failed += 1;
                failures.push(format!("{fname}:{} {}\n    {why}", block.line, block.query));
            }
        }
    }
    counts
}

fn conformance_dir() -> PathBuf {
    if let Ok(d) = std::env::var("NEVERMORE_CONFORMANCE_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/promql")
}

#[test]
fn prometheus_conformance() {
    let dir = conformance_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "conformance scripts not found at {} ({e}); set NEVERMORE_CONFORMANCE_DIR",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let only = std::env::var("CONFORMANCE_ONLY").ok();
    let mut failures = Vec::new();
    let mut total = Counts::default();
    println!("| file | passed | unsupported | failed | total |");
    println!("|---|---:|---:|---:|---:|");
    for f in &files {
        let name = f
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let c = run_file(f, &mut failures);
        println!(
            "| {name} | {} | {} | {} | {} |",
            c.passed,
            c.unsupported,
            c.failed,
            c.passed + c.unsupported + c.failed
        );
        total.passed += c.passed;
        total.unsupported += c.unsupported;
        total.failed += c.failed;
    }
    println!(
        "| **total** | {} | {} | {} | {} |",
        total.passed,
        total.unsupported,
        total.failed,
        total.passed + total.unsupported + total.failed
    );
    for f in &failures {
        println!("FAILED {f}");
    }
    assert!(
        failures.is_empty(),
        "{} conformance blocks failed",
        failures.len()
    );
}

#[test]
fn stale_marker_expands() {
    let v = expand_values(&["1", "stale", "_x2", "0+10x2"]).unwrap_or_default();
    assert_eq!(v.len(), 7);
    assert!(v[1].is_some_and(is_stale_nan));
}
