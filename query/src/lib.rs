//! The query service: log search over the embedded index or Elasticsearch, and (planned) the
//! metrics side.
//!
//! - `logs`: storage backends behind one interface ([`logs::Backend`]); each lowers the search
//!   language's AST itself. Never sees HTTP.
//! - `http`: the search API. The only module that sees HTTP.
//! - planned: `metrics` (upstreams, dedup, PromQL engine behind a storage trait), the web UI.
//!
//! The language itself is the pure crate `nevermore-lang`. Never depends on the collector.

pub mod config;
pub mod http;
pub mod logs;
pub mod metrics;
