//! Function calls.

use std::collections::HashMap;

use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};
use regex::Regex;

use crate::model::{Labels, METRIC_NAME, Sample};

use super::EngineError;
use super::aggregate::{is_valid_label_name, mean};
use super::eval::Evaluator;
use super::plan::selector_matchers;
use super::value::{
    Grid, MatrixVal, RV, VSeries, exec, for_each_window, kahan_inc, quantile, unsupported,
};

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

pub(crate) fn eval_call(ev: &mut Evaluator<'_>, c: &Call, g: &Grid) -> Result<RV, EngineError> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
    let n = g.len();
    let hint = Some(name);
    match name {
        "time" => return Ok(RV::Scalar((0..n).map(|i| g.t(i) as f64 / 1000.0).collect())),
        "pi" => return Ok(RV::Scalar(vec![std::f64::consts::PI; n])),
        "vector" => {
            let v = ev.eval_scalar(args[0], g)?;
            return Ok(RV::Vector(vec![VSeries {
                labels: Labels::default(),
                drop_name: false,
                vals: v.into_iter().map(Some).collect(),
            }]));
        }
        "scalar" => {
            let vs = ev.eval_vector(args[0], g, hint)?;
            return Ok(RV::Scalar(
                (0..n)
                    .map(|i| {
                        let mut it = vs.iter().filter_map(|s| s.vals[i]);
                        match (it.next(), it.next()) {
                            (Some(v), None) => v,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ));
        }
        "absent" => {
            let vs = ev.eval_vector(args[0], g, hint)?;
            let vals: Vec<Option<f64>> = (0..n)
                .map(|i| (!vs.iter().any(|s| s.vals[i].is_some())).then_some(1.0))
                .collect();
            return Ok(RV::Vector(vec![VSeries {
                labels: absent_labels(args[0]),
                drop_name: false,
                vals,
            }]));
        }
        "absent_over_time" => {
            let m = matrix_arg(ev, args[0], g, hint)?;
            let mut vals = vec![Some(1.0); n];
            for s in &m.series {
                for_each_window(s.samples.as_slice(), &m.eff, m.range, |i, w| {
                    if !w.is_empty() {
                        vals[i] = None;
                    }
                });
            }
            return Ok(RV::Vector(vec![VSeries {
                labels: absent_labels(args[0]),
                drop_name: false,
                vals,
            }]));
        }
        "timestamp" => {
            // On a selector, the time of the sample itself; otherwise the evaluation time.
            if let Expr::VectorSelector(vs) = unparen(args[0]) {
                let mut out = ev.vector_selector(vs, g, hint, true)?;
                for s in &mut out {
                    s.drop_name = true;
                }
                return Ok(RV::Vector(out));
            }
            let mut vs = ev.eval_vector(args[0], g, hint)?;
            for s in &mut vs {
                s.drop_name = true;
                for (i, v) in s.vals.iter_mut().enumerate() {
                    if v.is_some() {
                        *v = Some(g.t(i) as f64 / 1000.0);
                    }
                }
            }
            return Ok(RV::Vector(vs));
        }
        _ => {}
    }
    if let Some(f) = range_function(name) {
        return eval_range_function(ev, f, &args, g, hint);
    }
    if let Some(f) = math_function(name) {
        let mut vs = ev.eval_vector(args[0], g, hint)?;
        for s in &mut vs {
            s.drop_name = true;
            for v in s.vals.iter_mut().flatten() {
                *v = f(*v);
            }
        }
        return Ok(RV::Vector(vs));
    }
    if let Some(f) = date_function(name) {
        let mut vs = if args.is_empty() {
            vec![VSeries {
                labels: Labels::default(),
                drop_name: false,
                vals: (0..n).map(|i| Some(g.t(i) as f64 / 1000.0)).collect(),
            }]
        } else {
            ev.eval_vector(args[0], g, hint)?
        };
        for s in &mut vs {
            s.drop_name = true;
            for v in s.vals.iter_mut().flatten() {
                *v = if v.is_nan() || v.is_infinite() {
                    f64::NAN
                } else {
                    f(*v as i64)
                };
            }
        }
        return Ok(RV::Vector(vs));
    }
    match name {
        "clamp" | "clamp_min" | "clamp_max" | "round" => {
            let mut vs = ev.eval_vector(args[0], g, hint)?;
            let a1 = match args.get(1) {
                Some(a) => ev.eval_scalar(a, g)?,
                None => vec![1.0; n],
            };
            let a2 = match args.get(2) {
                Some(a) => ev.eval_scalar(a, g)?,
                None => vec![f64::NAN; n],
            };
            for s in &mut vs {
                s.drop_name = true;
                for (i, slot) in s.vals.iter_mut().enumerate() {
                    let Some(v) = *slot else { continue };
                    *slot = match name {
                        "clamp" if a2[i] < a1[i] => None,
                        "clamp" => Some(go_max(a1[i], go_min(a2[i], v))),
                        "clamp_min" => Some(go_max(v, a1[i])),
                        "clamp_max" => Some(go_min(v, a1[i])),
                        _ => {
                            // Prometheus rounds half up, via the inverse of to_nearest.
                            let inv = 1.0 / a1[i];
                            Some((v * inv + 0.5).floor() / inv)
                        }
                    };
                }
            }
            Ok(RV::Vector(vs))
        }
        "sort" | "sort_desc" => {
            let mut vs = ev.eval_vector(args[0], g, hint)?;
            if n == 1 {
                let desc = name == "sort_desc";
                vs.retain(|s| s.vals[0].is_some());
                vs.sort_by(|a, b| {
                    let (x, y) = (a.vals[0].unwrap_or(f64::NAN), b.vals[0].unwrap_or(f64::NAN));
                    match (x.is_nan(), y.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ if desc => y.total_cmp(&x),
                        _ => x.total_cmp(&y),
                    }
                });
            }
            Ok(RV::Vector(vs))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut vs = ev.eval_vector(args[0], g, hint)?;
            let mut names = Vec::new();
            for a in &args[1..] {
                names.push(ev.eval_string(a, g)?);
            }
            if n == 1 {
                vs.retain(|s| s.vals[0].is_some());
                let desc = name == "sort_by_label_desc";
                vs.sort_by(|a, b| {
                    let mut o = std::cmp::Ordering::Equal;
                    for l in &names {
                        o = natural_cmp(
                            a.labels.get(l).unwrap_or(""),
                            b.labels.get(l).unwrap_or(""),
                        );
                        if o.is_ne() {
                            break;
                        }
                    }
                    let o = o.then_with(|| a.labels.cmp(&b.labels));
                    if desc { o.reverse() } else { o }
                });
            }
            Ok(RV::Vector(vs))
        }
        "label_replace" => {
            let vs = ev.eval_vector(args[0], g, hint)?;
            let dst = ev.eval_string(args[1], g)?;
            let repl = ev.eval_string(args[2], g)?;
            let src = ev.eval_string(args[3], g)?;
            let re_src = ev.eval_string(args[4], g)?;
            let re = Regex::new(&format!("^(?s:{re_src})$")).map_err(|_| {
                exec(format!(
                    "invalid regular expression in label_replace(): {re_src}"
                ))
            })?;
            if !is_valid_label_name(&dst) {
                return Err(exec(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            let mut out = Vec::with_capacity(vs.len());
            for mut s in vs {
                let value = s.labels.get(&src).unwrap_or("").to_string();
                if let Some(caps) = re.captures(&value) {
                    let mut res = String::new();
                    caps.expand(&repl, &mut res);
                    s.labels.set(&dst, &res);
                    if dst == METRIC_NAME {
                        s.drop_name = false;
                    }
                }
                out.push(s);
            }
            Ok(RV::Vector(merge_same(out)?))
        }
        "label_join" => {
            let vs = ev.eval_vector(args[0], g, hint)?;
            let dst = ev.eval_string(args[1], g)?;
            let sep = ev.eval_string(args[2], g)?;
            let mut srcs = Vec::new();
            for a in &args[3..] {
                srcs.push(ev.eval_string(a, g)?);
            }
            if !is_valid_label_name(&dst) {
                return Err(exec(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            let mut out = Vec::with_capacity(vs.len());
            for mut s in vs {
                let joined: Vec<&str> =
                    srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
                let joined = joined.join(&sep);
                s.labels.set(&dst, &joined);
                if dst == METRIC_NAME {
                    s.drop_name = false;
                }
                out.push(s);
            }
            Ok(RV::Vector(merge_same(out)?))
        }
        "histogram_quantile" => {
            let q = ev.eval_scalar(args[0], g)?;
            let vs = ev.eval_vector(args[1], g, hint)?;
            classic_histogram(vs, n, |i, b| bucket_quantile(q[i], b))
        }
        "histogram_fraction" => {
            let lo = ev.eval_scalar(args[0], g)?;
            let hi = ev.eval_scalar(args[1], g)?;
            let vs = ev.eval_vector(args[2], g, hint)?;
            classic_histogram(vs, n, |i, b| bucket_fraction(lo[i], hi[i], b))
        }
        other => Err(unsupported(format!("function {other}"))),
    }
}

/// Series whose labels became equal are merged; at one step they must not collide.
fn merge_same(series: Vec<VSeries>) -> Result<Vec<VSeries>, EngineError> {
    let mut out: Vec<VSeries> = Vec::with_capacity(series.len());
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(series.len());
    for s in series {
        match index.get(&s.labels) {
            Some(&j) => {
                let dst = &mut out[j];
                dst.drop_name |= s.drop_name;
                for (d, v) in dst.vals.iter_mut().zip(s.vals) {
                    if v.is_some() {
                        if d.is_some() {
                            return Err(exec(
                                "vector cannot contain metrics with the same labelset",
                            ));
                        }
                        *d = v;
                    }
                }
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// Natural order: runs of digits compare as numbers.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a, b);
    loop {
        match (x.is_empty(), y.is_empty()) {
            (true, true) => return std::cmp::Ordering::Equal,
            (true, false) => return std::cmp::Ordering::Less,
            (false, true) => return std::cmp::Ordering::Greater,
            _ => {}
        }
        let xd = x.starts_with(|c: char| c.is_ascii_digit());
        let yd = y.starts_with(|c: char| c.is_ascii_digit());
        let split = |s: &str, digits: bool| {
            s.find(|c: char| c.is_ascii_digit() != digits)
                .unwrap_or(s.len())
        };
        let (xa, xr) = x.split_at(split(x, xd));
        let (ya, yr) = y.split_at(split(y, yd));
        let o = if xd && yd {
            let (xt, yt) = (xa.trim_start_matches('0'), ya.trim_start_matches('0'));
            xt.len()
                .cmp(&yt.len())
                .then_with(|| xt.cmp(yt))
                .then_with(|| xa.len().cmp(&ya.len()))
        } else {
            xa.cmp(ya)
        };
        if o.is_ne() {
            return o;
        }
        x = xr;
        y = yr;
    }
}

fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// The labels `absent` reports: the equality matchers of a selector argument.
fn absent_labels(arg: &Expr) -> Labels {
    let vs = match unparen(arg) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    let mut l = Labels::default();
    let mut has: Vec<&str> = Vec::new();
    let matchers = selector_matchers(vs);
    for m in &matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.op == MatchOp::Equal && !has.contains(&m.name.as_str()) {
            l.set(&m.name, &m.value);
            has.push(&m.name);
        } else {
            l.remove(&m.name);
        }
    }
    l
}

fn matrix_arg(
    ev: &mut Evaluator<'_>,
    e: &Expr,
    g: &Grid,
    hint: Option<&str>,
) -> Result<MatrixVal, EngineError> {
    match ev.eval_hint(e, g, hint)? {
        RV::Matrix(m) => Ok(m),
        other => Err(exec(format!(
            "expected range vector, got {}",
            other.type_name()
        ))),
    }
}

fn math_function(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sqrt" => f64::sqrt,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        _ => return None,
    })
}

// The calendar is the workspace's one (`nevermore_schemas::time`), shared with the log side.
use nevermore_schemas::time::{civil_from_days, days_in_month};

fn date_function(name: &str) -> Option<fn(i64) -> f64> {
    Some(match name {
        "minute" => |s| (s.rem_euclid(3600) / 60) as f64,
        "hour" => |s| (s.rem_euclid(86_400) / 3600) as f64,
        "day_of_week" => |s| (s.div_euclid(86_400) + 4).rem_euclid(7) as f64,
        "day_of_month" => |s| civil_from_days(s.div_euclid(86_400)).2 as f64,
        "day_of_year" => |s| {
            let (y, m, d) = civil_from_days(s.div_euclid(86_400));
            let before: i64 = (1..m).map(|mm| days_in_month(y, mm)).sum();
            (before + d) as f64
        },
        "days_in_month" => |s| {
            let (y, m, _) = civil_from_days(s.div_euclid(86_400));
            days_in_month(y, m) as f64
        },
        "month" => |s| civil_from_days(s.div_euclid(86_400)).1 as f64,
        "year" => |s| civil_from_days(s.div_euclid(86_400)).0 as f64,
        _ => return None,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RangeFn {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Deriv,
    PredictLinear,
    Resets,
    Changes,
    Avg,
    Min,
    Max,
    Sum,
    Count,
    Quantile,
    Stddev,
    Stdvar,
    Last,
    First,
    Present,
    Mad,
    TsFirst,
    TsLast,
    TsMin,
    TsMax,
    Smoothing,
}

fn range_function(name: &str) -> Option<RangeFn> {
    Some(match name {
        "rate" => RangeFn::Rate,
        "increase" => RangeFn::Increase,
        "delta" => RangeFn::Delta,
        "irate" => RangeFn::Irate,
        "idelta" => RangeFn::Idelta,
        "deriv" => RangeFn::Deriv,
        "predict_linear" => RangeFn::PredictLinear,
        "resets" => RangeFn::Resets,
        "changes" => RangeFn::Changes,
        "avg_over_time" => RangeFn::Avg,
        "min_over_time" => RangeFn::Min,
        "max_over_time" => RangeFn::Max,
        "sum_over_time" => RangeFn::Sum,
        "count_over_time" => RangeFn::Count,
        "quantile_over_time" => RangeFn::Quantile,
        "stddev_over_time" => RangeFn::Stddev,
        "stdvar_over_time" => RangeFn::Stdvar,
        "last_over_time" => RangeFn::Last,
        "first_over_time" => RangeFn::First,
        "present_over_time" => RangeFn::Present,
        "mad_over_time" => RangeFn::Mad,
        "ts_of_first_over_time" => RangeFn::TsFirst,
        "ts_of_last_over_time" => RangeFn::TsLast,
        "ts_of_min_over_time" => RangeFn::TsMin,
        "ts_of_max_over_time" => RangeFn::TsMax,
        "double_exponential_smoothing" => RangeFn::Smoothing,
        _ => return None,
    })
}

fn eval_range_function(
    ev: &mut Evaluator<'_>,
    f: RangeFn,
    args: &[&Expr],
    g: &Grid,
    hint: Option<&str>,
) -> Result<RV, EngineError> {
    let n = g.len();
    // The scalar argument (quantile's first, predict_linear's second).
    let (m_arg, scalar) = match f {
        RangeFn::Quantile => (args[1], Some(ev.eval_scalar(args[0], g)?)),
        RangeFn::PredictLinear | RangeFn::Smoothing => (args[0], Some(ev.eval_scalar(args[1], g)?)),
        _ => (args[0], None),
    };
    let trend = match f {
        RangeFn::Smoothing => {
            let sf = scalar.as_deref().unwrap_or_default();
            let tf = ev.eval_scalar(args[2], g)?;
            for (&s, &t) in sf.iter().zip(&tf) {
                if s <= 0.0 || s >= 1.0 {
                    return Err(exec(format!(
                        "invalid smoothing factor. Expected: 0 < sf < 1, got: {s:.6}"
                    )));
                }
                if t <= 0.0 || t >= 1.0 {
                    return Err(exec(format!(
                        "invalid trend factor. Expected: 0 < tf < 1, got: {t:.6}"
                    )));
                }
            }
            tf
        }
        _ => Vec::new(),
    };
    let m = matrix_arg(ev, m_arg, g, hint)?;
    let keep_name = matches!(f, RangeFn::Last | RangeFn::First);
    let range = m.range;
    let eff = m.eff;
    let mut out = Vec::with_capacity(m.series.len());
    let mut buf: Vec<f64> = Vec::new();
    for (k, s) in m.series.into_iter().enumerate() {
        if k % 1024 == 1023 {
            ev.check_cancel()?;
        }
        let mut vals = vec![None; n];
        let mut any = false;
        // Counters without resets (the usual case) skip the per-window reset scan.
        let resets = matches!(f, RangeFn::Rate | RangeFn::Increase)
            && s.samples
                .as_slice()
                .windows(2)
                .any(|p| p[1].v.partial_cmp(&p[0].v).is_none_or(|o| o.is_lt()));
        for_each_window(s.samples.as_slice(), &eff, range, |i, w| {
            if w.is_empty() {
                return;
            }
            let v = if f == RangeFn::Smoothing {
                smoothing(w, scalar.as_ref().map_or(f64::NAN, |x| x[i]), trend[i])
            } else {
                match f {
                    RangeFn::Rate | RangeFn::Increase => {
                        extrapolated_rate(w, eff[i], range, true, f == RangeFn::Rate, resets)
                    }
                    _ => apply_range(
                        f,
                        w,
                        eff[i],
                        g.t(i),
                        range,
                        scalar.as_ref().map(|x| x[i]),
                        &mut buf,
                    ),
                }
            };
            any |= v.is_some();
            vals[i] = v;
        });
        if any {
            out.push(VSeries {
                labels: s.labels,
                drop_name: s.drop_name || !keep_name,
                vals,
            });
        }
    }
    Ok(RV::Vector(out))
}

fn apply_range(
    f: RangeFn,
    w: &[Sample],
    eff_t: i64,
    step_t: i64,
    range: i64,
    scalar: Option<f64>,
    buf: &mut Vec<f64>,
) -> Option<f64> {
    let first = w[0];
    let last = w[w.len() - 1];
    Some(match f {
        RangeFn::Rate => extrapolated_rate(w, eff_t, range, true, true, true)?,
        RangeFn::Increase => extrapolated_rate(w, eff_t, range, true, false, true)?,
        RangeFn::Delta => extrapolated_rate(w, eff_t, range, false, false, false)?,
        RangeFn::Irate | RangeFn::Idelta => {
            if w.len() < 2 {
                return None;
            }
            let prev = w[w.len() - 2];
            let dt = last.t - prev.t;
            if dt == 0 {
                return None;
            }
            let is_rate = f == RangeFn::Irate;
            let mut v = last.v;
            if !is_rate || last.v >= prev.v || last.v.is_nan() || prev.v.is_nan() {
                v = last.v - prev.v;
            }
            if is_rate {
                v /= dt as f64 / 1000.0;
            }
            v
        }
        RangeFn::Deriv => {
            if w.len() < 2 {
                return None;
            }
            linear_regression(w, first.t).0
        }
        RangeFn::PredictLinear => {
            if w.len() < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(w, step_t);
            slope * scalar.unwrap_or(f64::NAN) + intercept
        }
        RangeFn::Resets => w.windows(2).filter(|p| p[1].v < p[0].v).count() as f64,
        RangeFn::Changes => w
            .windows(2)
            .filter(|p| p[1].v != p[0].v && !(p[1].v.is_nan() && p[0].v.is_nan()))
            .count() as f64,
        RangeFn::Avg => mean(w.iter().map(|s| s.v)),
        RangeFn::Min => w
            .iter()
            .fold(first.v, |m, s| if s.v < m || m.is_nan() { s.v } else { m }),
        RangeFn::Max => w
            .iter()
            .fold(first.v, |m, s| if s.v > m || m.is_nan() { s.v } else { m }),
        RangeFn::Sum => {
            let (s, c) = w.iter().fold((0.0, 0.0), |(s, c), x| kahan_inc(x.v, s, c));
            s + c
        }
        RangeFn::Count => w.len() as f64,
        RangeFn::Quantile => {
            buf.clear();
            buf.extend(w.iter().map(|s| s.v));
            quantile(scalar.unwrap_or(f64::NAN), buf)
        }
        RangeFn::Stddev | RangeFn::Stdvar => {
            let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for s in w {
                count += 1.0;
                let delta = s.v - (mean + c_mean);
                (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
                (aux, c_aux) = kahan_inc(delta * (s.v - (mean + c_mean)), aux, c_aux);
            }
            let var = (aux + c_aux) / count;
            if f == RangeFn::Stddev {
                var.sqrt()
            } else {
                var
            }
        }
        RangeFn::Last => last.v,
        RangeFn::First => first.v,
        RangeFn::Present => 1.0,
        RangeFn::Mad => {
            buf.clear();
            buf.extend(w.iter().map(|s| s.v));
            let median = quantile(0.5, buf);
            buf.clear();
            buf.extend(w.iter().map(|s| (s.v - median).abs()));
            quantile(0.5, buf)
        }
        RangeFn::Smoothing => return None,
        RangeFn::TsFirst => first.t as f64 / 1000.0,
        RangeFn::TsLast => last.t as f64 / 1000.0,
        RangeFn::TsMin | RangeFn::TsMax => {
            let mut best = first;
            for s in w {
                let better = if f == RangeFn::TsMax {
                    s.v >= best.v
                } else {
                    s.v <= best.v
                };
                if better || best.v.is_nan() {
                    best = *s;
                }
            }
            best.t as f64 / 1000.0
        }
    })
}

/// Holt's linear smoothing (Prometheus' `double_exponential_smoothing`).
fn smoothing(w: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, w[0].v);
    let mut b = w[1].v - w[0].v;
    for (i, x) in w.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let next = sf * x.v + (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = next;
    }
    Some(s1)
}

/// Prometheus 3's `extrapolatedRate` (rate, increase, delta).
fn extrapolated_rate(
    w: &[Sample],
    eff_t: i64,
    range: i64,
    is_counter: bool,
    is_rate: bool,
    may_reset: bool,
) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let range_start = eff_t - range;
    let range_end = eff_t;
    let first = w[0];
    let last = w[w.len() - 1];
    let mut result = last.v - first.v;
    if is_counter && may_reset {
        let mut prev = first.v;
        for s in &w[1..] {
            if s.v < prev {
                result += prev;
            }
            prev = s.v;
        }
    }
    let mut to_start = (first.t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_between = sampled / (w.len() - 1) as f64;
    let threshold = avg_between * 1.1;
    if to_start >= threshold {
        to_start = avg_between / 2.0;
    }
    if is_counter && result > 0.0 && first.v >= 0.0 {
        // A counter does not go below zero: do not extrapolate past where it would be zero.
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_between / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= range as f64 / 1000.0;
    }
    Some(result * factor)
}

/// Least squares with Kahan sums, x in seconds relative to `intercept_t` (Prometheus').
fn linear_regression(w: &[Sample], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = w[0].v;
    let mut const_y = true;
    for (i, s) in w.iter().enumerate() {
        if const_y && i > 0 && s.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (s.t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(s.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * s.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// Groups classic `le` bucket series and applies `f` to each group's buckets at each step.
fn classic_histogram(
    vs: Vec<VSeries>,
    n: usize,
    f: impl Fn(usize, &mut [(f64, f64)]) -> f64,
) -> Result<RV, EngineError> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<(f64, usize)>)> = Vec::new();
    for (k, s) in vs.iter().enumerate() {
        let Some(le) = s.labels.get("le").and_then(parse_go_float) else {
            continue;
        };
        let key = s.labels.without(&["le"]);
        let gi = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[gi].1.push((le, k));
    }
    let mut out = Vec::with_capacity(groups.len());
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for (labels, members) in groups {
        let mut vals = vec![None; n];
        for (i, slot) in vals.iter_mut().enumerate() {
            buckets.clear();
            buckets.extend(
                members
                    .iter()
                    .filter_map(|&(le, k)| vs[k].vals[i].map(|v| (le, v))),
            );
            if buckets.is_empty() {
                continue;
            }
            *slot = Some(f(i, &mut buckets));
        }
        out.push(VSeries {
            labels,
            drop_name: true,
            vals,
        });
    }
    Ok(RV::Vector(out))
}

/// Prometheus' `BucketFraction`: the share of observations between `lower` and `upper`,
/// interpolating linearly within buckets.
fn bucket_fraction(lower: f64, upper: f64, buckets: &mut [(f64, f64)]) -> f64 {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(le, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    let count = merged[merged.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, &(upper_bound, c)) in merged.iter().enumerate() {
        let lower_bound = if i > 0 {
            merged[i - 1].0
        } else if upper_bound > 0.0 {
            // As for quantiles, the first bucket starts at zero when its bound is positive.
            0.0
        } else {
            f64::NEG_INFINITY
        };
        // An infinitely wide bucket contributes nothing by interpolation.
        let interpolate = |v: f64| {
            if lower_bound.is_infinite() {
                c
            } else if upper_bound.is_infinite() {
                rank
            } else {
                rank + (c - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = c;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

/// Go's `strconv.ParseFloat` for the forms bucket bounds take.
fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    if a.is_nan() && b.is_nan() || a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < eps * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

/// Prometheus' `BucketQuantile` over classic buckets `(upper bound, cumulative count)`.
fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce equal bounds.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(le, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    // Force monotonicity and ignore tiny deltas.
    let mut prev = merged[0].1;
    for b in merged.iter_mut().skip(1) {
        let cur = b.1;
        if cur == prev {
            continue;
        }
        if almost_equal(prev, cur, 1e-12) || cur < prev {
            b.1 = prev;
            continue;
        }
        prev = cur;
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let last_idx = merged.len() - 1;
    let b = merged[..last_idx]
        .iter()
        .position(|x| x.1 >= rank)
        .unwrap_or(last_idx);
    if b == last_idx {
        return merged[last_idx - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let mut start = 0.0;
    let end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}
