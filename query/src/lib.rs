//! The query service: log search over the embedded index or Elasticsearch, and the metrics side
//! over deduplicated Prometheus / VictoriaMetrics upstreams.
//!
//! - `logs`: storage backends behind one interface ([`logs::Backend`]); each lowers the search
//!   language's AST itself. Never sees HTTP.
//! - `metrics`: upstream clients, the plan → fetch → dedup → evaluate flow, the dashboards.
//!   Never sees HTTP.
//! - `http`: the search API, the Prometheus API, the dashboards and the web UI. The only module
//!   that sees HTTP.
//!
//! The languages are pure crates: `nevermore-lang` (log search) and `nevermore-promql` (PromQL,
//! dedup). Never depends on the collector.

pub mod config;
pub mod http;
pub mod logs;
pub mod metrics;
