//! The merges over the union of all replicas' samples: Chain and Interval.
//!
//! Chain: all samples in time order; samples with equal timestamps collapse into one, the first
//! real value in replica order. A stale marker (when every sample at that timestamp is one) is
//! dropped while another replica is live: its last sample so far is a real value and it has more
//! samples to come. A replica that has run out is not live, so a marker present everywhere, or
//! after which no replica has anything, is kept.
//!
//! Interval (VictoriaMetrics `-dedup.minScrapeInterval`, `lib/storage/dedup.go`
//! `DeduplicateSamples`): windows `(k·interval, (k+1)·interval]` aligned on multiples of the
//! interval (we floor negative timestamps too; VM's Go `%` truncates towards zero); per window
//! the sample with the largest timestamp is kept; on equal timestamps the largest value, as VM
//! has done since v1.85 (VictoriaMetrics#3333, PR #3421: "the biggest value is likely the newest
//! for counters", and consistent across vmselects; VM 1.79 kept whichever duplicate its merge
//! happened to put last, i.e. an arbitrary one). A NaN loses to any number. VM treats stale
//! markers as plain values (VictoriaMetrics#5587), so a marker from one replica could win a
//! window while another replica is live; we keep a marker only if every replica with samples in
//! the window ended it with a marker, and otherwise keep the newest real sample of the window.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::model::{Sample, is_stale_nan};

/// Visits the samples of all replicas in (timestamp, replica index) order, one cursor each.
struct KMerge<'a> {
    reps: &'a [&'a [Sample]],
    pos: Vec<usize>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
}

impl<'a> KMerge<'a> {
    fn new(reps: &'a [&'a [Sample]]) -> Self {
        let heap = reps
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.first().map(|s| Reverse((s.t, i))))
            .collect();
        KMerge {
            reps,
            pos: vec![0; reps.len()],
            heap,
        }
    }

    /// The timestamp of the next sample.
    fn peek_t(&self) -> Option<i64> {
        self.heap.peek().map(|&Reverse((t, _))| t)
    }

    /// The next sample and its replica.
    fn pop(&mut self) -> Option<(Sample, usize)> {
        let Reverse((_, i)) = self.heap.pop()?;
        let r = self.reps[i];
        let s = r[self.pos[i]];
        self.pos[i] += 1;
        if let Some(n) = r.get(self.pos[i]) {
            self.heap.push(Reverse((n.t, i)));
        }
        Some((s, i))
    }

    /// Whether some replica's last consumed sample is a real value and more samples follow.
    fn any_live(&self) -> bool {
        self.reps
            .iter()
            .zip(&self.pos)
            .any(|(r, &p)| p > 0 && p < r.len() && !is_stale_nan(r[p - 1].v))
    }
}

/// Chain merge of non-empty replicas (in preference order).
pub(super) fn chain(reps: &[&[Sample]]) -> Vec<Sample> {
    let mut m = KMerge::new(reps);
    let mut out = Vec::with_capacity(reps.iter().map(|r| r.len()).max().unwrap_or(0));
    while let Some((first, _)) = m.pop() {
        let mut real = (!is_stale_nan(first.v)).then_some(first);
        while m.peek_t() == Some(first.t) {
            if let Some((s, _)) = m.pop()
                && real.is_none()
                && !is_stale_nan(s.v)
            {
                real = Some(s);
            }
        }
        match real {
            Some(s) => out.push(s),
            // Every sample at this timestamp is a marker; their replicas now read as not live.
            None if !m.any_live() => out.push(first),
            None => {}
        }
    }
    out
}

/// The end of the dedup window holding `t`: windows are `(end - interval, end]`.
fn window_end(t: i64, interval: i64) -> i64 {
    let r = t.rem_euclid(interval);
    if r == 0 {
        t
    } else {
        t.saturating_add(interval - r)
    }
}

/// Interval merge of non-empty replicas; `interval` > 0.
pub(super) fn interval(reps: &[&[Sample]], interval: i64) -> Vec<Sample> {
    const ABSENT: u8 = 0;
    const REAL: u8 = 1;
    const STALE: u8 = 2;
    let mut m = KMerge::new(reps);
    // Per replica: how its last sample in the current window was (ABSENT: none yet).
    let mut state = vec![ABSENT; reps.len()];
    let mut touched: Vec<usize> = Vec::with_capacity(reps.len());
    let mut out = Vec::new();
    while let Some(t0) = m.peek_t() {
        let end = window_end(t0, interval);
        let mut newest_real: Option<Sample> = None;
        let mut newest_stale: Option<Sample> = None;
        let mut live = 0usize;
        while m.peek_t().is_some_and(|t| t <= end) {
            let Some((s, i)) = m.pop() else { break };
            let now = if is_stale_nan(s.v) { STALE } else { REAL };
            match state[i] {
                ABSENT => touched.push(i),
                REAL => live -= 1,
                _ => {}
            }
            if now == REAL {
                live += 1;
                let newer = newest_real.is_none_or(|b| {
                    s.t > b.t || (s.t == b.t && (s.v > b.v || (b.v.is_nan() && !s.v.is_nan())))
                });
                if newer {
                    newest_real = Some(s);
                }
            } else {
                newest_stale = Some(s);
            }
            state[i] = now;
        }
        for &i in &touched {
            state[i] = ABSENT;
        }
        touched.clear();
        let pick = if live > 0 { newest_real } else { newest_stale };
        if let Some(s) = pick {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::stale_nan;

    fn s(t: i64, v: f64) -> Sample {
        Sample { t, v }
    }

    #[test]
    fn windows_are_aligned_and_right_closed() {
        assert_eq!(window_end(0, 10), 0);
        assert_eq!(window_end(1, 10), 10);
        assert_eq!(window_end(10, 10), 10);
        assert_eq!(window_end(-1, 10), 0);
        assert_eq!(window_end(-10, 10), -10);
        assert_eq!(window_end(i64::MAX, 10), i64::MAX);
    }

    #[test]
    fn interval_keeps_newest_and_max_on_tie() {
        let a = [s(1_000, 1.0), s(9_000, 5.0), s(15_000, 7.0)];
        let b = [s(2_000, 2.0), s(9_000, 6.0), s(20_000, 8.0)];
        let got = interval(&[&a, &b], 10_000);
        assert_eq!(got, vec![s(9_000, 6.0), s(20_000, 8.0)]);
    }

    #[test]
    fn chain_drops_marker_while_other_live() {
        let a = [s(10, 1.0), s(30, stale_nan())];
        let b = [s(15, 1.0), s(25, 1.0), s(35, 1.0)];
        let got: Vec<i64> = chain(&[&a, &b]).iter().map(|x| x.t).collect();
        assert_eq!(got, vec![10, 15, 25, 35]);
    }
}
