//! Replica dedup: table tests from `testdata/dedup/*.txt` and property tests.
//!
//! Table format (one directive per line, `#` starts a comment line):
//!
//! ```text
//! case <name>                  starts a case
//! algo penalty|chain|none|interval <ms>
//! func <name>                  optional: SelectHints.func (rate, increase, ...)
//! replicas <name>[,<name>...]  optional: the replica label names
//! in  {a="1", replica="x"} <t>:<v> ...   an input series
//! out {a="1"} <t>:<v> ...                an expected output series, in output order
//!     <t>:<v> ...              an indented line continues the series above
//! ```
//!
//! Values are floats, `stale` (the staleness marker) or `NaN`.

// Test helpers outside `#[test]` functions: a malformed table should just fail loudly.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::PathBuf;

use nevermore_promql::dedup::{Algorithm, INITIAL_PENALTY_MS, dedup};
use nevermore_promql::model::{Labels, Sample, SelectHints, Series, is_stale_nan, stale_nan};
use proptest::prelude::*;

#[derive(Debug)]
struct Case {
    name: String,
    file: String,
    algo: Algorithm,
    func: Option<String>,
    replicas: Vec<String>,
    input: Vec<Series>,
    output: Vec<Series>,
}

fn parse_labels(s: &str) -> Labels {
    let inner = s.trim().trim_start_matches('{').trim_end_matches('}');
    let pairs = inner.split(',').filter(|p| !p.trim().is_empty()).map(|p| {
        let (n, v) = p
            .split_once('=')
            .unwrap_or_else(|| panic!("bad label pair {p:?}"));
        (n.trim().to_string(), v.trim().trim_matches('"').to_string())
    });
    Labels::from_pairs(pairs)
}

fn parse_samples(s: &str) -> Vec<Sample> {
    s.split_whitespace()
        .map(|tok| {
            let (t, v) = tok
                .split_once(':')
                .unwrap_or_else(|| panic!("bad sample {tok:?}"));
            let v = match v {
                "stale" => stale_nan(),
                "NaN" => f64::NAN,
                v => v.parse().unwrap_or_else(|_| panic!("bad value {v:?}")),
            };
            Sample {
                t: t.parse().unwrap_or_else(|_| panic!("bad time {t:?}")),
                v,
            }
        })
        .collect()
}

fn parse_file(file: &str, text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    // Which list the last `in`/`out` went to, for continuation lines.
    let mut last_out = false;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = || format!("{file}:{}", n + 1);
        if line.starts_with(char::is_whitespace) {
            let case = cases
                .last_mut()
                .unwrap_or_else(|| panic!("{}: no case", at()));
            let list = if last_out {
                &mut case.output
            } else {
                &mut case.input
            };
            let series = list
                .last_mut()
                .unwrap_or_else(|| panic!("{}: nothing to continue", at()));
            series.samples.extend(parse_samples(trimmed));
            continue;
        }
        let (word, rest) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        let rest = rest.trim();
        if word == "case" {
            cases.push(Case {
                name: rest.to_string(),
                file: file.to_string(),
                algo: Algorithm::Penalty,
                func: None,
                replicas: vec!["replica".to_string()],
                input: Vec::new(),
                output: Vec::new(),
            });
            continue;
        }
        let case = cases
            .last_mut()
            .unwrap_or_else(|| panic!("{}: no case", at()));
        match word {
            "algo" => {
                case.algo = match rest.split_whitespace().collect::<Vec<_>>().as_slice() {
                    ["penalty"] => Algorithm::Penalty,
                    ["chain"] => Algorithm::Chain,
                    ["none"] => Algorithm::None,
                    ["interval", ms] => Algorithm::Interval {
                        interval_ms: ms.parse().unwrap(),
                    },
                    other => panic!("{}: bad algo {other:?}", at()),
                }
            }
            "func" => case.func = Some(rest.to_string()),
            "replicas" => {
                case.replicas = rest
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }
            "in" | "out" => {
                let close = rest
                    .find('}')
                    .unwrap_or_else(|| panic!("{}: no labels", at()));
                let series = Series {
                    labels: parse_labels(&rest[..=close]),
                    samples: parse_samples(&rest[close + 1..]),
                };
                last_out = word == "out";
                if last_out {
                    case.output.push(series)
                } else {
                    case.input.push(series)
                }
            }
            other => panic!("{}: unknown directive {other:?}", at()),
        }
    }
    cases
}

fn load_cases() -> Vec<Case> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/dedup");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            parse_file(&name, &fs::read_to_string(p).unwrap())
        })
        .collect()
}

fn same_value(a: f64, b: f64) -> bool {
    if is_stale_nan(a) || is_stale_nan(b) {
        return is_stale_nan(a) && is_stale_nan(b);
    }
    (a.is_nan() && b.is_nan()) || a == b
}

fn show(s: &[Sample]) -> String {
    s.iter()
        .map(|x| {
            if is_stale_nan(x.v) {
                format!("{}:stale", x.t)
            } else {
                format!("{}:{}", x.t, x.v)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_case(c: &Case) -> Result<(), String> {
    let hints = SelectHints {
        func: c.func.clone(),
        ..SelectHints::default()
    };
    let got = dedup(c.input.clone(), &c.replicas, c.algo, &hints);
    if got.len() != c.output.len() {
        let labels: Vec<String> = got.iter().map(|s| s.labels.to_string()).collect();
        return Err(format!(
            "want {} series, got {}: {labels:?}",
            c.output.len(),
            got.len()
        ));
    }
    for (g, w) in got.iter().zip(&c.output) {
        let same = g.labels == w.labels
            && g.samples.len() == w.samples.len()
            && g.samples
                .iter()
                .zip(&w.samples)
                .all(|(a, b)| a.t == b.t && same_value(a.v, b.v));
        if !same {
            return Err(format!(
                "series {}\n  want {} {}\n  got  {} {}",
                w.labels,
                w.labels,
                show(&w.samples),
                g.labels,
                show(&g.samples)
            ));
        }
    }
    Ok(())
}

#[test]
fn table() {
    let cases = load_cases();
    assert!(cases.len() >= 30, "only {} cases loaded", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            check_case(c)
                .err()
                .map(|e| format!("[{}] {}: {e}", c.file, c.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn table_outputs_are_well_formed() {
    for c in load_cases() {
        if c.algo == Algorithm::None {
            continue;
        }
        let hints = SelectHints {
            func: c.func.clone(),
            ..SelectHints::default()
        };
        let got = dedup(c.input.clone(), &c.replicas, c.algo, &hints);
        assert!(
            got.windows(2).all(|w| w[0].labels < w[1].labels),
            "{}: not sorted",
            c.name
        );
        for s in &got {
            assert!(
                s.samples.windows(2).all(|w| w[0].t < w[1].t),
                "{}: not increasing",
                c.name
            );
            for r in &c.replicas {
                assert!(
                    s.labels.get(r).is_none(),
                    "{}: replica label {r} kept",
                    c.name
                );
            }
        }
    }
}

// ---- property tests ----------------------------------------------------------------------------

const STEP: i64 = 15_000;

/// A truth series (`n` samples every `STEP`, counter-like values) and replicas that are copies of
/// it with gaps cut out. Gaps are index ranges of at least 2 missing samples (a gap lasts more
/// than 2 × STEP), one replica at a time, never at the first or last sample, and at least 5
/// samples apart, so every truth sample is in some replica. (Closer gaps make longer holes in
/// Penalty's output: right after a switch the penalty is 6 steps, and the other replicas are
/// moved past those samples for good, as in Thanos.)
fn truth_and_replicas() -> impl Strategy<Value = (Vec<Sample>, Vec<Vec<Sample>>)> {
    (
        2usize..=3,
        10usize..120,
        any::<u64>(),
        prop::collection::vec((2usize..8, 5usize..14, 0usize..3), 0..10),
    )
        .prop_map(|(n_rep, n, seed, gaps)| {
            let t0 = 1_700_000_000_000 + (seed % 100_000) as i64;
            let truth: Vec<Sample> = (0..n)
                .map(|k| Sample {
                    t: t0 + k as i64 * STEP,
                    v: (k * k) as f64 + (seed % 7) as f64,
                })
                .collect();
            let mut missing = vec![usize::MAX; n]; // which replica lacks sample k
            let mut k = 1usize;
            for (len, sep, rep) in gaps {
                k += sep;
                if k + len >= n - 1 {
                    break;
                }
                for m in missing.iter_mut().skip(k).take(len) {
                    *m = rep % n_rep;
                }
                k += len;
            }
            let reps = (0..n_rep)
                .map(|r| {
                    truth
                        .iter()
                        .zip(&missing)
                        .filter(|(_, m)| **m != r)
                        .map(|(s, _)| *s)
                        .collect()
                })
                .collect();
            (truth, reps)
        })
}

fn as_series(reps: &[Vec<Sample>]) -> Vec<Series> {
    reps.iter()
        .enumerate()
        .map(|(i, s)| Series {
            labels: Labels::from_pairs([("__name__", "m"), ("replica", &format!("r{i}"))]),
            samples: s.clone(),
        })
        .collect()
}

fn run(reps: &[Vec<Sample>], algo: Algorithm, func: Option<&str>) -> Vec<Sample> {
    let hints = SelectHints {
        func: func.map(str::to_string),
        ..SelectHints::default()
    };
    let mut out = dedup(as_series(reps), &["replica".to_string()], algo, &hints);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].labels, Labels::from_pairs([("__name__", "m")]));
    out.remove(0).samples
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Chain and aligned Interval lose nothing: they rebuild the truth exactly.
    #[test]
    fn chain_and_interval_rebuild_truth((truth, reps) in truth_and_replicas()) {
        prop_assert_eq!(&run(&reps, Algorithm::Chain, None), &truth);
        // Truth timestamps are STEP apart, so each (k·STEP, (k+1)·STEP] window holds one.
        prop_assert_eq!(&run(&reps, Algorithm::Interval { interval_ms: STEP }, None), &truth);
    }

    /// Penalty follows one replica and skips, at each switch, the other replicas' samples within
    /// the penalty (2 × last step). What it guarantees here: only truth samples, strictly
    /// increasing, the truth's first and last sample, and no hole longer than 3 steps (a gap is
    /// noticed one step late and the penalty hides two more). Identical copies need no counter
    /// adjustment, so the counter mode gives the same samples.
    #[test]
    fn penalty_stays_within_truth((truth, reps) in truth_and_replicas()) {
        let got = run(&reps, Algorithm::Penalty, None);
        prop_assert!(got.windows(2).all(|w| w[0].t < w[1].t));
        let mut ti = truth.iter();
        for s in &got {
            prop_assert!(ti.any(|x| x == s), "{:?} is not a truth sample", s);
        }
        prop_assert_eq!(got.first(), truth.first());
        prop_assert_eq!(got.last(), truth.last());
        let max_gap = got.windows(2).map(|w| w[1].t - w[0].t).max().unwrap_or(0);
        prop_assert!(max_gap <= 3 * STEP, "gap {} > 3 steps", max_gap);
        // With no gap at all, nothing is lost.
        if reps.iter().all(|r| r.len() == truth.len()) {
            prop_assert_eq!(&got, &truth);
        }
        prop_assert_eq!(&run(&reps, Algorithm::Penalty, Some("rate")), &got);
    }

    /// A replica that lags behind (lower counter values, e.g. it missed increments around a
    /// restart) never makes the merged counter go down when it is switched to.
    #[test]
    fn penalty_counter_never_decreases((truth, reps) in truth_and_replicas(), lag in 1u32..1000) {
        let mut reps = reps;
        for s in reps.last_mut().into_iter().flatten() {
            s.v -= f64::from(lag);
        }
        let got = run(&reps, Algorithm::Penalty, Some("increase"));
        prop_assert!(got.windows(2).all(|w| w[0].v <= w[1].v), "{:?}", got);
        prop_assert_eq!(got.len(), run(&reps, Algorithm::Penalty, None).len());
        let _ = truth;
    }
}

#[test]
fn initial_penalty_is_thanos() {
    assert_eq!(INITIAL_PENALTY_MS, 5000);
}
