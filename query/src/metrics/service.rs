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
    /// A bug on our side (e.g. the evaluation task panicked).
    #[error("internal error: {message}")]
    Internal { message: String },
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
                        bearer_token.as_ref().map(|s| s.0.clone()),
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
                    bearer_token.as_ref().map(|s| s.0.clone()),
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
        // A client that goes away (Grafana cancels on every refresh) drops this future: the
        // guard then stops the blocking work too.
        let _stop_on_drop = CancelOnDrop(cancel.clone());
        let remaining = opts.deadline.saturating_duration_since(Instant::now());
        let samples_fetched: usize = raw.iter().flatten().map(|s| s.samples.len()).sum();
        if samples_fetched > eval_opts.max_samples {
            return Err(EngineError::TooManySamples {
                limit: eval_opts.max_samples,
            }
            .into());
        }
        let job = tokio::task::spawn_blocking(move || {
            let t0 = Instant::now();
            let mut prepared = Prepared::default();
            for (req, series) in plan.iter().zip(raw) {
                if eval_opts.cancel.load(Ordering::Relaxed) {
                    return (Err(EngineError::Cancelled), t0.elapsed(), Duration::ZERO);
                }
                let merged = dedup_parallel(series, &replica_labels, algo, &req.hints);
                prepared.insert(req.key(), merged);
            }
            let dedup_time = t0.elapsed();
            let t1 = Instant::now();
            let result = if time.step == 0 {
                engine::eval_instant(&expr, &prepared, time.start, &eval_opts)
            } else {
                engine::eval_range(&expr, &prepared, time, &eval_opts)
            };
            (result, dedup_time, t1.elapsed())
        });
        let (result, dedup_time, eval_time) = match tokio::time::timeout(remaining, job).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => {
                return Err(MetricsError::Internal {
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

    /// The label sets of the series matching any of `selectors` in `[start, end]` (from the
    /// upstreams' indexes, so possibly series without a sample in a narrow window, as with
    /// Prometheus), sorted, with replica labels stripped (unless dedup is off).
    pub async fn series(
        &self,
        selectors: &[String],
        start: Millis,
        end: Millis,
        opts: &RequestOptions,
    ) -> Result<Answer<Vec<Labels>>, MetricsError> {
        let sel = self.selectors(selectors, opts)?;
        let (answers, warnings) = self
            .each_upstream(opts, |u| u.series(&sel, start, end))
            .await?;
        let strip = self.replica_labels(opts);
        let names: Vec<&str> = strip.iter().map(String::as_str).collect();
        let sets: BTreeSet<Labels> = answers
            .into_iter()
            .flatten()
            .map(|l| {
                if names.is_empty() {
                    l
                } else {
                    l.without(&names)
                }
            })
            .collect();
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
        let sel = self.selectors(selectors, opts)?;
        let (answers, warnings) = self
            .each_upstream(opts, |u| u.label_names(&sel, start, end))
            .await?;
        let strip = self.replica_labels(opts);
        let names: BTreeSet<String> = answers
            .into_iter()
            .flatten()
            .filter(|n| !strip.contains(n))
            .collect();
        Ok(Answer {
            data: names.into_iter().collect(),
            warnings,
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
        let sel = self.selectors(selectors, opts)?;
        if self.replica_labels(opts).iter().any(|r| r == name) {
            // A replica label does not exist after dedup.
            return Ok(Answer {
                data: Vec::new(),
                warnings: Vec::new(),
            });
        }
        let (answers, warnings) = self
            .each_upstream(opts, |u| u.label_values(name, &sel, start, end))
            .await?;
        let values: BTreeSet<String> = answers.into_iter().flatten().collect();
        Ok(Answer {
            data: values.into_iter().collect(),
            warnings,
        })
    }

    /// `match[]` selectors as matcher lists, each with the tenancy matcher; no selector with
    /// tenancy = the tenancy matcher alone.
    fn selectors(
        &self,
        selectors: &[String],
        opts: &RequestOptions,
    ) -> Result<Vec<Vec<Matcher>>, MetricsError> {
        let mut out = parse_selectors(selectors)?;
        if let Some(ns) = &opts.namespaces {
            let m = namespace_matcher(ns)?;
            if out.is_empty() {
                out.push(vec![m]);
            } else {
                for ms in &mut out {
                    ms.push(m.clone());
                }
            }
        }
        Ok(out)
    }

    /// One call per upstream, concurrently, each within the request's deadline; the answers of
    /// those that answered, and the warnings (or the error) of those that did not.
    async fn each_upstream<'a, T, F, Fut>(
        &'a self,
        opts: &RequestOptions,
        call: F,
    ) -> Result<(Vec<T>, Vec<String>), MetricsError>
    where
        F: Fn(&'a Upstream) -> Fut,
        Fut: std::future::Future<Output = Result<T, UpstreamError>>,
    {
        if self.upstreams.is_empty() {
            return Ok((
                Vec::new(),
                vec!["no metric upstreams are configured".into()],
            ));
        }
        let deadline = fetch_deadline(opts);
        let calls = self.upstreams.iter().map(|u| {
            let f = call(u);
            async move {
                match tokio::time::timeout_at(deadline, f).await {
                    Ok(answer) => answer.map_err(Failure::Error),
                    Err(_) => Err(Failure::Deadline),
                }
            }
        });
        let results = join_all(calls).await;
        let mut answers = Vec::new();
        let mut failed = BTreeMap::new();
        for (u, r) in self.upstreams.iter().zip(results) {
            match r {
                Ok(t) => answers.push(t),
                Err(f) => {
                    failed.insert(u.name().to_string(), f);
                }
            }
        }
        let warnings = self.settle(failed, !answers.is_empty(), opts)?;
        Ok((answers, warnings))
    }

    /// What failed upstreams mean for the answer: warnings when partial answers are allowed and
    /// some upstream answered, the first failure as the error otherwise.
    fn settle(
        &self,
        failed: BTreeMap<String, Failure>,
        some_answered: bool,
        opts: &RequestOptions,
    ) -> Result<Vec<String>, MetricsError> {
        let mut warnings = Vec::new();
        if failed.is_empty() {
            return Ok(warnings);
        }
        let partial = opts.partial_response.unwrap_or(self.cfg.partial_response);
        if !partial || !some_answered {
            return Err(match failed.into_iter().next() {
                Some((_, Failure::Error(e))) => MetricsError::Upstream { source: e },
                _ => MetricsError::Timeout { phase: "select" },
            });
        }
        for (name, e) in &failed {
            tracing::warn!(upstream = %name, error = %e, "upstream failed, answering partially");
            // A tenant learns which upstream failed, not its address or its error text.
            if opts.namespaces.is_some() {
                warnings.push(format!("partial response: upstream {name} failed"));
            } else {
                warnings.push(format!("partial response: upstream {name} failed: {e}"));
            }
        }
        Ok(warnings)
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
        // Each call has its own deadline (the request's), so that an upstream that hangs becomes
        // a failed upstream (a warning with partial responses) while the others' answers stay.
        // A semaphore bounds the calls in flight per request.
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CALLS_IN_FLIGHT));
        let deadline = fetch_deadline(opts);
        let calls = reqs.iter().flat_map(|r| {
            let limit = limit.clone();
            self.upstreams.iter().map(move |u| {
                let limit = limit.clone();
                async move {
                    let _permit = limit.acquire_owned().await;
                    match tokio::time::timeout_at(deadline, u.select(r)).await {
                        Ok(answer) => answer.map_err(Failure::Error),
                        Err(_) => Err(Failure::Deadline),
                    }
                }
            })
        });
        let results = join_all(calls).await;
        let mut out: Vec<Vec<Series>> = Vec::with_capacity(reqs.len());
        let mut failed: BTreeMap<String, Failure> = BTreeMap::new();
        let mut results = results.into_iter();
        for _ in &reqs {
            let mut all = Vec::new();
            for u in &self.upstreams {
                match results.next() {
                    Some(Ok(mut series)) => all.append(&mut series),
                    Some(Err(e)) => {
                        failed.entry(u.name().to_string()).or_insert(e);
                    }
                    None => {}
                }
            }
            out.push(all);
        }
        // An upstream that failed any selection counts as failed for the whole answer.
        let some_answered = self
            .upstreams
            .iter()
            .any(|u| !failed.contains_key(u.name()));
        warnings.extend(self.settle(failed, some_answered, opts)?);
        Ok((out, warnings))
    }
}

/// Why an upstream gave no answer.
#[derive(Debug)]
enum Failure {
    Error(UpstreamError),
    /// Still running at the request's deadline.
    Deadline,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error(e) => e.fmt(f),
            Failure::Deadline => f.write_str("no answer before the request's deadline"),
        }
    }
}

/// Upstream calls in flight at once for one request.
const MAX_CALLS_IN_FLIGHT: usize = 16;

/// Each `match[]` selector as its matchers (the metric name as a `__name__` matcher).
fn parse_selectors(selectors: &[String]) -> Result<Vec<Vec<Matcher>>, MetricsError> {
    let mut out = Vec::new();
    for s in selectors {
        let expr = engine::parse(s).map_err(|e| MetricsError::BadData {
            message: format!("invalid parameter \"match[]\": {e}"),
        })?;
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
        out.push(matchers);
    }
    Ok(out)
}

/// The tenancy matcher `namespace=~"a|b"` (anchored, as every PromQL regex).
fn namespace_matcher(namespaces: &BTreeSet<String>) -> Result<Matcher, MetricsError> {
    let alternatives: Vec<String> = namespaces.iter().map(|n| regex::escape(n)).collect();
    let pattern = alternatives.join("|");
    let re =
        regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| MetricsError::Internal {
            message: format!("tenancy matcher: {e}"),
        })?;
    Ok(Matcher::new(MatchOp::Re(re), "namespace", &pattern))
}

/// Adds the tenancy matcher to a selection.
fn restrict(
    req: &SelectRequest,
    namespaces: Option<&BTreeSet<String>>,
) -> Result<SelectRequest, MetricsError> {
    let mut req = req.clone();
    if let Some(ns) = namespaces {
        req.matchers.push(namespace_matcher(ns)?);
    }
    Ok(req)
}

/// Upstream calls may use 90 % of what is left of the request, so that evaluation still has
/// time after an upstream that hangs.
fn fetch_deadline(opts: &RequestOptions) -> tokio::time::Instant {
    let left = opts.deadline.saturating_duration_since(Instant::now());
    tokio::time::Instant::now() + left.mul_f64(0.9)
}

/// Above this many samples a selection is deduplicated on two threads.
const PARALLEL_DEDUP_SAMPLES: usize = 200_000;

/// [`dedup::dedup`], split in two halves by a hash of each series' labels without the replica
/// labels (so every group of replicas stays in one half) and run on two threads; the sorted
/// halves are merged back. Small selections stay on one thread.
fn dedup_parallel(
    series: Vec<Series>,
    replica_labels: &[String],
    algo: Algorithm,
    hints: &SelectHints,
) -> Vec<Series> {
    let samples: usize = series.iter().map(|s| s.samples.len()).sum();
    if samples < PARALLEL_DEDUP_SAMPLES || algo == Algorithm::None {
        return dedup::dedup(series, replica_labels, algo, hints);
    }
    let (mut left, mut right) = (Vec::new(), Vec::new());
    for s in series {
        let mut h = std::hash::DefaultHasher::new();
        for l in s
            .labels
            .iter()
            .filter(|l| !replica_labels.contains(&l.name))
        {
            std::hash::Hash::hash(l, &mut h);
        }
        if std::hash::Hasher::finish(&h) & 1 == 0 {
            left.push(s);
        } else {
            right.push(s);
        }
    }
    let (left, right) = std::thread::scope(|scope| {
        let other = scope.spawn(|| dedup::dedup(right, replica_labels, algo, hints));
        let mine = dedup::dedup(left, replica_labels, algo, hints);
        (mine, other.join())
    });
    let Ok(right) = right else {
        // A panic in the other half is a bug; answer from nothing rather than half the data.
        return Vec::new();
    };
    merge_sorted(left, right)
}

/// Two label-sorted lists of series with distinct labels, merged in label order.
fn merge_sorted(left: Vec<Series>, right: Vec<Series>) -> Vec<Series> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut a, mut b) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.labels <= y.labels,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_a { a.next() } else { b.next() };
        out.extend(next);
    }
    out
}

/// Sets the cancel flag when dropped.
#[derive(Debug)]
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use nevermore_promql::model::Sample;

    #[test]
    fn parallel_dedup_equals_dedup() {
        let mut input = Vec::new();
        for i in 0..400 {
            for r in ["a", "b"] {
                let samples = (0..400)
                    .filter(|k| !(r == "a" && i % 7 == 0 && (100..130).contains(k)))
                    .map(|k| Sample {
                        t: k * 15_000,
                        v: (k * i) as f64,
                    })
                    .collect();
                input.push(Series {
                    labels: Labels::from_pairs([
                        ("__name__", "x".to_string()),
                        ("pod", format!("p{i}")),
                        ("replica", r.to_string()),
                    ]),
                    samples,
                });
            }
        }
        let replicas = vec!["replica".to_string()];
        let hints = SelectHints {
            func: Some("rate".into()),
            ..SelectHints::default()
        };
        for algo in [Algorithm::Penalty, Algorithm::Chain] {
            let one = dedup::dedup(input.clone(), &replicas, algo, &hints);
            let two = dedup_parallel(input.clone(), &replicas, algo, &hints);
            assert_eq!(one.len(), 400);
            assert_eq!(one, two, "{algo:?}");
        }
    }
}
