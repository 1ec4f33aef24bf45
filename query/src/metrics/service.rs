//! Queries over the upstreams: plan, fetch from every upstream at once, deduplicate, evaluate.
//!
//! The engine is pure and synchronous: it first lists the selections a query needs
//! ([`engine::plan`]); this module fetches each one from every upstream concurrently, strips the
//! replica labels and merges replicas ([`dedup`]), and only then evaluates, on the blocking pool,
//! over a storage that answers exactly those selections. Never sees HTTP.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use nevermore_promql::dedup::{self, Algorithm};
use nevermore_promql::engine::{self, EngineError, EvalOptions, Evaluated, QueryTime};
use nevermore_promql::model::{
    Labels, MatchOp, Matcher, Millis, SelectHints, SelectRequest, Series, Storage, StorageError,
};

use super::upstream::{Upstream, UpstreamError};
use crate::config::{MetricsConfig, UpstreamConfig};

/// Why a metrics request failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An upstream failed and the request did not accept a partial answer.
    #[error("{source}")]
    Upstream {
        #[source]
        source: UpstreamError,
    },
    #[error("query timed out in {phase}")]
    Timeout { phase: &'static str },
    #[error("{message}")]
    BadData { message: String },
    #[error("loading upstream {upstream}: {source}")]
    Load {
        upstream: String,
        #[source]
        source: UpstreamError,
    },
}

/// Per-request choices (Thanos' query parameters, tenancy, deadline).
#[derive(Debug, Clone)]
pub struct RequestOptions {
    /// Thanos `dedup`: merge replicas (default) or return every replica's series as they are.
    pub dedup: bool,
    /// Thanos `replicaLabels[]`: overrides the configured replica labels when non-empty.
    pub replica_labels: Vec<String>,
    /// Thanos `partial_response`: `None` = the configured default.
    pub partial_response: Option<bool>,
    /// Tenancy: only series whose `namespace` label is one of these (`None` = everything).
    pub namespaces: Option<BTreeSet<String>>,
    /// When the whole request must be done.
    pub deadline: Instant,
}

impl RequestOptions {
    pub fn new(deadline: Instant) -> Self {
        RequestOptions {
            dedup: true,
            replica_labels: Vec::new(),
            partial_response: None,
            namespaces: None,
            deadline,
        }
    }
}

/// The result of a request plus the warnings an answer carries (failed upstreams, the engine's).
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub data: T,
    pub warnings: Vec<String>,
}

/// Time spent per phase of the last query (for benchmarks and logs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub select: Duration,
    pub dedup: Duration,
    pub eval: Duration,
    pub samples_fetched: usize,
}

/// The metrics side of the query service.
#[derive(Debug)]
pub struct Metrics {
    upstreams: Vec<Arc<Upstream>>,
    cfg: MetricsConfig,
}

impl Metrics {
    /// No upstreams: every query answers with no data and a warning saying so.
    pub fn empty(cfg: &MetricsConfig) -> Metrics {
        Metrics {
            upstreams: Vec::new(),
            cfg: cfg.clone(),
        }
    }

    /// Builds the upstream clients; static files are read now.
    pub fn from_config(cfg: &MetricsConfig) -> Result<Metrics, MetricsError> {
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| MetricsError::BadData {
                message: format!("http client: {e}"),
            })?;
        let mut upstreams = Vec::new();
        for u in &cfg.upstreams {
            let up = match u {
                UpstreamConfig::Prometheus {
                    name,
                    url,
                    timeout,
                    bearer_token,
                    streamed,
                } => Upstream::Prometheus(
                    super::upstream::remote_read::RemoteRead::new(
                        name.clone(),
                        url.clone(),
                        *timeout,
                        client.clone(),
                        bearer_token.clone(),
                    )
                    .with_streamed(*streamed),
                ),
                UpstreamConfig::VictoriaMetrics {
                    name,
                    url,
                    timeout,
                    bearer_token,
                } => Upstream::VictoriaMetrics(super::upstream::victoriametrics::VmExport::new(
                    name.clone(),
                    url.clone(),
                    *timeout,
                    client.clone(),
                    bearer_token.clone(),
                )),
                UpstreamConfig::Static { name, paths } => Upstream::Static(
                    super::upstream::openmetrics::StaticFiles::load(name.clone(), paths).map_err(
                        |source| MetricsError::Load {
                            upstream: name.clone(),
                            source,
                        },
                    )?,
                ),
            };
            upstreams.push(Arc::new(up));
        }
        Ok(Metrics {
            upstreams,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &MetricsConfig {
        &self.cfg
    }

    /// Evaluates `query` at an instant (`time.step == 0`) or over a range.
    pub async fn query(
        &self,
        query: &str,
        time: QueryTime,
        opts: &RequestOptions,
    ) -> Result<(Answer<Evaluated>, Timings), MetricsError> {
        let expr = engine::parse(query)?;
        let eval_opts = self.eval_options();
        let plan = engine::plan(&expr, time, &eval_opts)?;
        let started = Instant::now();
        let (raw, mut warnings) = self.fetch(&plan, opts).await?;
        let select = started.elapsed();
        let algo = self.algorithm(opts);
        let replica_labels = self.replica_labels(opts);
        let cancel = eval_opts.cancel.clone();
        let remaining = opts.deadline.saturating_duration_since(Instant::now());
        let job = tokio::task::spawn_blocking(move || {
            let t0 = Instant::now();
            let mut samples_fetched = 0;
            let mut prepared = Prepared::default();
            for (req, series) in plan.iter().zip(raw) {
                samples_fetched += series.iter().map(|s| s.samples.len()).sum::<usize>();
                let merged = dedup::dedup(series, &replica_labels, algo, &req.hints);
                prepared.insert(req.key(), merged);
            }
            let dedup_time = t0.elapsed();
            let t1 = Instant::now();
            let result = if time.step == 0 {
                engine::eval_instant(&expr, &prepared, time.start, &eval_opts)
            } else {
                engine::eval_range(&expr, &prepared, time, &eval_opts)
            };
            (result, dedup_time, t1.elapsed(), samples_fetched)
        });
        let (result, dedup_time, eval_time, samples_fetched) =
            match tokio::time::timeout(remaining, job).await {
                Ok(Ok(r)) => r,
                Ok(Err(join)) => {
                    return Err(MetricsError::BadData {
                        message: format!("evaluation failed: {join}"),
                    });
                }
                Err(_) => {
                    // The engine checks the flag and stops; the task's result is dropped.
                    cancel.store(true, Ordering::Relaxed);
                    return Err(MetricsError::Timeout {
                        phase: "evaluation",
                    });
                }
            };
        let mut evaluated = result?;
        warnings.append(&mut evaluated.warnings);
        Ok((
            Answer {
                data: evaluated,
                warnings,
            },
            Timings {
                select,
                dedup: dedup_time,
                eval: eval_time,
                samples_fetched,
            },
        ))
    }

    /// The label sets of the series matching any of `selectors` in `[start, end]`, sorted, with
    /// replica labels stripped (unless dedup is off).
    pub async fn series(
        &self,
        selectors: &[String],
        start: Millis,
        end: Millis,
        opts: &RequestOptions,
    ) -> Result<Answer<Vec<Labels>>, MetricsError> {
        let reqs = selection_requests(selectors, start, end)?;
        let (raw, warnings) = self.fetch(&reqs, opts).await?;
        let replica_labels = self.replica_labels(opts);
        let mut sets = BTreeSet::new();
        for series in raw.into_iter().flatten() {
            let labels = if opts.dedup {
                let names: Vec<&str> = replica_labels.iter().map(String::as_str).collect();
                series.labels.without(&names)
            } else {
                series.labels
            };
            sets.insert(labels);
        }
        Ok(Answer {
            data: sets.into_iter().collect(),
            warnings,
        })
    }

    /// Label names over the series of `selectors` (every series when empty).
    pub async fn label_names(
        &self,
        selectors: &[String],
        start: Millis,
        end: Millis,
        opts: &RequestOptions,
    ) -> Result<Answer<Vec<String>>, MetricsError> {
        let series = self.series(&or_all(selectors), start, end, opts).await?;
        let names: BTreeSet<String> = series
            .data
            .iter()
            .flat_map(|l| l.iter().map(|l| l.name.clone()))
            .collect();
        Ok(Answer {
            data: names.into_iter().collect(),
            warnings: series.warnings,
        })
    }

    /// Values of `name` over the series of `selectors` (every series when empty).
    pub async fn label_values(
        &self,
        name: &str,
        selectors: &[String],
        start: Millis,
        end: Millis,
        opts: &RequestOptions,
    ) -> Result<Answer<Vec<String>>, MetricsError> {
        let selectors = if selectors.is_empty() {
            // Only series that have the label: `{name!=""}`.
            vec![format!("{{{name}!=\"\"}}")]
        } else {
            selectors.to_vec()
        };
        let series = self.series(&selectors, start, end, opts).await?;
        let values: BTreeSet<String> = series
            .data
            .iter()
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        Ok(Answer {
            data: values.into_iter().collect(),
            warnings: series.warnings,
        })
    }

    fn eval_options(&self) -> EvalOptions {
        EvalOptions {
            lookback_ms: self.cfg.lookback_delta.as_millis() as i64,
            max_samples: self.cfg.max_samples,
            max_series: self.cfg.max_series,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    fn algorithm(&self, opts: &RequestOptions) -> Algorithm {
        if opts.dedup {
            self.cfg.dedup
        } else {
            // Series stay apart by their replica labels; only truly identical label sets (two
            // upstreams holding the same series) are merged, as Thanos does without dedup.
            Algorithm::Chain
        }
    }

    fn replica_labels(&self, opts: &RequestOptions) -> Vec<String> {
        if !opts.dedup {
            Vec::new()
        } else if opts.replica_labels.is_empty() {
            self.cfg.replica_labels.clone()
        } else {
            opts.replica_labels.clone()
        }
    }

    /// Fetches every request from every upstream concurrently. Per request: all upstreams'
    /// series, concatenated. An upstream failure becomes a warning when partial answers are
    /// allowed (and at least one upstream answered), an error otherwise.
    async fn fetch(
        &self,
        reqs: &[SelectRequest],
        opts: &RequestOptions,
    ) -> Result<(Vec<Vec<Series>>, Vec<String>), MetricsError> {
        let mut warnings = Vec::new();
        if self.upstreams.is_empty() {
            warnings.push("no metric upstreams are configured".to_string());
            return Ok((reqs.iter().map(|_| Vec::new()).collect(), warnings));
        }
        let reqs: Vec<SelectRequest> = reqs
            .iter()
            .map(|r| restrict(r, opts.namespaces.as_ref()))
            .collect::<Result<_, _>>()?;
        let calls = reqs.iter().flat_map(|r| {
            self.upstreams
                .iter()
                .map(move |u| async move { u.select(r).await })
        });
        let remaining = opts.deadline.saturating_duration_since(Instant::now());
        let results = tokio::time::timeout(remaining, join_all(calls))
            .await
            .map_err(|_| MetricsError::Timeout { phase: "select" })?;
        let partial = opts.partial_response.unwrap_or(self.cfg.partial_response);
        let n = self.upstreams.len();
        let mut out: Vec<Vec<Series>> = Vec::with_capacity(reqs.len());
        let mut failed: BTreeMap<String, UpstreamError> = BTreeMap::new();
        let mut answered = BTreeSet::new();
        let mut results = results.into_iter();
        for _ in &reqs {
            let mut all = Vec::new();
            for u in &self.upstreams {
                match results.next() {
                    Some(Ok(mut series)) => {
                        answered.insert(u.name().to_string());
                        all.append(&mut series);
                    }
                    Some(Err(e)) => {
                        failed.entry(u.name().to_string()).or_insert(e);
                    }
                    None => {}
                }
            }
            out.push(all);
        }
        debug_assert!(n > 0);
        if !failed.is_empty() {
            let some_answered = answered.iter().any(|a| !failed.contains_key(a));
            if !partial || !some_answered {
                if let Some((_, e)) = failed.into_iter().next() {
                    return Err(MetricsError::Upstream { source: e });
                }
                return Ok((out, warnings));
            }
            for (name, e) in &failed {
                tracing::warn!(upstream = %name, error = %e, "upstream failed, answering partially");
                warnings.push(format!("partial response: upstream {name} failed: {e}"));
            }
        }
        Ok((out, warnings))
    }
}

/// `[]` → every series (`{__name__=~".+"}`).
fn or_all(selectors: &[String]) -> Vec<String> {
    if selectors.is_empty() {
        vec!["{__name__=~\".+\"}".to_string()]
    } else {
        selectors.to_vec()
    }
}

/// One selection per `match[]` selector over `[start, end]`.
fn selection_requests(
    selectors: &[String],
    start: Millis,
    end: Millis,
) -> Result<Vec<SelectRequest>, MetricsError> {
    let mut out = Vec::new();
    for s in or_all(selectors) {
        let expr = engine::parse(&s)?;
        let matchers = match expr {
            engine::Expr::VectorSelector(vs) => {
                let mut ms: Vec<Matcher> = vs.matchers.matchers.clone();
                if let Some(name) = vs.name.clone()
                    && !ms.iter().any(|m| m.name == "__name__")
                {
                    ms.push(Matcher::new(MatchOp::Equal, "__name__", &name));
                }
                if !vs.matchers.or_matchers.is_empty() {
                    return Err(MetricsError::BadData {
                        message: format!("`or` inside a series selector is not supported: {s}"),
                    });
                }
                ms
            }
            _ => {
                return Err(MetricsError::BadData {
                    message: format!("invalid parameter \"match[]\": {s} is not a series selector"),
                });
            }
        };
        if matchers.iter().all(|m| m.is_match("")) {
            return Err(MetricsError::BadData {
                message: "match[] must contain at least one non-empty matcher".into(),
            });
        }
        out.push(SelectRequest {
            matchers,
            start,
            end,
            hints: SelectHints {
                func: Some("series".into()),
                ..SelectHints::default()
            },
        });
    }
    Ok(out)
}

/// Adds the tenancy matcher `namespace=~"^(a|b)$"` to a selection.
fn restrict(
    req: &SelectRequest,
    namespaces: Option<&BTreeSet<String>>,
) -> Result<SelectRequest, MetricsError> {
    let mut req = req.clone();
    if let Some(ns) = namespaces {
        let alternatives: Vec<String> = ns.iter().map(|n| regex::escape(n)).collect();
        let pattern = alternatives.join("|");
        let re =
            regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| MetricsError::BadData {
                message: format!("tenancy matcher: {e}"),
            })?;
        req.matchers
            .push(Matcher::new(MatchOp::Re(re), "namespace", &pattern));
    }
    Ok(req)
}

/// The selections of one query, deduplicated, by [`SelectRequest::key`].
#[derive(Debug, Default)]
struct Prepared {
    by_key: HashMap<String, Vec<Arc<Series>>>,
}

impl Prepared {
    fn insert(&mut self, key: String, series: Vec<Series>) {
        self.by_key
            .insert(key, series.into_iter().map(Arc::new).collect());
    }
}

impl Storage for Prepared {
    fn select(&self, req: &SelectRequest) -> Result<Vec<Arc<Series>>, StorageError> {
        self.by_key
            .get(&req.key())
            .cloned()
            .ok_or_else(|| StorageError::NotPrepared { key: req.key() })
    }
}
