//! Thanos' penalty deduplication (`pkg/dedup/iter.go`, `dedupSeriesIterator`), generalised from
//! Thanos' pairwise nesting to any number of replicas at once.
//!
//! Rules, per emitted sample:
//!
//! 1. The replica that emitted the last sample (the *current* one) offers its next sample.
//!    Every other replica offers its first sample at or after `last_t + 1 + penalty`. The
//!    penalty is `2 · (last step)`, or [`INITIAL_PENALTY_MS`] after the first sample: a replica
//!    is only left after a gap longer than twice the last interval.
//! 2. The earliest offer wins; on equal timestamps the replica first in order wins (Thanos:
//!    `ta <= tb` picks `a`). Before anything is emitted all replicas offer their first sample, so
//!    the merge starts with the replica that has the earliest sample.
//! 3. Where a switch lands differs from Thanos on purpose. Thanos continues with the new
//!    replica's offer, so the samples it holds in `(last_t, last_t + penalty)` (the start of the
//!    old replica's gap) are lost. We continue at its first sample more than half an interval
//!    (`penalty / 4`) after `last_t`: still never closer than half an interval to the last
//!    sample (no doubled sampling rate from replicas scraping at offsets), and replicas that
//!    scrape at the same instants merge back into exactly the original series, which is what
//!    lets a query over deduplicated replicas equal the same query on one complete server (the
//!    oracle test). The table test keeps Thanos' published vectors and notes each difference.
//! 4. Cursors only move forward. Thanos' unit-test mock can seek *backwards* (it binary-searches
//!    from the start); real chunk iterators cannot, and neither can ours.
//!
//! Counter adjustment (Thanos' `counterErrAdjustSeriesIterator`), only for counter functions:
//! every replica carries an offset, starting at 0. When the merge switches replicas and the new
//! replica's (offset) value is below the last emitted value, its offset grows so that it resumes
//! at the last emitted value: a lagging replica then shows no false counter reset. Offsets never
//! shrink, so a replica stays consistent with itself. Unlike Thanos:
//! - nothing is adjusted before the first sample is emitted. Thanos seeds its "last value" with
//!   the first sample of replica `a` even when `b` starts earlier and is picked first, so `b`
//!   inherits a permanent offset of `a₀ − b₀` and the counter looks flat at the start of every
//!   query window (thanos-io/thanos#9041, fixing #9034);
//! - only the replica switched to is adjusted (Thanos also pre-adjusts the others against the
//!   same value; the same offset is reached when they are switched to later, unless the current
//!   replica itself dropped in between);
//! - stale markers are never offset (that would destroy their bit pattern) and never serve as
//!   the value to adjust against.
//!
//! Stale markers: a stale marker is a sample like any other when it comes to picking, but a
//! picked marker at `t` is dropped (and the pick made again) while another replica is live: its
//! latest sample in `(last_t, t + p]` is a real value, where `p` is the penalty that emitting the
//! marker would set. Hence an emitted marker is never followed, within the penalty window, by a
//! real value of another replica that was live there; a marker of the current replica is not
//! emitted when another replica has a real sample at the same timestamp; and a marker present in
//! every replica (the series ended everywhere) is kept.

use crate::model::{Sample, is_stale_nan};

/// Penalty applied to the other replicas after the first sample, before any interval is known
/// (Thanos' `initialPenalty`: timestamps are milliseconds, scrape intervals are seconds).
pub const INITIAL_PENALTY_MS: i64 = 5000;

/// Merges non-empty replicas (in preference order); `counter` enables the counter adjustment.
pub(super) fn merge(reps: &[&[Sample]], counter: bool) -> Vec<Sample> {
    let n = reps.len();
    let mut pos = vec![0usize; n];
    let mut offset = vec![0.0f64; n];
    let mut cur: Option<usize> = None;
    let mut last: Option<Sample> = None;
    let mut penalty = 0i64;
    let mut out = Vec::with_capacity(reps.iter().map(|r| r.len()).max().unwrap_or(0));

    loop {
        // Fast path: while the current replica's next sample comes before any other replica's
        // offer could (every offer is at or past `last_t + 1 + penalty`), it wins outright; the
        // other cursors catch up lazily at the next full round. Stale markers take the full round.
        if let (Some(c), Some(mut l)) = (cur, last) {
            let r = reps[c];
            let mut p = pos[c];
            while let Some(s) = r.get(p) {
                if s.t > l.t.saturating_add(penalty) || is_stale_nan(s.v) {
                    break;
                }
                let v = if counter && offset[c] != 0.0 {
                    s.v + offset[c]
                } else {
                    s.v
                };
                out.push(Sample { t: s.t, v });
                penalty = s.t.saturating_sub(l.t).saturating_mul(2);
                l = Sample { t: s.t, v };
                p += 1;
                while p < r.len() && r[p].t <= s.t {
                    p += 1;
                }
            }
            pos[c] = p;
            last = Some(l);
        }
        // Each replica's offer: the current one offers its next sample; another one offers its
        // first sample past the penalty (that decides *whether* to switch) and, if it wins,
        // resumes at its first sample more than half an interval after the last one (that
        // decides *where*).
        let mut best: Option<(i64, usize)> = None;
        for (i, r) in reps.iter().enumerate() {
            let (landing_floor, offer_floor) = match last {
                None => (i64::MIN, i64::MIN),
                Some(l) if cur == Some(i) => (l.t.saturating_add(1), l.t.saturating_add(1)),
                Some(l) => (
                    l.t.saturating_add(1).saturating_add(penalty / 4),
                    l.t.saturating_add(1).saturating_add(penalty),
                ),
            };
            let mut p = pos[i];
            while p < r.len() && r[p].t < landing_floor {
                p += 1;
            }
            pos[i] = p;
            let mut o = p;
            while o < r.len() && r[o].t < offer_floor {
                o += 1;
            }
            if let Some(s) = r.get(o)
                && best.is_none_or(|b| (s.t, i) < b)
            {
                best = Some((s.t, i));
            }
        }
        let Some((_, i)) = best else { break };
        let s = reps[i][pos[i]];
        let step_penalty = match last {
            Some(l) => s.t.saturating_sub(l.t).saturating_mul(2),
            None => INITIAL_PENALTY_MS,
        };

        if is_stale_nan(s.v) && another_is_live(reps, &pos, i, last.map(|l| l.t), s.t, step_penalty)
        {
            pos[i] += 1;
            continue;
        }

        let mut v = s.v;
        if counter && !is_stale_nan(v) {
            if let Some(l) = last {
                // `l.v > ...` is false for a stale or NaN last value: nothing to adjust against.
                if cur != Some(i) && l.v > v + offset[i] {
                    offset[i] = l.v - v;
                }
            }
            if offset[i] != 0.0 {
                v += offset[i];
            }
        }
        out.push(Sample { t: s.t, v });
        cur = Some(i);
        // Past the emitted sample; a replica with repeated timestamps must not repeat one.
        let r = reps[i];
        let mut p = pos[i] + 1;
        while p < r.len() && r[p].t <= s.t {
            p += 1;
        }
        pos[i] = p;
        penalty = step_penalty;
        last = Some(Sample { t: s.t, v });
    }
    out
}

/// Whether a replica other than `picked` is live when `picked` offers a stale marker at `t`: its
/// latest sample in `(last_t, t + penalty]` is a real value. Only runs for stale markers; the
/// forward scan is bounded by the penalty window and moves no cursor.
fn another_is_live(
    reps: &[&[Sample]],
    pos: &[usize],
    picked: usize,
    last_t: Option<i64>,
    t: i64,
    penalty: i64,
) -> bool {
    let horizon = t.saturating_add(penalty);
    reps.iter().enumerate().any(|(o, r)| {
        if o == picked {
            return false;
        }
        let mut j = pos[o];
        while j < r.len() && r[j].t <= horizon {
            j += 1;
        }
        // The latest sample at or before the horizon: a look-ahead one, or the last one consumed.
        match j.checked_sub(1).and_then(|k| r.get(k)) {
            Some(s) => last_t.is_none_or(|lt| s.t > lt) && !is_stale_nan(s.v),
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::stale_nan;

    fn s(t: i64, v: f64) -> Sample {
        Sample { t, v }
    }

    #[test]
    fn prefers_first_then_switches_after_long_gap() {
        let a = [
            s(10_000, 1.0),
            s(20_000, 1.0),
            s(30_000, 1.0),
            s(60_000, 1.0),
            s(70_000, 1.0),
        ];
        let b = [
            s(10_100, 2.0),
            s(20_100, 2.0),
            s(30_100, 2.0),
            s(40_100, 2.0),
            s(50_100, 2.0),
            s(60_100, 2.0),
        ];
        let got: Vec<i64> = merge(&[&a, &b], false).iter().map(|x| x.t).collect();
        // Thanos resumes b past the penalty (50_100); we resume at b's first sample more than
        // half an interval after a's last (40_100), so no sample b holds is lost in a's gap.
        assert_eq!(got, vec![10_000, 20_000, 30_000, 40_100, 50_100, 60_100]);
    }

    #[test]
    fn no_adjustment_before_first_emission() {
        // b starts earlier; Thanos before #9041 offset b by a's unseen first value.
        let a = [s(15_000, 15.0), s(45_000, 45.0)];
        let b = [s(0, 0.0), s(30_000, 30.0)];
        let got = merge(&[&a, &b], true);
        assert_eq!(got[0], s(0, 0.0));
        assert_eq!(got[1], s(15_000, 15.0));
    }

    #[test]
    fn stale_everywhere_is_kept() {
        let a = [s(10_000, 1.0), s(20_000, 2.0), s(30_000, stale_nan())];
        let b = [s(10_000, 1.0), s(20_000, 2.0), s(30_000, stale_nan())];
        let got = merge(&[&a, &b], false);
        assert_eq!(got.len(), 3);
        assert!(is_stale_nan(got[2].v));
    }
}
