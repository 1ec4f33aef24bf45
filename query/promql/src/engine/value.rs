//! Intermediate values: every node is evaluated once over the whole step grid of its context.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Labels, METRIC_NAME, Millis, Sample, Series};

use super::{EngineError, QueryTime, Value, VectorElem};

/// The evaluation instants of a node: `start, start + step, ..., end` (one instant if step 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grid {
    pub start: Millis,
    pub end: Millis,
    pub step: Millis,
}

impl Grid {
    pub fn from_query(q: QueryTime) -> Result<Grid, EngineError> {
        if q.end < q.start {
            return Err(exec("end timestamp must not be before start time"));
        }
        if q.step <= 0 && q.end != q.start {
            return Err(exec(
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        Ok(Grid {
            start: q.start,
            end: q.end,
            step: q.step.max(0),
        })
    }

    pub fn len(&self) -> usize {
        if self.step <= 0 {
            1
        } else if self.end < self.start {
            0
        } else {
            ((self.end - self.start) / self.step) as usize + 1
        }
    }

    pub fn t(&self, i: usize) -> Millis {
        self.start + self.step * i as Millis
    }
}

pub(crate) fn exec(message: impl Into<String>) -> EngineError {
    EngineError::Execution {
        message: message.into(),
    }
}

pub(crate) fn unsupported(construct: impl Into<String>) -> EngineError {
    EngineError::Unsupported {
        construct: construct.into(),
    }
}

/// An instant vector over the grid: one entry per series, a value per step where present.
#[derive(Clone, Debug)]
pub(crate) struct VSeries {
    pub labels: Labels,
    /// Prometheus' delayed name removal: the name is dropped at the end of evaluation.
    pub drop_name: bool,
    pub vals: Vec<Option<f64>>,
}

/// Samples of a range-vector series: shared from storage when no copy was needed.
#[derive(Clone, Debug)]
pub(crate) enum Samples {
    Shared(Arc<Series>),
    Owned(Vec<Sample>),
}

impl Samples {
    pub fn as_slice(&self) -> &[Sample] {
        match self {
            Samples::Shared(s) => &s.samples,
            Samples::Owned(v) => v,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct MSeries {
    pub labels: Labels,
    pub drop_name: bool,
    pub samples: Samples,
}

/// A range vector over the grid: at step `i`, the window is `(eff[i] - range, eff[i]]`.
#[derive(Clone, Debug)]
pub(crate) struct MatrixVal {
    pub series: Vec<MSeries>,
    pub range: Millis,
    pub eff: Vec<Millis>,
}

#[derive(Clone, Debug)]
pub(crate) enum RV {
    Scalar(Vec<f64>),
    Str(String),
    Vector(Vec<VSeries>),
    Matrix(MatrixVal),
}

impl RV {
    pub fn type_name(&self) -> &'static str {
        match self {
            RV::Scalar(_) => "scalar",
            RV::Str(_) => "string",
            RV::Vector(_) => "vector",
            RV::Matrix(_) => "matrix",
        }
    }
}

/// Calls `f(step, window)` for every step, with left-open windows found by two cursors (the
/// effective times never decrease).
pub(crate) fn for_each_window(
    samples: &[Sample],
    eff: &[Millis],
    range: Millis,
    mut f: impl FnMut(usize, &[Sample]),
) {
    let (mut lo, mut hi) = (0usize, 0usize);
    for (i, &t) in eff.iter().enumerate() {
        let mint = t - range;
        while hi < samples.len() && samples[hi].t <= t {
            hi += 1;
        }
        while lo < hi && samples[lo].t <= mint {
            lo += 1;
        }
        if lo > hi {
            lo = hi;
        }
        f(i, &samples[lo..hi]);
    }
}

/// Prometheus' `labels.String()`: `{__name__="a", b="c"}`.
pub(crate) fn go_labels(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, x) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&x.name);
        s.push('=');
        s.push_str(&format!("{:?}", x.value));
    }
    s.push('}');
    s
}

/// Removes the metric name, with the type and unit metadata labels that describe it
/// (Prometheus 3's `__type__`/`__unit__`).
pub(crate) fn drop_name(l: &mut Labels) {
    l.remove(METRIC_NAME);
    l.remove("__type__");
    l.remove("__unit__");
}

/// Applies delayed name removal and merges series that became equal when they do not
/// collide at a step (Prometheus' end-of-evaluation cleanup). Unless `keep_order`, the result
/// is sorted by labels.
pub(crate) fn finalize(
    series: Vec<VSeries>,
    keep_order: bool,
) -> Result<Vec<VSeries>, EngineError> {
    let mut series: Vec<VSeries> = series
        .into_iter()
        .filter(|s| s.vals.iter().any(Option::is_some))
        .map(|mut s| {
            if s.drop_name {
                drop_name(&mut s.labels);
                s.drop_name = false;
            }
            s
        })
        .collect();
    if keep_order {
        let mut out: Vec<VSeries> = Vec::with_capacity(series.len());
        let mut index: HashMap<Labels, usize> = HashMap::with_capacity(series.len());
        for s in series {
            match index.get(&s.labels) {
                Some(&j) => merge_into(&mut out[j], s)?,
                None => {
                    index.insert(s.labels.clone(), out.len());
                    out.push(s);
                }
            }
        }
        return Ok(out);
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<VSeries> = Vec::with_capacity(series.len());
    for s in series {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => merge_into(last, s)?,
            _ => out.push(s),
        }
    }
    Ok(out)
}

fn merge_into(dst: &mut VSeries, s: VSeries) -> Result<(), EngineError> {
    for (d, v) in dst.vals.iter_mut().zip(s.vals) {
        if v.is_some() {
            if d.is_some() {
                return Err(exec("vector cannot contain metrics with the same labelset"));
            }
            *d = v;
        }
    }
    Ok(())
}

pub(crate) fn to_instant_value(rv: RV, t: Millis, keep_order: bool) -> Result<Value, EngineError> {
    Ok(match rv {
        RV::Scalar(v) => Value::Scalar {
            t,
            v: v.first().copied().unwrap_or(f64::NAN),
        },
        RV::Str(s) => Value::String { t, v: s },
        RV::Vector(vs) => {
            let elems: Vec<VectorElem> = finalize(vs, keep_order)?
                .into_iter()
                .filter_map(|s| {
                    s.vals.first().copied().flatten().map(|v| VectorElem {
                        labels: s.labels,
                        t,
                        v,
                    })
                })
                .collect();
            Value::Vector(elems)
        }
        RV::Matrix(m) => {
            let mut out = Vec::new();
            let eff = m.eff.first().copied().unwrap_or(t);
            for s in m.series {
                let samples: Vec<Sample> = s
                    .samples
                    .as_slice()
                    .iter()
                    .filter(|x| x.t > eff - m.range && x.t <= eff)
                    .copied()
                    .collect();
                if samples.is_empty() {
                    continue;
                }
                let mut labels = s.labels;
                if s.drop_name {
                    drop_name(&mut labels);
                }
                out.push(Series { labels, samples });
            }
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            if out.windows(2).any(|w| w[0].labels == w[1].labels) {
                return Err(exec("vector cannot contain metrics with the same labelset"));
            }
            Value::Matrix(out)
        }
    })
}

pub(crate) fn to_range_value(rv: RV, grid: &Grid) -> Result<Value, EngineError> {
    let series = match rv {
        RV::Scalar(v) => vec![VSeries {
            labels: Labels::default(),
            drop_name: false,
            vals: v.into_iter().map(Some).collect(),
        }],
        RV::Vector(vs) => finalize(vs, false)?,
        RV::Str(_) => {
            return Err(exec(
                "invalid expression type \"string\" for range query, must be Scalar or instant Vector",
            ));
        }
        RV::Matrix(_) => {
            return Err(exec(
                "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
            ));
        }
    };
    let out: Vec<Series> = series
        .into_iter()
        .map(|s| Series {
            labels: s.labels,
            samples: s
                .vals
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| Sample { t: grid.t(i), v }))
                .collect(),
        })
        .filter(|s| !s.samples.is_empty())
        .collect();
    Ok(Value::Matrix(out))
}

/// Kahan-Neumaier increment, as Prometheus sums.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Quantile with linear interpolation between closest ranks (Prometheus' `quantile`).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Go's ordering: NaN sorts before every number.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`, as count_values formats values.
pub(crate) fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}
