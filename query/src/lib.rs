//! The query service (planned; nothing here yet).
//!
//! Module plan, each with its invariant:
//! - `lang`: the Git-like search language: lexer, parser, AST, lowering to Elasticsearch DSL and to
//!   the embedded index. Pure: no IO, no tokio.
//! - `logs`: storage backends (Elasticsearch, embedded tantivy index) behind one trait.
//! - `metrics`: upstreams (Prometheus remote read, VictoriaMetrics export, static OpenMetrics),
//!   `dedup` (pure: penalty / interval / chain) and the PromQL engine (pure, sees storage only
//!   through a trait).
//! - `http`: the search API, the Prometheus HTTP API and the web UI assets. The only module that
//!   sees HTTP.
//!
//! Never depends on the collector.
