//! PromQL evaluation: `promql-parser` parses, this module evaluates, over a [`Storage`].
//!
//! Two passes, so that the caller can do its IO between them without the engine seeing it:
//! [`plan`] lists every selection a query needs (with its window and hints), the caller fetches
//! and deduplicates them, then [`eval_instant`] / [`eval_range`] evaluate over a storage that
//! answers those selections.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::model::{Labels, Millis, SelectRequest, Series, Storage, StorageError};

mod aggregate;
mod binary;
mod eval;
mod functions;
mod plan;
mod value;

pub use promql_parser::parser::Expr;

/// Evaluation limits and settings.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// How far back an instant selector looks for a sample (Prometheus' `--query.lookback-delta`).
    pub lookback_ms: Millis,
    /// Most samples held at once (Prometheus' `--query.max-samples`).
    pub max_samples: usize,
    /// Most series one selection may return.
    pub max_series: usize,
    /// Set by the caller (e.g. at a deadline); evaluation stops with [`EngineError::Cancelled`].
    pub cancel: Arc<AtomicBool>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            lookback_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            max_series: 500_000,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// A query's time frame: an instant (`start == end`, `step == 0`) or a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryTime {
    pub start: Millis,
    pub end: Millis,
    pub step: Millis,
}

impl QueryTime {
    pub fn instant(t: Millis) -> Self {
        QueryTime {
            start: t,
            end: t,
            step: 0,
        }
    }
}

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorElem {
    pub labels: Labels,
    pub t: Millis,
    pub v: f64,
}

/// The value of a query, in Prometheus' four result types.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar {
        t: Millis,
        v: f64,
    },
    String {
        t: Millis,
        v: String,
    },
    Vector(Vec<VectorElem>),
    /// Series in Prometheus' result order (sorted by labels for range queries).
    Matrix(Vec<Series>),
}

/// A result and the warnings evaluation produced (Prometheus' `warnings`, `infos` folded in).
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluated {
    pub value: Value,
    pub warnings: Vec<String>,
}

/// Why a query did not evaluate. `Display` is the message Prometheus would give where one exists.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The text is not PromQL (HTTP 400, `bad_data`).
    #[error("{message}")]
    Parse { message: String },
    /// Valid PromQL that this engine does not evaluate (HTTP 422, `execution`), naming it.
    #[error("unsupported: {construct}")]
    Unsupported { construct: String },
    /// Evaluation failed as it would in Prometheus (HTTP 422, `execution`): e.g. many-to-many
    /// matching, duplicate series, a bad argument.
    #[error("{message}")]
    Execution { message: String },
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples { limit: usize },
    #[error("query selects more than {limit} series")]
    TooManySeries { limit: usize },
    #[error("query was cancelled")]
    Cancelled,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The step of a subquery without an explicit one (Prometheus' default evaluation interval).
pub const DEFAULT_SUBQUERY_STEP_MS: Millis = 60_000;

/// Parses a query (strict; any error is [`EngineError::Parse`]).
pub fn parse(query: &str) -> Result<Expr, EngineError> {
    if plan::non_utf8_escape(query) {
        return Err(EngineError::Unsupported {
            construct: "byte escapes above \\x7f in strings".into(),
        });
    }
    promql_parser::parser::parse(query).map_err(|message| {
        // The parser does not know Prometheus' experimental range modifiers; name them rather
        // than calling valid (if experimental) PromQL malformed.
        if let Some(m) = plan::experimental_modifier(query) {
            return EngineError::Unsupported { construct: m };
        }
        EngineError::Parse { message }
    })
}

/// Every selection evaluation of `expr` over `time` will make, in a deterministic order and
/// with the same [`SelectRequest::key`] evaluation will use. Also rejects unsupported constructs
/// with [`EngineError::Unsupported`] before any IO.
pub fn plan(
    expr: &Expr,
    time: QueryTime,
    opts: &EvalOptions,
) -> Result<Vec<SelectRequest>, EngineError> {
    plan::check_supported(expr)?;
    let grid = value::Grid::from_query(time)?;
    let mut out = Vec::new();
    plan::collect(expr, &grid, time, opts, None, &mut out);
    let mut seen = std::collections::HashSet::new();
    out.retain(|r| seen.insert(r.key()));
    Ok(out)
}

/// Evaluates at one instant.
pub fn eval_instant(
    expr: &Expr,
    storage: &dyn Storage,
    t: Millis,
    opts: &EvalOptions,
) -> Result<Evaluated, EngineError> {
    plan::check_supported(expr)?;
    let time = QueryTime::instant(t);
    let grid = value::Grid::from_query(time)?;
    let mut ev = eval::Evaluator::new(storage, opts, time);
    let rv = ev.eval(expr, &grid)?;
    let value = value::to_instant_value(rv, t, plan::keeps_order(expr))?;
    Ok(Evaluated {
        value,
        warnings: ev.warnings,
    })
}

/// Evaluates over a range: the value is always a [`Value::Matrix`] (a scalar becomes one series
/// without labels), as in Prometheus' `query_range`.
pub fn eval_range(
    expr: &Expr,
    storage: &dyn Storage,
    time: QueryTime,
    opts: &EvalOptions,
) -> Result<Evaluated, EngineError> {
    plan::check_supported(expr)?;
    let grid = value::Grid::from_query(time)?;
    let mut ev = eval::Evaluator::new(storage, opts, time);
    let rv = ev.eval(expr, &grid)?;
    let value = value::to_range_value(rv, &grid)?;
    Ok(Evaluated {
        value,
        warnings: ev.warnings,
    })
}
