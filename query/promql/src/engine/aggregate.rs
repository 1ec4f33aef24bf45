//! Aggregation operators. Output label sets are computed once per group, values per step.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::model::{Labels, METRIC_NAME};

use super::EngineError;
use super::eval::Evaluator;
use super::value::{Grid, RV, VSeries, exec, format_float, kahan_inc, quantile};

/// The output labels of a series' group.
fn group_labels(l: &Labels, m: &Option<LabelModifier>) -> Labels {
    match m {
        None => Labels::default(),
        Some(LabelModifier::Include(ls)) => {
            let names: Vec<&str> = ls.labels.iter().map(String::as_str).collect();
            l.only(&names)
        }
        Some(LabelModifier::Exclude(ls)) => {
            let mut names: Vec<&str> = ls.labels.iter().map(String::as_str).collect();
            names.push(METRIC_NAME);
            l.without(&names)
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Acc {
    n: f64,
    v: f64,
    c: f64,
    mean: f64,
    incremental: bool,
}

pub(crate) fn eval_aggregate(
    ev: &mut Evaluator<'_>,
    a: &AggregateExpr,
    g: &Grid,
) -> Result<RV, EngineError> {
    let op = a.op.to_string();
    let n = g.len();
    let mut param_scalar: Option<Vec<f64>> = None;
    let mut param_str: Option<String> = None;
    if let Some(p) = &a.param {
        match ev.eval(p, g)? {
            RV::Scalar(v) => param_scalar = Some(v),
            RV::Str(s) => param_str = Some(s),
            other => {
                return Err(exec(format!(
                    "invalid aggregation parameter of type {}",
                    other.type_name()
                )));
            }
        }
    }
    let input = ev.eval_vector(&a.expr, g, None)?;
    match op.as_str() {
        "topk" | "bottomk" => {
            return top_k(op == "topk", input, param_scalar.as_deref(), &a.modifier, n);
        }
        "count_values" => {
            let label = param_str.ok_or_else(|| exec("count_values needs a label name"))?;
            return count_values(&label, input, &a.modifier, n);
        }
        _ => {}
    }
    // Groups, in order of first appearance.
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, bool)> = Vec::new();
    let mut member_of: Vec<usize> = Vec::with_capacity(input.len());
    for s in &input {
        let key = group_labels(&s.labels, &a.modifier);
        let gi = match index.get(&key) {
            Some(&gi) => gi,
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, false));
                groups.len() - 1
            }
        };
        groups[gi].1 |= s.drop_name;
        member_of.push(gi);
    }
    if op == "quantile" {
        let q = param_scalar.unwrap_or_else(|| vec![f64::NAN; n]);
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
        for (k, &gi) in member_of.iter().enumerate() {
            members[gi].push(k);
        }
        let mut out = Vec::with_capacity(groups.len());
        let mut buf = Vec::new();
        for ((labels, drop), ms) in groups.into_iter().zip(members) {
            let mut vals = vec![None; n];
            for (i, slot) in vals.iter_mut().enumerate() {
                buf.clear();
                buf.extend(ms.iter().filter_map(|&k| input[k].vals[i]));
                if !buf.is_empty() {
                    *slot = Some(quantile(q[i], &mut buf));
                }
            }
            out.push(VSeries {
                labels,
                drop_name: drop,
                vals,
            });
        }
        return Ok(RV::Vector(out));
    }
    let aop = match op.as_str() {
        "sum" => AggOp::Sum,
        "avg" => AggOp::Avg,
        "count" => AggOp::Count,
        "group" => AggOp::Group,
        "min" => AggOp::Min,
        "max" => AggOp::Max,
        "stddev" => AggOp::Stddev,
        "stdvar" => AggOp::Stdvar,
        other => return Err(super::value::unsupported(format!("aggregation {other}"))),
    };
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
    for (k, &gi) in member_of.iter().enumerate() {
        members[gi].push(k);
    }
    // One group at a time, so the accumulators stay small and hot.
    let mut accs = vec![Acc::default(); n];
    let mut out = Vec::with_capacity(groups.len());
    for (gi, (labels, drop)) in groups.into_iter().enumerate() {
        if gi % 1024 == 1023 {
            ev.check_cancel()?;
        }
        accs.fill(Acc::default());
        for &k in &members[gi] {
            for (acc, v) in accs.iter_mut().zip(&input[k].vals) {
                let Some(f) = *v else { continue };
                acc.n += 1.0;
                match aop {
                    AggOp::Sum => (acc.v, acc.c) = kahan_inc(f, acc.v, acc.c),
                    AggOp::Avg => add_mean(acc, f),
                    AggOp::Min if acc.n == 1.0 || acc.v > f || acc.v.is_nan() => acc.v = f,
                    AggOp::Max if acc.n == 1.0 || acc.v < f || acc.v.is_nan() => acc.v = f,
                    AggOp::Stddev | AggOp::Stdvar => {
                        let delta = f - (acc.mean + acc.c);
                        (acc.mean, acc.c) = kahan_inc(delta / acc.n, acc.mean, acc.c);
                        acc.v += delta * (f - (acc.mean + acc.c));
                    }
                    _ => {}
                }
            }
        }
        let vals = accs
            .iter()
            .map(|a| {
                (a.n > 0.0).then(|| match aop {
                    AggOp::Sum => a.v + a.c,
                    AggOp::Avg if a.incremental => a.mean + a.c,
                    AggOp::Avg => a.v / a.n + a.c / a.n,
                    AggOp::Count => a.n,
                    AggOp::Group => 1.0,
                    AggOp::Min | AggOp::Max => a.v,
                    AggOp::Stdvar => a.v / a.n,
                    AggOp::Stddev => (a.v / a.n).sqrt(),
                })
            })
            .collect();
        out.push(VSeries {
            labels,
            drop_name: drop,
            vals,
        });
    }
    Ok(RV::Vector(out))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AggOp {
    Sum,
    Avg,
    Count,
    Group,
    Min,
    Max,
    Stddev,
    Stdvar,
}

/// Prometheus' mean: a Kahan sum while it does not overflow, an incremental mean after.
fn add_mean(acc: &mut Acc, f: f64) {
    if acc.n == 1.0 {
        acc.v = f;
        return;
    }
    if !acc.incremental {
        let (v, c) = kahan_inc(f, acc.v, acc.c);
        if !v.is_infinite() {
            acc.v = v;
            acc.c = c;
            return;
        }
        acc.incremental = true;
        acc.mean = acc.v / (acc.n - 1.0);
        acc.c /= acc.n - 1.0;
    }
    let q = (acc.n - 1.0) / acc.n;
    (acc.mean, acc.c) = kahan_inc(f / acc.n, q * acc.mean, q * acc.c);
}

/// The average of values, as `avg` and `avg_over_time` compute it.
pub(crate) fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let mut acc = Acc::default();
    for f in values {
        acc.n += 1.0;
        add_mean(&mut acc, f);
    }
    if acc.incremental {
        acc.mean + acc.c
    } else {
        acc.v / acc.n + acc.c / acc.n
    }
}

fn k_param(k: f64) -> Result<i64, EngineError> {
    if k.is_nan() {
        return Err(exec("Parameter value is NaN"));
    }
    if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&k) {
        return Err(exec(format!("Scalar value {k} overflows int64")));
    }
    Ok(k as i64)
}

fn top_k(
    top: bool,
    input: Vec<VSeries>,
    k: Option<&[f64]>,
    m: &Option<LabelModifier>,
    n: usize,
) -> Result<RV, EngineError> {
    let k = k.ok_or_else(|| exec("topk needs a parameter"))?;
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (j, s) in input.iter().enumerate() {
        let key = group_labels(&s.labels, m);
        let gi = *index.entry(key).or_insert_with(|| {
            members.push(Vec::new());
            members.len() - 1
        });
        members[gi].push(j);
    }
    let mut keep = vec![false; input.len() * n];
    let mut order: Vec<usize> = Vec::new();
    let mut buf: Vec<(usize, f64)> = Vec::new();
    for i in 0..n {
        let ki = k_param(k[i])?;
        if ki < 1 {
            continue;
        }
        for ms in &members {
            buf.clear();
            buf.extend(ms.iter().filter_map(|&j| input[j].vals[i].map(|v| (j, v))));
            // NaN sorts away from the top and from the bottom.
            buf.sort_by(|a, b| match (a.1.is_nan(), b.1.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if top => b.1.total_cmp(&a.1),
                _ => a.1.total_cmp(&b.1),
            });
            for &(j, _) in buf.iter().take(ki.min(buf.len() as i64) as usize) {
                keep[j * n + i] = true;
                if n == 1 {
                    order.push(j);
                }
            }
        }
    }
    let mut input: Vec<Option<VSeries>> = input.into_iter().map(Some).collect();
    let mut out = Vec::new();
    let idx: Vec<usize> = if n == 1 {
        order
    } else {
        (0..input.len()).collect()
    };
    for j in idx {
        let Some(mut s) = input[j].take() else {
            continue;
        };
        for (i, v) in s.vals.iter_mut().enumerate() {
            if !keep[j * n + i] {
                *v = None;
            }
        }
        out.push(s);
    }
    Ok(RV::Vector(out))
}

fn count_values(
    label: &str,
    input: Vec<VSeries>,
    m: &Option<LabelModifier>,
    n: usize,
) -> Result<RV, EngineError> {
    if !is_valid_label_name(label) {
        return Err(exec(format!("invalid label name {label:?}")));
    }
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<VSeries> = Vec::new();
    for s in &input {
        let base = group_labels(&s.labels, m);
        for (i, v) in s.vals.iter().enumerate() {
            let Some(v) = v else { continue };
            let mut l = base.clone();
            l.set(label, &format_float(*v));
            let k = *index.entry(l.clone()).or_insert_with(|| {
                out.push(VSeries {
                    labels: l,
                    drop_name: false,
                    vals: vec![None; n],
                });
                out.len() - 1
            });
            let slot = &mut out[k].vals[i];
            *slot = Some(slot.unwrap_or(0.0) + 1.0);
        }
    }
    Ok(RV::Vector(out))
}

pub(crate) fn is_valid_label_name(s: &str) -> bool {
    // Prometheus 3 accepts any UTF-8 label name that is not empty.
    !s.is_empty() && std::str::from_utf8(s.as_bytes()).is_ok()
}
