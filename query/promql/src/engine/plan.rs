//! What a query will select, computed by the same functions evaluation uses, and the check
//! for constructs this engine does not evaluate.

use std::time::{Duration, SystemTime};

use promql_parser::label::MatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};

use crate::model::{METRIC_NAME, Matcher, Millis, SelectHints, SelectRequest};

use super::value::{Grid, unsupported};
use super::{DEFAULT_SUBQUERY_STEP_MS, EngineError, EvalOptions, QueryTime};

/// Functions this engine evaluates (all on floats; native histograms are rejected).
pub(crate) const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "deg",
    "delta",
    "deriv",
    "double_exponential_smoothing",
    "exp",
    "first_over_time",
    "floor",
    "histogram_fraction",
    "histogram_quantile",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_replace",
    "label_join",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sort_by_label",
    "sort_by_label_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "vector",
    "year",
];

/// Rejects what evaluation would not answer correctly, naming it.
pub(crate) fn check_supported(e: &Expr) -> Result<(), EngineError> {
    match e {
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if op == "limitk" || op == "limit_ratio" {
                return Err(unsupported(op));
            }
            if let Some(p) = &a.param {
                check_supported(p)?;
            }
            check_supported(&a.expr)
        }
        Expr::Unary(u) => check_supported(&u.expr),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier
                && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
            {
                return Err(unsupported("fill modifiers"));
            }
            check_supported(&b.lhs)?;
            check_supported(&b.rhs)
        }
        Expr::Paren(p) => check_supported(&p.expr),
        Expr::Subquery(s) => check_supported(&s.expr),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(vs) => check_selector(vs),
        Expr::MatrixSelector(ms) => check_selector(&ms.vs),
        Expr::Call(c) => {
            let name = c.func.name;
            if name == "info" {
                return Err(unsupported("function info"));
            }
            if name.starts_with("histogram_")
                && name != "histogram_quantile"
                && name != "histogram_fraction"
            {
                return Err(unsupported(format!("native histograms (function {name})")));
            }
            if !FUNCTIONS.contains(&name) {
                return Err(unsupported(format!("function {name}")));
            }
            for a in &c.args.args {
                check_supported(a)?;
            }
            Ok(())
        }
        Expr::Extension(_) => Err(unsupported("extension expressions")),
    }
}

fn check_selector(vs: &VectorSelector) -> Result<(), EngineError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(unsupported("'or' in label matchers"));
    }
    Ok(())
}

/// Names Prometheus' experimental syntax the parser rejects, so that such queries read as
/// unsupported rather than malformed.
pub(crate) fn experimental_modifier(query: &str) -> Option<String> {
    // `anchored` / `smoothed` after a selector: `x[5m] anchored`, `x smoothed`.
    for m in ["anchored", "smoothed"] {
        for (i, _) in query.match_indices(m) {
            let after = query[i + m.len()..].chars().next();
            if after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let before = &query[..i];
            let trimmed = before.trim_end();
            if trimmed.len() == before.len() {
                continue;
            }
            if trimmed.ends_with(|c: char| c == ']' || c == '}' || c.is_alphanumeric() || c == '_')
            {
                return Some(format!("{m} modifier"));
            }
        }
    }
    // Duration expressions: arithmetic or step() inside brackets or after offset / @.
    let lower = query.to_ascii_lowercase();
    if lower.contains("step()") || lower.contains("range()") {
        return Some("duration expressions".into());
    }
    let mut rest = query;
    while let Some(i) = rest.find('[') {
        rest = &rest[i + 1..];
        let inner = rest.split(']').next().unwrap_or("");
        if inner.contains(|c: char| "+-*/%^()".contains(c))
            || inner.split(':').next().is_some_and(|d| {
                d.trim().chars().all(|c| c.is_ascii_digit()) && !d.trim().is_empty()
            })
        {
            return Some("duration expressions".into());
        }
    }
    let compact: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.contains("offset(") || compact.contains("offset-(") || compact.contains("@(") {
        return Some("duration expressions".into());
    }
    None
}

/// Byte escapes above 0x7f make strings that are not UTF-8 in Prometheus; the parser decodes
/// them as characters instead, so such queries are not evaluated.
pub(crate) fn non_utf8_escape(query: &str) -> bool {
    let b = query.as_bytes();
    b.windows(4).any(|w| {
        w[0] == b'\\'
            && w[1] == b'x'
            && matches!(w[2], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
            && w[3].is_ascii_hexdigit()
    })
}

/// Whether the result order of an instant query is meaningful (sorting functions, topk).
pub(crate) fn keeps_order(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => keeps_order(&p.expr),
        Expr::Call(c) => matches!(
            c.func.name,
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
        ),
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            op == "topk" || op == "bottomk"
        }
        _ => false,
    }
}

pub(crate) fn duration_ms(d: &Duration) -> Millis {
    d.as_millis() as Millis
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> Millis {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

pub(crate) fn at_ms(at: &Option<AtModifier>, q: QueryTime) -> Option<Millis> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(q.start),
        Some(AtModifier::End) => Some(q.end),
        Some(AtModifier::At(t)) => Some(match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => duration_ms(&d),
            Err(e) => -duration_ms(&e.duration()),
        }),
    }
}

/// The times a selector or subquery looks at, one per step (`@` pins them, `offset` shifts).
pub(crate) fn eff_times(
    at: &Option<AtModifier>,
    offset: &Option<Offset>,
    g: &Grid,
    q: QueryTime,
) -> Vec<Millis> {
    let off = offset_ms(offset);
    let pinned = at_ms(at, q);
    (0..g.len())
        .map(|i| pinned.unwrap_or_else(|| g.t(i)) - off)
        .collect()
}

fn eff_bounds(
    at: &Option<AtModifier>,
    offset: &Option<Offset>,
    g: &Grid,
    q: QueryTime,
) -> (Millis, Millis) {
    let off = offset_ms(offset);
    match at_ms(at, q) {
        Some(t) => (t - off, t - off),
        None => (g.start - off, g.end - off),
    }
}

/// The matchers of a selector, the metric name included.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Vec<Matcher> {
    let mut ms = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name
        && !ms
            .iter()
            .any(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal && &m.value == name)
    {
        ms.insert(0, Matcher::new(MatchOp::Equal, METRIC_NAME, name));
    }
    ms
}

/// The one selection a selector node makes over its grid.
pub(crate) fn selector_request(
    vs: &VectorSelector,
    range_ms: Millis,
    func: Option<&str>,
    g: &Grid,
    q: QueryTime,
    opts: &EvalOptions,
) -> SelectRequest {
    let (lo, hi) = eff_bounds(&vs.at, &vs.offset, g, q);
    let look = if range_ms > 0 {
        range_ms
    } else {
        opts.lookback_ms
    };
    SelectRequest {
        matchers: selector_matchers(vs),
        // Windows are left-open: (t - range, t].
        start: lo - look + 1,
        end: hi,
        hints: SelectHints {
            func: func.map(str::to_string),
            range_ms,
            step_ms: g.step,
        },
    }
}

/// The grid a subquery evaluates its expression over (Prometheus aligns it to the step).
pub(crate) fn subquery_grid(sq: &SubqueryExpr, g: &Grid, q: QueryTime) -> Grid {
    let off = offset_ms(&sq.offset);
    let range = duration_ms(&sq.range);
    let step = sq
        .step
        .as_ref()
        .map(duration_ms)
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
    let (lo, hi) = match at_ms(&sq.at, q) {
        Some(t) => (t, t),
        None => (g.start, g.end),
    };
    let first = lo - off - range;
    // Go's integer division truncates toward zero; so does Rust's.
    let mut start = step * (first / step);
    if start <= first {
        start += step;
    }
    Grid {
        start,
        end: hi - off,
        step,
    }
}

/// Walks the tree as evaluation does, listing every selection.
pub(crate) fn collect(
    e: &Expr,
    g: &Grid,
    q: QueryTime,
    opts: &EvalOptions,
    func: Option<&str>,
    out: &mut Vec<SelectRequest>,
) {
    match e {
        Expr::VectorSelector(vs) => out.push(selector_request(vs, 0, func, g, q, opts)),
        Expr::MatrixSelector(ms) => out.push(selector_request(
            &ms.vs,
            duration_ms(&ms.range),
            func,
            g,
            q,
            opts,
        )),
        Expr::Paren(p) => collect(&p.expr, g, q, opts, func, out),
        Expr::Unary(u) => collect(&u.expr, g, q, opts, None, out),
        Expr::Binary(b) => {
            collect(&b.lhs, g, q, opts, None, out);
            collect(&b.rhs, g, q, opts, None, out);
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                collect(p, g, q, opts, None, out);
            }
            collect(&a.expr, g, q, opts, None, out);
        }
        Expr::Call(c) => {
            for a in &c.args.args {
                collect(a, g, q, opts, Some(c.func.name), out);
            }
        }
        Expr::Subquery(sq) => {
            let inner = subquery_grid(sq, g, q);
            collect(&sq.expr, &inner, q, opts, None, out);
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}
