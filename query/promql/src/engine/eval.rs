//! The evaluator: walks the tree once, each node over the whole grid of its context.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use promql_parser::parser::{Expr, MatrixSelector, SubqueryExpr, VectorSelector};

use crate::model::{Labels, Sample, SelectRequest, Series, Storage, is_stale_nan};

use super::plan::{duration_ms, eff_times, selector_request, subquery_grid};
use super::value::{Grid, MSeries, MatrixVal, RV, Samples, VSeries, exec, unsupported};
use super::{EngineError, EvalOptions, QueryTime, aggregate, binary, functions};

/// Evaluation state of one query.
pub(crate) struct Evaluator<'a> {
    storage: &'a dyn Storage,
    pub opts: &'a EvalOptions,
    pub q: QueryTime,
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("q", &self.q)
            .finish_non_exhaustive()
    }
}

impl<'a> Evaluator<'a> {
    pub fn new(storage: &'a dyn Storage, opts: &'a EvalOptions, q: QueryTime) -> Self {
        Evaluator {
            storage,
            opts,
            q,
            warnings: Vec::new(),
        }
    }

    pub fn check_cancel(&self) -> Result<(), EngineError> {
        if self.opts.cancel.load(Ordering::Relaxed) {
            Err(EngineError::Cancelled)
        } else {
            Ok(())
        }
    }

    pub fn eval(&mut self, e: &Expr, g: &Grid) -> Result<RV, EngineError> {
        self.eval_hint(e, g, None)
    }

    /// `hint` is the function a selector directly feeds (as [`super::plan::collect`] passes it).
    pub fn eval_hint(&mut self, e: &Expr, g: &Grid, hint: Option<&str>) -> Result<RV, EngineError> {
        self.check_cancel()?;
        let rv = match e {
            Expr::NumberLiteral(n) => RV::Scalar(vec![n.val; g.len()]),
            Expr::StringLiteral(s) => RV::Str(s.val.clone()),
            Expr::Paren(p) => return self.eval_hint(&p.expr, g, hint),
            Expr::Unary(u) => match self.eval(&u.expr, g)? {
                RV::Scalar(v) => RV::Scalar(v.into_iter().map(|x| -x).collect()),
                RV::Vector(mut vs) => {
                    for s in &mut vs {
                        s.drop_name = true;
                        for v in s.vals.iter_mut().flatten() {
                            *v = -*v;
                        }
                    }
                    RV::Vector(vs)
                }
                other => return Err(exec(format!("unary expression on {}", other.type_name()))),
            },
            Expr::VectorSelector(vs) => RV::Vector(self.vector_selector(vs, g, hint, false)?),
            Expr::MatrixSelector(ms) => RV::Matrix(self.matrix_selector(ms, g, hint)?),
            Expr::Subquery(sq) => RV::Matrix(self.subquery(sq, g)?),
            Expr::Binary(b) => binary::eval_binary(self, b, g)?,
            Expr::Aggregate(a) => aggregate::eval_aggregate(self, a, g)?,
            Expr::Call(c) => functions::eval_call(self, c, g)?,
            Expr::Extension(_) => return Err(unsupported("extension expressions")),
        };
        self.check_samples(&rv)?;
        Ok(rv)
    }

    /// Prometheus' `--query.max-samples`, counted per node result (roughly what it holds).
    fn check_samples(&self, rv: &RV) -> Result<(), EngineError> {
        let limit = self.opts.max_samples;
        let n = match rv {
            RV::Scalar(_) | RV::Str(_) => 0,
            RV::Vector(vs) => {
                let mut n = 0usize;
                for s in vs {
                    n += s.vals.iter().filter(|v| v.is_some()).count();
                    if n > limit {
                        break;
                    }
                }
                n
            }
            RV::Matrix(m) => m.series.iter().map(|s| s.samples.as_slice().len()).sum(),
        };
        if n > limit {
            return Err(EngineError::TooManySamples { limit });
        }
        Ok(())
    }

    fn select(&self, req: &SelectRequest) -> Result<Vec<Arc<Series>>, EngineError> {
        self.check_cancel()?;
        let series = self.storage.select(req)?;
        if series.len() > self.opts.max_series {
            return Err(EngineError::TooManySeries {
                limit: self.opts.max_series,
            });
        }
        Ok(series)
    }

    /// An instant selector: at each step the newest sample in `(t - lookback, t]`, unless it is
    /// a stale marker. With `timestamps`, the value is the sample's time in seconds.
    pub fn vector_selector(
        &mut self,
        vs: &VectorSelector,
        g: &Grid,
        hint: Option<&str>,
        timestamps: bool,
    ) -> Result<Vec<VSeries>, EngineError> {
        let req = selector_request(vs, 0, hint, g, self.q, self.opts);
        let series = self.select(&req)?;
        let eff = eff_times(&vs.at, &vs.offset, g, self.q);
        let lookback = self.opts.lookback_ms;
        let mut out = Vec::with_capacity(series.len());
        for (k, s) in series.iter().enumerate() {
            if k % 1024 == 1023 {
                self.check_cancel()?;
            }
            let vals = instant_values(&s.samples, &eff, lookback, timestamps);
            if vals.iter().any(Option::is_some) {
                out.push(VSeries {
                    labels: s.labels.clone(),
                    drop_name: false,
                    vals,
                });
            }
        }
        Ok(out)
    }

    fn matrix_selector(
        &mut self,
        ms: &MatrixSelector,
        g: &Grid,
        hint: Option<&str>,
    ) -> Result<MatrixVal, EngineError> {
        let range = duration_ms(&ms.range);
        let req = selector_request(&ms.vs, range, hint, g, self.q, self.opts);
        let series = self.select(&req)?;
        let eff = eff_times(&ms.vs.at, &ms.vs.offset, g, self.q);
        let mut out = Vec::with_capacity(series.len());
        for (k, s) in series.into_iter().enumerate() {
            if k % 1024 == 1023 {
                self.check_cancel()?;
            }
            // Range vectors never contain stale markers; copy only when there are some.
            let samples = if s.samples.iter().any(|x| is_stale_nan(x.v)) {
                Samples::Owned(
                    s.samples
                        .iter()
                        .filter(|x| !is_stale_nan(x.v))
                        .copied()
                        .collect(),
                )
            } else {
                Samples::Shared(s.clone())
            };
            out.push(MSeries {
                labels: s.labels.clone(),
                drop_name: false,
                samples,
            });
        }
        Ok(MatrixVal {
            series: out,
            range,
            eff,
        })
    }

    fn subquery(&mut self, sq: &SubqueryExpr, g: &Grid) -> Result<MatrixVal, EngineError> {
        let inner = subquery_grid(sq, g, self.q);
        let series = match self.eval(&sq.expr, &inner)? {
            RV::Vector(vs) => vs,
            RV::Scalar(v) => vec![VSeries {
                labels: Labels::default(),
                drop_name: false,
                vals: v.into_iter().map(Some).collect(),
            }],
            other => {
                return Err(exec(format!(
                    "subquery is only allowed on vector, got {}",
                    other.type_name()
                )));
            }
        };
        let out = series
            .into_iter()
            .filter_map(|s| {
                let samples: Vec<Sample> = s
                    .vals
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| Sample { t: inner.t(i), v }))
                    .collect();
                (!samples.is_empty()).then_some(MSeries {
                    labels: s.labels,
                    drop_name: s.drop_name,
                    samples: Samples::Owned(samples),
                })
            })
            .collect();
        Ok(MatrixVal {
            series: out,
            range: duration_ms(&sq.range),
            eff: eff_times(&sq.at, &sq.offset, g, self.q),
        })
    }

    /// Evaluates an argument that must be a scalar (per step).
    pub fn eval_scalar(&mut self, e: &Expr, g: &Grid) -> Result<Vec<f64>, EngineError> {
        match self.eval(e, g)? {
            RV::Scalar(v) => Ok(v),
            other => Err(exec(format!("expected scalar, got {}", other.type_name()))),
        }
    }

    pub fn eval_vector(
        &mut self,
        e: &Expr,
        g: &Grid,
        hint: Option<&str>,
    ) -> Result<Vec<VSeries>, EngineError> {
        match self.eval_hint(e, g, hint)? {
            RV::Vector(v) => Ok(v),
            other => Err(exec(format!(
                "expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    pub fn eval_string(&mut self, e: &Expr, g: &Grid) -> Result<String, EngineError> {
        match self.eval(e, g)? {
            RV::Str(s) => Ok(s),
            other => Err(exec(format!("expected string, got {}", other.type_name()))),
        }
    }
}

/// Per step, the newest sample within the lookback window, found with one forward cursor.
fn instant_values(
    samples: &[Sample],
    eff: &[i64],
    lookback: i64,
    timestamps: bool,
) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(eff.len());
    let mut j = 0usize;
    let mut last_t = i64::MIN;
    for &t in eff {
        if t < last_t {
            // Not monotonic (never happens with our grids): restart the cursor.
            j = 0;
        }
        last_t = t;
        while j < samples.len() && samples[j].t <= t {
            j += 1;
        }
        let v = if j == 0 {
            None
        } else {
            let s = samples[j - 1];
            if s.t > t - lookback && !is_stale_nan(s.v) {
                Some(if timestamps { s.t as f64 / 1000.0 } else { s.v })
            } else {
                None
            }
        };
        out.push(v);
    }
    out
}
