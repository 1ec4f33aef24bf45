//! Merging the series of HA replicas before evaluation.
//!
//! [`dedup`] strips the replica labels, groups series whose remaining labels are equal and merges
//! each group into one series:
//!
//! - [`Algorithm::Penalty`]: Thanos Query's penalty algorithm (`pkg/dedup`), with its counter
//!   adjustment for `rate`/`irate`/`increase`/`resets` but without the start-of-window adjustment
//!   bug (thanos-io/thanos#9041). See [`penalty`] for the exact rules and where we differ.
//! - [`Algorithm::Interval`]: VictoriaMetrics' `-dedup.minScrapeInterval`: one sample per window
//!   `(k·interval, (k+1)·interval]` over the union of the replicas, the newest one.
//! - [`Algorithm::Chain`]: every sample of every replica in time order, equal timestamps once.
//!
//! Stale markers: a stale marker only says that *its* replica lost the series. Every algorithm
//! drops a replica's marker while another replica is still live there, and keeps it when no
//! replica is (the series really ended). Each algorithm defines "live" in its own terms; see the
//! module of each.
//!
//! Every algorithm walks each replica once with a forward cursor and picks the next replica
//! through a min-heap: O(total samples · log replicas), plus, for each stale marker only, a look
//! at the other replicas' next samples.

mod merge;
mod penalty;

use crate::model::{Label, Labels, Sample, SelectHints, Series};

pub use penalty::INITIAL_PENALTY_MS;

/// How series that are equal but for their replica labels are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Thanos' penalty algorithm.
    Penalty,
    /// VictoriaMetrics': one sample per interval, newest wins.
    Interval { interval_ms: i64 },
    /// Identical timestamps collapse; otherwise all samples are kept in order.
    Chain,
    /// No merging (replica labels are kept).
    None,
}

/// The functions whose argument Thanos treats as a counter when merging replicas (its
/// `isCounter`): for them [`Algorithm::Penalty`] hides the drops a replica switch would show.
pub const COUNTER_FUNCS: [&str; 4] = ["rate", "irate", "increase", "resets"];

/// Whether the selection feeds a counter function (see [`COUNTER_FUNCS`]).
pub fn is_counter_func(hints: &SelectHints) -> bool {
    hints
        .func
        .as_deref()
        .is_some_and(|f| COUNTER_FUNCS.contains(&f))
}

/// Strips `replica_labels` from every series, groups identical label sets and merges each group
/// by `algo`. Output series are sorted by labels, samples strictly increasing in time.
///
/// Within a group, replicas are taken in the order of their original label sets (so the replica
/// label values decide ties, as in Thanos). A group with a single non-empty replica passes
/// through untouched but for its labels. [`Algorithm::None`] returns `series` as given.
pub fn dedup(
    series: Vec<Series>,
    replica_labels: &[String],
    algo: Algorithm,
    hints: &SelectHints,
) -> Vec<Series> {
    let how = match algo {
        Algorithm::None => return series,
        Algorithm::Penalty => How::Penalty {
            counter: is_counter_func(hints),
        },
        Algorithm::Interval { interval_ms } if interval_ms > 0 => How::Interval(interval_ms),
        // VictoriaMetrics switches dedup off for a non-positive interval; replicas still need a
        // well-formed merge, and Chain is the one that drops nothing.
        Algorithm::Interval { .. } | Algorithm::Chain => How::Chain,
    };
    let names: Vec<&str> = replica_labels.iter().map(String::as_str).collect();
    // (labels without replica labels, the replica labels taken out, the series): labels are
    // moved, never cloned; the series keeps only its samples.
    let mut keyed: Vec<(Labels, Vec<Label>, Series)> = series
        .into_iter()
        .map(|mut s| {
            let replica = s.labels.take(&names);
            let key = std::mem::take(&mut s.labels);
            (key, replica, s)
        })
        .collect();
    // The replica labels order the replicas of a group, which makes ties deterministic. Each
    // upstream answers in label order, so the input is a few sorted runs: the stable sort merges
    // runs instead of sorting from scratch.
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));

    let mut out = Vec::with_capacity(keyed.len());
    let mut group: Vec<Series> = Vec::new();
    let mut group_key: Option<Labels> = None;
    for (key, _, s) in keyed {
        if let Some(k) = group_key.take_if(|k| *k != key) {
            out.push(merge_group(k, &mut group, how));
        }
        if group_key.is_none() {
            group_key = Some(key);
        }
        group.push(s);
    }
    if let Some(k) = group_key {
        out.push(merge_group(k, &mut group, how));
    }
    out
}

/// The algorithm with its parameters resolved.
#[derive(Clone, Copy, Debug)]
enum How {
    Penalty { counter: bool },
    Interval(i64),
    Chain,
}

/// Merges (and empties) one group of replicas into a series labelled `labels`.
fn merge_group(labels: Labels, group: &mut Vec<Series>, how: How) -> Series {
    // Empty replicas change nothing in any algorithm; dropping them first lets a group that is
    // really one replica take the pass-through path.
    let mut non_empty = group.iter().filter(|s| !s.samples.is_empty());
    let single = match (non_empty.next(), non_empty.next()) {
        (Some(_), None) => group.iter().position(|s| !s.samples.is_empty()),
        (None, _) => Some(0),
        _ => None,
    };
    let samples = match single {
        Some(i) => std::mem::take(&mut group[i].samples),
        None => {
            let reps: Vec<&[Sample]> = group
                .iter()
                .map(|s| s.samples.as_slice())
                .filter(|s| !s.is_empty())
                .collect();
            match how {
                How::Penalty { counter } => penalty::merge(&reps, counter),
                How::Interval(interval) => merge::interval(&reps, interval),
                How::Chain => merge::chain(&reps),
            }
        }
    };
    group.clear();
    Series { labels, samples }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::stale_nan;

    fn s(t: i64, v: f64) -> Sample {
        Sample { t, v }
    }

    fn series(pairs: &[(&str, &str)], samples: Vec<Sample>) -> Series {
        Series {
            labels: Labels::from_pairs(pairs.iter().copied()),
            samples,
        }
    }

    fn replica_names() -> Vec<String> {
        vec!["replica".to_string(), "prom".to_string()]
    }

    #[test]
    fn groups_strip_and_sort() {
        let input = vec![
            series(&[("a", "2"), ("replica", "x")], vec![s(1, 1.0)]),
            series(&[("a", "1"), ("replica", "y")], vec![s(2, 2.0)]),
            series(
                &[("a", "1"), ("prom", "p"), ("replica", "x")],
                vec![s(1, 1.0)],
            ),
        ];
        let out = dedup(
            input,
            &replica_names(),
            Algorithm::Chain,
            &SelectHints::default(),
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].labels, Labels::from_pairs([("a", "1")]));
        assert_eq!(out[0].samples, vec![s(1, 1.0), s(2, 2.0)]);
        assert_eq!(out[1].labels, Labels::from_pairs([("a", "2")]));
    }

    #[test]
    fn none_is_identity() {
        let input = vec![
            series(&[("a", "2"), ("replica", "x")], vec![s(1, 1.0)]),
            series(&[("a", "1"), ("replica", "y")], vec![s(2, 2.0)]),
        ];
        let out = dedup(
            input.clone(),
            &replica_names(),
            Algorithm::None,
            &SelectHints::default(),
        );
        assert_eq!(out, input);
    }

    #[test]
    fn single_replica_keeps_samples_even_for_interval() {
        let samples = vec![s(1000, 1.0), s(1001, 2.0), s(1002, stale_nan())];
        let input = vec![
            series(&[("a", "1"), ("replica", "x")], samples.clone()),
            series(&[("a", "1"), ("replica", "y")], vec![]),
        ];
        let algo = Algorithm::Interval {
            interval_ms: 10_000,
        };
        let out = dedup(input, &replica_names(), algo, &SelectHints::default());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].samples.len(), 3);
        assert!(crate::model::is_stale_nan(out[0].samples[2].v));
    }

    #[test]
    fn counter_funcs() {
        let mut h = SelectHints {
            func: Some("rate".into()),
            ..SelectHints::default()
        };
        assert!(is_counter_func(&h));
        h.func = Some("sum_over_time".into());
        assert!(!is_counter_func(&h));
        h.func = None;
        assert!(!is_counter_func(&h));
    }
}
