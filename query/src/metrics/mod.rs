//! The metrics side of the query service: upstream clients (`upstream`, the only IO), the
//! request flow plan → fetch → dedup → evaluate (`service`), and the namespace dashboards
//! (`dashboards`). The PromQL engine and dedup are the pure crate `nevermore-promql`. Never sees
//! HTTP.

pub mod dashboards;
pub mod fixture;
pub mod service;
pub mod upstream;

pub use service::{Answer, Metrics, MetricsError, RequestOptions, Timings};
